//! The limit: decoding and the model in a tight loop — each request's JSON decoded as a worker
//! decodes it (for images: base64 and the JPEG/PNG), tokenisation (or the image pipeline's pre-
//! and post-processing) and ONNX Runtime with one intra-op thread, batches of `max_batch`, on the
//! core a worker would own. No Kafka. (Decoding was once left out: with face match's bounded
//! detector, decoding two photos became a quarter of a pair's time, and a limit without it is
//! one no server could reach.) Its CPU time per answer is the loop thread's: the model's own
//! cost, which tidal's CPU per answer is compared with (a ratio a machine's speed drift leaves alone).

use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::corpus::Corpus;
use super::measure::RunResult;
use crate::codec::Input;
use crate::config::ServeConfig;
use crate::error::{Error, Result};
use crate::models::{self, Manifest};

/// Runs the model over batches of `batch` requests for `duration`, on core `core` when
/// given (on its own thread, like a worker).
pub fn measure(
    config: &ServeConfig,
    manifest: &Manifest,
    corpus: &Corpus,
    batch: usize,
    duration: Duration,
    core: Option<core_affinity::CoreId>,
    progress: &ProgressBar,
) -> Result<RunResult> {
    models::init_onnxruntime(&config.onnxruntime_library())?;
    let model_dir = config.model_dir();
    let progress = progress.clone();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                let mut model = models::load(manifest, &model_dir)?;
                // The requests as they arrive (JSON text), decoded inside the timed loop.
                let requests: Vec<String> = (0..corpus.cycle()).map(|seq| corpus.request(seq)).collect();
                let kind = model.input_kind();
                let mut seq = 0u64;
                let mut next_batch = || -> Result<Vec<Input>> {
                    let inputs = (seq..seq + batch as u64)
                        .map(|s| super::corpus::decode(&requests[(s % corpus.cycle()) as usize], kind, &config.limits))
                        .collect();
                    seq += batch as u64;
                    inputs
                };
                // Warm-up: the first runs allocate.
                for _ in 0..3 {
                    let inputs = next_batch()?;
                    model.infer(&inputs.iter().collect::<Vec<_>>())?;
                }
                let start = Instant::now();
                let cpu_start = super::cpu::thread_cpu_seconds();
                let mut done = 0u64;
                let mut per_second = vec![0.0];
                while start.elapsed() < duration {
                    let decoded = next_batch()?;
                    let inputs: Vec<&Input> = decoded.iter().collect();
                    let outputs = model.infer(&inputs)?;
                    if outputs.len() != inputs.len() {
                        return Err(Error::Bench(format!("the model answered {} of {}", outputs.len(), inputs.len())));
                    }
                    done += inputs.len() as u64;
                    let second = start.elapsed().as_secs() as usize;
                    per_second.resize(per_second.len().max(second + 1), 0.0);
                    per_second[second] += inputs.len() as f64;
                    progress.set_position(start.elapsed().as_millis() as u64);
                }
                let cpu_seconds = super::cpu::thread_cpu_seconds() - cpu_start;
                Ok(RunResult {
                    name: format!("limit (decode + model, batch {batch})"),
                    requests: done,
                    results: done,
                    throughput: done as f64 / start.elapsed().as_secs_f64(),
                    cpu_us_per_answer: (done > 0).then(|| cpu_seconds * 1e6 / done as f64),
                    per_second,
                    ..RunResult::default()
                })
            })
            .join()
            .map_err(|_| Error::Bench("the model loop panicked".into()))?
    })
}
