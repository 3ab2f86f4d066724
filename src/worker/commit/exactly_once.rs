//! Exactly-once: one batch, one transaction. Results and dead letters are produced, the batch's
//! next offsets are sent with the consumer's group metadata, and everything commits or nothing
//! does. librdkafka's error classes decide what follows: retriable → the same call again;
//! abortable → abort, and the batch is redone; fatal → the producer is lost (fenced, or broken).
//!
//! A record the broker refuses for a reason of its own (too large for its topic, invalid) is
//! reported with the abort, so that the worker can dead-letter that request instead of redoing
//! the batch forever.

use std::thread::sleep;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::TopicPartitionList;

use super::{send, wait_for_deliveries, Commit, Lost, STOPPING_TIMEOUT};
use crate::error::Error;
use crate::kafka::{classify, fatal_is_fence, TxnStep};
use crate::metrics;
use crate::shutdown::Shutdown;
use crate::worker::clients::Clients;
use crate::worker::process::OutgoingRecord;

/// Attempts of a retriable call before the transaction is aborted instead.
const RETRIES: u32 = 10;

pub fn commit(
    clients: &Clients,
    records: &[OutgoingRecord],
    offsets: &TopicPartitionList,
    timeout: Duration,
    delay_before_commit: Option<Duration>,
    shutdown: &Shutdown,
) -> Result<Commit, Lost> {
    let started = Instant::now();
    let group = clients
        .consumer
        .group_metadata()
        .ok_or_else(|| Lost::Consumer(Error::NotGroupMember { transactional_id: clients.transactional_id.clone() }))?;
    let Err(e) = write_in_transaction(clients, records, offsets, &group, timeout, delay_before_commit, shutdown) else {
        metrics::transaction("committed", started.elapsed());
        return Ok(Commit::Committed);
    };
    // A producer in a fatal state fails `send()` with the generic `Fatal` code only: its recorded
    // fatal error says whether it was fenced (and a twin may be running).
    let recorded = clients.producer.client().fatal_error().map(|(code, _)| code);
    if classify(&e) == TxnStep::Fatal || recorded.is_some() {
        metrics::transaction("fatal", started.elapsed());
        if fatal_is_fence(&e, recorded) {
            tracing::warn!(error = %e, "the transactional producer was fenced");
            return Err(Lost::Fenced { transactional_id: clients.transactional_id.clone() });
        }
        return Err(Lost::Producer(Error::kafka("transaction failed fatally", e)));
    }
    tracing::warn!(error = %e, records = records.len(), "aborting the transaction; the batch will be redone");
    // abort_transaction waits for outstanding deliveries, whose reports only a poll serves:
    // without it the abort fails after `timeout`, retry after retry (measured: 5 minutes without
    // results after a 15 s broker pause).
    // Stopping: one short attempt; an abort that cannot reach the broker is done by the broker
    // after `transaction_timeout`, or at once by the next start under the same instance.
    let timeout = if shutdown.is_requested() { timeout.min(STOPPING_TIMEOUT) } else { timeout };
    retry(shutdown, || {
        wait_for_deliveries(clients, timeout);
        let _call = clients.heartbeat.enter("abort_transaction");
        clients.producer.abort_transaction(timeout)
    })
    .map_err(|abort_error| Lost::Producer(Error::kafka("aborting the transaction", abort_error)))?;
    metrics::transaction("aborted", started.elapsed());
    Ok(Commit::Redo { refused: clients.producer.context().take_refusals() })
}

fn write_in_transaction(
    clients: &Clients,
    records: &[OutgoingRecord],
    offsets: &TopicPartitionList,
    group: &ConsumerGroupMetadata,
    timeout: Duration,
    delay_before_commit: Option<Duration>,
    shutdown: &Shutdown,
) -> Result<(), KafkaError> {
    let producer = &clients.producer;
    producer.begin_transaction()?;
    for (index, record) in records.iter().enumerate() {
        send(clients, index, record)?;
    }
    retry(shutdown, || {
        let _call = clients.heartbeat.enter("send_offsets_to_transaction");
        producer.send_offsets_to_transaction(offsets, group, timeout)
    })?;
    wait_for_deliveries(clients, timeout);
    if let Some(delay) = delay_before_commit {
        sleep(delay); // fault injection: widen the window between the writes and the commit
    }
    retry(shutdown, || {
        let _call = clients.heartbeat.enter("commit_transaction");
        producer.commit_transaction(timeout)
    })
}

/// Calls `op` again while it fails with a retriable error, up to `RETRIES` times, and not once
/// shutdown is requested (each call may wait `call_timeout` on a broker that does not answer).
fn retry(shutdown: &Shutdown, mut op: impl FnMut() -> Result<(), KafkaError>) -> Result<(), KafkaError> {
    let mut attempt = 0;
    loop {
        match op() {
            Err(e) if classify(&e) == TxnStep::Retry && attempt < RETRIES && !shutdown.is_requested() => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "retriable transactional error; retrying");
                sleep(Duration::from_millis(100 * u64::from(attempt)));
            }
            other => return other,
        }
    }
}
