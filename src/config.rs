//! Typed, layered configuration: built-in defaults < TOML file < `TIDAL_*` environment < CLI flags.
//!
//! The file is parsed with `deny_unknown_fields`, so a misspelt key fails at start-up with its name.
//! [`ServeConfig::validate`] runs once before any thread starts; everything after it can trust the
//! values. Raw librdkafka keys live in `crate::kafka::client`, plus the explicit pass-through map
//! [`KafkaConfig::librdkafka_options`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Configuration of `tidal serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Application name: prefix of the consumer group and of every `transactional.id`.
    pub app: String,
    /// This process's stable identity within the app (default: the host name). Two processes that
    /// run at once must have different instances; a restarted process must keep its instance so
    /// that its transactional producers fence the ones it left behind.
    pub instance: Option<String>,
    /// Worker threads; 0 means one per CPU minus one (at least one).
    pub workers: usize,
    /// Pin each worker to its own core.
    pub pin_workers: bool,
    /// `exactly-once` (default: results and offsets in one transaction) or `at-least-once`
    /// (results flushed, then offsets committed: a crash in between redoes the batch, so a
    /// reader may see a result twice). The second exists to measure what transactions cost.
    pub delivery: Delivery,
    /// How long SIGTERM/SIGINT waits for the workers to end their transactions before the process
    /// exits anyway (status 1). A healthy broker commits in milliseconds; a call that waits on an
    /// unresponsive one can take `kafka.call_timeout`, longer than the orchestrator's grace
    /// period (Kubernetes: `terminationGracePeriodSeconds`, 30 s by default), after which the
    /// process is killed without its last log lines. Exiting with a transaction open is safe: the
    /// broker aborts it (after `kafka.transaction_timeout`, or at once when the same instance
    /// starts again).
    #[serde(with = "humantime_serde")]
    pub stop_timeout: Duration,
    /// Models to serve, by manifest name (see `models/`).
    pub models: Vec<String>,
    /// Dedicated workers per model, e.g. `{ ocr = 2, sentiment = 1 }`. Empty (the default): every
    /// worker serves every model. Set: each listed model gets that many workers of its own, every
    /// model in `models` must be listed, and `workers` must be 0 or the sum. A worker loads only
    /// the models it serves.
    pub model_workers: BTreeMap<String, usize>,
    /// Folder of model manifests (`<name>.toml`); unset means the manifests built into tidal.
    pub manifest_dir: Option<PathBuf>,
    /// Folder the manifests' relative file paths resolve against
    /// (default: `$TIDAL_MODEL_DIR`, else `~/.cache/tidal/models`).
    pub model_dir: Option<PathBuf>,
    /// ONNX Runtime shared library (default: `$ORT_DYLIB_PATH`, else the set-up's install).
    pub onnxruntime_library: Option<PathBuf>,
    pub kafka: KafkaConfig,
    pub topics: TopicNames,
    pub batch: BatchConfig,
    /// How often results and offsets commit, apart from the inference batch.
    pub commit: CommitConfig,
    /// Priority lanes: models whose premium requests are served first.
    pub priority: PriorityConfig,
    pub limits: Limits,
    pub metrics: MetricsConfig,
    pub faults: FaultInjection,
}

/// Priority lanes: a model listed here also reads `<request_prefix><model>.priority`, and a worker
/// serves that topic first. While it has a backlog the normal topics wait — but one batch in
/// `normal_batch_every` still serves them, so they never starve. Results go to the model's one
/// result topic; exactly-once is unchanged (pausing a partition never moves its offsets).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriorityConfig {
    /// Models with a priority request topic (declared in `topics/`; it must exist).
    pub models: Vec<String>,
    /// While a priority topic has a backlog, one batch in this many serves the normal topics.
    pub normal_batch_every: u32,
}

impl Default for PriorityConfig {
    fn default() -> Self {
        PriorityConfig { models: Vec::new(), normal_batch_every: 10 }
    }
}

/// The delivery guarantee of results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    #[default]
    ExactlyOnce,
    AtLeastOnce,
}

