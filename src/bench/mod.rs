//! `tidal bench`: in one run, on the same machine, model, broker and cores, measures
//! - the **limit**: decoding and the model alone in a tight loop (what no pipeline can beat);
//! - **tidal** end to end through the broker, exactly-once and at-least-once: capacity (a
//!   backlog drained as fast as possible) and latency at fixed open-loop loads;
//! - the **baselines** a team would run instead, with the same model file: Kafka Streams with the
//!   model in-process (exactly-once v2, ONNX Runtime's Java API), a Python stream consumer
//!   (confluent-kafka + onnxruntime, one message at a time) and a Python REST endpoint (Flask
//!   behind gunicorn) driven by clients with timeouts and retries;
//!
//! then prints every run and the ratios tidal is held to, and writes `report.json` and
//! `bench.png`. Each target runs as its own process; tidal's workers pin themselves as in
//! production, the Python targets run as a user would start them.

mod corpus;
mod cpu;
mod kafka_load;
mod kstreams;
mod limit;
mod measure;
mod processes;
mod report;
mod rest;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{Delivery, KafkaConfig, ServeConfig};
use crate::error::{Error, Result};
use crate::models::{Manifest, ModelKind};
use corpus::Corpus;
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
    /// The model measured: `sentiment`, `echo` (no inference: what the pipeline itself costs),
    /// `face-match` or `ocr`. The Python stream consumer serves sentiment and the image models
    /// (REST sentiment only), Kafka Streams text models.
    #[arg(long, default_value = "sentiment")]
    pub model: String,
    /// Face photos for `--model face-match` (default: the set-up's, `$TIDAL_HOME/testdata/faces`).
    #[arg(long)]
    pub faces: Option<PathBuf>,
    /// The Kafka Streams baseline's Maven project, built (`mvn package`; scripts/bench.sh does
    /// it). Without it that baseline is skipped.
    #[arg(long)]
    pub kstreams: Option<PathBuf>,
    /// Java for the Kafka Streams baseline.
    #[arg(long, default_value = "java")]
    pub java: PathBuf,
    /// Most requests in one capacity backlog (echo: the backlog; a light model's limit would ask
    /// for millions).
    #[arg(long, default_value_t = 1_000_000)]
    pub max_backlog: u64,
    /// Length of each timed phase; capacity backlogs hold about this much work.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Most requests per batch (the limit runs at this batch size too).
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// tidal's `commit.interval`: how long one transaction keeps taking batches while full ones
    /// are ready (`0s`: one transaction per batch).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub commit_interval: Option<Duration>,
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
    /// Folder of model manifests to use instead of the built-in ones (`models/fp32`: the float
    /// sentiment model the built-in int8 one is quantized from), for the limit, tidal and Kafka
    /// Streams (the Python baselines keep the built-in manifest).
    #[arg(long)]
    pub manifest_dir: Option<PathBuf>,
}

impl BenchConfig {
    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<()> {
        crate::config::validate_brokers(&self.brokers)?;
        if self.loads.iter().any(|l| !(1.0..=300.0).contains(l)) {
            return Err(Error::Config("--loads are percentages of capacity between 1 and 300, e.g. 50,80,100".into()));
        }
        self.manifest()?;
        Ok(())
    }

    fn manifest(&self) -> Result<Manifest> {
        Manifest::find(&self.model, self.serve().manifest_dir.as_deref())
    }

    /// The processor's settings: the defaults, with the model folder given.
    fn serve(&self) -> ServeConfig {
        ServeConfig {
            model_dir: self.model_dir.clone(),
            manifest_dir: self.manifest_dir.clone(),
            ..ServeConfig::default()
        }
    }

