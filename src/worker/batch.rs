//! Micro-batch collection: take what the broker already delivered, up to `max_batch` records or
//! `max_bytes` of record values, and never wait longer than `linger` after the first record.

use std::collections::BTreeMap;
use std::time::Instant;

use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

use super::clients::WorkerConsumer;
use super::outage::Outage;
use crate::config::BatchConfig;
use crate::error::{Error, Result};

/// Polls one batch. Returns an empty batch when nothing arrived within `idle_poll`, or when a
/// rebalance moved partitions while collecting (the records are then rewound, never lost).
pub fn collect(
    consumer: &WorkerConsumer,
    settings: &BatchConfig,
    outage: &mut Outage,
    worker: usize,
) -> Result<Vec<OwnedMessage>> {
    let rebalances = consumer.context().rebalance_count();
    let mut batch = Vec::new();
    let mut bytes = 0;
    let mut deadline: Option<Instant> = None;
    while batch.len() < settings.max_batch && bytes < settings.max_bytes {
        let wait = match deadline {
            None => settings.idle_poll,
            Some(d) => d.saturating_duration_since(Instant::now()),
        };
        match consumer.poll(wait) {
            Some(Ok(message)) => {
                bytes += message.payload_len();
                outage.record(worker);
                batch.push(message.detach());
                deadline.get_or_insert_with(|| Instant::now() + settings.linger);
            }
            Some(Err(e)) => outage.error(worker, &e),
            None => {}
        }
        if consumer.context().rebalance_count() != rebalances {
            // Assignments moved during this batch: put back every record of a partition we
            // still own (including one delivered by this very poll); the others' new owners
            // start from the committed offsets.
            super::rewind::to_first_offsets(consumer, &batch)?;
            return Ok(Vec::new());
        }
        if deadline.is_none_or(|d| Instant::now() >= d) {
            break;
        }
    }
    Ok(batch)
}

/// The offsets to commit for a batch: per partition, the highest offset + 1.
pub fn next_offsets(batch: &[OwnedMessage]) -> Result<TopicPartitionList> {
    let mut highest: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for m in batch {
        let entry = highest.entry((m.topic(), m.partition())).or_insert(m.offset());
        *entry = (*entry).max(m.offset());
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in highest {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset + 1))
            .map_err(|e| Error::kafka("building the offsets to commit", e))?;
    }
    Ok(tpl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn message(topic: &str, partition: i32, offset: i64) -> OwnedMessage {
        OwnedMessage::new(None, None, topic.into(), Timestamp::NotAvailable, partition, offset, None)
    }

    #[test]
    fn next_offsets_are_highest_plus_one_per_partition() {
        let batch = [message("a", 0, 5), message("a", 1, 9), message("a", 0, 7), message("b", 0, 1)];
        let tpl = next_offsets(&batch).unwrap();
        let got: Vec<(String, i32, Offset)> =
            tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition(), e.offset())).collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), 0, Offset::Offset(8)),
                ("a".into(), 1, Offset::Offset(10)),
                ("b".into(), 0, Offset::Offset(2))
            ]
        );
    }
}
