//! Putting records back: seeking the consumer so that records are delivered again. There are two
//! places to go back to and one way to get there: a batch's first offsets (after an abort, a cut
//! batch, or a rebalance in the middle of collecting) or the group's committed offsets (after a
//! producer was replaced in the middle of a transaction, whose batch the worker no longer holds).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

use super::clients::WorkerConsumer;
use crate::error::{Error, Result};

/// How long a seek may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// Seeks every partition of `batch` that is still assigned back to the batch's first offset.
/// Partitions no longer assigned are left to their new owner, which starts from the committed
/// offsets.
pub fn to_first_offsets(consumer: &WorkerConsumer, batch: &[OwnedMessage]) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let assignment = consumer.assignment().map_err(|e| Error::kafka("reading the assignment", e))?;
    let mut lowest: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for m in batch {
        let entry = lowest.entry((m.topic(), m.partition())).or_insert(m.offset());
        *entry = (*entry).min(m.offset());
    }
    let mut positions = TopicPartitionList::new();
    for ((topic, partition), offset) in lowest {
        if assignment.find_partition(topic, partition).is_some() {
            positions
                .add_partition_offset(topic, partition, Offset::Offset(offset))
                .map_err(|e| Error::kafka("building the rewind list", e))?;
        }
    }
    seek(consumer, positions)
}

/// Seeks every assigned partition to the group's committed offset (or the beginning if none).
pub fn to_committed(consumer: &WorkerConsumer, timeout: Duration) -> Result<()> {
    let assignment = consumer.assignment().map_err(|e| Error::kafka("reading the assignment", e))?;
    if assignment.count() == 0 {
        return Ok(());
    }
    let committed =
        consumer.committed_offsets(assignment, timeout).map_err(|e| Error::kafka("reading committed offsets", e))?;
    let mut positions = TopicPartitionList::new();
    for element in committed.elements() {
        let offset = match element.offset() {
            Offset::Offset(offset) => Offset::Offset(offset),
            _ => Offset::Beginning,
        };
        positions
            .add_partition_offset(element.topic(), element.partition(), offset)
            .map_err(|e| Error::kafka("building the rewind list", e))?;
    }
    seek(consumer, positions)
}

fn seek(consumer: &WorkerConsumer, positions: TopicPartitionList) -> Result<()> {
    if positions.count() == 0 {
        return Ok(());
    }
    let sought =
        consumer.seek_partitions(positions, SEEK_TIMEOUT).map_err(|e| Error::kafka("rewinding the consumer", e))?;
    for element in sought.elements() {
        element
            .error()
            .map_err(|e| Error::kafka(format!("rewinding {}[{}]", element.topic(), element.partition()), e))?;
    }
    Ok(())
}
