//! `tidal gateway`: HTTP request-reply over the topics, until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use std::sync::Arc;
use tidal::config::{ServeConfig, ServeOverrides};
use tidal::gateway::{Gateway, GatewaySettings};

use tidal::health::{HealthSlot, Running};
use tidal::metrics;
use tidal::shutdown::Shutdown;

pub const EXAMPLES: &str = "Examples:
  tidal gateway --listen 127.0.0.1:8080
  curl -s localhost:8080/v1/models/sentiment -d '{\"text\": \"I loved it\"}'
  curl -s localhost:8080/v1/models/ocr?timeout_ms=10000 -H 'Content-Type: image/png' --data-binary @scan.png

Answers: 200 result, 400 bad body, 404 unknown model, 409 id already waiting, 413 too large,
422 dead-lettered (with the reason), 503 Kafka unavailable, 504 no result in time.";

#[derive(Args)]
pub struct GatewayArgs {
    /// Serve configuration to take the Kafka settings and topic names from (the processors').
    #[arg(long, short, env = "TIDAL_CONFIG")]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers (overrides the configuration's).
    #[arg(long, env = "TIDAL_BROKERS")]
    brokers: Option<String>,
    /// HTTP listen address.
    #[arg(long, env = "TIDAL_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Models accepted (topic suffixes).
    #[arg(long = "model", value_delimiter = ',', default_value = "sentiment,face-match,ocr")]
    models: Vec<String>,
    /// How long to wait for a result by default.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Longest wait a client may ask for with `?timeout_ms=`.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    max_timeout: Duration,
    /// Largest request body in bytes (images included).
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    max_body: usize,
    /// Prometheus endpoint (`host:port`; empty: none).
    #[arg(long, env = "TIDAL_METRICS_LISTEN", default_value = "127.0.0.1:9465")]
    metrics_listen: String,
}

pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let overrides = ServeOverrides { brokers: args.brokers, ..ServeOverrides::default() };
    let config = ServeConfig::load(args.config.as_deref())?.with_overrides(overrides);
    tidal::config::validate_brokers(&config.kafka.brokers)?;
    if !args.metrics_listen.is_empty() {
        let address = args
            .metrics_listen
            .parse()
            .with_context(|| format!("--metrics-listen '{}' is not host:port", args.metrics_listen))?;
        metrics::install_exporter(address, HealthSlot::with(Arc::new(Running)))?;
    }
    let topics = config.topics.clone();
    super::preflight(&config.kafka, &topics.for_models(&args.models), super::COMMAND_CONNECT_TIMEOUT)?;
    let settings = GatewaySettings {
        listen: args.listen,
        models: args.models,
        request_prefix: topics.request_prefix,
        result_prefix: topics.result_prefix,
        dead_letter: topics.dead_letter,
        timeout: args.timeout,
        max_timeout: args.max_timeout.max(args.timeout),
        max_body_bytes: args.max_body,
    };
    let gateway = tokio::task::block_in_place(|| Gateway::connect(&config.kafka, settings))?;
    let shutdown = Shutdown::on_signals("the gateway")?;
    gateway.serve(async move { shutdown.requested().await }).await?;
    Ok(())
}
