//! `tidal bench`: in one run, on the same machine, model, broker and cores, measures
//! - the **limit**: the model alone in a tight loop (what no pipeline can beat);
//! - **tidal** end to end through the broker, exactly-once and at-least-once: capacity (a
//!   backlog drained as fast as possible) and latency at fixed open-loop loads;
//! - the **baselines** a team would run instead, with the same model file: a Python stream
//!   consumer (confluent-kafka + onnxruntime, one message at a time) and a Python REST endpoint
//!   (Flask behind gunicorn) driven by clients with timeouts and retries;
//!
//! then prints every run and the ratios tidal is held to, and writes `report.json` and
//! `bench.png`. Each target runs as its own process; tidal's workers pin themselves as in
//! production, the Python targets run as a user would start them.

mod corpus;
mod kafka_load;
mod limit;
mod measure;
mod processes;
mod report;
mod rest;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{Delivery, KafkaConfig, ServeConfig};
use crate::error::{Error, Result};
use kafka_load::{RequestProducer, ResultReader};
pub use measure::{Percentiles, RunResult};
pub use report::Report;
pub use rest::ClientPolicy;

/// Partitions of each benchmark topic (more than any worker count measured here).
const PARTITIONS: i32 = 4;

/// What to measure and how hard: the options of `tidal bench`, parsed straight from its command
/// line.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchConfig {
    /// Kafka bootstrap servers (host:port[,host:port]).
    #[arg(long, env = "TIDAL_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Length of each timed phase; capacity backlogs hold about this much work.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Most requests per batch (the limit runs at this batch size too).
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// tidal worker threads (default: CPUs − 1).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Do not pin tidal's workers (nor the limit's loop) to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// Open-loop loads, as percentages of tidal's measured capacity.
    #[arg(long, value_delimiter = ',', default_value = "50,80,100")]
    pub loads: Vec<f64>,
    /// Python for the baselines (needs confluent-kafka, onnxruntime, tokenizers, flask,
    /// gunicorn; scripts/bench.sh installs them). Without it the baselines are skipped.
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Folder of the baseline scripts.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/baselines"))]
    pub baselines: PathBuf,
    /// Port of the REST baseline.
    #[arg(long, default_value_t = 18765)]
    pub rest_port: u16,
    /// Concurrent clients when measuring REST's capacity.
    #[arg(long, default_value_t = 4)]
    pub rest_clients: usize,
    /// REST client timeout per attempt.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub rest_timeout: Duration,
    /// REST client retries after the first attempt (backoff 100 ms, doubling).
    #[arg(long, default_value_t = 2)]
    pub rest_retries: u32,
    /// Load on REST (and on tidal, for comparison) as a multiple of REST's capacity.
    #[arg(long, default_value_t = 1.5)]
    pub rest_overload: f64,
    /// Skip the at-least-once runs.
    #[arg(long)]
    pub skip_at_least_once: bool,
    /// Also drain a backlog this long with tidal exactly-once and report throughput per minute
    /// (e.g. 10m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub steady: Option<Duration>,
    /// Folder for report.json, bench.png and the targets' logs.
    #[arg(long, env = "TIDAL_BENCH_OUT", default_value = "target/bench")]
    pub out: PathBuf,
    /// Folder the model manifests' files resolve against.
    #[arg(long, env = "TIDAL_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
}

impl BenchConfig {
    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<()> {
        crate::config::validate_brokers(&self.brokers)?;
        if self.loads.iter().any(|l| !(1.0..=300.0).contains(l)) {
            return Err(Error::Config("--loads are percentages of capacity between 1 and 300, e.g. 50,80,100".into()));
        }
        Ok(())
    }

    /// The processor's settings: the defaults, with the model folder given.
    fn serve(&self) -> ServeConfig {
        ServeConfig { model_dir: self.model_dir.clone(), ..ServeConfig::default() }
    }

    fn rest_policy(&self) -> ClientPolicy {
        ClientPolicy { timeout: self.rest_timeout, retries: self.rest_retries, backoff: Duration::from_millis(100) }
    }
}

