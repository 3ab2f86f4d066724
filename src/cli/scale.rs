//! `tidal scale run | override | simulate`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;

use tidal::health::{HealthSlot, Running};
use tidal::scale::policy::LatencyPolicy;
use tidal::scale::signals::{FieldEquals, SignalRule};
use tidal::scale::{manual, simulate as sim, ScaleConfig};
use tidal::shutdown::Shutdown;
use tidal::{metrics, tools};

use super::BrokerArgs;

#[derive(Subcommand)]
pub enum ScaleCommand {
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
        /// A CSV file of `seconds,rate`, or a built-in trace: `match-day` (steady, 6x surge,
        /// cliff), `diurnal` (a shop's day: opening at 09:00, lunch dip), `flash-spike` (10x for
        /// 2 minutes).
        #[arg(long, default_value = "match-day")]
        trace: String,
        /// Base rate of the built-in traces, records/s.
        #[arg(long, default_value_t = 100.0)]
        base_rate: f64,
        /// Folder for simulation.csv and simulation.png (compare-<trace>.png with --compare).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Run every built-in trace (or --trace FILE) through four configurations — the
        /// KEDA-equivalent lag policy (deploy/kubernetes/keda/scale.toml), --config's policies,
        /// those plus a latency SLO, and those plus signals — and print cost, seconds over the
        /// SLO, peak lag and time to enough replicas for each.
        #[arg(long)]
        compare: bool,
        /// The wait a new request should not exceed (--compare's latency policy and its count of
        /// seconds over the SLO).
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        slo: std::time::Duration,
    },
}

pub async fn run(command: ScaleCommand) -> anyhow::Result<()> {
    match command {
        ScaleCommand::Run { brokers, config } => watch(&brokers, config.as_deref()).await,
        ScaleCommand::Override { brokers, file, topic, replicas, clear } => {
            let replicas = match (replicas, clear) {
                (_, true) => None,
                (Some(n), false) => Some(n),
                (None, false) => anyhow::bail!("give a replica count, or --clear"),
            };
            set_override(&brokers, file.as_deref(), topic.as_deref(), replicas)
        }
        ScaleCommand::Simulate { config, trace, base_rate, out, compare, slo } => {
            if compare {
                simulate_compare(config.as_deref(), &trace, base_rate, &out, slo)
            } else {
                simulate(config.as_deref(), &trace, base_rate, &out)
            }
        }
    }
}

/// `tidal scale run`.
async fn watch(brokers: &BrokerArgs, config: Option<&Path>) -> anyhow::Result<()> {
    let config = ScaleConfig::load(config)?;
    let kafka = brokers.kafka_config()?;
    super::preflight(&kafka, &config.watch.topics, super::COMMAND_CONNECT_TIMEOUT)?;
    let listen = config.watch.metrics_listen.trim();
    if !listen.is_empty() {
        let address = listen.parse().with_context(|| format!("watch.metrics_listen = {listen:?} is not host:port"))?;
        metrics::install_exporter(address, HealthSlot::with(Arc::new(Running)))?;
    }
    let shutdown = Shutdown::on_signals("the scaler")?;
    tidal::scale::run::run(&config, &kafka, &shutdown).await?;
    Ok(())
}

/// `tidal scale override`: `replicas` `None` clears it.
fn set_override(
    brokers: &BrokerArgs,
    file: Option<&Path>,
    topic: Option<&str>,
    replicas: Option<u32>,
) -> anyhow::Result<()> {
    match (file, topic) {
        (Some(file), _) => eprintln!("{}", manual::write_file(file, replicas)?),
        (None, Some(topic)) => {
            let value = manual::topic_record(replicas);
            let options = tools::ProduceOptions::default();
            let count = tools::produce_lines(&brokers.kafka_config()?, topic, value.as_bytes(), options)?;
            eprintln!("override record {value:?} written to {topic} ({count} record)");
        }
        (None, None) => anyhow::bail!("give --file or --topic"),
    }
    Ok(())
}

