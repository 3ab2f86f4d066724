//! The `tidal` command: a thin CLI over the library.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use tidal::config::{KafkaConfig, ServeConfig};
use tidal::{kafka, metrics, tools, worker};

#[derive(Parser)]
#[command(name = "tidal", version, about = "Kafka-native ML inference: requests in, predictions out, exactly once")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the processor: consume requests, run the models, produce results exactly once.
    ///
    /// Example: tidal serve --brokers 127.0.0.1:9092
    Serve(ServeArgs),
    /// Manage the declared topics (topics/*.toml).
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// The companion scaler: replica counts from lag and rate.
    #[command(subcommand)]
    Scale(ScaleCommand),
    /// Measure the limit (model alone), tidal end to end (exactly-once and at-least-once,
    /// capacity and latency under open-loop load) and the Python baselines, in one run; prints
    /// the ratios and writes report.json and bench.png. scripts/bench.sh does the set-up.
    ///
    /// Example: tidal bench --brokers 127.0.0.1:9092 --python ~/.cache/tidal/venv/bin/python
    Bench(Box<BenchArgs>),
    /// Show a consumer group's partitions: end offset, committed, lag, rate, owner.
    ///
    /// Example: tidal status --group tidal-tidal --watch
    Status {
        #[command(flatten)]
        brokers: BrokerArgs,
        /// Consumer group of the processors.
        #[arg(long, default_value = "tidal-tidal")]
        group: String,
        /// Topics (default: every `tidal.requests.*`).
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// Refresh every `--interval` until interrupted.
        #[arg(long)]
        watch: bool,
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        interval: Duration,
    },
    /// Produce JSON lines (one request per line) from a file or stdin to a topic, or image files
    /// as raw records (`--image`, with a content-type header and the file stem as id).
    #[command(after_help = "Examples:
  echo '{\"id\":\"1\",\"text\":\"I loved it\"}' | tidal produce --topic tidal.requests.sentiment
  tidal produce requests.jsonl --rate 50          # 50 requests/s, with a progress bar
  tidal produce --topic tidal.requests.ocr --image scan1.png --image scan2.jpg")]
    Produce {
        #[command(flatten)]
        brokers: BrokerArgs,
        /// Topic to write to.
        #[arg(long, default_value = "tidal.requests.sentiment")]
        topic: String,
        /// Send this JPEG/PNG file as one raw record (repeatable); no JSON input is read then.
        #[arg(long = "image", value_name = "FILE")]
        images: Vec<PathBuf>,
        /// Records per second (default: as fast as the broker takes them).
        #[arg(long)]
        rate: Option<f64>,
        /// No progress bar (it is drawn only on a terminal anyway).
        #[arg(long)]
        quiet: bool,
        /// File of JSON lines; `-` or nothing reads stdin.
        file: Option<PathBuf>,
    },
    /// Print a topic's committed records (read_committed) as JSON lines, from the beginning.
    #[command(after_help = "Examples:
  tidal consume --topic tidal.results.sentiment --max 10
  tidal consume --topic tidal.results.sentiment --follow | jq .label
  tidal consume --topic tidal.dlq --headers          # dead letters with their reason headers")]
    Consume {
        #[command(flatten)]
        brokers: BrokerArgs,
        /// Topic to read.
        #[arg(long, default_value = "tidal.results.sentiment")]
        topic: String,
        /// Stop after this many records.
        #[arg(long)]
        max: Option<usize>,
        /// Stop when nothing arrived for this long.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        idle: Duration,
        /// Keep reading new records until interrupted (ignores --idle).
        #[arg(long, short)]
        follow: bool,
        /// Print headers too (as {"value": ..., "headers": {...}}).
        #[arg(long)]
        headers: bool,
    },
    /// HTTP request-reply over the stream: POST a request, get its result (or 504 at the timeout).
    #[command(after_help = "Examples:
  tidal gateway --listen 127.0.0.1:8080
  curl -s localhost:8080/v1/models/sentiment -d '{\"text\": \"I loved it\"}'
  curl -s localhost:8080/v1/models/ocr?timeout_ms=10000 -H 'Content-Type: image/png' --data-binary @scan.png

