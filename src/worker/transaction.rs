//! One batch, one transaction: results and dead letters are produced, the batch's next offsets
//! are sent with the consumer's group metadata, and everything commits or nothing does.
//! Error classes follow librdkafka: retriable → same call again; abortable → abort (the caller
//! rewinds and redoes the batch); fatal → the caller rebuilds its clients.
//!
//! A record the broker refuses for a reason of its own (too large for its topic, invalid) is
//! reported with the abort, so that the worker can dead-letter that request instead of redoing
//! the batch forever.
//!
//! At-least-once mode writes the same records without a transaction, waits for every delivery,
//! then commits the offsets; a failed delivery rewinds the batch instead (duplicates allowed).

use std::thread::sleep;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::TopicPartitionList;

use super::clients::Clients;
use super::process::Produced;
use crate::config::Delivery;
use crate::error::{Error, Result};
use crate::kafka::{classify, fatal_is_fence, refuses_the_record, Refusal, TxnStep};
use crate::metrics;

/// Attempts of a retriable call before the transaction is aborted instead.
const RETRIES: u32 = 10;

/// How a batch's transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    Committed,
    /// Aborted: nothing was written; the caller must rewind and redo the batch. `refused` names
    /// the records (by index) that the broker refused for a reason of their own: they would be
    /// refused again.
    Aborted {
        refused: Vec<Refusal>,
    },
}

/// Writes `records` and commits `offsets` in one transaction. `Err` means the producer is
/// unusable (fatal) and the worker must rebuild its clients.
pub fn commit_batch(
    clients: &Clients,
    records: &[Produced],
    offsets: &TopicPartitionList,
    timeout: Duration,
    delay_before_commit: Option<Duration>,
) -> Result<TxnOutcome> {
    clients.producer.context().take_refusals(); // a fresh list for this batch
    if clients.delivery == Delivery::AtLeastOnce {
        return Ok(write_then_commit(clients, records, offsets, timeout));
    }
    let started = Instant::now();
    let group = clients
        .consumer
        .group_metadata()
        .ok_or_else(|| Error::NotGroupMember { transactional_id: clients.transactional_id.clone() })?;
    match write_and_commit(clients, records, offsets, &group, timeout, delay_before_commit) {
        Ok(()) => {
            metrics::transaction("committed", started.elapsed());
            Ok(TxnOutcome::Committed)
        }
        // A producer in a fatal state fails `send()` with the generic `Fatal` code only: its
        // recorded fatal error says whether it was fenced (and a twin may be running).
        Err(e) if classify(&e) == TxnStep::Fatal || clients.producer.client().fatal_error().is_some() => {
            metrics::transaction("fatal", started.elapsed());
            let recorded = clients.producer.client().fatal_error().map(|(code, _)| code);
            if fatal_is_fence(&e, recorded) {
                tracing::warn!(error = %e, "the transactional producer was fenced");
                return Err(Error::Fenced { transactional_id: clients.transactional_id.clone() });
            }
            Err(Error::kafka("transaction failed fatally", e))
        }
        Err(e) => {
            tracing::warn!(error = %e, records = records.len(), "aborting the transaction; the batch will be redone");
            // abort_transaction waits for outstanding deliveries, whose reports only a poll
            // serves: without it the abort fails after `timeout`, retry after retry (measured:
            // 5 minutes without results after a 15 s broker pause).
            retry(|| {
                wait_for_deliveries(clients, timeout);
                let _call = clients.heartbeat.enter("abort_transaction");
                clients.producer.abort_transaction(timeout)
            })
            .map_err(|abort_error| Error::kafka("aborting the transaction", abort_error))?;
            metrics::transaction("aborted", started.elapsed());
            Ok(TxnOutcome::Aborted { refused: clients.producer.context().take_refusals() })
        }
    }
}

fn write_and_commit(
    clients: &Clients,
    records: &[Produced],
    offsets: &TopicPartitionList,
    group: &ConsumerGroupMetadata,
    timeout: Duration,
    delay_before_commit: Option<Duration>,
) -> Result<(), KafkaError> {
    let producer = &clients.producer;
    producer.begin_transaction()?;
    for (index, record) in records.iter().enumerate() {
        send(clients, index, record)?;
    }
    retry(|| {
        let _call = clients.heartbeat.enter("send_offsets_to_transaction");
        producer.send_offsets_to_transaction(offsets, group, timeout)
    })?;
    wait_for_deliveries(clients, timeout);
    if let Some(delay) = delay_before_commit {
        sleep(delay);
    }
    retry(|| {
        let _call = clients.heartbeat.enter("commit_transaction");
        producer.commit_transaction(timeout)
    })
}

/// At-least-once: produce, wait for every delivery, then commit the offsets. A failed delivery
/// (or a deadline passed with records in flight) reports `Aborted` so that the caller rewinds.
fn write_then_commit(
    clients: &Clients,
    records: &[Produced],
    offsets: &TopicPartitionList,
    timeout: Duration,
) -> TxnOutcome {
    let started = Instant::now();
    let failed_before = clients.producer.context().failed_deliveries();
    let aborted = |clients: &Clients| {
        metrics::transaction("aborted", started.elapsed());
        TxnOutcome::Aborted { refused: clients.producer.context().take_refusals() }
    };
    for (index, record) in records.iter().enumerate() {
        if let Err(e) = send(clients, index, record) {
            tracing::warn!(error = %e, "producing a result failed; the batch will be redone");
            wait_for_deliveries(clients, timeout);
            return aborted(clients);
        }
    }
    wait_for_deliveries(clients, timeout);
    if clients.producer.in_flight_count() > 0 || clients.producer.context().failed_deliveries() != failed_before {
        tracing::warn!("some results were not delivered; the batch will be redone");
        return aborted(clients);
    }
    if let Err(e) = clients.consumer.commit(offsets, CommitMode::Sync) {
        // The results are written; the partition's next owner redoes the batch (a duplicate,
        // which at-least-once allows).
        tracing::warn!(error = %e, "committing offsets failed; the batch may be redone");
    }
    metrics::transaction("committed", started.elapsed());
    TxnOutcome::Committed
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
fn send(clients: &Clients, index: usize, record: &Produced) -> Result<(), KafkaError> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (key, value) in &record.headers {
        headers = headers.insert(Header { key, value: Some(value.as_str()) });
    }
    let mut base: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(&record.topic, index).headers(headers);
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

/// Calls `op` again while it fails with a retriable error, up to `RETRIES` times.
fn retry(mut op: impl FnMut() -> Result<(), KafkaError>) -> Result<(), KafkaError> {
    let mut attempt = 0;
    loop {
        match op() {
            Err(e) if classify(&e) == TxnStep::Retry && attempt < RETRIES => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "retriable transactional error; retrying");
                sleep(Duration::from_millis(100 * u64::from(attempt)));
            }
            other => return other,
        }
    }
}
