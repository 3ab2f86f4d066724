//! One worker's life: load its models, connect, then loop collect → process → commit until
//! shutdown; rebuild the clients after a fatal error, with backoff.

use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};

use super::batch;
use super::clients::Clients;
use super::commit::{Commit, Lost};
use super::gather::{Gatherer, Work};
use super::lanes::{Lanes, Mode};
use super::outage::Outage;
use super::process::{ModelSlot, Rules};
use super::refusals::Refusals;
use super::rewind;
use super::watchdog::Heartbeat;
use crate::config::ServeConfig;
use crate::error::Result;
use crate::kafka::groups::describe_group;
use crate::metrics;
use crate::models::{self, Manifest};
use crate::shutdown::Shutdown;

/// Header naming the worker (its transactional id) that wrote a result or dead letter.
pub const HEADER_PROCESSOR: &str = "tidal.processor";

/// Everything a worker thread needs.
pub struct WorkerSpec {
    pub index: usize,
    pub config: Arc<ServeConfig>,
    /// The models this worker serves (it loads only these).
    pub manifests: Vec<Manifest>,
    pub shutdown: Shutdown,
    /// The cores of a pinned worker.
    pub cores: Option<Cores>,
    /// Why the process must stop (set by a worker that found a twin process), read by `serve`.
    pub failure: Arc<Mutex<Option<String>>>,
    /// Marks this worker's blocking Kafka calls for the watchdog.
    pub heartbeat: Arc<Heartbeat>,
}

/// A pinned worker's cores: its own, and the OS core where its Kafka clients' threads run.
#[derive(Debug, Clone, Copy)]
pub struct Cores {
    pub own: core_affinity::CoreId,
    pub io: core_affinity::CoreId,
}

/// Loads the worker's models (one session each, on this thread).
pub fn load_models(spec: &WorkerSpec) -> Result<Vec<ModelSlot>> {
    let model_dir = spec.config.model_dir();
    spec.manifests
        .iter()
        .map(|manifest| {
            let priority = spec.config.priority.models.contains(&manifest.name);
            Ok(ModelSlot {
                model: models::load(manifest, &model_dir)?,
                request_topic: format!("{}{}", spec.config.topics.request_prefix, manifest.name),
                priority_topic: priority.then(|| spec.config.topics.priority_requests(&manifest.name)),
                result_topic: format!("{}{}", spec.config.topics.result_prefix, manifest.name),
            })
        })
        .collect()
}

/// Runs until shutdown is requested. Kafka failures never end the loop: a failed producer is
/// replaced (the consumer keeps its partitions); a failed consumer means new clients.
pub fn run_worker(spec: &WorkerSpec, mut slots: Vec<ModelSlot>) {
    let topics: Vec<String> = slots.iter().flat_map(|s| s.request_topics().map(String::from)).collect();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut backoff = Backoff::default();
    let mut batches: u64 = 0; // across client rebuilds (the slow-model fault counts them)
    while !spec.shutdown.is_requested() {
        let mut clients = match off_core(spec, || Clients::connect(&spec.config, spec.index, &topics, &spec.heartbeat))
        {
            Ok(clients) => clients,
            Err(e) => {
                tracing::warn!(worker = spec.index, error = %e, retry_in = ?backoff.current, "cannot connect; retrying");
                metrics::worker_restart("connect");
                backoff.wait(&spec.shutdown);
                continue;
            }
        };
        loop {
            match batch_loop(spec, &clients, &mut slots, &mut batches, &mut backoff) {
                Ok(()) => {
                    clients.consumer.unsubscribe();
                    tracing::info!(worker = spec.index, "worker stopped");
                    return;
                }
                Err(Lost::Fenced { transactional_id }) if twin_is_running(spec, &clients) => {
                    stop_for_twin(spec, &transactional_id);
                    return;
                }
                Err(lost) if spec.shutdown.is_requested() => {
                    tracing::warn!(
                        worker = spec.index,
                        error = %describe(&lost),
                        "stopping without a clean end of the last transaction: the broker aborts it after \
                         kafka.transaction_timeout, a start under the same instance at once; nothing is lost"
                    );
                    return;
                }
                Err(lost @ (Lost::Producer(_) | Lost::Fenced { .. })) => {
                    tracing::warn!(worker = spec.index, error = %describe(&lost), "the producer failed; replacing it");
                    metrics::worker_restart("producer");
                    backoff.wait(&spec.shutdown);
                    if spec.shutdown.is_requested() {
                        return;
                    }
                    if let Err(e) = off_core(spec, || clients.renew_producer(&spec.config)) {
                        tracing::error!(worker = spec.index, error = %e, "cannot replace the producer; rebuilding all clients");
                        break;
                    }
                }
                Err(Lost::Consumer(e)) => {
                    tracing::error!(worker = spec.index, error = %e, "the consumer failed; rebuilding the clients");
                    break;
                }
            }
        }
        metrics::worker_restart("fatal");
        spec.heartbeat.set_joined(false);
        drop(clients);
        backoff.wait(&spec.shutdown);
    }
}

fn describe(lost: &Lost) -> String {
    match lost {
        Lost::Producer(e) | Lost::Consumer(e) => e.to_string(),
        Lost::Fenced { transactional_id } => format!("producer {transactional_id} was fenced"),
    }
}

/// The wait before rebuilding a client: doubles after each failure, up to 10 s, and starts
/// again from 250 ms once a batch commits (an outage next week must not inherit today's wait).
#[derive(Debug)]
struct Backoff {
    current: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { current: Duration::from_millis(250) }
    }
}

impl Backoff {
    fn wait(&mut self, shutdown: &Shutdown) {
        shutdown.sleep(self.current);
        self.current = (self.current * 2).min(Duration::from_secs(10));
    }