impl std::str::FromStr for Delivery {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "exactly-once" => Ok(Delivery::ExactlyOnce),
            "at-least-once" => Ok(Delivery::AtLeastOnce),
            other => Err(Error::Config(format!("delivery = '{other}': use 'exactly-once' or 'at-least-once'"))),
        }
    }
}

/// Fault injection for tests and drills; everything off by default. Never set in production.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultInjection {
    /// Sleep between producing a batch's records and committing its transaction, so that a
    /// crash lands inside an open transaction.
    #[serde(with = "humantime_serde")]
    pub delay_before_commit: Option<Duration>,
    /// A slow model: sleep this long before running the model on a batch (no polling meanwhile),
    /// e.g. longer than `kafka.max_poll_interval` to see the worker recover its membership.
    #[serde(with = "humantime_serde")]
    pub slow_model: Option<Duration>,
    /// Only the first this-many batches of each worker are slow (0: every batch).
    pub slow_batches: u64,
    /// A model bug: panic while running the model on the request with this id.
    pub panic_on_id: Option<String>,
}

/// Kafka connection and client settings.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Consumer group (default `tidal-<app>`).
    pub group_id: Option<String>,
    /// Transaction timeout: the broker aborts a transaction left open longer than this.
    #[serde(with = "humantime_serde")]
    pub transaction_timeout: Duration,
    /// Consumer session timeout (group membership heartbeat deadline). With
    /// `group_protocol = "consumer"` the broker's `group.consumer.session.timeout.ms` rules instead.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// The workers' group protocol: `classic` (JoinGroup/SyncGroup, client-side
    /// `cooperative-sticky` assignment; any Kafka ≥ 2.4) or `consumer` (KIP-848: the broker assigns
    /// and each member's heartbeat carries its changes; Kafka ≥ 4.0).
    pub group_protocol: GroupProtocol,
    /// Longest time between two polls of a worker's consumer before the group drops it
    /// (`max.poll.interval.ms`): above the slowest batch a model can take, plus its commit.
    #[serde(with = "humantime_serde")]
    pub max_poll_interval: Duration,
    /// How long a blocking Kafka call (init/commit/abort transaction, committed offsets) may take.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// How long `tidal serve` (and the other commands) try to reach the brokers at start-up
    /// before giving up with the reason; an orchestrator restarts the process. Once connected,
    /// outages are retried without end.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// Extra librdkafka properties passed as they are to every client. Values of secret keys
    /// (`*password*`, `*secret*`, ...) are redacted when the configuration is printed; prefer
    /// `[kafka.security]`, which takes secrets from the environment or a file.
    pub librdkafka_options: BTreeMap<String, String>,
    /// TLS and SASL (`[kafka.security]`).
    pub security: crate::security::SecurityConfig,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("transaction_timeout", &self.transaction_timeout)
            .field("session_timeout", &self.session_timeout)
            .field("group_protocol", &self.group_protocol)
            .field("max_poll_interval", &self.max_poll_interval)
            .field("call_timeout", &self.call_timeout)
            .field("startup_timeout", &self.startup_timeout)
            .field("librdkafka_options", &crate::secret::redacted(&self.librdkafka_options))
            .field("security", &self.security)
            .finish()
    }
}

/// How the workers' consumer group assigns partitions (`kafka.group_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupProtocol {
    /// The classic protocol with `cooperative-sticky` assignment.
    Classic,
    /// KIP-848's consumer protocol: server-side assignment, no group-wide barrier.
    Consumer,
}

/// Topic naming: `<request_prefix><model>` in, `<result_prefix><model>` out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicNames {
    /// Prefix of request topics.
    pub request_prefix: String,
    /// Prefix of result topics.
    pub result_prefix: String,
    /// Dead-letter topic for input that cannot be answered.
    pub dead_letter: String,
}