Answers: 200 result, 400 bad body, 404 unknown model, 409 id already waiting, 413 too large,
422 dead-lettered (with the reason), 503 Kafka unavailable, 504 no result in time.")]
    Gateway(GatewayArgs),
    /// List, describe and verify model manifests: what `tidal serve` would load, checked before
    /// it serves.
    #[command(subcommand)]
    Models(ModelsCommand),
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Every manifest (built-in, or those in --manifest-dir) with its kind, version, licence and
    /// whether its files are installed.
    List(ModelArgs),
    /// A manifest, its files and each ONNX file's inputs and outputs.
    #[command(after_help = "Example:\n  tidal models describe sentiment")]
    Describe {
        /// Model name (as in `tidal models list`).
        name: String,
        #[command(flatten)]
        dirs: ModelArgs,
    },
    /// Load a model as a worker does and run it on a sample request; prints the result and the
    /// load and inference times. Exits 1 when anything fails, with the reason.
    #[command(after_help = "Examples:
  tidal models verify sentiment
  tidal models verify ocr --input receipt.png               # a raw JPEG/PNG
  tidal models verify face-match --input pair.json          # {\"image_a\": \"<base64>\", \"image_b\": \"<base64>\"}
  tidal models verify sentiment --manifest-dir ./my-models  # your own export of the same family")]
    Verify {
        /// Model name (as in `tidal models list`).
        name: String,
        /// A request value to run: a JSON request, or a JPEG/PNG for single-image models
        /// (default: a built-in sample).
        #[arg(long)]
        input: Option<PathBuf>,
        #[command(flatten)]
        dirs: ModelArgs,
    },
}

/// `tidal gateway` options.
#[derive(Args)]
struct GatewayArgs {
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

/// `tidal gateway`.
async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => ServeConfig::from_file(path)?,
        None => ServeConfig::default(),
    };
    if let Some(brokers) = args.brokers {
        config.kafka.brokers = brokers;
    }
    tidal::config::validate_brokers(&config.kafka.brokers)?;
    let topics = config.topics.clone();
    if !args.metrics_listen.is_empty() {
        let address = args
            .metrics_listen
            .parse()
            .with_context(|| format!("--metrics-listen '{}' is not host:port", args.metrics_listen))?;
        metrics::install_exporter(address)?;
    }
    let settings = tidal::gateway::GatewaySettings {
        listen: args.listen,
        models: args.models,
        request_prefix: topics.request_prefix,
        result_prefix: topics.result_prefix,
        dead_letter: topics.dead_letter,
        timeout: args.timeout,
        max_timeout: args.max_timeout.max(args.timeout),
        max_body_bytes: args.max_body,
    };
    let gateway = tokio::task::block_in_place(|| tidal::gateway::Gateway::connect(&config.kafka, settings))?;
    let shutdown = async {
        let mut sigterm = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGTERM; stop the gateway with SIGINT");
                return std::future::pending().await;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
        }
        tracing::info!("stopping the gateway");
    };
    gateway.serve(shutdown).await?;
    Ok(())
}

/// Where `tidal models` finds manifests, model files and ONNX Runtime (as `tidal serve` would).
#[derive(Args)]
struct ModelArgs {
    /// Serve configuration to take the folders and input limits from.
    #[arg(long, short, env = "TIDAL_CONFIG")]
    config: Option<PathBuf>,
    /// Folder of manifests (`<name>.toml`); default: the built-in ones.
    #[arg(long, env = "TIDAL_MANIFEST_DIR")]
    manifest_dir: Option<PathBuf>,
    /// Folder the manifests' file paths resolve against.
    #[arg(long, env = "TIDAL_MODEL_DIR")]
    model_dir: Option<PathBuf>,
}

impl ModelArgs {
    fn into_config(self) -> anyhow::Result<ServeConfig> {
        let mut config = match &self.config {
            Some(path) => ServeConfig::from_file(path)?,
            None => ServeConfig::default(),
        };
        config.manifest_dir = self.manifest_dir.or(config.manifest_dir);
        config.model_dir = self.model_dir.or(config.model_dir);
        Ok(config)
    }
}

