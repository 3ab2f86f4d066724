//! Priority lanes: a worker serves its models' priority request topics first.
//!
//! Why pause/resume rather than two consumers: the batch's offsets commit in the producer's
//! transaction with *one* consumer group's metadata, and one consumer keeps one assignment and
//! one fencing generation. So the worker reads both lanes with its one consumer and decides, per
//! batch, which partitions may deliver:
//!
//! - **both** (the usual state): nothing paused. A batch that brings a priority record, or a
//!   priority partition whose high watermark has moved past what the worker has read, switches
//!   to —
//! - **priority first**: the normal partitions are paused, so batches hold only priority
//!   requests, until a batch comes back short of full (the priority backlog is drained: back to
//!   *both*) or `normal_batch_every − 1` full priority batches in a row ran (then —)
//! - **normal turn**: one batch of normal requests (priority paused), then *priority first* again.
//!   Normal requests progress at one batch in `normal_batch_every` at worst; they never starve.
//!
//! Why the watermark as well as the batch: librdkafka prefetches into one queue in arrival order,
//! so priority records produced while a normal backlog sits prefetched (up to
//! `queued.max.messages.kbytes` per partition) would only come out behind all of it. The fetcher
//! keeps every partition's high watermark current, and it is read locally: when it says priority
//! records wait, pausing the normal partitions drops their prefetch and the priority records come
//! out next. Transaction markers also move the high watermark, so after a priority round that
//! found nothing, the watermark that stood counts as read (see [`Watermarks`]).
//!
//! Pausing never moves an offset: librdkafka drops what it had prefetched for a paused partition
//! and fetches again from the application's position on resume, so exactly-once is unchanged.
//! The mode changes only after a committed batch (a redone batch is redone in the same lanes).
//! librdkafka keeps a partition paused across a revoke and a later re-assignment, so after every
//! rebalance the whole state is applied again to the current assignment.

use std::collections::{HashMap, HashSet};

use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

use super::clients::WorkerConsumer;
use crate::error::{Error, Result};
use crate::kafka::cached_high_watermark;

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
    /// The last *priority first* ended without a priority record: what the high watermarks
    /// still show beyond the worker's position is not records (transaction markers).
    dry: bool,
    /// Idle polls in this turn (a resumed lane's fetch restarts after its partitions resume).
    turn_idle_polls: u32,
    /// What is applied to the consumer: the mode and the rebalance count it was applied at.
    applied: Option<(Mode, u64)>,
    watermarks: Watermarks,
}

/// Idle polls a lane's turn waits for records its high watermarks say are there:
/// librdkafka sends the resumed partitions' fetch once its fetch in flight returns, which takes up
/// to `fetch.wait.max.ms` (500 ms) when nothing else arrives.
const TURN_IDLE_POLLS: u32 = 5;

/// Per assigned priority partition, the offset up to which nothing is known to wait: the high
/// watermark when the partition was first seen (after each rebalance) and after a *dry* round,
/// or the worker's position if that is further.
#[derive(Debug, Default)]
struct Watermarks {
    read_up_to: HashMap<(String, i32), i64>,
}

impl Watermarks {
    /// `high`: the partition's cached high watermark; `position`: the next offset the worker
    /// reads, if known; `dry`: the last priority round found nothing, so all up to `high` counts
    /// as read. Returns whether priority records wait.
    fn waiting(&mut self, partition: (&str, i32), high: i64, position: Option<i64>, dry: bool) -> bool {
        let (topic, index) = partition;
        let read_up_to = self.read_up_to.entry((topic.to_string(), index)).or_insert(high);
        if dry {
            *read_up_to = high;
        }
        high > (*read_up_to).max(position.unwrap_or(i64::MIN))
    }

    fn forget(&mut self) {
        self.read_up_to.clear();
    }
}

/// One assigned partition of a lane as the consumer sees it locally: its next offset to read (if
/// known) and its cached high watermark (if fetched yet).
struct Seen {
    topic: String,
    partition: i32,
    position: Option<i64>,
    high: Option<i64>,
}

