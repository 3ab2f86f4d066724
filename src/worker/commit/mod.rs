//! Committing a batch: its results, its dead letters and its input offsets, in the delivery mode
//! chosen once, when the worker connects.
//!
//! Every way a commit can end is one of two things: [`Commit`] (the batch counts, or it must be
//! redone by this worker) or [`Lost`] (a client is unusable and the worker repairs it). The error
//! classes of librdkafka are translated here and nowhere else.

mod at_least_once;
mod exactly_once;

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::TopicPartitionList;

use super::clients::Clients;
use super::process::OutgoingRecord;
use crate::config::{Delivery, ServeConfig};
use crate::error::Error;
use crate::kafka::{refuses_the_record, Refusal};
use crate::shutdown::Shutdown;

/// How long a call made while stopping (an abort) may wait for the broker.
const STOPPING_TIMEOUT: Duration = Duration::from_secs(2);

/// A commit that left the clients usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    /// Results and offsets are committed.
    Committed,
    /// Nothing of the batch counts (exactly-once: the transaction was aborted; at-least-once: the
    /// offsets were not committed): rewind and redo it. `refused` names the records (by index)
    /// that the broker refused for a reason of their own: they would be refused again.
    Redo { refused: Vec<Refusal> },
}

/// A client the worker must repair before its next batch.
#[derive(Debug)]
pub enum Lost {
    /// The producer is in a fatal state (or its transaction could not be ended): replace it.
    Producer(Error),
    /// The consumer failed or left its group: rebuild both clients.
    Consumer(Error),
    /// The producer was fenced: by a twin process running as the same instance, or by the
    /// coordinator after a transaction outlived its timeout.
    Fenced { transactional_id: String },
}

/// How a worker commits, chosen from the configuration when it connects.
#[derive(Debug, Clone, Copy)]
pub enum Committer {
    /// Results and offsets in one transaction.
    ExactlyOnce { timeout: Duration, delay_before_commit: Option<Duration> },
    /// Results delivered first, offsets committed after (a crash in between redoes the batch).
    AtLeastOnce { timeout: Duration },
}

impl Committer {
    pub fn for_config(config: &ServeConfig) -> Self {
        let timeout = config.kafka.call_timeout;
        match config.delivery {
            Delivery::ExactlyOnce => {
                Committer::ExactlyOnce { timeout, delay_before_commit: config.faults.delay_before_commit }
            }
            Delivery::AtLeastOnce => Committer::AtLeastOnce { timeout },
        }
    }

    /// Writes `records` and commits `offsets` (the batch's next offsets).
    /// Writes one batch's records and commits its offsets. Once `shutdown` is requested, nothing
    /// is retried and an abort waits at most [`STOPPING_TIMEOUT`]: the process must end within
    /// the orchestrator's grace period, and what is left open the broker aborts.
    pub fn commit(
        &self,
        clients: &Clients,
        records: &[OutgoingRecord],
        offsets: &TopicPartitionList,
        shutdown: &Shutdown,
    ) -> Result<Commit, Lost> {
        clients.producer.context().take_refusals(); // a fresh list for this batch
        match *self {
            Committer::ExactlyOnce { timeout, delay_before_commit } => {
                exactly_once::commit(clients, records, offsets, timeout, delay_before_commit, shutdown)
            }
            Committer::AtLeastOnce { timeout } => Ok(at_least_once::commit(clients, records, offsets, timeout)),
        }
    }
}

/// Serves delivery reports until nothing is in flight. `commit_transaction` flushes too, but
/// rdkafka's `BaseProducer::flush` polls in 100 ms steps, which cost ~100 ms per transaction
/// (measured: 105 ms commits before; `tidal bench` shows the effect). If the deadline passes, the
/// commit's own flush takes over.
fn wait_for_deliveries(clients: &Clients, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while clients.producer.in_flight_count() > 0 && Instant::now() < deadline {
        clients.producer.poll(Duration::from_millis(1));
    }
}

/// Produces one record (its index in the batch rides along as the delivery opaque), waiting for
/// queue space when librdkafka's queue is full.
fn send(clients: &Clients, index: usize, record: &OutgoingRecord) -> Result<(), KafkaError> {
    let mut base: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(&record.topic, index);
    // Results carry no headers (dead letters do): no header list to build and free per result.
    if !record.headers.is_empty() {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in &record.headers {
            headers = headers.insert(Header { key, value: Some(value.as_str()) });
        }
        base = base.headers(headers);
    }
    if let Some(key) = &record.key {
        base = base.key(key.as_slice());
    }
    if let Some(payload) = &record.payload {
        base = base.payload(payload.as_slice());
    }
    loop {
        match clients.producer.send(base) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                clients.producer.poll(Duration::from_millis(50));
                base = returned;
            }
            Err((e, _)) => {
                if let Some(code) = e.rdkafka_error_code().filter(|&c| refuses_the_record(c)) {
                    clients.producer.context().refuse(index, code);
                }
                return Err(e);
            }
        }
    }
}
