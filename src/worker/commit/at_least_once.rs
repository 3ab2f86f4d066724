//! At-least-once: produce, wait for every delivery, then commit the offsets. No transaction: a
//! failed delivery (or a deadline passed with records in flight) leaves the offsets where they
//! were and the batch is redone; a crash after the deliveries redoes it too (a duplicate, which
//! this mode allows). It exists to measure what transactions cost.

use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::Producer;
use rdkafka::TopicPartitionList;

use super::{send, wait_for_deliveries, Commit};
use crate::metrics;
use crate::worker::clients::Clients;
use crate::worker::process::OutgoingRecord;

pub fn commit(
    clients: &Clients,
    records: &[OutgoingRecord],
    offsets: &TopicPartitionList,
    timeout: Duration,
) -> Commit {
    let started = Instant::now();
    let failed_before = clients.producer.context().failed_deliveries();
    let redo = |clients: &Clients| {
        metrics::transaction("aborted", started.elapsed());
        Commit::Redo { refused: clients.producer.context().take_refusals() }
    };
    for (index, record) in records.iter().enumerate() {
        if let Err(e) = send(clients, index, record) {
            tracing::warn!(error = %e, "producing a result failed; the batch will be redone");
            wait_for_deliveries(clients, timeout);
            return redo(clients);
        }
    }
    wait_for_deliveries(clients, timeout);
    if clients.producer.in_flight_count() > 0 || clients.producer.context().failed_deliveries() != failed_before {
        tracing::warn!("some results were not delivered; the batch will be redone");
        return redo(clients);
    }
    if let Err(e) = clients.consumer.commit(offsets, CommitMode::Sync) {
        // The results are written; the partition's next owner redoes the batch (a duplicate,
        // which at-least-once allows).
        tracing::warn!(error = %e, "committing offsets failed; the batch may be redone");
    }
    metrics::transaction("committed", started.elapsed());
    Commit::Committed
}