    fn reset(&mut self) {
        *self = Backoff::default();
    }
}

/// A twin process took over this worker's instance: record why and stop the whole process.
fn stop_for_twin(spec: &WorkerSpec, transactional_id: &str) {
    let reason = format!(
        "another process is running as instance '{}' (its worker took over transactional id \
         {transactional_id} and fenced this one); this process stops so that the two do not fence \
         each other in turn. Give every live process its own --instance.",
        spec.config.instance()
    );
    tracing::error!(worker = spec.index, "{reason}");
    if let Ok(mut failure) = spec.failure.lock() {
        failure.get_or_insert(reason);
    }
    spec.shutdown.request();
}

/// After being fenced: is another member of the group using this worker's client id (its
/// transactional id)? Then a twin process took over and this one is the zombie. A fence without a
/// twin (a transaction that outlived its timeout, e.g. while the broker was paused) is recovered
/// from by rebuilding the clients. The twin may still be joining, so look for a while.
fn twin_is_running(spec: &WorkerSpec, clients: &Clients) -> bool {
    let group = spec.config.group_id();
    let until = Instant::now() + spec.config.kafka.session_timeout;
    loop {
        if let Ok(described) = describe_group(clients.consumer.client(), &group, Duration::from_secs(5)) {
            let namesakes = described.members.iter().filter(|m| m.client_id == clients.transactional_id).count();
            // This worker's own consumer is still a member: a second one is the twin.
            if namesakes >= 2 {
                return true;
            }
        }
        if Instant::now() >= until || spec.shutdown.is_requested() {
            return false;
        }
        sleep(Duration::from_millis(500));
    }
}

/// Runs `make` (which creates Kafka clients) with this thread moved to the OS core for the
/// moment, so that the threads librdkafka starts (which inherit the creator's affinity) do their
/// network and protocol work there instead of taking time from the model on the worker's core.
fn off_core<T>(spec: &WorkerSpec, make: impl FnOnce() -> T) -> T {
    let Some(cores) = spec.cores else { return make() };
    core_affinity::set_for_current(cores.io);
    let made = make();
    core_affinity::set_for_current(cores.own);
    made
}

/// Collect → process → commit until shutdown (`Ok`) or until a client is lost.
fn batch_loop(
    spec: &WorkerSpec,
    clients: &Clients,
    slots: &mut [ModelSlot],
    batches: &mut u64,
    backoff: &mut Backoff,
) -> Result<(), Lost> {
    let config = &spec.config;
    let rules = Rules {
        limits: &config.limits,
        dead_letter_topic: &config.topics.dead_letter,
        max_decoded_bytes: config.batch.max_bytes,
        panic_on_id: config.faults.panic_on_id.as_deref(),
    };
    let mut refusals = Refusals::default();
    let mut outage = Outage::default();
    let priority_topics = slots.iter().filter_map(|s| s.priority_topic.clone());
    let mut lanes = Lanes::new(priority_topics, config.priority.normal_batch_every);
    let mut priority_first_shown: Option<bool> = None; // the gauge is set when it changes
    let mut aborts: u32 = 0;
    let mut gatherer = Gatherer { spec, clients, rules: &rules, outage: &mut outage, batches };
    while !spec.shutdown.is_requested() {
        spec.heartbeat.progressed();
        spec.heartbeat.set_joined(clients.consumer.context().rebalance_count() > 0);
        lanes.apply(&clients.consumer).map_err(Lost::Consumer)?;
        let priority_first = lanes.mode() != Mode::Both;
        if priority_first_shown != Some(priority_first) {
            metrics::worker_priority_first(spec.index, priority_first);
            priority_first_shown = Some(priority_first);
        }
        // Lanes count batches and a suspect runs alone: both want one batch per transaction.
        let extend = !priority_first && !refusals.has_suspects();
        let Work { requests, mut records, last_full } = gatherer.gather(slots, &refusals, extend)?;
        if requests.is_empty() {
            lanes.idle(&clients.consumer).map_err(Lost::Consumer)?;
            continue;
        }
        for record in &mut records {
            record.headers.push((HEADER_PROCESSOR, clients.transactional_id.clone()));
        }
        let offsets = batch::next_offsets(&requests).map_err(Lost::Consumer)?;
        let commit = clients.committer.commit(clients, &records, &offsets, &spec.shutdown)?;
        drop(records);
        match commit {
            Commit::Committed => {
                aborts = 0;
                backoff.reset();
                refusals.forget_committed(&offsets);
                record_latency(&requests, slots);
                lanes.committed(&requests, last_full);
            }
            Commit::Redo { refused } => {
                rewind::to_first_offsets(&clients.consumer, &requests).map_err(Lost::Consumer)?;
                if refused.is_empty() {
                    aborts += 1;
                    spec.shutdown.sleep(Duration::from_millis(100 << aborts.min(6)));
                } else {
                    // The broker refused records for reasons of their own: no wait, the redo
                    // isolates them (see `refusals`).
                    refusals.learn(&requests, &refused);
                }
            }
        }
    }
    Ok(())
}

/// Produce-to-commit latency, from each request's record timestamp (one metric handle per model:
/// a light model commits thousands of requests at once).
fn record_latency(requests: &[OwnedMessage], slots: &[ModelSlot]) {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    for slot in slots {
        let latencies = requests
            .iter()
            .filter(|m| slot.reads(m.topic()))
            .filter_map(|m| m.timestamp().to_millis())
            .map(|created| Duration::from_millis((now_ms - created).max(0) as u64));
        metrics::end_to_end(slot.model.name(), latencies);
    }
}