    /// A Python baseline on `python`, loading what tidal loads.
    fn python_baseline<'a>(&'a self, python: &'a Path, model_dir: &'a Path) -> processes::PythonBaseline<'a> {
        processes::PythonBaseline {
            python,
            folder: &self.baselines,
            model_dir,
            manifest_dir: self.manifest_dir.as_deref(),
        }
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

    let manifest = config.manifest()?;
    let faces = config.faces.clone().unwrap_or_else(|| crate::install::tidal_home().join("testdata/faces"));
    let corpus = Corpus::for_model(&manifest.kind, &faces)?;
    // Image models answer a few requests a second: a smaller floor keeps a run short, but at
    // least three batches, so that answers arrive over several transactions.
    let floor = if matches!(corpus, Corpus::Texts) { 200 } else { (3 * config.max_batch as u64).max(20) };
    let backlog = if let ModelKind::Echo(_) = manifest.kind {
        // Nothing to run alone: the limit is the pipeline's, which is what is measured.
        config.max_backlog.max(200)
    } else {
        let progress = timed_bar(config.duration, format!("limit: decode + model, batch {}", config.max_batch));
        let serve = config.serve();
        let limit =
            limit::measure(&serve, &manifest, &corpus, config.max_batch, config.duration, worker_core, &progress)?;
        progress.finish();
        let short = config.duration / 3;
        let progress = timed_bar(short, "limit: decode + model, batch 1".into());
        report.limit_batch1 = Some(limit::measure(&serve, &manifest, &corpus, 1, short, worker_core, &progress)?);
        progress.finish();
        let backlog = (limit.throughput * config.duration.as_secs_f64()) as u64;
        report.limit = Some(limit);
        backlog.clamp(floor, config.max_backlog.max(floor))
    };

    match &config.python {
        Some(python) if config.model == "sentiment" => {
            rest_phase(config, python, &mut report)?;
            python_stream_phase(config, &kafka, python, &corpus, None, nonce, &mut report)?;
        }
        Some(python) if !matches!(corpus, Corpus::Texts) => {
            python_stream_phase(config, &kafka, python, &corpus, Some(backlog), nonce, &mut report)?;
        }
        Some(_) => {
            tracing::info!(model = %config.model, "the Python baselines serve sentiment and the image models; skipped")
        }
        None => {}
    }
    match &config.kstreams {
        Some(project) if matches!(corpus, Corpus::Texts) => {
            kstreams::phase(config, &kafka, project, &manifest, backlog, nonce, &mut report)?;
        }
        Some(_) => tracing::info!(model = %config.model, "the Kafka Streams baseline serves text models only; skipped"),
        None => {}
    }
    // tidal also takes the loads the baselines were offered, for latency at the same load.
    let mut extra: Vec<(String, f64)> = Vec::new();
    if let Some(rate) = report.rest_overload.as_ref().and_then(|r| r.offered) {
        extra.push((format!("{REST_OVERLOAD_RUN} ({rate:.0}/s)"), rate));
    }
    if let Some(rate) = report.kstreams_compared.as_ref().and_then(|r| r.offered) {
        extra.push((format!("{KSTREAMS_LOAD_RUN} ({rate:.0}/s)"), rate));
    }
    for delivery in [Delivery::ExactlyOnce, Delivery::AtLeastOnce] {
        if delivery == Delivery::AtLeastOnce && config.skip_at_least_once {
            continue;
        }
        let extra = if delivery == Delivery::ExactlyOnce { std::mem::take(&mut extra) } else { Vec::new() };
        tidal_phase(config, &kafka, &corpus, delivery, backlog, &extra, nonce, &mut report)?;
    }

    // The model alone once more: the machine's speed drifts over minutes (see Report::limit_after).
    if let Some(before) = report.limit.as_ref().map(|r| r.name.clone()) {
        let progress = timed_bar(config.duration, format!("limit again: decode + model, batch {}", config.max_batch));
        let serve = config.serve();
        let mut after =
            limit::measure(&serve, &manifest, &corpus, config.max_batch, config.duration, worker_core, &progress)?;
        progress.finish();
        after.name = format!("{before}, after tidal's runs");
        report.limit_after = Some(after);
    }

    if let Some(length) = config.steady {
        let rate = report.exactly_once.as_ref().map_or(100.0, |r| r.throughput);
        let n = (rate * length.as_secs_f64() * 1.05) as u64;
        report.steady = Some(steady_phase(config, &kafka, &corpus, n, nonce)?);
    }

    report.write_json(&config.out)?;
    let font = crate::chart::load_font(None);
    report.write_chart(&config.out, font.as_ref())?;
    Ok(report)
}

