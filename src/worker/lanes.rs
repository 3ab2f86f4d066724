//! Priority lanes: a worker serves its models' priority request topics first.
//!
//! Why pause/resume rather than two consumers: the batch's offsets commit in the producer's
//! transaction with *one* consumer group's metadata, and one consumer keeps one assignment and
//! one fencing generation. So the worker reads both lanes with its one consumer and decides, per
//! batch, which partitions may deliver:
//!
//! - **both** (the usual state): nothing paused. A batch that brings a priority record switches
//!   to —
//! - **priority first**: the normal partitions are paused, so batches hold only priority
//!   requests, until a batch comes back short of full (the priority backlog is drained: back to
//!   *both*) or `normal_batch_every − 1` full priority batches in a row ran (then —)
//! - **normal turn**: one batch of normal requests (priority paused), then *priority first* again.
//!   Normal requests progress at one batch in `normal_batch_every` at worst; they never starve.
//!
//! Pausing never moves an offset: librdkafka drops what it had prefetched for a paused partition
//! and fetches again from the application's position on resume, so exactly-once is unchanged.
//! The mode changes only after a committed batch (a redone batch is redone in the same lanes).
//! librdkafka keeps a partition paused across a revoke and a later re-assignment, so after every
//! rebalance the whole state is applied again to the current assignment.

use std::collections::HashSet;

use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::TopicPartitionList;

use super::clients::WorkerConsumer;
use crate::error::{Error, Result};

/// Which partitions may deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Both,
    PriorityFirst,
    NormalTurn,
}

impl Mode {
    /// (priority partitions paused, normal partitions paused).
    fn paused(self) -> (bool, bool) {
        match self {
            Mode::Both => (false, false),
            Mode::PriorityFirst => (false, true),
            Mode::NormalTurn => (true, false),
        }
    }
}

/// One worker's lanes.
#[derive(Debug)]
pub struct Lanes {
    priority_topics: HashSet<String>,
    normal_batch_every: u32,
    mode: Mode,
    /// Full priority batches since the last normal one.
    priority_run: u32,
    /// What is applied to the consumer: the mode and the rebalance count it was applied at.
    applied: Option<(Mode, u64)>,
}

