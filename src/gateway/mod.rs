//! `tidal gateway`: request-reply over the stream for callers that must stay synchronous.
//!
//! A REST client posts a request; the gateway produces it to the request topic, waits for the
//! correlated result (or dead letter) on the result topics and returns it, or answers 504 at its
//! timeout. The work itself still flows through Kafka: a spike queues in the topic instead of
//! overloading a model server, the processors keep their exactly-once guarantees, and a client's
//! retry after a timeout with the same `id` does not run the model twice if the first result
//! is still to come — it waits for it. Each gateway replica reads every result partition (no
//! consumer group), which suits modest request rates; high-volume clients should use the topics.

mod http;
mod listener;
mod waiters;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureProducer;

use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::kafka;
pub use waiters::{Answer, Waiters};

/// What a gateway serves and how long it waits.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub listen: SocketAddr,
    /// Models it accepts requests for (topic suffixes).
    pub models: Vec<String>,
    pub request_prefix: String,
    pub result_prefix: String,
    pub dead_letter: String,
    /// Default wait for a result.
    pub timeout: Duration,
    /// Longest wait a client may ask for (`?timeout_ms=`).
    pub max_timeout: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
}

/// A gateway's shared state.
pub struct Gateway {
    settings: GatewaySettings,
    producer: FutureProducer,
    waiters: Arc<Waiters>,
    listener: listener::Listener,
}

impl Gateway {
    /// Connects: the result reader starts at the current end of every result partition before
    /// the gateway takes requests.
    pub fn connect(kafka_config: &KafkaConfig, settings: GatewaySettings) -> Result<Self> {
        let producer: FutureProducer = kafka::idempotent_producer_config(kafka_config, "tidal-gateway")?
            .set("message.max.bytes", (settings.max_body_bytes + 64 * 1024).to_string())
            .create()
            .map_err(|e| Error::kafka("creating the gateway's producer", e))?;
        let mut topics: Vec<String> =
            settings.models.iter().map(|m| format!("{}{m}", settings.result_prefix)).collect();
        topics.push(settings.dead_letter.clone());
        let waiters = Arc::new(Waiters::default());
        let listener = listener::Listener::start(kafka_config, topics, waiters.clone())?;
        Ok(Gateway { settings, producer, waiters, listener })
    }

    fn listener_alive(&self) -> bool {
        self.listener.is_alive()
    }

    /// Serves HTTP until `shutdown` completes.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<()> {
        let address = self.settings.listen;
        let socket = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| Error::Gateway(format!("cannot listen on {address}: {e} (is the port in use?)")))?;
        tracing::info!(%address, models = ?self.settings.models, "gateway listening: POST /v1/models/<model>");
        axum::serve(socket, http::router(Arc::new(self)))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| Error::Gateway(format!("the HTTP server failed: {e}")))
    }
}
