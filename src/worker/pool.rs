//! The worker pool: validates the configuration, loads ONNX Runtime, starts one pinned thread per
//! worker (N − 1 by default, leaving a core to the OS and the Kafka client threads) and stops
//! them gracefully.

use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::run::{self, Cores, WorkerSpec};
use super::watchdog::{self, Heartbeat};
use crate::config::ServeConfig;
use crate::error::{Error, Result};
use crate::health::Health;
use crate::metrics;
use crate::models::{self, Manifest};
use crate::shutdown::Shutdown;

/// A running processor: its worker threads and the signal that stops them.
pub struct Processor {
    shutdown: Shutdown,
    heartbeats: Vec<Arc<Heartbeat>>,
    /// A worker whose loop has not turned for this long is wedged (`/livez` fails).
    max_silence: Duration,
    failure: Arc<Mutex<Option<String>>>,
    threads: Vec<JoinHandle<()>>,
}

/// What needs no broker: the configuration, the models' manifests and files, ONNX Runtime.
/// Checked first, so that a missing model file is reported at once rather than after a wait
/// for Kafka. Returns the manifests.
pub fn check_local(config: &ServeConfig) -> Result<Vec<Manifest>> {
    config.validate()?;
    let model_dir = config.model_dir();
    let manifests: Vec<Manifest> = config
        .models
        .iter()
        .map(|name| {
            let manifest = Manifest::find(name, config.manifest_dir.as_deref())?;
            manifest.check_files(&model_dir)?;
            Ok(manifest)
        })
        .collect::<Result<_>>()?;
    models::init_onnxruntime(&config.onnxruntime_library())?;
    Ok(manifests)
}

/// Starts the processor and returns once every worker has loaded its models. The workers stop
/// when `shutdown` is requested (by a signal, by [`Processor::stop`], or by a worker that found
/// a twin process).
///
/// With `activation`, the workers load their models and then wait for it before they connect:
/// a warm standby that joins the group in the time a join takes, not a model load.
pub fn start(config: ServeConfig, shutdown: Shutdown, activation: Option<Shutdown>) -> Result<Processor> {
    let manifests = check_local(&config)?;

    let assignment = config.worker_assignment()?;
    let workers = assignment.len();
    let cores = if config.pin_workers { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let config = Arc::new(config);
    let (ready_tx, ready_rx) = mpsc::channel::<(usize, Result<()>)>();
    let heartbeats: Vec<Arc<Heartbeat>> = (0..workers).map(|_| Arc::default()).collect();
    let mut threads = Vec::with_capacity(workers);
    for index in 0..workers {
        // Core 0 stays with the OS; workers take cores 1.., wrapping when oversubscribed.
        let core = (!cores.is_empty()).then(|| cores[(index + 1) % cores.len()]);
        let spec = WorkerSpec {
            index,
            config: Arc::clone(&config),
            manifests: manifests.iter().filter(|m| assignment[index].contains(&m.name)).cloned().collect(),
            shutdown: shutdown.clone(),
            cores: core.map(|own| Cores { own, io: cores[0] }),
            failure: Arc::clone(&failure),
            heartbeat: Arc::clone(&heartbeats[index]),
        };
        let ready = ready_tx.clone();
        let activation = activation.clone();
        let thread = thread::Builder::new()
            .name(format!("tidal-worker-{index}"))
            .spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core) {
                        tracing::warn!(worker = index, core = core.id, "could not pin the worker to its core");
                    }
                }
                match run::load_models(&spec) {
                    Ok(slots) => {
                        let _ = ready.send((index, Ok(())));
                        if let Some(activation) = &activation {
                            while !activation.is_requested() && !spec.shutdown.sleep(Duration::from_millis(20)) {}
                        }
                        run::run_worker(&spec, slots);
                    }
                    Err(e) => {
                        let _ = ready.send((index, Err(e)));
                    }
                }
            })
            .map_err(|e| Error::Worker { worker: index, reason: format!("cannot start its thread: {e}") })?;
        threads.push(thread);
    }
    drop(ready_tx);
    let max_silence = config.kafka.max_poll_interval + config.batch.idle_poll;
    let processor = Processor { shutdown, heartbeats: heartbeats.clone(), max_silence, failure, threads };
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok((_, Ok(()))) => {}
            Ok((worker, Err(e))) => {
                processor.stop();
                let _ = processor.wait(Duration::from_secs(30));
                return Err(Error::Worker { worker, reason: e.to_string() });
            }
            Err(_) => {
                processor.stop();
                return Err(Error::Processor("a worker thread died while loading its models".into()));
            }
        }
    }
    // A call may take its own timeout (retried calls each restart the clock); twice that means
    // librdkafka stopped keeping its word.
    let limit = config.kafka.call_timeout * 2;
    watchdog::spawn(heartbeats, limit, watchdog::end_process)
        .map_err(|e| Error::Processor(format!("cannot start the watchdog thread: {e}")))?;
    metrics::workers(workers);
    tracing::info!(
        workers,
        pinned = !cores.is_empty(),
        models = ?assignment,
        group = %config.group_id(),
        instance = %config.instance(),
        "tidal serving"
    );
    Ok(processor)
}

/// `/livez` and `/readyz` of a processor, from its workers' heartbeats.
struct ProcessorHealth {
    heartbeats: Vec<Arc<Heartbeat>>,
    max_silence: Duration,
}

impl Health for ProcessorHealth {
    fn live(&self) -> std::result::Result<(), String> {
        for (worker, heartbeat) in self.heartbeats.iter().enumerate() {
            let silent = heartbeat.since_progress();
            if silent > self.max_silence {
                return Err(format!(
                    "worker {worker} made no progress for {silent:.0?} (more than max_poll_interval + idle_poll, {:.0?})",
                    self.max_silence
                ));
            }
        }
        Ok(())
    }

    fn ready(&self) -> std::result::Result<(), String> {
        let waiting: Vec<usize> = (0..self.heartbeats.len()).filter(|&w| !self.heartbeats[w].joined()).collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!("workers {waiting:?} have not joined the consumer group yet"))
        }
    }
}

impl Processor {
    /// The processor's health, for `/livez` and `/readyz`.
    pub fn health(&self) -> Arc<dyn Health> {
        Arc::new(ProcessorHealth { heartbeats: self.heartbeats.clone(), max_silence: self.max_silence })
    }

    /// Asks every worker to finish its current batch and stop.
    pub fn stop(&self) {
        self.shutdown.request();
    }

    /// Why a worker asked the whole process to stop (e.g. a twin process took over its
    /// instance), if one did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// True when a worker thread has ended although no stop was asked (a bug or a panic).
    pub fn any_worker_died(&self) -> bool {
        !self.shutdown.is_requested() && self.threads.iter().any(|t| t.is_finished())
    }

    /// Waits for the workers to end, at most `timeout`. `Err` if some are still running.
    pub fn wait(self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && !self.threads.iter().all(|t| t.is_finished()) {
            thread::sleep(Duration::from_millis(20));
        }
        let running = self.threads.iter().filter(|t| !t.is_finished()).count();
        if running > 0 {
            return Err(Error::Processor(format!(
                "{running} worker(s) still waiting on Kafka after {timeout:?} (stop_timeout); exiting anyway. \
                 Nothing is lost: the broker aborts their open transactions (after kafka.transaction_timeout, \
                 or at once when this instance starts again) and their requests are answered after the restart"
            )));
        }
        for thread in self.threads {
            if thread.join().is_err() {
                return Err(Error::Processor("a worker thread panicked".into()));
            }
        }
        Ok(())
    }
}