/// The assigned partitions whose topic `in_lane` accepts (read per batch: the others are skipped
/// before any copy or librdkafka call).
fn seen_partitions(consumer: &WorkerConsumer, in_lane: impl Fn(&str) -> bool) -> Result<Vec<Seen>> {
    let positions = consumer.position().map_err(|e| Error::kafka("reading the worker's positions", e))?;
    Ok(positions
        .elements()
        .iter()
        .filter(|element| in_lane(element.topic()))
        .map(|element| Seen {
            topic: element.topic().to_string(),
            partition: element.partition(),
            position: match element.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            },
            high: cached_high_watermark(consumer.client(), element.topic(), element.partition()),
        })
        .collect())
}

impl Lanes {
    pub fn new(priority_topics: impl IntoIterator<Item = String>, normal_batch_every: u32) -> Self {
        Lanes {
            priority_topics: priority_topics.into_iter().collect(),
            normal_batch_every: normal_batch_every.max(2),
            mode: Mode::Both,
            priority_run: 0,
            dry: false,
            turn_idle_polls: 0,
            applied: None,
            watermarks: Watermarks::default(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn is_priority(&self, topic: &str) -> bool {
        self.priority_topics.contains(topic)
    }

    /// Before collecting a batch: in *both*, looks whether priority records wait; then pauses
    /// and resumes partitions for the mode — only what changed, or everything after a rebalance
    /// (and the first time).
    pub fn apply(&mut self, consumer: &WorkerConsumer) -> Result<()> {
        if self.priority_topics.is_empty() {
            return Ok(());
        }
        let rebalances = consumer.context().rebalance_count();
        if self.applied.is_some_and(|(_, at)| at != rebalances) {
            self.watermarks.forget();
        }
        if self.mode == Mode::Both {
            self.watch(consumer)?;
        }
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

    /// In *both*: switches to *priority first* when a priority partition's high watermark says
    /// records wait beyond the worker's position.
    fn watch(&mut self, consumer: &WorkerConsumer) -> Result<()> {
        let dry = std::mem::take(&mut self.dry);
        let mut waiting = false;
        for seen in seen_partitions(consumer, |topic| self.is_priority(topic))? {
            if let Some(high) = seen.high {
                waiting |= self.watermarks.waiting((&seen.topic, seen.partition), high, seen.position, dry);
            }
        }
        if waiting {
            tracing::debug!("priority records wait beyond the worker's position: priority first");
            self.mode = Mode::PriorityFirst;
            self.priority_run = 0;
            self.turn_idle_polls = 0;
        }
        Ok(())
    }

    /// After a committed batch (`full`: it stopped at `max_batch` or `max_bytes`): the next mode.
    pub fn committed(&mut self, batch: &[OwnedMessage], full: bool) {
        if self.priority_topics.is_empty() {
            return;
        }
        let brought_priority = batch.iter().any(|m| self.is_priority(m.topic()));
        let before = self.mode;
        self.turn_idle_polls = 0;
        self.mode = match self.mode {
            Mode::Both if brought_priority => {
                self.priority_run = 0;
                Mode::PriorityFirst
            }
            Mode::Both => Mode::Both,
            Mode::PriorityFirst if !brought_priority => {
                self.dry = true;
                Mode::Both
            }
            Mode::PriorityFirst if !full => Mode::Both,
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
        tracing::debug!(?before, after = ?self.mode, records = batch.len(), brought_priority, full, "lanes after a batch");
    }

    /// Nothing arrived within the idle poll. The lane being served (priority in *priority
    /// first*, normal in a *normal turn*) keeps its turn while its high watermarks say records
    /// wait, for at most [`TURN_IDLE_POLLS`] idle polls (a resumed partition's fetch is on its
    /// way); then back to *both*. A *priority first* that ends this way was dry.
    pub fn idle(&mut self, consumer: &WorkerConsumer) -> Result<()> {
        let served_waiting = match self.mode {
            Mode::Both => false,
            Mode::PriorityFirst => self.lane_waiting(consumer, true)?,
            Mode::NormalTurn => self.lane_waiting(consumer, false)?,
        };
        self.after_idle_poll(served_waiting);
        Ok(())
    }

    /// Whether a partition of the priority (or normal) lane has records beyond the position.
    fn lane_waiting(&self, consumer: &WorkerConsumer, priority: bool) -> Result<bool> {
        Ok(seen_partitions(consumer, |topic| self.is_priority(topic) == priority)?
            .iter()
            .any(|seen| matches!((seen.position, seen.high), (Some(position), Some(high)) if high > position)))
    }

    fn after_idle_poll(&mut self, served_waiting: bool) {
        tracing::debug!(mode = ?self.mode, served_waiting, "lanes after an idle poll");
        if self.mode == Mode::Both {
            return;
        }
        self.turn_idle_polls += 1;
        if served_waiting && self.turn_idle_polls < TURN_IDLE_POLLS {
            return;
        }
        self.dry = self.mode == Mode::PriorityFirst;
        self.mode = Mode::Both;
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
    fn an_idle_poll_with_nothing_waiting_ends_the_priority_lanes_and_marks_the_round_dry() {
        let mut lanes = lanes();
        lanes.committed(&[record("req.priority")], true);
        lanes.after_idle_poll(true);
        assert_eq!(lanes.mode(), Mode::PriorityFirst, "the resumed priority partitions' fetch is on its way");
        lanes.after_idle_poll(false);
        assert_eq!(lanes.mode(), Mode::Both);
        assert!(lanes.dry, "what the watermarks still show is not records");
    }

    #[test]
    fn a_normal_turn_waits_a_few_idle_polls_for_normal_records_that_are_there() {
        let mut lanes = lanes(); // one normal batch in every 4
        let full_priority = [record("req.priority"), record("req.priority")];
        for _ in 0..4 {
            lanes.committed(&full_priority, true);
        }
        assert_eq!(lanes.mode(), Mode::NormalTurn);
        for _ in 1..TURN_IDLE_POLLS {
            lanes.after_idle_poll(true);
            assert_eq!(lanes.mode(), Mode::NormalTurn, "the resumed partitions' fetch is on its way");
        }
        lanes.after_idle_poll(true);
        assert_eq!(lanes.mode(), Mode::Both, "waited long enough: markers, not records");

        let mut lanes = super::Lanes::new(["req.priority".to_string()], 2);
        lanes.committed(&full_priority, true);
        lanes.committed(&full_priority, true);
        assert_eq!(lanes.mode(), Mode::NormalTurn);
        lanes.after_idle_poll(false);
        assert_eq!(lanes.mode(), Mode::Both, "nothing normal waits: the turn ends at once");
    }

    #[test]
    fn priority_records_wait_when_the_high_watermark_passes_what_was_read() {
        let mut marks = Watermarks::default();
        let p = ("req.priority", 0);
        assert!(!marks.waiting(p, 10, None, false), "first seen: what stood before counts as read");
        assert!(marks.waiting(p, 13, None, false), "three records arrived since");
        assert!(marks.waiting(p, 13, Some(12), false), "one of them is still unread");
        assert!(!marks.waiting(p, 13, Some(13), false), "all read");
        assert!(marks.waiting(p, 15, Some(14), false), "a transaction marker or a record beyond");
        assert!(!marks.waiting(p, 15, Some(14), true), "a dry round: the marker counts as read");
        assert!(marks.waiting(p, 16, Some(14), false));
        marks.forget();
        assert!(!marks.waiting(p, 16, None, false), "after a rebalance, seen afresh");
    }

    #[test]
    fn without_priority_topics_nothing_changes() {
        let mut lanes = Lanes::new(Vec::new(), 10);
        lanes.committed(&[record("req.priority")], true);
        assert_eq!(lanes.mode(), Mode::Both);
    }
}