/// `tidal scale simulate`.
fn simulate(config: Option<&Path>, trace: &str, base_rate: f64, out: &Path) -> anyhow::Result<()> {
    let config = ScaleConfig::load(config)?;
    let trace = trace_named(trace, base_rate)?;
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

/// A built-in trace by name, else a CSV file.
fn trace_named(name: &str, base_rate: f64) -> anyhow::Result<sim::Trace> {
    match sim::builtin_trace(name, base_rate) {
        Some(trace) => Ok(trace),
        None => Ok(sim::read_trace(Path::new(name))?),
    }
}

/// The scaler configured as KEDA's ScaledObject is (lag policy only), shipped beside it.
const KEDA_EQUIVALENT: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes/keda/scale.toml"));

/// `tidal scale simulate --compare`.
fn simulate_compare(
    config: Option<&Path>,
    trace: &str,
    base_rate: f64,
    out: &Path,
    slo: std::time::Duration,
) -> anyhow::Result<()> {
    let config = ScaleConfig::load(config)?;
    // The same bounds for every configuration: only the policies differ.
    let mut keda = ScaleConfig::from_toml(KEDA_EQUIVALENT)?.policies;
    keda.min_replicas = config.policies.min_replicas;
    keda.max_replicas = config.policies.max_replicas;
    let mut with_slo = config.policies.clone();
    with_slo.latency.get_or_insert(LatencyPolicy {
        target: slo,
        percentile: 0.95,
        window: std::time::Duration::from_secs(60),
        service_time: std::time::Duration::ZERO,
    });
    let configurations = [
        ("KEDA-equivalent (lag)", keda),
        ("tidal", config.policies.clone()),
        ("tidal + latency SLO", with_slo.clone()),
    ];
    // Signal rules: the configuration's, else one a match-day operator would set from past
    // matches: a wicket raises the floor to the replicas the 6x peak needs, for 15 minutes.
    let rules = if config.signals.is_empty() {
        let peak = (6.0 * base_rate / config.simulation.per_replica_rate).ceil() as u32;
        vec![SignalRule {
            topic: "match.events".into(),
            when: Some(FieldEquals { field: "type".into(), equals: serde_json::json!("wicket") }),
            share: None,
            min_replicas: peak.clamp(1, config.policies.max_replicas),
            hold: std::time::Duration::from_secs(600),
        }]
    } else {
        config.signals.clone()
    };
    let traces: Vec<String> = if trace == "match-day" {
        sim::BUILTIN_TRACES.iter().map(|t| t.to_string()).collect()
    } else {
        vec![trace.to_string()]
    };
    let model = config.simulation.model();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    println!(
        "replica model: {:.0} records/s per replica, {} partitions, {} start-up, decisions every {}; SLO: wait ≤ {}",
        model.per_replica_rate,
        model.partitions,
        humantime::format_duration(model.startup),
        humantime::format_duration(model.interval),
        humantime::format_duration(slo)
    );
    for name in &traces {
        let trace = trace_named(name, base_rate)?;
        let mut runs: Vec<(&str, Vec<sim::Step>)> =
            configurations.iter().map(|(label, policies)| (*label, sim::run(&trace, policies, &model))).collect();
        // The signal rules run on every trace; only match-day has a signal stream to fire them.
        let events = if name == "match-day" { sim::match_day_events() } else { Vec::new() };
        runs.push(("tidal + latency SLO + signals", sim::run_with_signals(&trace, &with_slo, &model, &rules, &events)));
        println!("\ntrace {name}:");
        println!("| configuration | replica-seconds | seconds over SLO | peak lag | surge → enough replicas |");
        println!("|---|---:|---:|---:|---:|");
        for (label, steps) in &runs {
            let c = sim::compare(steps, &model, slo);
            let enough = c.surge_to_enough.map_or("never".to_string(), |s| format!("{s:.0} s"));
            println!(
                "| {label} | {:.0} | {:.0} | {:.0} | {enough} |",
                c.replica_seconds, c.over_slo_seconds, c.peak_lag
            );
        }
        let file_name = Path::new(name).file_stem().map_or(name.clone(), |s| s.to_string_lossy().into_owned());
        let png = out.join(format!("compare-{file_name}.png"));
        let overlaid: Vec<(&str, &[sim::Step])> = runs.iter().map(|(l, s)| (*l, s.as_slice())).collect();
        sim::draw_runs(&overlaid, &png, None)?;
        println!("wrote {}", png.display());
    }
    Ok(())
}
