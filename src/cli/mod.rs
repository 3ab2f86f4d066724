//! The command line: one module per command, each owning its arguments and its body. This file
//! only lists the commands and hands each to its module.

mod bench;
mod doctor;
mod gateway;
mod models;
mod records;
mod scale;
mod serve;
mod status;
mod topics;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use tidal::config::KafkaConfig;

#[derive(Parser)]
#[command(name = "tidal", version, about = "Kafka-native ML inference: requests in, predictions out, exactly once")]
pub struct Cli {
    /// Log lines for people (`human`, the default) or one JSON object per line for a log
    /// platform (`json`); the level filter is `TIDAL_LOG` (e.g. `info,librdkafka=warn`).
    #[arg(long, global = true, env = "TIDAL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the processor: consume requests, run the models, produce results exactly once.
    ///
    /// Example: tidal serve --brokers 127.0.0.1:9092
    Serve(serve::ServeArgs),
    /// Manage the declared topics (topics/*.toml).
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// The companion scaler: replica counts from lag and rate.
    #[command(subcommand)]
    Scale(scale::ScaleCommand),
    /// Measure the limit (model alone), tidal end to end (exactly-once and at-least-once,
    /// capacity and latency under open-loop load) and the Python baselines, in one run; prints
    /// the ratios and writes report.json and bench.png. scripts/bench.sh does the set-up.
    ///
    /// Example: tidal bench --brokers 127.0.0.1:9092 --python ~/.cache/tidal/venv/bin/python
    Bench(Box<bench::BenchArgs>),
    /// Show a consumer group's partitions: end offset, committed, lag, rate, owner.
    ///
    /// Example: tidal status --group tidal-tidal --watch
    Status(status::StatusArgs),
    /// Produce JSON lines (one request per line) from a file or stdin to a topic, or image files
    /// as raw records (`--image`, with a content-type header and the file stem as id).
    #[command(after_help = records::PRODUCE_EXAMPLES)]
    Produce(records::ProduceArgs),
    /// Print a topic's committed records (read_committed) as JSON lines, from the beginning.
    #[command(after_help = records::CONSUME_EXAMPLES)]
    Consume(records::ConsumeArgs),
    /// HTTP request-reply over the stream: POST a request, get its result (or 504 at the timeout).
    #[command(after_help = gateway::EXAMPLES)]
    Gateway(gateway::GatewayArgs),
    /// Make an API key for a tenant of `tidal gateway --tenants`: prints the key (give it to the
    /// tenant; it is stored nowhere) and the tenants-file entry holding only its SHA-256.
    ///
    /// Example: tidal api-key --tenant search --model sentiment --rate 20
    ApiKey(gateway::ApiKeyArgs),
    /// Check what `tidal serve` needs, piece by piece: the configuration, the brokers, the
    /// topics (as declared), ONNX Runtime, every model on its sample, the metrics port. Prints a
    /// checklist with the fix for each failure; exits 0 only when all pass.
    ///
    /// Example: tidal doctor --brokers 127.0.0.1:9092
    Doctor(serve::ServeArgs),
    /// List, describe and verify model manifests: what `tidal serve` would load, checked before
    /// it serves.
    #[command(subcommand)]
    Models(models::ModelsCommand),
}

/// Kafka bootstrap servers, for the commands that need nothing else from a configuration.
#[derive(Args)]
pub struct BrokerArgs {
    /// Kafka bootstrap servers (host:port[,host:port]).
    #[arg(long, env = "TIDAL_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
}

impl BrokerArgs {
    /// Default client settings on these brokers, once their addresses are checked.
    pub fn kafka_config(&self) -> anyhow::Result<KafkaConfig> {
        tidal::config::validate_brokers(&self.brokers)?;
        Ok(KafkaConfig { brokers: self.brokers.clone(), ..KafkaConfig::default() })
    }
}

/// How long a command other than `serve` tries to reach the brokers before saying why not.
const COMMAND_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Checks, before a command starts, that the brokers answer and that `topics` exist: the
/// failure is one line with the address, the cause and the fix, within `timeout`.
pub fn preflight(kafka: &KafkaConfig, topics: &[String], timeout: std::time::Duration) -> anyhow::Result<()> {
    tokio::task::block_in_place(|| tidal::kafka::probe::reach(kafka, timeout)?.require(kafka, topics))?;
    Ok(())
}

/// Runs one command to its end.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Scale(command) => runtime.block_on(scale::run(command)),
        Command::Status(args) => runtime.block_on(status::run(args)),
        Command::Bench(args) => bench::run(*args),
        Command::Topics(command) => runtime.block_on(topics::run(command)),
        Command::Models(command) => models::run(command),
        Command::Gateway(args) => runtime.block_on(gateway::run(args)),
        Command::ApiKey(args) => gateway::api_key(args),
        Command::Doctor(args) => runtime.block_on(doctor::run(args)),
        Command::Produce(args) => records::produce(args),
        Command::Consume(args) => records::consume(args),
    }
}
