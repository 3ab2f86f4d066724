//! One transaction's worth of work. The inference batch sets latency (how many requests one model
//! run takes); the commit cadence (`[commit]`) sets how many of those runs share one transaction.
//! A transaction keeps taking batches while the last one was full (more is waiting), until the
//! cadence's interval or record count, or the memory budget, says commit. A model slower than the
//! interval per batch commits every batch, as before; a light one (echo: microseconds a request)
//! spreads a commit's fixed cost over many batches instead of one.
//!
//! Nothing here touches Kafka's transaction: the worker still polls only between transactions
//! (its producer begins one at commit), so a rebalance never interrupts one. A rebalance while a
//! transaction's batches are gathered drops them all and rewinds, as for a single batch.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};

use super::batch;
use super::clients::Clients;
use super::commit::Lost;
use super::outage::Outage;
use super::process::{process_batch, ModelSlot, OutgoingRecord, Rules};
use super::refusals::Refusals;
use super::rewind;
use super::run::WorkerSpec;
use crate::config::BatchConfig;
use crate::metrics;

/// The requests of one transaction and the records that answer them, one per request, in order.
#[derive(Default)]
pub struct Work {
    pub requests: Vec<OwnedMessage>,
    pub records: Vec<OutgoingRecord>,
    /// The last batch stopped at a limit (`max_batch` records or `max_bytes`) rather than because
    /// nothing more was ready.
    pub last_full: bool,
}

/// Where gathering stands; borrowed from the worker's loop.
pub struct Gatherer<'a> {
    pub spec: &'a WorkerSpec,
    pub clients: &'a Clients,
    pub rules: &'a Rules<'a>,
    pub outage: &'a mut Outage,
    /// Batches taken by this worker (the slow-model fault counts them).
    pub batches: &'a mut u64,
}

impl Gatherer<'_> {
    /// Takes one batch (waiting up to `batch.idle_poll` for it), then, if `extend`, more batches
    /// without waiting while the cadence allows. An empty result: nothing arrived, or a rebalance
    /// moved partitions (the records are rewound, never lost).
    pub fn gather(&mut self, slots: &mut [ModelSlot], refusals: &Refusals, extend: bool) -> Result<Work, Lost> {
        let config = &self.spec.config;
        let consumer = &self.clients.consumer;
        let started = Instant::now();
        let rebalances = consumer.context().rebalance_count();
        let no_wait = BatchConfig { idle_poll: Duration::ZERO, ..config.batch.clone() };
        let mut work = Work::default();
        let mut bytes = 0;
        loop {
            let settings = if work.requests.is_empty() { &config.batch } else { &no_wait };
            let mut batch = batch::collect(consumer, settings, self.outage, self.spec.index).map_err(Lost::Consumer)?;
            if consumer.context().rebalance_count() != rebalances {
                // `collect` put back its own records; put back the earlier batches' too.
                rewind::to_first_offsets(consumer, &work.requests).map_err(Lost::Consumer)?;
                return Ok(Work::default());
            }
            if batch.is_empty() {
                return Ok(work);
            }
            // A suspect (see `refusals`) runs in a transaction of its own.
            let cut = refusals.cut(&batch);
            if let Some(keep) = cut {
                rewind::to_first_offsets(consumer, &batch[keep..]).map_err(Lost::Consumer)?;
                batch.truncate(keep);
            }
            let records = self.process(&batch, slots, refusals);
            let batch_bytes: usize = batch.iter().map(|m| m.payload().map_or(0, <[u8]>::len)).sum();
            work.last_full = batch.len() >= config.batch.max_batch || batch_bytes >= config.batch.max_bytes;
            bytes += batch_bytes;
            work.requests.extend(batch);
            work.records.extend(records);
            let more = extend
                && cut.is_none()
                && work.last_full
                && work.requests.len() < config.commit.max_records
                && bytes < config.batch.max_bytes
                && started.elapsed() < config.commit.interval
                && !self.spec.shutdown.is_requested();
            if !more {
                return Ok(work);
            }
            self.spec.heartbeat.progressed();
        }
    }

    /// Runs the models over one batch: its records, one per request.
    fn process(&mut self, batch: &[OwnedMessage], slots: &mut [ModelSlot], refusals: &Refusals) -> Vec<OutgoingRecord> {
        count_inputs(batch, slots);
        *self.batches += 1;
        let faults = &self.spec.config.faults;
        if let Some(delay) = faults.slow_model {
            if faults.slow_batches == 0 || *self.batches <= faults.slow_batches {
                std::thread::sleep(delay); // fault injection: a model slower than max.poll.interval
            }
        }
        let mut records = process_batch(batch, slots, self.rules);
        refusals.reroute(batch, &mut records, slots, self.rules);
        records
    }
}

fn count_inputs(batch: &[OwnedMessage], slots: &[ModelSlot]) {
    for slot in slots {
        for topic in slot.request_topics() {
            let count = batch.iter().filter(|m| m.topic() == topic).count();
            if count > 0 {
                metrics::records_in(topic, slot.model.name(), count);
            }
        }
    }
}