/// `tidal bench` options.
#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Length of each timed phase; capacity backlogs hold about this much work.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Most requests per batch (the limit runs at this batch size too).
    #[arg(long, default_value_t = 32)]
    max_batch: usize,
    /// tidal worker threads (default: CPUs − 1).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Do not pin tidal's workers (nor the limit's loop) to cores.
    #[arg(long)]
    no_pin: bool,
    /// Open-loop loads, as percentages of tidal's measured capacity.
    #[arg(long, value_delimiter = ',', default_value = "50,80,100")]
    loads: Vec<f64>,
    /// Python for the baselines (needs confluent-kafka, onnxruntime, tokenizers, flask,
    /// gunicorn; scripts/bench.sh installs them). Without it the baselines are skipped.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Folder of the baseline scripts.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/baselines"))]
    baselines: PathBuf,
    /// Port of the REST baseline.
    #[arg(long, default_value_t = 18765)]
    rest_port: u16,
    /// Concurrent clients when measuring REST's capacity.
    #[arg(long, default_value_t = 4)]
    rest_clients: usize,
    /// REST client timeout per attempt.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    rest_timeout: Duration,
    /// REST client retries after the first attempt (backoff 100 ms, doubling).
    #[arg(long, default_value_t = 2)]
    rest_retries: u32,
    /// Load on REST (and on tidal, for comparison) as a multiple of REST's capacity.
    #[arg(long, default_value_t = 1.5)]
    rest_overload: f64,
    /// Skip the at-least-once runs.
    #[arg(long)]
    skip_at_least_once: bool,
    /// Also drain a backlog this long with tidal exactly-once and report throughput per minute
    /// (e.g. 10m).
    #[arg(long, value_parser = humantime::parse_duration)]
    steady: Option<Duration>,
    /// Folder for report.json, bench.png and the targets' logs.
    #[arg(long, env = "TIDAL_BENCH_OUT", default_value = "target/bench")]
    out: PathBuf,
    /// Folder the model manifests' files resolve against.
    #[arg(long, env = "TIDAL_MODEL_DIR")]
    model_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ScaleCommand {
    /// Watch the processors' group and set the replica count (runs until SIGINT/SIGTERM; the
    /// local actuator's processes are stopped gracefully on the way out).
    ///
    /// Example: tidal scale run --config scale.toml
    Run {
        #[command(flatten)]
        brokers: BrokerArgs,
        /// Scaler configuration (TOML: [watch], [policies], [actuator]); default: built-in.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Set or clear the manual override a running scaler obeys (its `watch.override_file` or
    /// `watch.override_topic`).
    ///
    /// Examples: tidal scale override --file /run/tidal/replicas 6   (then: --clear)
    ///           tidal scale override --topic tidal.scale.override 6
    Override {
        #[command(flatten)]
        brokers: BrokerArgs,
        /// The scaler's `watch.override_file`.
        #[arg(long, required_unless_present = "topic", conflicts_with = "topic")]
        file: Option<PathBuf>,
        /// The scaler's `watch.override_topic`.
        #[arg(long)]
        topic: Option<String>,
        /// Replicas to run regardless of the policies (still within min/max_replicas).
        replicas: Option<u32>,
        /// Remove the override: the policies decide again.
        #[arg(long, conflicts_with = "replicas")]
        clear: bool,
    },
    /// Replay a traffic trace through the policies with a simple replica model; writes
    /// simulation.csv and simulation.png and prints a summary.
    ///
    /// Example: tidal scale simulate --trace match-day --config scale.toml --out /tmp/sim
    Simulate {
        /// Policies and replica model (TOML: [policies], [simulation]); default: built-in.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A CSV file of `seconds,rate`, or `match-day` (built in: steady, 6x surge, cliff).
        #[arg(long, default_value = "match-day")]
        trace: String,
        /// Base rate of the built-in match-day trace, records/s.
        #[arg(long, default_value_t = 100.0)]
        base_rate: f64,
        /// Folder for simulation.csv and simulation.png.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Create missing topics and report those that exist with other settings.
    Apply {
        #[command(flatten)]
        brokers: BrokerArgs,
        /// Folder of topic files (default: the definitions built into tidal, same as topics/).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Replication factor for created topics, overriding the files.
        #[arg(long)]
        replication_factor: Option<i32>,
    },
}

#[derive(Args)]
struct BrokerArgs {
    /// Kafka bootstrap servers (host:port[,host:port]).
    #[arg(long, env = "TIDAL_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
}

#[derive(Args)]
struct ServeArgs {
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
    delivery: Option<tidal::config::Delivery>,
}

impl ServeArgs {
    /// Layers: defaults < file < environment/flags (clap reads `TIDAL_*` for each flag).
    fn into_config(self) -> anyhow::Result<ServeConfig> {
        let mut config = match &self.config {
            Some(path) => ServeConfig::from_file(path)?,
            None => ServeConfig::default(),
        };
        if let Some(v) = self.brokers {
            config.kafka.brokers = v;
        }
        if let Some(v) = self.workers {
            config.workers = v;
        }
        if let Some(v) = self.instance {
            config.instance = Some(v);
        }
        if let Some(v) = self.app {
            config.app = v;
        }
        if let Some(v) = self.models {
            config.models = v;
        }
        if let Some(v) = self.model_dir {
            config.model_dir = Some(v);
        }
        if let Some(v) = self.manifest_dir {
            config.manifest_dir = Some(v);
        }
        if let Some(v) = self.metrics_listen {
            config.metrics.listen = v;
        }
        if let Some(v) = self.max_batch {
            config.batch.max_batch = v;
        }
        if self.no_pin {
            config.pin_workers = false;
        }
        if let Some(v) = self.delivery {
            config.delivery = v;
        }
        Ok(config)
    }
}

/// `tidal models`.
fn models(command: ModelsCommand) -> anyhow::Result<()> {
    match command {
        ModelsCommand::List(dirs) => {
            let config = dirs.into_config()?;
            let model_dir = config.model_dir();
            println!("{:<14} {:<20} {:<22} {:<12} FILES", "NAME", "KIND", "VERSION", "LICENCE");
            for model in tools::list(config.manifest_dir.as_deref(), &model_dir)? {
                let files = match model.missing.as_slice() {
                    [] => "installed".to_string(),
                    missing => format!("{} missing (run scripts/setup.sh)", missing.len()),
                };
                println!("{:<14} {:<20} {:<22} {:<12} {files}", model.name, model.kind, model.version, model.license);
            }
            println!("model files under {}", model_dir.display());
            Ok(())
        }
        ModelsCommand::Describe { name, dirs } => {
            let config = dirs.into_config()?;
            let text = tools::describe(
                &name,
                config.manifest_dir.as_deref(),
                &config.model_dir(),
                &config.onnxruntime_library(),
            )?;
            print!("{text}");
            Ok(())
        }
        ModelsCommand::Verify { name, input, dirs } => {
            let config = dirs.into_config()?;
            let sample = match &input {
                Some(path) => Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?),
                None => None,
            };
            let verification = tools::verify(
                &name,
                config.manifest_dir.as_deref(),
                &config.model_dir(),
                &config.onnxruntime_library(),
                sample,
                &config.limits,
            )?;
            println!("{}", serde_json::to_string_pretty(&verification)?);
            eprintln!(
                "{name} {}: loaded in {:.0} ms, answered the sample in {:.1} ms",
                verification.version,
                verification.load.as_secs_f64() * 1e3,
                verification.infer.as_secs_f64() * 1e3
            );
            Ok(())
        }
    }
}

fn bench(args: BenchArgs) -> anyhow::Result<()> {
    tidal::config::validate_brokers(&args.brokers.brokers)?;
    if args.loads.iter().any(|l| !(1.0..=300.0).contains(l)) {
        anyhow::bail!("--loads are percentages of capacity between 1 and 300, e.g. 50,80,100");
    }
    let serve = ServeConfig { model_dir: args.model_dir, ..ServeConfig::default() };
    let config = tidal::bench::BenchConfig {
        brokers: args.brokers.brokers,
        duration: args.duration,
        max_batch: args.max_batch,
        workers: args.workers,
        pin: !args.no_pin,
        loads: args.loads.iter().map(|l| l / 100.0).collect(),
        python: args.python,
        baselines: args.baselines,
        rest_port: args.rest_port,
        rest_clients: args.rest_clients,
        rest_policy: tidal::bench::ClientPolicy {
            timeout: args.rest_timeout,
            retries: args.rest_retries,
            backoff: Duration::from_millis(100),
        },
        rest_overload: args.rest_overload,
        skip_at_least_once: args.skip_at_least_once,
        steady: args.steady,
        out: args.out.clone(),
        serve,
    };
    let report = tidal::bench::run(&config)?;
    println!("\n{}", report.table());
    println!("report: {}  chart: {}", args.out.join("report.json").display(), args.out.join("bench.png").display());
    Ok(())
}

fn kafka_config(brokers: &BrokerArgs) -> anyhow::Result<KafkaConfig> {
    tidal::config::validate_brokers(&brokers.brokers)?;
    Ok(KafkaConfig { brokers: brokers.brokers.clone(), ..KafkaConfig::default() })
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TIDAL_LOG").unwrap_or_else(|_| "info,librdkafka=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args.into_config()?)),
        Command::Scale(ScaleCommand::Run { brokers, config }) => runtime.block_on(scale_run(&brokers, config)),
        Command::Scale(ScaleCommand::Override { brokers, file, topic, replicas, clear }) => match (file, topic) {
            (Some(file), _) => set_override(&file, replicas, clear),
            (None, Some(topic)) => {
                let value = match (replicas, clear) {
                    (_, true) => "clear".to_string(),
                    (Some(n), false) => n.to_string(),
                    (None, false) => anyhow::bail!("give a replica count, or --clear"),
                };
                let options = tools::ProduceOptions::default();
                let count = tools::produce_lines(&kafka_config(&brokers)?, &topic, value.as_bytes(), options)?;
                eprintln!("override record {value:?} written to {topic} ({count} record)");
                Ok(())
            }
            (None, None) => anyhow::bail!("give --file or --topic"),
        },
        Command::Status { brokers, group, topics, watch, interval } => {
            status(&brokers, &group, topics, watch, interval)
        }
        Command::Bench(args) => bench(*args),
        Command::Scale(ScaleCommand::Simulate { config, trace, base_rate, out }) => {
            simulate(config, &trace, base_rate, &out)
        }
        Command::Topics(TopicsCommand::Apply { brokers, dir, replication_factor }) => runtime.block_on(async {
            let specs = kafka::load_topic_specs(dir.as_deref())?;
            let admin = kafka::admin_client(&kafka_config(&brokers)?)?;
            for report in kafka::apply_topics(&admin, &specs, replication_factor).await? {
                println!("{report}");
            }
            Ok(())
        }),
        Command::Models(command) => models(command),
        Command::Gateway(args) => runtime.block_on(gateway(args)),
        Command::Produce { brokers, topic, images, rate, quiet, file } => {
            let config = kafka_config(&brokers)?;
            if !images.is_empty() {
                let count = tools::produce_images(&config, &topic, &images)?;
                eprintln!("produced {count} image records to {topic}");
                return Ok(());
            }
            let options = tools::ProduceOptions { rate, total: None, progress: !quiet };
            let count = match file.filter(|f| f.as_os_str() != "-") {
                Some(path) => {
                    let open = || std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()));
                    let total = BufReader::new(open()?).lines().map_while(Result::ok).filter(|l| !l.trim().is_empty());
                    let options = tools::ProduceOptions { total: Some(total.count() as u64), ..options };
                    tools::produce_lines(&config, &topic, BufReader::new(open()?), options)?
                }
                None => tools::produce_lines(&config, &topic, std::io::stdin().lock(), options)?,
            };
            eprintln!("produced {count} records to {topic}");
            Ok(())
        }
        Command::Consume { brokers, topic, max, idle, follow, headers } => {
            let config = kafka_config(&brokers)?;
            let until = tools::ConsumeUntil { max, idle: (!follow).then_some(idle) };
            tools::consume(&config, &topic, until, |value, hdrs| {
                if headers {
                    let hdrs: serde_json::Map<String, serde_json::Value> =
                        hdrs.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
                    println!("{}", serde_json::json!({"value": value, "headers": hdrs}));
                } else {
                    println!("{value}");
                }
            })?;
            Ok(())
        }
    }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    config.validate()?;
    if let Some(address) = config.metrics.address()? {
        metrics::install_exporter(address)?;
        tracing::info!(%address, "metrics on http://{address}/metrics");
    }
    let handle = tokio::task::block_in_place(|| worker::serve(config))?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: stopping"); break; }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = check.tick() => {
                if let Some(reason) = handle.failure() {
                    handle.stop();
                    let _ = tokio::task::block_in_place(|| handle.wait(Duration::from_secs(30)));
                    anyhow::bail!(reason);
                }
                if handle.any_worker_died() {
                    handle.stop();
                    anyhow::bail!("a worker thread ended unexpectedly; exiting so that a supervisor restarts tidal");
                }
            }
        }
    }
    handle.stop();
    tokio::task::block_in_place(|| handle.wait(Duration::from_secs(30)))?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// `tidal scale run`.