fn bar(len: u64, message: String) -> ProgressBar {
    let bar = ProgressBar::new(len.max(1));
    if let Ok(style) = ProgressStyle::with_template("{msg:<46} [{bar:30}] {percent:>3}% {elapsed_precise}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

fn timed_bar(duration: Duration, message: String) -> ProgressBar {
    bar(duration.as_millis() as u64, message)
}

/// Runs every phase and returns the report (also written to `config.out`).
pub fn run(config: &BenchConfig) -> Result<Report> {
    config.validate()?;
    std::fs::create_dir_all(&config.out).map_err(|e| Error::Io { path: config.out.clone(), source: e })?;
    let kafka = KafkaConfig { brokers: config.brokers.clone(), ..KafkaConfig::default() };
    let nonce = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    // The core tidal's first worker pins itself to (core 0 stays with the OS).
    let worker_core = (!config.no_pin && !cores.is_empty()).then(|| cores[1 % cores.len()]);
    let mut report = Report::default();

    let progress = timed_bar(config.duration, format!("limit: model alone, batch {}", config.max_batch));
    let limit = limit::measure(&config.serve(), config.max_batch, config.duration, worker_core, &progress)?;
    progress.finish();
    let short = config.duration / 3;
    let progress = timed_bar(short, "limit: model alone, batch 1".into());
    report.limit_batch1 = Some(limit::measure(&config.serve(), 1, short, worker_core, &progress)?);
    progress.finish();
    let backlog = ((limit.throughput * config.duration.as_secs_f64()) as u64).max(200);
    report.limit = Some(limit);

    if let Some(python) = &config.python {
        rest_phase(config, python, &mut report)?;
        python_stream_phase(config, &kafka, python, nonce, &mut report)?;
    }
    let rest_overload_rate = report.rest_overload.as_ref().and_then(|r| r.offered);
    for delivery in [Delivery::ExactlyOnce, Delivery::AtLeastOnce] {
        if delivery == Delivery::AtLeastOnce && config.skip_at_least_once {
            continue;
        }
        let extra = if delivery == Delivery::ExactlyOnce { rest_overload_rate } else { None };
        tidal_phase(config, &kafka, delivery, backlog, extra, nonce, &mut report)?;
    }

    if let Some(length) = config.steady {
        let rate = report.exactly_once.as_ref().map_or(100.0, |r| r.throughput);
        let n = (rate * length.as_secs_f64() * 1.05) as u64;
        report.steady = Some(steady_phase(config, &kafka, n, nonce)?);
    }

    report.write_json(&config.out)?;
    let font = crate::chart::load_font(None);
    report.write_chart(&config.out, font.as_ref())?;
    Ok(report)
}

fn rest_phase(config: &BenchConfig, python: &std::path::Path, report: &mut Report) -> Result<()> {
    let _server =
        processes::start_rest(python, &config.baselines, config.rest_port, &config.serve().model_dir(), &config.out)?;
    let url = format!("http://127.0.0.1:{}/predict", config.rest_port);
    // Warm-up (the first runs of a session allocate), not measured.
    let warm_up = Duration::from_secs(2);
    rest::closed_loop(&url, config.rest_clients, warm_up, &timed_bar(warm_up, "REST: warm-up".into()))?;
    let progress = timed_bar(config.duration, format!("REST: capacity, {} clients", config.rest_clients));
    let capacity = rest::closed_loop(&url, config.rest_clients, config.duration, &progress)?;
    progress.finish();
    let rate = capacity.throughput * config.rest_overload;
    let progress = timed_bar(config.duration, format!("REST: open loop at {:.1}x capacity", config.rest_overload));
    let mut overload = rest::open_loop(&url, rate, config.duration, config.rest_policy(), 1 << 40, &progress)?;
    progress.finish();
    overload.name = format!("REST at {:.1}x capacity ({rate:.0}/s)", config.rest_overload);
    report.rest_capacity = Some(capacity);
    report.rest_overload = Some(overload);
    Ok(())
}

fn python_stream_phase(
    config: &BenchConfig,
    kafka: &KafkaConfig,
    python: &std::path::Path,
    nonce: u64,
    report: &mut Report,
) -> Result<()> {
    let prefix = format!("bench-{nonce}-python");
    let (requests, results) = (format!("{prefix}.requests"), format!("{prefix}.results"));
    kafka_load::create_topics(kafka, &[&requests, &results], PARTITIONS)?;
    // About `duration` of work at the REST capacity (the same per-request Python path).
    let rate = report.rest_capacity.as_ref().map_or(100.0, |r| r.throughput.max(10.0));
    let n = ((rate * config.duration.as_secs_f64()) as u64).max(200);
    let producer = RequestProducer::new(kafka, &requests)?;
    let progress = bar(n, "Python stream: producing the backlog".into());
    producer.backlog(0..n, &progress)?;
    progress.finish();
    let mut reader = ResultReader::start(kafka, &results, PARTITIONS, &format!("{prefix}-reader"))?;
    let (_consumer, log) = processes::start_python_stream(
        python,
        &config.baselines,
        &config.brokers,
        (&requests, &results),
        &config.serve().model_dir(),
        &config.out,
    )?;
    let progress = bar(n, "Python stream: draining the backlog".into());
    let deadline = Instant::now() + Duration::from_secs_f64(n as f64 / 5.0 + 60.0);
    let arrivals = reader.gather(0..n, deadline, &progress);
    progress.finish();
    let run = arrivals.backlog_result("Python stream consumer (capacity)", n);
    if run.results < n {
        return Err(Error::Bench(format!(
            "the Python stream consumer answered {} of {n} requests; see {}",
            run.results,
            log.display()
        )));
    }
    report.python_stream = Some(run);
    Ok(())
}

/// A long backlog drained by tidal exactly-once: is throughput steady minute after minute?
fn steady_phase(config: &BenchConfig, kafka: &KafkaConfig, n: u64, nonce: u64) -> Result<RunResult> {
    let prefix = format!("bench-{nonce}-steady");
    let (mut drained, _running) = drain_backlog(config, kafka, &prefix, Delivery::ExactlyOnce, n, "steady")?;
    drained.name = "tidal exactly-once (steady backlog)".into();
    Ok(drained)
}

/// tidal serving one benchmark's topics, with the producer and reader aimed at them.
struct TidalUnderLoad {
    producer: RequestProducer,
    reader: ResultReader,
    tidal: processes::ChildGuard,
    log: PathBuf,
}

/// Creates `<prefix>` topics, produces a backlog of `n` requests, starts tidal and measures how
/// fast it drains them. tidal keeps running for more load.
fn drain_backlog(
    config: &BenchConfig,
    kafka: &KafkaConfig,
    prefix: &str,
    delivery: Delivery,
    n: u64,
    label: &str,
) -> Result<(RunResult, TidalUnderLoad)> {
    let (requests, results, dlq) =
        (format!("{prefix}.requests.sentiment"), format!("{prefix}.results.sentiment"), format!("{prefix}.dlq"));
    kafka_load::create_topics(kafka, &[&requests, &results, &dlq], PARTITIONS)?;
    let producer = RequestProducer::new(kafka, &requests)?;
    let progress = bar(n, format!("{label}: producing the backlog"));
    producer.backlog(0..n, &progress)?;
    progress.finish();
    let mut reader = ResultReader::start(kafka, &results, PARTITIONS, &format!("{prefix}-reader"))?;
    let target = processes::TidalTarget {
        brokers: &config.brokers,
        prefix,
        delivery,
        workers: config.workers,
        pin: !config.no_pin,
        max_batch: config.max_batch,
        out: &config.out,
    };
    let (mut tidal, log) = processes::start_tidal(&target)?;
    let progress = bar(n, format!("{label}: draining the backlog"));
    let deadline = Instant::now() + Duration::from_secs_f64(n as f64 / 5.0 + 60.0);
    let arrivals = reader.gather(0..n, deadline, &progress);
    progress.finish();
    tidal.check_running(&log)?;
    let drained = arrivals.backlog_result(&format!("{label} (capacity)"), n);
    Ok((drained, TidalUnderLoad { producer, reader, tidal, log }))
}

fn tidal_phase(
    config: &BenchConfig,
    kafka: &KafkaConfig,
    delivery: Delivery,
    backlog: u64,
    extra_rate: Option<f64>,
    nonce: u64,
    report: &mut Report,
) -> Result<()> {
    let mode = match delivery {
        Delivery::ExactlyOnce => "exactly-once",
        Delivery::AtLeastOnce => "at-least-once",
    };
    let prefix = format!("bench-{nonce}-{mode}");
    let label = format!("tidal {mode}");
    let (capacity, running) = drain_backlog(config, kafka, &prefix, delivery, backlog, &label)?;
    let TidalUnderLoad { producer, mut reader, mut tidal, log } = running;
    if capacity.results < backlog {
        return Err(Error::Bench(format!("tidal answered {} of {backlog}; see {}", capacity.results, log.display())));
    }
    let mut next = backlog;
    let mut loads: Vec<(String, f64)> = config
        .loads
        .iter()
        .map(|percent| (format!("tidal {mode} {percent:.0}%"), percent / 100.0 * capacity.throughput))
        .collect();
    if let Some(rate) = extra_rate {
        loads.push((format!("tidal {mode} at the REST overload ({rate:.0}/s)"), rate));
    }
    for (index, (name, rate)) in loads.iter().enumerate() {
        let n = ((rate * config.duration.as_secs_f64()) as u64).max(1);
        let progress = timed_bar(config.duration, format!("{name}: open loop {rate:.0}/s"));
        progress.set_length(n);
        let scheduled = producer.open_loop(next..next + n, *rate, &progress)?;
        progress.finish();
        let progress = bar(n, format!("{name}: waiting for the answers"));
        let deadline = Instant::now() + config.duration.max(Duration::from_secs(30));
        let arrivals = reader.gather(next..next + n, deadline, &progress);
        progress.finish();
        let run = arrivals.open_loop_result(name, next, &scheduled, *rate);
        next += n;
        if extra_rate.is_some() && index == loads.len() - 1 {
            report.tidal_at_rest_overload = Some(run);
        } else {
            report.latency.push(run);
        }
    }
    tidal.check_running(&log)?;
    match delivery {
        Delivery::ExactlyOnce => report.exactly_once = Some(capacity),
        Delivery::AtLeastOnce => report.at_least_once = Some(capacity),
    }
    Ok(())
}
