//! `tidal gateway`: HTTP request-reply over the topics, until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use std::sync::Arc;
use tidal::config::{ServeConfig, ServeOverrides};
use tidal::gateway::access::{hash_key_hex, new_key, Tenants};
use tidal::gateway::{Gateway, GatewaySettings};

use tidal::health::{HealthSlot, Running};
use tidal::metrics;
use tidal::shutdown::Shutdown;

pub const EXAMPLES: &str = "Examples:
  tidal gateway --listen 127.0.0.1:8080
  curl -s localhost:8080/v1/models/sentiment -d '{\"text\": \"I loved it\"}'
  curl -s localhost:8080/v1/models/ocr?timeout_ms=10000 -H 'Content-Type: image/png' --data-binary @scan.png

With API keys (tenants.toml from `tidal api-key`):
  tidal gateway --tenants tenants.toml
  curl -s localhost:8080/v1/models/sentiment -H \"Authorization: Bearer $KEY\" -d '{\"text\": \"I loved it\"}'

Answers: 200 result, 400 bad body, 401 no valid key, 403 model not granted, 404 unknown model,
409 id in use with another body, 413 too large, 422 dead-lettered (with the reason), 429 tenant
over its rate, 503 gateway full or Kafka refused, 504 no result in time (all with a reason).";

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
    /// Tenants, their API keys' hashes, models and rates (TOML; `tidal api-key` makes entries).
    /// Without it anyone who reaches the listener may call.
    #[arg(long, env = "TIDAL_GATEWAY_TENANTS")]
    tenants: Option<PathBuf>,
    /// Most requests in flight at once (over it: 503 with Retry-After).
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
    /// Most request-body bytes held at once (over it: 503 with Retry-After).
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    max_bytes_in_flight: usize,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "TIDAL_GATEWAY_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "TIDAL_GATEWAY_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
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
    let tenants = args.tenants.as_deref().map(Tenants::load).transpose()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tidal::gateway::tls::server_config(cert, key)?),
        _ => None,
    };
    if let Some(tenants) = &tenants {
        tenants.check_models(&args.models).map_err(|e| anyhow::anyhow!("--tenants: {e}"))?;
    }
    let topics = config.topics.clone();
    let mut needed = topics.for_models(&args.models);
    if let Some(tenants) = &tenants {
        needed.extend(tenants.priority_models(&args.models).iter().map(|m| topics.priority_requests(m)));
    }
    super::preflight(&config.kafka, &needed, super::COMMAND_CONNECT_TIMEOUT)?;
    let settings = GatewaySettings {
        listen: args.listen,
        models: args.models,
        topics,
        timeout: args.timeout,
        max_timeout: args.max_timeout.max(args.timeout),
        max_body_bytes: args.max_body,
        tenants,
        max_in_flight: args.max_in_flight,
        max_bytes_in_flight: args.max_bytes_in_flight.max(args.max_body),
        tls,
    };
    let gateway = tokio::task::block_in_place(|| Gateway::connect(&config.kafka, settings))?;
    let shutdown = Shutdown::on_signals("the gateway")?;
    gateway.serve(async move { shutdown.requested().await }).await?;
    Ok(())
}

#[derive(Args)]
pub struct ApiKeyArgs {
    /// The tenant the key is for.
    #[arg(long)]
    tenant: String,
    /// Models it may call ("*": all).
    #[arg(long = "model", value_delimiter = ',', default_value = "*")]
    models: Vec<String>,
    /// Sustained requests per second (none: no quota).
    #[arg(long)]
    rate: Option<f64>,
    /// Its requests take the models' priority lanes.
    #[arg(long)]
    priority: bool,
}

pub fn api_key(args: ApiKeyArgs) -> anyhow::Result<()> {
    let key = new_key()?;
    let models: Vec<String> = args.models.iter().map(|m| format!("{m:?}")).collect();
    println!("# key for tenant '{}' (give it to the tenant; it is stored nowhere):", args.tenant);
    println!("#   {key}");
    println!("# its entry in the gateway's tenants file (only the hash is kept):");
    println!(
        "[[tenants]]\nname = {:?}\nkey_sha256 = [\"{}\"]\nmodels = [{}]",
        args.tenant,
        hash_key_hex(&key),
        models.join(", ")
    );
    if args.priority {
        println!("priority = true");
    }
    if let Some(rate) = args.rate {
        println!("rate_per_s = {rate:?}\nburst = {}", (rate * 2.0).ceil().max(1.0) as u64);
    }
    Ok(())
}