/// Micro-batching: take what the broker delivered, up to `max_batch` requests or `max_bytes`,
/// waiting at most `linger`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Most requests in one model run (a transaction may take several runs: `[commit]`).
    pub max_batch: usize,
    /// A worker's memory budget for requests: a batch stops growing once its records hold this
    /// many bytes, and a model runs as soon as the pixels decoded for it reach this many bytes
    /// (then they are freed). At least one request is always taken. Also caps librdkafka's
    /// prefetch queue per worker. See the README's memory formula.
    pub max_bytes: usize,
    /// Longest wait for more requests once the first one arrived.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// How long one poll for the first request of a batch waits before checking for shutdown.
    #[serde(with = "humantime_serde")]
    pub idle_poll: Duration,
}

/// Commit cadence, a knob apart from the inference batch (which sets latency): one transaction
/// (or at-least-once commit) takes inference batch after inference batch while full ones are
/// ready, until `interval` has passed since it started, it holds `max_records` requests or its
/// records hold `batch.max_bytes`; then its results and offsets commit together. A model slower
/// than `interval` per batch commits every batch; a light one spreads a commit's fixed cost
/// (~20 ms of produce, flush and commit round trips) over many batches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommitConfig {
    /// Longest a transaction keeps taking batches (Kafka Streams commits every 100 ms under
    /// exactly-once). `0s`: one transaction per batch.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Most requests in one transaction.
    pub max_records: usize,
}

impl Default for CommitConfig {
    fn default() -> Self {
        CommitConfig { interval: Duration::from_millis(100), max_records: 5000 }
    }
}

/// Input limits, enforced before any expensive work.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest record value accepted, in bytes; larger ones go to the dead-letter topic.
    pub max_payload_bytes: usize,
    /// Longest `text` accepted, in bytes; longer ones go to the dead-letter topic. (Texts within
    /// this limit but beyond the model's `max_tokens` are truncated to `max_tokens`.)
    pub max_text_bytes: usize,
    /// Largest image width or height accepted (checked from the header, before decoding).
    pub max_image_side: u32,
    /// Largest image width × height accepted (checked from the header, before decoding).
    pub max_image_pixels: u64,
    /// Longest request `id` accepted, in bytes. The id is echoed in the result, so an unbounded
    /// one could make the result too large for its topic.
    pub max_id_bytes: usize,
    /// Largest encoded result written, in bytes; a larger one goes to the dead-letter topic as
    /// `result_too_large`. Keep it a little below the result topics' `max.message.bytes`
    /// (1 MiB as declared in `topics/`), which also counts the record's key and headers.
    pub max_result_bytes: usize,
}

/// Prometheus endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the `/metrics` HTTP listener (`host:port`); loopback by default. An empty
    /// string disables the endpoint.
    pub listen: String,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            app: "tidal".into(),
            instance: None,
            workers: 0,
            pin_workers: true,
            delivery: Delivery::default(),
            stop_timeout: Duration::from_secs(10),
            models: vec!["sentiment".into(), "face-match".into(), "ocr".into()],
            model_workers: BTreeMap::new(),
            manifest_dir: None,
            model_dir: None,
            onnxruntime_library: None,
            kafka: KafkaConfig::default(),
            topics: TopicNames::default(),
            batch: BatchConfig::default(),
            commit: CommitConfig::default(),
            priority: PriorityConfig::default(),
            limits: Limits::default(),
            metrics: MetricsConfig::default(),
            faults: FaultInjection::default(),
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: None,
            transaction_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(10),
            group_protocol: GroupProtocol::Classic,
            max_poll_interval: Duration::from_secs(300),
            call_timeout: Duration::from_secs(30),
            startup_timeout: Duration::from_secs(30),
            librdkafka_options: BTreeMap::new(),
            security: crate::security::SecurityConfig::default(),
        }
    }
}

impl TopicNames {
    /// The request and result topics of `models`, and the dead-letter topic.
    pub fn for_models(&self, models: &[String]) -> Vec<String> {
        let mut topics: Vec<String> = models
            .iter()
            .flat_map(|m| [format!("{}{m}", self.request_prefix), format!("{}{m}", self.result_prefix)])
            .collect();
        topics.push(self.dead_letter.clone());
        topics
    }

    /// A model's priority request topic.
    pub fn priority_requests(&self, model: &str) -> String {
        format!("{}{model}.priority", self.request_prefix)
    }
}