async fn scale_run(brokers: &BrokerArgs, config: Option<PathBuf>) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let config = match config {
        Some(path) => tidal::scale::ScaleConfig::from_file(&path)?,
        None => tidal::scale::ScaleConfig::default(),
    };
    let kafka = kafka_config(brokers)?;
    if !config.watch.metrics_listen.trim().is_empty() {
        let address =
            config.watch.metrics_listen.parse().with_context(|| {
                format!("watch.metrics_listen = {:?} is not host:port", config.watch.metrics_listen)
            })?;
        metrics::install_exporter(address)?;
    }
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&shutdown);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
        }
        tracing::info!("stopping the scaler");
        flag.store(true, Ordering::SeqCst);
    });
    tidal::scale::run::run(&config, &kafka, shutdown).await?;
    Ok(())
}

/// `tidal scale override`.
fn set_override(file: &std::path::Path, replicas: Option<u32>, clear: bool) -> anyhow::Result<()> {
    match (replicas, clear) {
        (_, true) => match std::fs::remove_file(file) {
            Ok(()) => eprintln!("override cleared ({} removed)", file.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => eprintln!("no override was set"),
            Err(e) => return Err(e).with_context(|| format!("removing {}", file.display())),
        },
        (Some(n), false) => {
            std::fs::write(file, format!("{n}\n")).with_context(|| format!("writing {}", file.display()))?;
            eprintln!("override set: {n} replicas until `tidal scale override --clear`");
        }
        (None, false) => anyhow::bail!("give a replica count, or --clear"),
    }
    Ok(())
}

/// `tidal status`.
fn status(
    brokers: &BrokerArgs,
    group: &str,
    topics: Vec<String>,
    watch: bool,
    interval: Duration,
) -> anyhow::Result<()> {
    use tidal::scale::observe::Observer;
    let observer = Observer::new(&kafka_config(brokers)?, group, topics, "tidal.requests.")?;
    let started = std::time::Instant::now();
    let mut previous = None;
    loop {
        let snapshot = observer.snapshot(started.elapsed().as_secs_f64())?;
        if watch {
            print!("\x1b[2J\x1b[H");
        }
        print!("{}", tidal::scale::run::status_table(&snapshot, previous.as_ref()));
        if !watch {
            return Ok(());
        }
        previous = Some(snapshot);
        std::thread::sleep(interval);
    }
}

/// `tidal scale simulate`.
fn simulate(config: Option<PathBuf>, trace: &str, base_rate: f64, out: &std::path::Path) -> anyhow::Result<()> {
    use tidal::scale::{config::ScaleConfig, simulate as sim};
    let config = match config {
        Some(path) => ScaleConfig::from_file(&path)?,
        None => ScaleConfig::default(),
    };
    let trace =
        if trace == "match-day" { sim::match_day(base_rate) } else { sim::read_trace(std::path::Path::new(trace))? };
    let model = config.simulation.model();
    let steps = sim::run(&trace, &config.policies, &model);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let csv = out.join("simulation.csv");
    std::fs::write(&csv, sim::to_csv(&steps)).with_context(|| format!("writing {}", csv.display()))?;
    let png = out.join("simulation.png");
    sim::write_chart(&steps, &png, None)?;
    println!("{:>7} {:>9} {:>9} {:>8} {:>7}  policy", "seconds", "rate/s", "lag", "replicas", "serving");
    let every = (60.0 / model.interval.as_secs_f64()).round().max(1.0) as usize;
    for step in steps.iter().step_by(every) {
        println!(
            "{:>7.0} {:>9.1} {:>9.0} {:>8} {:>7}  {}",
            step.at, step.ingest_rate, step.lag, step.replicas, step.active, step.policy
        );
    }
    let summary = sim::summarize(&steps, model.interval);
    let secs = |v: Option<f64>| v.map_or("never".to_string(), |s| format!("{s:.0} s"));
    println!(
        "peak lag {:.0}; peak replicas {}; first replica added {} after the surge began; lag drained {} after its peak; \
         {:.0} replica-seconds",
        summary.peak_lag,
        summary.peak_replicas,
        secs(summary.first_scale_up_after),
        secs(summary.drained_after),
        summary.replica_seconds
    );
    println!("wrote {} and {}", csv.display(), png.display());
    Ok(())
}