fn rest_phase(config: &BenchConfig, python: &Path, report: &mut Report) -> Result<()> {
    let model_dir = config.serve().model_dir();
    let baseline = config.python_baseline(python, &model_dir);
    let _server = processes::start_rest(&baseline, config.rest_port, &config.out)?;
    let url = format!("http://127.0.0.1:{}/predict", config.rest_port);
    let (served, expected) = (rest::model_version(&url)?, config.manifest()?.version);
    if served != expected {
        return Err(Error::Bench(format!(
            "the REST baseline serves model version {served}, tidal {expected}: it reads the manifests from \
             TIDAL_MANIFEST_DIR (benches/baselines/sentiment_model.py)"
        )));
    }
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

/// The Python stream consumer drains a backlog: `backlog` requests (image models: the backlog
/// tidal drains), else about `duration` of work at the REST capacity (the same per-request path).
fn python_stream_phase(
    config: &BenchConfig,
    kafka: &KafkaConfig,
    python: &Path,
    corpus: &Corpus,
    backlog: Option<u64>,
    nonce: u64,
    report: &mut Report,
) -> Result<()> {
    let prefix = format!("bench-{nonce}-python");
    let (requests, results) = (format!("{prefix}.requests"), format!("{prefix}.results"));
    kafka_load::create_topics(kafka, &[&requests, &results], PARTITIONS)?;
    let n = backlog.unwrap_or_else(|| {
        let rate = report.rest_capacity.as_ref().map_or(100.0, |r| r.throughput.max(10.0));
        ((rate * config.duration.as_secs_f64()) as u64).max(200)
    });
    // A deadline for a consumer that stopped answering, not a target: at least 5/s for texts,
    // 5 s per request for images (the reference OCR takes 1.6 s per page on one thread here).
    let allowed = if backlog.is_some() { n as f64 * 5.0 } else { n as f64 / 5.0 };
    let producer = RequestProducer::new(kafka, &requests, corpus.clone())?;
    let progress = bar(n, "Python stream: producing the backlog".into());
    producer.backlog(0..n, &progress)?;
    progress.finish();
    let version = config.manifest()?.version;
    let mut reader = ResultReader::start(kafka, &results, PARTITIONS, &format!("{prefix}-reader"), &version)?;
    let model_dir = config.serve().model_dir();
    let (consumer, log) = processes::start_python_stream(
        &config.python_baseline(python, &model_dir),
        &config.brokers,
        (&requests, &results),
        &config.model,
        &config.out,
    )?;
    let meter = cpu::CpuMeter::start(consumer.pid());
    let progress = bar(n, "Python stream: draining the backlog".into());
    let deadline = Instant::now() + Duration::from_secs_f64(allowed + 60.0);
    let arrivals = reader.gather(0..n, deadline, &progress);
    progress.finish();
    let run = RunResult {
        cpu_us_per_answer: arrivals.cpu_per_answer(&meter),
        ..arrivals.backlog_result("Python stream consumer (capacity)", n)
    };
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
fn steady_phase(config: &BenchConfig, kafka: &KafkaConfig, corpus: &Corpus, n: u64, nonce: u64) -> Result<RunResult> {
    let prefix = format!("bench-{nonce}-steady");
    let topics = BenchTopics::new(&prefix, &config.model);
    let (mut drained, _running) =
        drain_backlog(kafka, &topics, corpus, n, "steady", &config.manifest()?.version, || {
            start_tidal(config, &prefix, Delivery::ExactlyOnce)
        })?;
    drained.name = "tidal exactly-once (steady backlog)".into();
    Ok(drained)
}

/// The name of tidal's run at the load that overloads REST.
const REST_OVERLOAD_RUN: &str = "tidal exactly-once at the REST overload";
/// The name of tidal's run at the load Kafka Streams' latency is compared at.
const KSTREAMS_LOAD_RUN: &str = "tidal exactly-once at Kafka Streams' load";

/// One benchmark target's topics: `<prefix>.requests.<model>` → `<prefix>.results.<model>`.
struct BenchTopics {
    requests: String,
    results: String,
    dead_letter: String,
}

impl BenchTopics {
    fn new(prefix: &str, model: &str) -> Self {
        BenchTopics {
            requests: format!("{prefix}.requests.{model}"),
            results: format!("{prefix}.results.{model}"),
            dead_letter: format!("{prefix}.dlq"),
        }
    }
}

fn start_tidal(config: &BenchConfig, prefix: &str, delivery: Delivery) -> Result<(processes::ChildGuard, PathBuf)> {
    processes::start_tidal(&processes::TidalTarget {
        brokers: &config.brokers,
        prefix,
        model: &config.model,
        delivery,
        workers: config.workers,
        pin: !config.no_pin,
        max_batch: config.max_batch,
        commit_interval: config.commit_interval.unwrap_or(ServeConfig::default().commit.interval),
        model_dir: &config.serve().model_dir(),
        manifest_dir: config.manifest_dir.as_deref(),
        out: &config.out,
    })
}

/// A target serving one benchmark's topics, with the producer and reader aimed at them.
struct UnderLoad {
    producer: RequestProducer,
    reader: ResultReader,
    target: processes::ChildGuard,
    log: PathBuf,
}

impl UnderLoad {
    /// Offers each `(name, rate)` in turn for `config.duration` (open loop, requests numbered
    /// from `next` on) and measures latency to the answers.
    fn open_loop_runs(
        &mut self,
        config: &BenchConfig,
        loads: &[(String, f64)],
        next: &mut u64,
    ) -> Result<Vec<RunResult>> {
        let mut runs = Vec::new();
        for (name, rate) in loads {
            let n = ((rate * config.duration.as_secs_f64()) as u64).max(1);
            let progress = timed_bar(config.duration, format!("{name}: open loop {rate:.0}/s"));
            progress.set_length(n);
            let scheduled = self.producer.open_loop(*next..*next + n, *rate, &progress)?;
            progress.finish();
            let progress = bar(n, format!("{name}: waiting for the answers"));
            let deadline = Instant::now() + config.duration.max(Duration::from_secs(30));
            let arrivals = self.reader.gather(*next..*next + n, deadline, &progress);
            progress.finish();
            runs.push(arrivals.open_loop_result(name, *next, &scheduled, *rate));
            *next += n;
        }
        Ok(runs)
    }
}

/// Creates the topics, produces a backlog of `n` requests, starts the target and measures how
/// fast it drains them. The target keeps running for more load. Answers from another version
/// than `model_version` count as errors.
fn drain_backlog(
    kafka: &KafkaConfig,
    topics: &BenchTopics,
    corpus: &Corpus,
    n: u64,
    label: &str,
    model_version: &str,
    start: impl FnOnce() -> Result<(processes::ChildGuard, PathBuf)>,
) -> Result<(RunResult, UnderLoad)> {
    kafka_load::create_topics(kafka, &[&topics.requests, &topics.results, &topics.dead_letter], PARTITIONS)?;
    let producer = RequestProducer::new(kafka, &topics.requests, corpus.clone())?;
    let progress = bar(n, format!("{label}: producing the backlog"));
    producer.backlog(0..n, &progress)?;
    progress.finish();
    let group = format!("{}-reader", topics.results);
    let mut reader = ResultReader::start(kafka, &topics.results, PARTITIONS, &group, model_version)?;
    let (mut target, log) = start()?;
    let meter = cpu::CpuMeter::start(target.pid());
    let progress = bar(n, format!("{label}: draining the backlog"));
    let deadline = Instant::now() + Duration::from_secs_f64(n as f64 / 5.0 + 60.0);
    let arrivals = reader.gather(0..n, deadline, &progress);
    progress.finish();
    target.check_running(&log)?;
    let drained = RunResult {
        cpu_us_per_answer: arrivals.cpu_per_answer(&meter),
        ..arrivals.backlog_result(&format!("{label} (capacity)"), n)
    };
    if drained.results < n {
        return Err(Error::Bench(format!("{label} answered {} of {n}; see {}", drained.results, log.display())));
    }
    if drained.throughput <= 0.0 {
        return Err(Error::Bench(format!(
            "{label} answered all {n} requests at once: too few to measure a rate; use a longer --duration"
        )));
    }
    Ok((drained, UnderLoad { producer, reader, target, log }))
}

#[allow(clippy::too_many_arguments)]
fn tidal_phase(
    config: &BenchConfig,
    kafka: &KafkaConfig,
    corpus: &Corpus,
    delivery: Delivery,
    backlog: u64,
    extra: &[(String, f64)],
    nonce: u64,
    report: &mut Report,
) -> Result<()> {
    let mode = match delivery {
        Delivery::ExactlyOnce => "exactly-once",
        Delivery::AtLeastOnce => "at-least-once",
    };
    let prefix = format!("bench-{nonce}-{mode}");
    let topics = BenchTopics::new(&prefix, &config.model);
    let label = format!("tidal {mode}");
    let (capacity, mut running) =
        drain_backlog(kafka, &topics, corpus, backlog, &label, &config.manifest()?.version, || {
            start_tidal(config, &prefix, delivery)
        })?;
    let mut loads: Vec<(String, f64)> = config
        .loads
        .iter()
        .map(|percent| (format!("tidal {mode} {percent:.0}%"), percent / 100.0 * capacity.throughput))
        .collect();
    loads.extend_from_slice(extra);
    let mut next = backlog;
    for run in running.open_loop_runs(config, &loads, &mut next)? {
        if run.name.starts_with(REST_OVERLOAD_RUN) {
            report.tidal_at_rest_overload = Some(run);
        } else if run.name.starts_with(KSTREAMS_LOAD_RUN) {
            report.tidal_at_kstreams_load = Some(run);
        } else {
            report.latency.push(run);
        }
    }
    running.target.check_running(&running.log)?;
    match delivery {
        Delivery::ExactlyOnce => report.exactly_once = Some(capacity),
        Delivery::AtLeastOnce => report.at_least_once = Some(capacity),
    }
    Ok(())
}