impl Default for TopicNames {
    fn default() -> Self {
        TopicNames {
            request_prefix: "tidal.requests.".into(),
            result_prefix: "tidal.results.".into(),
            dead_letter: "tidal.dlq".into(),
        }
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch: 32,
            max_bytes: 32 << 20,
            linger: Duration::from_millis(5),
            idle_poll: Duration::from_millis(100),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 8 << 20,
            max_text_bytes: 16 * 1024,
            max_image_side: 8192,
            max_image_pixels: 24_000_000,
            max_id_bytes: 1024,
            max_result_bytes: 1_000_000,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { listen: "127.0.0.1:9464".into() }
    }
}

impl MetricsConfig {
    /// The listener address, or `None` when disabled.
    pub fn address(&self) -> Result<Option<SocketAddr>> {
        if self.listen.trim().is_empty() {
            return Ok(None);
        }
        self.listen.trim().parse().map(Some).map_err(|_| {
            Error::Config(format!(
                "metrics.listen = '{}' is not an address: use ip:port, e.g. 127.0.0.1:9464, or \"\" to disable",
                self.listen
            ))
        })
    }
}

/// Every `*.toml` file of `dir`, sorted by path, with its text (manifest and topic folders).
pub fn read_toml_files(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
            Ok((path, text))
        })
        .collect()
}

pub use crate::install::tidal_home;

/// What the command line (flags or their `TIDAL_*` variables) sets over the file; `None` keeps
/// the file's value.
#[derive(Debug, Clone, Default)]
pub struct ServeOverrides {
    pub brokers: Option<String>,
    pub workers: Option<usize>,
    pub instance: Option<String>,
    pub app: Option<String>,
    pub models: Option<Vec<String>>,
    pub model_dir: Option<PathBuf>,
    pub manifest_dir: Option<PathBuf>,
    pub metrics_listen: Option<String>,
    pub max_batch: Option<usize>,
    /// `Some(false)` turns pinning off.
    pub pin_workers: Option<bool>,
    pub delivery: Option<Delivery>,
}

