//! The Kafka Streams baseline: the architecture the field reaches for when it wants ML on a Kafka
//! stream exactly once — a Kafka Streams application (`benches/baselines/kstreams`) with the same
//! model in-process (ONNX Runtime's Java API, the same `model.onnx` and `tokenizer.json`),
//! `exactly_once_v2`, its commit interval at the default. Measured like tidal: capacity on a
//! backlog, then open-loop latency at fractions of its own capacity; tidal is then also offered
//! Kafka Streams' 80 % load, so that their latencies compare at the same load.

use std::path::Path;

use super::corpus::Corpus;
use super::{drain_backlog, BenchConfig, BenchTopics, Report};
use crate::config::{KafkaConfig, ServeConfig};
use crate::error::Result;
use crate::models::{Manifest, ModelKind};

/// The fraction of Kafka Streams' capacity at which tidal's latency is compared with it.
const COMPARED_LOAD: f64 = 0.8;

/// Capacity and latency of Kafka Streams with one stream thread, and capacity with as many
/// stream threads as tidal has workers when that is more than one.
pub fn phase(
    config: &BenchConfig,
    kafka: &KafkaConfig,
    project: &Path,
    manifest: &Manifest,
    backlog: u64,
    nonce: u64,
    report: &mut Report,
) -> Result<()> {
    let model_args = model_args(config, manifest);
    let mut thread_counts = vec![1];
    let workers = ServeConfig { workers: config.workers, ..ServeConfig::default() }.worker_count();
    if workers > 1 {
        thread_counts.push(workers);
    }
    for threads in thread_counts {
        let prefix = format!("bench-{nonce}-kstreams-{threads}");
        let topics = BenchTopics::new(&prefix, &config.model);
        let label = format!("Kafka Streams {threads} thread{}", if threads == 1 { "" } else { "s" });
        let start = || {
            super::processes::start_kstreams(&super::processes::KstreamsTarget {
                java: &config.java,
                project,
                brokers: &config.brokers,
                topics: (&topics.requests, &topics.results),
                application_id: &prefix,
                threads,
                model_args: model_args.clone(),
                out: &config.out,
            })
        };
        let (capacity, mut running) =
            drain_backlog(kafka, &topics, &Corpus::Texts, backlog, &label, &manifest.version, start)?;
        if threads > 1 {
            report.kstreams_threads = Some(capacity);
            continue;
        }
        let mut loads: Vec<(String, f64)> = config
            .loads
            .iter()
            .map(|percent| (format!("{label} {percent:.0}%"), percent / 100.0 * capacity.throughput))
            .collect();
        let compared = format!("{label} {:.0}% (compared)", COMPARED_LOAD * 100.0);
        loads.push((compared.clone(), COMPARED_LOAD * capacity.throughput));
        let mut next = backlog;
        for run in running.open_loop_runs(config, &loads, &mut next)? {
            if run.name == compared {
                report.kstreams_compared = Some(run);
            } else {
                report.kstreams_latency.push(run);
            }
        }
        running.target.check_running(&running.log)?;
        report.kstreams = Some(capacity);
    }
    Ok(())
}

/// The model's arguments: its kind, version and, for a text classifier, its files and labels.
fn model_args(config: &BenchConfig, manifest: &Manifest) -> Vec<String> {
    let mut args = vec!["--name".to_string(), manifest.name.clone(), "--version".into(), manifest.version.clone()];
    match &manifest.kind {
        ModelKind::TextClassification(spec) => {
            let model_dir = config.serve().model_dir();
            args.extend([
                "--model".into(),
                "text-classification".into(),
                "--model-file".into(),
                model_dir.join(&spec.model).display().to_string(),
                "--tokenizer".into(),
                model_dir.join(&spec.tokenizer).display().to_string(),
                "--labels".into(),
                spec.labels.join(","),
                "--max-tokens".into(),
                spec.max_tokens.to_string(),
            ]);
        }
        _ => args.extend(["--model".into(), "echo".into()]),
    }
    args
}
