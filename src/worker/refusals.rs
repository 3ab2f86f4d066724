//! Records the broker refuses for a reason of their own (a result larger than its topic accepts,
//! an invalid record) would abort their batch's transaction on every retry and stall the
//! partitions behind them. This module finds such a request and turns it into a dead letter:
//! - refused alone (or the only one refused): it is isolated at once;
//! - refused together with others (librdkafka sends a partition's records as one produce batch,
//!   and the broker refuses the whole batch): each is a suspect and is redone in a batch of its
//!   own, which either commits (innocent) or is refused alone (isolated).
//!
//! An isolated request is written as a dead letter with the broker's reason; if the dead-letter
//! topic refuses that too, as a dead letter without the original value. Entries are forgotten
//! once their offsets are committed.

use std::collections::{HashMap, HashSet};

use rdkafka::message::{Message, OwnedMessage};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::process::{refused_record, ModelSlot, OutgoingRecord, Rules};
use crate::kafka::Refusal;
use crate::metrics;

/// Where a request record is: topic, partition, offset.
type Source = (String, i32, i64);

fn source(message: &OwnedMessage) -> Source {
    (message.topic().to_string(), message.partition(), message.offset())
}

/// What one worker has learnt about refused records.
#[derive(Debug, Default)]
pub struct Refusals {
    suspects: HashSet<Source>,
    isolated: HashMap<Source, (u32, RDKafkaErrorCode)>,
}

impl Refusals {
    /// Whether some request must still run alone to find out whether the broker refuses it.
    pub fn has_suspects(&self) -> bool {
        !self.suspects.is_empty()
    }

    /// How many records of a fresh batch to keep so that a suspect runs alone: `None` keeps the
    /// whole batch; the caller rewinds the rest.
    pub fn cut(&self, batch: &[OwnedMessage]) -> Option<usize> {
        let first = batch.iter().position(|m| self.suspects.contains(&source(m)))?;
        Some(first.max(1)).filter(|&keep| keep < batch.len())
    }

    /// Learns from an abort in which the broker refused `refused` (indices into `batch`).
    pub fn learn(&mut self, batch: &[OwnedMessage], refused: &[Refusal]) {
        for refusal in refused {
            metrics::refused_record(format!("{:?}", refusal.code));
        }
        let isolated = match refused {
            [only] => Some(only),
            [first, ..] if batch.len() == 1 => Some(first),
            _ => None,
        };
        if let Some(refusal) = isolated.filter(|r| r.index < batch.len()) {
            let key = source(&batch[refusal.index]);
            tracing::warn!(topic = %key.0, partition = key.1, offset = key.2, reason = %refusal.code,
                "the broker refused this request's record; it goes to the dead-letter topic");
            self.suspects.remove(&key);
            let entry = self.isolated.entry(key).or_insert((0, refusal.code));
            *entry = (entry.0 + 1, refusal.code);
            return;
        }
        tracing::warn!(records = refused.len(), "the broker refused several records together; redoing each alone");
        self.suspects.extend(refused.iter().filter(|r| r.index < batch.len()).map(|r| source(&batch[r.index])));
    }

    /// Replaces the records of isolated requests with their dead letters.
    pub fn reroute(
        &self,
        batch: &[OwnedMessage],
        records: &mut [OutgoingRecord],
        slots: &[ModelSlot],
        rules: &Rules<'_>,
    ) {
        if self.isolated.is_empty() {
            return;
        }
        for (message, record) in batch.iter().zip(records.iter_mut()) {
            if let Some(&(refusals, code)) = self.isolated.get(&source(message)) {
                *record = refused_record(message, record, code, refusals, slots, rules);
            }
        }
    }

    /// Forgets every entry below the committed next offsets.
    pub fn forget_committed(&mut self, next_offsets: &TopicPartitionList) {
        if self.suspects.is_empty() && self.isolated.is_empty() {
            return;
        }
        let committed = |(topic, partition, offset): &Source| {
            next_offsets
                .find_partition(topic, *partition)
                .is_some_and(|e| matches!(e.offset(), Offset::Offset(next) if *offset < next))
        };
        self.suspects.retain(|s| !committed(s));
        self.isolated.retain(|s, _| !committed(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn batch(offsets: std::ops::Range<i64>) -> Vec<OwnedMessage> {
        offsets.map(|o| OwnedMessage::new(None, None, "req".into(), Timestamp::NotAvailable, 0, o, None)).collect()
    }

    fn refusal(index: usize) -> Refusal {
        Refusal { index, code: RDKafkaErrorCode::MessageSizeTooLarge }
    }

    #[test]
    fn a_lone_refusal_is_isolated_at_once() {
        let mut refusals = Refusals::default();
        let records = batch(10..14);
        refusals.learn(&records, &[refusal(2)]);
        assert_eq!(refusals.cut(&records), None, "nothing left to bisect");
        assert_eq!(refusals.isolated.get(&("req".into(), 0, 12)).map(|e| e.0), Some(1));
        refusals.learn(&records, &[refusal(2)]);
        assert_eq!(refusals.isolated.get(&("req".into(), 0, 12)).map(|e| e.0), Some(2));
    }

    #[test]
    fn records_refused_together_are_each_redone_alone() {
        let mut refusals = Refusals::default();
        let records = batch(10..16);
        refusals.learn(&records, &[refusal(2), refusal(3)]);
        assert!(refusals.isolated.is_empty());
        assert_eq!(refusals.cut(&records), Some(2), "the records before the first suspect go first");
        assert_eq!(refusals.cut(&records[2..]), Some(1), "then the suspect alone");
        // Alone, offset 12 commits (innocent): it is forgotten; offset 13 is refused alone: isolated.
        let mut committed = TopicPartitionList::new();
        committed.add_partition_offset("req", 0, Offset::Offset(13)).unwrap();
        refusals.forget_committed(&committed);
        assert_eq!(refusals.cut(&records[3..]), Some(1));
        refusals.learn(&records[3..4], &[refusal(0)]);
        assert_eq!(refusals.cut(&records[3..]), None);
        assert!(refusals.isolated.contains_key(&("req".into(), 0, 13)));
        let mut committed = TopicPartitionList::new();
        committed.add_partition_offset("req", 0, Offset::Offset(14)).unwrap();
        refusals.forget_committed(&committed);
        assert!(refusals.isolated.is_empty() && refusals.suspects.is_empty());
    }
}