impl Lanes {
    pub fn new(priority_topics: impl IntoIterator<Item = String>, normal_batch_every: u32) -> Self {
        Lanes {
            priority_topics: priority_topics.into_iter().collect(),
            normal_batch_every: normal_batch_every.max(2),
            mode: Mode::Both,
            priority_run: 0,
            applied: None,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn is_priority(&self, topic: &str) -> bool {
        self.priority_topics.contains(topic)
    }

    /// Before collecting a batch: pauses and resumes partitions for the current mode — only what
    /// changed, or everything after a rebalance (and the first time).
    pub fn apply(&mut self, consumer: &WorkerConsumer) -> Result<()> {
        if self.priority_topics.is_empty() {
            return Ok(());
        }
        let rebalances = consumer.context().rebalance_count();
        let previous = match self.applied {
            Some((mode, at)) if at == rebalances => {
                if mode == self.mode {
                    return Ok(());
                }
                Some(mode)
            }
            _ => None, // first time, or the assignment changed: apply the whole state
        };
        let assignment = consumer.assignment().map_err(|e| Error::kafka("reading the worker's assignment", e))?;
        let (priority_paused, normal_paused) = self.mode.paused();
        let was = previous.map(Mode::paused);
        let (mut pause, mut resume) = (TopicPartitionList::new(), TopicPartitionList::new());
        for element in assignment.elements() {
            let (paused, was_paused) = if self.is_priority(element.topic()) {
                (priority_paused, was.map(|w| w.0))
            } else {
                (normal_paused, was.map(|w| w.1))
            };
            if was_paused == Some(paused) {
                continue;
            }
            let list = if paused { &mut pause } else { &mut resume };
            list.add_partition(element.topic(), element.partition());
        }
        if pause.count() > 0 {
            consumer.pause(&pause).map_err(|e| Error::kafka("pausing the normal or priority partitions", e))?;
        }
        if resume.count() > 0 {
            consumer.resume(&resume).map_err(|e| Error::kafka("resuming the normal or priority partitions", e))?;
        }
        self.applied = Some((self.mode, rebalances));
        Ok(())
    }

    /// After a committed batch (`full`: it stopped at `max_batch` or `max_bytes`): the next mode.
    pub fn committed(&mut self, batch: &[OwnedMessage], full: bool) {
        if self.priority_topics.is_empty() {
            return;
        }
        let brought_priority = batch.iter().any(|m| self.is_priority(m.topic()));
        self.mode = match self.mode {
            Mode::Both if brought_priority => {
                self.priority_run = 0;
                Mode::PriorityFirst
            }
            Mode::Both => Mode::Both,
            Mode::PriorityFirst if !brought_priority || !full => Mode::Both,
            Mode::PriorityFirst => {
                self.priority_run += 1;
                if self.priority_run + 1 >= self.normal_batch_every {
                    Mode::NormalTurn
                } else {
                    Mode::PriorityFirst
                }
            }
            Mode::NormalTurn => {
                self.priority_run = 0;
                Mode::PriorityFirst
            }
        };
    }

    /// Nothing arrived within the idle poll: in *priority first* the priority backlog is gone;
    /// in a *normal turn* there is nothing normal to serve.
    pub fn idle(&mut self) {
        if self.mode != Mode::Both {
            self.mode = Mode::Both;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn record(topic: &str) -> OwnedMessage {
        OwnedMessage::new(None, None, topic.into(), Timestamp::NotAvailable, 0, 0, None)
    }

    fn lanes() -> Lanes {
        Lanes::new(["req.priority".to_string()], 4)
    }

    #[test]
    fn a_priority_record_pauses_the_normal_lane_until_the_backlog_is_drained() {
        let mut lanes = lanes();
        lanes.committed(&[record("req"), record("req")], true);
        assert_eq!(lanes.mode(), Mode::Both, "normal traffic alone changes nothing");
        lanes.committed(&[record("req"), record("req.priority")], true);
        assert_eq!(lanes.mode(), Mode::PriorityFirst);
        lanes.committed(&[record("req.priority"), record("req.priority")], true);
        assert_eq!(lanes.mode(), Mode::PriorityFirst, "a full priority batch: more may wait");
        lanes.committed(&[record("req.priority")], false);
        assert_eq!(lanes.mode(), Mode::Both, "a short batch: the priority backlog is drained");
    }

    #[test]
    fn the_normal_lane_gets_one_batch_in_every_n() {
        let mut lanes = lanes(); // one normal batch in every 4
        lanes.committed(&[record("req.priority")], true);
        let full_priority = [record("req.priority"), record("req.priority")];
        let mut modes = Vec::new();
        for _ in 0..8 {
            let batch: &[OwnedMessage] = if lanes.mode() == Mode::NormalTurn { &[] } else { &full_priority };
            lanes.committed(batch, true);
            modes.push(lanes.mode());
        }
        use Mode::*;
        assert_eq!(
            modes,
            [
                PriorityFirst,
                PriorityFirst,
                NormalTurn,
                PriorityFirst,
                PriorityFirst,
                PriorityFirst,
                NormalTurn,
                PriorityFirst
            ]
        );
    }

    #[test]
    fn an_idle_poll_ends_the_priority_lanes() {
        let mut lanes = lanes();
        lanes.committed(&[record("req.priority")], true);
        lanes.idle();
        assert_eq!(lanes.mode(), Mode::Both);
    }

    #[test]
    fn without_priority_topics_nothing_changes() {
        let mut lanes = Lanes::new(Vec::new(), 10);
        lanes.committed(&[record("req.priority")], true);
        assert_eq!(lanes.mode(), Mode::Both);
    }
}