impl ServeConfig {
    /// The configuration of `path`, or the defaults without one.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        path.map_or_else(|| Ok(ServeConfig::default()), ServeConfig::from_file)
    }

    /// The last layer: command-line values win over the file's.
    pub fn with_overrides(mut self, overrides: ServeOverrides) -> Self {
        let ServeOverrides {
            brokers,
            workers,
            instance,
            app,
            models,
            model_dir,
            manifest_dir,
            metrics_listen,
            max_batch,
            pin_workers,
            delivery,
        } = overrides;
        fn set<T>(target: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *target = value;
            }
        }
        set(&mut self.kafka.brokers, brokers);
        set(&mut self.workers, workers);
        self.instance = instance.or(self.instance);
        set(&mut self.app, app);
        set(&mut self.models, models);
        self.model_dir = model_dir.or(self.model_dir);
        self.manifest_dir = manifest_dir.or(self.manifest_dir);
        set(&mut self.metrics.listen, metrics_listen);
        set(&mut self.batch.max_batch, max_batch);
        set(&mut self.pin_workers, pin_workers);
        set(&mut self.delivery, delivery);
        self
    }

    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.into(), source })?;
        Self::from_toml(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Parses TOML text over the defaults.
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Config(e.message().to_string() + &span_hint(text, e.span())))
    }

    /// Every topic the processor reads or writes: its models' request and result topics and the
    /// dead-letter topic.
    pub fn topics_needed(&self) -> Vec<String> {
        let mut topics = self.topics.for_models(&self.models);
        topics.extend(self.priority.models.iter().map(|m| self.topics.priority_requests(m)));
        topics
    }

    /// The consumer group: configured, else `tidal-<app>`.
    pub fn group_id(&self) -> String {
        self.kafka.group_id.clone().unwrap_or_else(|| format!("tidal-{}", self.app))
    }

    /// The instance identity: configured, else the host name.
    pub fn instance(&self) -> String {
        self.instance.clone().unwrap_or_else(host_name)
    }

    /// Worker count: configured, else CPUs − 1 (at least 1).
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            num_cpus::get().saturating_sub(1).max(1)
        }
    }

    /// The models each worker serves, one entry per worker.
    pub fn worker_assignment(&self) -> Result<Vec<Vec<String>>> {
        if self.model_workers.is_empty() {
            return Ok(vec![self.models.clone(); self.worker_count()]);
        }
        let mut plan = Vec::new();
        for model in &self.models {
            let count = self.model_workers.get(model).copied().ok_or_else(|| {
                Error::Config(format!(
                    "model_workers has no entry for '{model}': list every served model, e.g. \
                     model_workers = {{ {model} = 1 }}, or remove model_workers to let every worker serve every model"
                ))
            })?;
            if count == 0 {
                return Err(Error::Config(format!(
                    "model_workers.{model} = 0: give it at least one worker or drop it from models"
                )));
            }
            plan.extend(std::iter::repeat_n(vec![model.clone()], count));
        }
        if let Some(stray) = self.model_workers.keys().find(|name| !self.models.contains(name)) {
            return Err(Error::Config(format!(
                "model_workers names '{stray}', which is not in models {:?}",
                self.models
            )));
        }
        if self.workers != 0 && self.workers != plan.len() {
            return Err(Error::Config(format!(
                "workers = {} but model_workers adds up to {}: set workers = 0 or make them agree",
                self.workers,
                plan.len()
            )));
        }
        Ok(plan)
    }

    /// Folder that model files resolve against.
    pub fn model_dir(&self) -> PathBuf {
        self.model_dir
            .clone()
            .or_else(|| std::env::var_os("TIDAL_MODEL_DIR").map(PathBuf::from))
            .unwrap_or_else(|| tidal_home().join("models"))
    }

    /// ONNX Runtime library path.
    pub fn onnxruntime_library(&self) -> PathBuf {
        self.onnxruntime_library
            .clone()
            .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
            .unwrap_or_else(crate::install::onnxruntime_library)
    }

    /// Checks every value once, with errors that say how to fix them.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(msg));
        if self.app.is_empty() || !self.app.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return bad(format!("app '{}' must be non-empty and use only letters, digits, '-', '_', '.'", self.app));
        }
        validate_brokers(&self.kafka.brokers)?;
        if self.stop_timeout.is_zero() {
            return bad("stop_timeout must be above zero, e.g. \"10s\"".into());
        }
        if self.models.is_empty() {
            return bad("models is empty: name at least one model to serve, e.g. models = [\"sentiment\"]".into());
        }
        if self.batch.max_batch == 0 || self.batch.max_batch > 4096 {
            return bad(format!("batch.max_batch = {} must be between 1 and 4096", self.batch.max_batch));
        }
        if self.batch.max_bytes < (1 << 20) {
            return bad(format!("batch.max_bytes = {} must be at least 1048576 (1 MiB)", self.batch.max_bytes));
        }
        if self.batch.idle_poll.is_zero() {
            return bad("batch.idle_poll must be above zero, e.g. \"100ms\"".into());
        }
        if self.commit.max_records == 0 || self.commit.interval > Duration::from_secs(60) {
            return bad(format!(
                "commit.max_records = {} must be at least 1 and commit.interval = {} at most 1m",
                self.commit.max_records,
                humantime::format_duration(self.commit.interval)
            ));
        }
        let limits = &self.limits;
        if limits.max_payload_bytes == 0
            || limits.max_text_bytes == 0
            || limits.max_image_side == 0
            || limits.max_image_pixels == 0
            || limits.max_id_bytes == 0
            || limits.max_result_bytes < 1024
        {
            return bad("limits.max_payload_bytes, max_text_bytes, max_image_side, max_image_pixels and max_id_bytes \
                        must be above zero, and limits.max_result_bytes at least 1024"
                .into());
        }
        self.worker_assignment()?;
        if let Some(stray) = self.priority.models.iter().find(|m| !self.models.contains(m)) {
            return bad(format!("priority.models names '{stray}', which is not in models {:?}", self.models));
        }
        if self.priority.normal_batch_every < 2 {
            return bad(format!(
                "priority.normal_batch_every = {} must be at least 2 (1 normal batch in every N)",
                self.priority.normal_batch_every
            ));
        }
        let txn = self.kafka.transaction_timeout;
        if txn < Duration::from_secs(1) || txn > Duration::from_secs(900) {
            return bad(format!(
                "kafka.transaction_timeout = {} must be between 1s and 15m (the broker's default \
                 transaction.max.timeout.ms)",
                humantime::format_duration(txn)
            ));
        }
        if self.kafka.session_timeout < Duration::from_secs(1) {
            return bad("kafka.session_timeout must be at least 1s".into());
        }
        if self.kafka.max_poll_interval < self.kafka.session_timeout {
            return bad("kafka.max_poll_interval must be at least kafka.session_timeout".into());
        }
        self.metrics.address()?;
        let lib = self.onnxruntime_library();
        if !lib.is_file() {
            return bad(format!(
                "ONNX Runtime library not found at {}: run scripts/setup.sh, or point ORT_DYLIB_PATH \
                 (or onnxruntime_library) at libonnxruntime.so 1.31+",
                lib.display()
            ));
        }
        Ok(())
    }
}

