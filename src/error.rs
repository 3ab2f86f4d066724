//! The crate's error type. Every variant says what failed and, where it can, how to fix it.

use std::path::PathBuf;

/// Errors that stop a command (start-up, configuration, Kafka or model set-up).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; the message names the key and the fix.
    #[error("configuration: {0}")]
    Config(String),
    /// The brokers cannot be reached (or refuse the client); the message names the addresses,
    /// the cause and what to check.
    #[error("{0}")]
    Unreachable(String),
    /// Topics a command needs do not exist; the message names them and the fix.
    #[error("{0}")]
    MissingTopics(String),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A model manifest or its files are unusable.
    #[error("model '{model}': {reason}")]
    Model { model: String, reason: String },
    /// ONNX Runtime failed (loading the library, building a session or running it).
    #[error("ONNX Runtime: {0}")]
    Ort(String),
    /// A Kafka client call failed.
    #[error("Kafka: {context}: {}", crate::secret::scrub(&.source.to_string()))]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The consumer is not (or no longer) a member of its group, so offsets cannot join a
    /// transaction; the worker rebuilds its clients.
    #[error("consumer of {transactional_id} is not a group member; rebuilding its clients")]
    NotGroupMember { transactional_id: String },
    /// The HTTP gateway could not start or serve.
    #[error("gateway: {0}")]
    Gateway(String),
    /// The scaler's actuator could not start, stop or count replicas.
    #[error("actuator: {0}")]
    Actuator(String),
    /// A benchmark step failed (a target did not start, or answered wrongly).
    #[error("benchmark: {0}")]
    Bench(String),
    /// One worker failed (loading its models, starting its thread).
    #[error("worker {worker}: {reason}")]
    Worker { worker: usize, reason: String },
    /// The processor as a whole failed (its threads, its watchdog, its stop).
    #[error("processor: {0}")]
    Processor(String),
}

/// Result alias for tidal's errors.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps a Kafka error with what was being done.
    pub fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Error::Kafka { context: context.into(), source }
    }

    /// Wraps an ONNX Runtime error.
    pub fn ort(context: &str, err: impl std::fmt::Display) -> Self {
        Error::Ort(format!("{context}: {err}"))
    }
}
