//! `tidal serve`: the processor, until SIGINT/SIGTERM or until a worker asks the process to stop.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use tidal::config::{Delivery, ServeConfig, ServeOverrides};
use tidal::health::HealthSlot;
use tidal::shutdown::Shutdown;
use tidal::{metrics, worker};

/// How long the workers get to finish their batches after a stop.
#[derive(Args)]
pub struct ServeArgs {
    /// TOML configuration file (see tidal.example.toml).
    #[arg(long, short, env = "TIDAL_CONFIG")]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers (host:port[,host:port]).
    #[arg(long, env = "TIDAL_BROKERS")]
    brokers: Option<String>,
    /// Worker threads (default: CPUs − 1).
    #[arg(long, env = "TIDAL_WORKERS")]
    workers: Option<usize>,
    /// Stable identity of this process within the app (default: host name).
    #[arg(long, env = "TIDAL_INSTANCE")]
    instance: Option<String>,
    /// Application name (consumer group `tidal-<app>`, transactional ids `<app>-...`).
    #[arg(long, env = "TIDAL_APP")]
    app: Option<String>,
    /// Models to serve, comma-separated.
    #[arg(long, env = "TIDAL_MODELS", value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Folder the model manifests' files resolve against.
    #[arg(long, env = "TIDAL_MODEL_DIR")]
    model_dir: Option<PathBuf>,
    /// Folder of model manifests (default: built in).
    #[arg(long, env = "TIDAL_MANIFEST_DIR")]
    manifest_dir: Option<PathBuf>,
    /// Prometheus /metrics address; "" disables it.
    #[arg(long, env = "TIDAL_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Most requests per batch (and per transaction).
    #[arg(long, env = "TIDAL_MAX_BATCH")]
    max_batch: Option<usize>,
    /// Do not pin workers to cores.
    #[arg(long)]
    no_pin: bool,
    /// `exactly-once` (default) or `at-least-once` (no transactions; a crash can duplicate results).
    #[arg(long, env = "TIDAL_DELIVERY")]
    delivery: Option<Delivery>,
    /// Warm standby: load the models, then wait for SIGUSR1 before joining the group (the
    /// scaler's local actuator keeps `standby` of these ready for a scale-up).
    #[arg(long, env = "TIDAL_STANDBY")]
    pub standby: bool,
}

impl ServeArgs {
    /// Layers: defaults < file < environment/flags (clap reads `TIDAL_*` for each flag).
    pub(super) fn into_config(self) -> tidal::Result<ServeConfig> {
        let overrides = ServeOverrides {
            brokers: self.brokers,
            workers: self.workers,
            instance: self.instance,
            app: self.app,
            models: self.models,
            model_dir: self.model_dir,
            manifest_dir: self.manifest_dir,
            metrics_listen: self.metrics_listen,
            max_batch: self.max_batch,
            pin_workers: self.no_pin.then_some(false),
            delivery: self.delivery,
        };
        Ok(ServeConfig::load(self.config.as_deref())?.with_overrides(overrides))
    }
}

/// Start-up: the brokers answer and the topics exist, within `kafka.startup_timeout` (topics
/// created by a job started at the same time get that long to appear). A failure ends the
/// process with the reason; an orchestrator restarts it.
async fn wait_for_kafka(config: &ServeConfig, shutdown: &Shutdown) -> anyhow::Result<()> {
    let deadline = Instant::now() + config.kafka.startup_timeout;
    let topics = config.topics_needed();
    let mut warned = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match super::preflight(&config.kafka, &topics, left.min(Duration::from_secs(1))) {
            Ok(()) => return Ok(()),
            Err(e) if shutdown.is_requested() => {
                return Err(e.context("stopped (SIGTERM/SIGINT) before Kafka was ready"));
            }
            Err(e) if Instant::now() >= deadline => {
                let waited = config.kafka.startup_timeout;
                return Err(e.context(format!("gave up after {waited:?} (kafka.startup_timeout)")));
            }
            Err(e) => {
                if !warned {
                    tracing::warn!("{e:#}; waiting up to {:?} (kafka.startup_timeout)", config.kafka.startup_timeout);
                    warned = true;
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), shutdown.requested()).await;
            }
        }
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let standby = args.standby;
    let config = args.into_config()?;
    worker::check_local(&config)?;
    let health = HealthSlot::default();
    if let Some(address) = config.metrics.address()? {
        metrics::install_exporter(address, health.clone())?;
        tracing::info!(%address, "metrics on http://{address}/metrics (health: /livez, /readyz)");
    }
    let shutdown = Shutdown::on_signals("the processor")?;
    wait_for_kafka(&config, &shutdown).await?;
    let activation = if standby { Some(activation_on_sigusr1()?) } else { None };
    let stop_timeout = config.stop_timeout;
    let processor = tokio::task::block_in_place(|| worker::start(config, shutdown.clone(), activation))?;
    health.set(processor.health());
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = shutdown.requested() => break,
            _ = check.tick() => {
                if processor.any_worker_died() {
                    processor.stop();
                    anyhow::bail!("a worker thread ended unexpectedly; exiting so that a supervisor restarts tidal");
                }
            }
        }
    }
    processor.stop();
    // A worker that found a twin process stops the others too, and says why.
    let failure = processor.failure();
    let stopped = tokio::task::block_in_place(|| processor.wait(stop_timeout));
    if let Some(reason) = failure {
        anyhow::bail!(reason);
    }
    stopped?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// A warm standby's activation: SIGUSR1 (the local actuator sends it on a scale-up).
fn activation_on_sigusr1() -> anyhow::Result<Shutdown> {
    let activation = Shutdown::new();
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
    let activate = activation.clone();
    tokio::spawn(async move {
        if usr1.recv().await.is_some() {
            tracing::info!("SIGUSR1: leaving standby, joining the group");
            activate.request();
        }
    });
    tracing::info!("standby: the models load, then the workers wait for SIGUSR1 to join the group");
    Ok(activation)
}