/// Checks `host:port[,host:port]` syntax (not reachability: that is the client's job).
pub fn validate_brokers(brokers: &str) -> Result<()> {
    if brokers.trim().is_empty() {
        return Err(Error::Config("kafka.brokers is empty: give host:port, e.g. 127.0.0.1:9092".into()));
    }
    for broker in brokers.split(',') {
        let broker = broker.trim();
        let broker = broker.split_once("://").map_or(broker, |(_, rest)| rest);
        let port_ok = broker
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
        if !port_ok {
            return Err(Error::Config(format!(
                "bad broker address '{broker}' in '{brokers}': expected host:port, e.g. 127.0.0.1:9092"
            )));
        }
    }
    Ok(())
}

fn span_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else { return String::new() };
    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    format!(" (line {line})")
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_lanes_need_served_models_and_a_share_for_the_others() {
        let cfg = ServeConfig::from_toml("models = [\"sentiment\"]\n[priority]\nmodels = [\"sentiment\"]\n").unwrap();
        assert_eq!(
            cfg.topics_needed(),
            ["tidal.requests.sentiment", "tidal.results.sentiment", "tidal.dlq", "tidal.requests.sentiment.priority"]
        );
        let stray = ServeConfig::from_toml("models = [\"sentiment\"]\n[priority]\nmodels = [\"ocr\"]\n").unwrap();
        assert!(stray.validate().unwrap_err().to_string().contains("'ocr'"));
        let starved = ServeConfig::from_toml("[priority]\nnormal_batch_every = 1\n").unwrap();
        assert!(starved.validate().unwrap_err().to_string().contains("normal_batch_every"));
    }

    #[test]
    fn defaults_parse_from_empty_file() {
        let cfg = ServeConfig::from_toml("").unwrap();
        assert_eq!(cfg.models, vec!["sentiment", "face-match", "ocr"]);
        assert_eq!(cfg.group_id(), "tidal-tidal");
        assert_eq!(cfg.batch.linger, Duration::from_millis(5));
        assert_eq!((cfg.commit.interval, cfg.commit.max_records), (Duration::from_millis(100), 5000));
    }

    #[test]
    fn commit_cadence_parses_and_is_checked() {
        let cfg = ServeConfig::from_toml("[commit]\ninterval = \"0s\"\nmax_records = 64\n").unwrap();
        assert_eq!((cfg.commit.interval, cfg.commit.max_records), (Duration::ZERO, 64));
        cfg.validate().unwrap();
        let none = ServeConfig::from_toml("[commit]\nmax_records = 0\n").unwrap();
        assert!(none.validate().unwrap_err().to_string().contains("commit.max_records"));
        let long = ServeConfig::from_toml("[commit]\ninterval = \"5m\"\n").unwrap();
        assert!(long.validate().unwrap_err().to_string().contains("at most 1m"));
    }

    #[test]
    fn command_line_overrides_win_over_the_file_and_unset_ones_keep_it() {
        let file = "app = \"shop\"\nworkers = 3\ninstance = \"pod-a\"\n[kafka]\nbrokers = \"k1:9092\"\n";
        let overrides = ServeOverrides {
            brokers: Some("k2:9092".into()),
            workers: Some(5),
            pin_workers: Some(false),
            delivery: Some(Delivery::AtLeastOnce),
            ..ServeOverrides::default()
        };
        let cfg = ServeConfig::from_toml(file).unwrap().with_overrides(overrides);
        assert_eq!((cfg.kafka.brokers.as_str(), cfg.workers, cfg.pin_workers), ("k2:9092", 5, false));
        assert_eq!(cfg.delivery, Delivery::AtLeastOnce);
        assert_eq!((cfg.app.as_str(), cfg.instance.as_deref()), ("shop", Some("pod-a")), "unset flags keep the file's");
        let untouched = ServeConfig::from_toml(file).unwrap().with_overrides(ServeOverrides::default());
        assert!(untouched.pin_workers && untouched.workers == 3);
    }

    #[test]
    fn model_workers_assign_dedicated_workers() {
        let cfg = ServeConfig::from_toml("workers = 3\nmodels = [\"ocr\", \"sentiment\"]\n").unwrap();
        assert_eq!(cfg.worker_assignment().unwrap(), vec![vec!["ocr", "sentiment"]; 3]);
        let cfg =
            ServeConfig::from_toml("models = [\"ocr\", \"sentiment\"]\n[model_workers]\nocr = 2\nsentiment = 1\n")
                .unwrap();
        assert_eq!(cfg.worker_assignment().unwrap(), vec![vec!["ocr"], vec!["ocr"], vec!["sentiment"]]);
        let missing = ServeConfig::from_toml("models = [\"ocr\", \"sentiment\"]\n[model_workers]\nocr = 2\n").unwrap();
        assert!(missing.worker_assignment().unwrap_err().to_string().contains("no entry for 'sentiment'"));
        let stray = ServeConfig::from_toml("models = [\"ocr\"]\n[model_workers]\nocr = 1\nfoo = 1\n").unwrap();
        assert!(stray.worker_assignment().unwrap_err().to_string().contains("'foo'"));
        let clash = ServeConfig::from_toml("workers = 5\nmodels = [\"ocr\"]\n[model_workers]\nocr = 2\n").unwrap();
        assert!(clash.worker_assignment().unwrap_err().to_string().contains("adds up to 2"));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = ServeConfig::from_toml("[batch]\nmax_bach = 3\n").unwrap_err().to_string();
        assert!(err.contains("max_bach"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn delivery_is_exactly_once_unless_asked() {
        assert_eq!(ServeConfig::from_toml("").unwrap().delivery, Delivery::ExactlyOnce);
        let cfg = ServeConfig::from_toml("delivery = \"at-least-once\"\n").unwrap();
        assert_eq!(cfg.delivery, Delivery::AtLeastOnce);
        assert!(ServeConfig::from_toml("delivery = \"maybe-once\"\n").is_err());
        assert_eq!("at-least-once".parse::<Delivery>().unwrap(), Delivery::AtLeastOnce);
        let err = "twice".parse::<Delivery>().unwrap_err().to_string();
        assert!(err.contains("exactly-once"), "{err}");
    }

    #[test]
    fn durations_are_human() {
        let cfg =
            ServeConfig::from_toml("[batch]\nlinger = \"20ms\"\n[kafka]\ntransaction_timeout = \"1m\"\n").unwrap();
        assert_eq!(cfg.batch.linger, Duration::from_millis(20));
        assert_eq!(cfg.kafka.transaction_timeout, Duration::from_secs(60));
    }

    #[test]
    fn broker_addresses_are_checked() {
        assert!(validate_brokers("127.0.0.1:9092").is_ok());
        assert!(validate_brokers("a:1, b:2").is_ok());
        assert!(validate_brokers("SSL://kafka:9093").is_ok());
        for bad in ["", "localhost", "host:", ":9092", "host:99999", "host:0"] {
            assert!(validate_brokers(bad).is_err(), "{bad} should be refused");
        }
    }
}
