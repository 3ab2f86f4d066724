//! Observing a consumer group from the outside: per-partition log-end and committed offsets,
//! lag, members and who owns which partition. The reader joins no group (it only asks the
//! group coordinator for committed offsets), so watching never disturbs the processors.
//!
//! Committed offsets are read without the stability requirement of `read_committed`
//! (KIP-447): with it, the coordinator answers "unstable" while any transaction holds offsets
//! for the group, and under continuous exactly-once commits — when the scaler matters most — the
//! read would wait out its timeout. Without it the answer is the last committed offsets, which
//! is what lag means.
//!
//! Members are consumers; a replica (a `tidal serve` process) runs one consumer per worker.
//! Replicas are told apart by their members' client ids, `<app>-<instance>-<worker>`.
use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::kafka;
use crate::kafka::groups::describe_group;

/// One partition's offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionState {
    pub topic: String,
    pub partition: i32,
    /// Offset of the next record to be written (high watermark).
    pub end_offset: i64,
    /// Oldest offset still in the log.
    pub start_offset: i64,
    /// The group's committed offset, if it committed one.
    pub committed: Option<i64>,
    /// Client id of the member that owns the partition, if any.
    pub owner: Option<String>,
}

impl PartitionState {
    /// Records not yet processed: end − committed (end − start before the first commit).
    pub fn lag(&self) -> u64 {
        (self.end_offset - self.committed.unwrap_or(self.start_offset)).max(0) as u64
    }
}

/// Everything observed at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Seconds on the caller's clock.
    pub at: f64,
    pub partitions: Vec<PartitionState>,
    /// Consumers in the group (a replica with W workers counts W).
    pub consumers: u32,
    /// Replicas (processes) in the group: distinct client ids without their worker index.
    pub replicas: u32,
    /// Replicas with all their workers in the group (as many members as the fullest replica):
    /// what `/readyz` calls ready. A replica still joining is not counted.
    pub ready_replicas: u32,
    /// The group's state (`Stable`, `PreparingRebalance`, `Empty`, ...).
    pub group_state: String,
}

impl Snapshot {
    pub fn total_lag(&self) -> u64 {
        self.partitions.iter().map(PartitionState::lag).sum()
    }

    /// (ingest, processing) records per second since `earlier`: Δ end offsets and Δ committed
    /// offsets over Δt, summed over partitions present in both.
    pub fn rates_since(&self, earlier: &Snapshot) -> (f64, f64) {
        let dt = self.at - earlier.at;
        if dt <= 0.0 {
            return (0.0, 0.0);
        }
        let before: BTreeMap<(&str, i32), &PartitionState> =
            earlier.partitions.iter().map(|p| ((p.topic.as_str(), p.partition), p)).collect();
        let (mut ingested, mut processed) = (0i64, 0i64);
        for p in &self.partitions {
            if let Some(old) = before.get(&(p.topic.as_str(), p.partition)) {
                ingested += (p.end_offset - old.end_offset).max(0);
                let (now, then) = (p.committed.unwrap_or(p.start_offset), old.committed.unwrap_or(old.start_offset));
                processed += (now - then).max(0);
            }
        }
        (ingested as f64 / dt, processed as f64 / dt)
    }
}

/// Reads a group's state.
pub struct Observer {
    consumer: BaseConsumer,
    group: String,
    topics: Vec<String>,
    timeout: Duration,
}

impl Observer {
    /// `topics` empty → every topic whose name starts with `request_prefix`.
    pub fn new(kafka_config: &KafkaConfig, group: &str, topics: Vec<String>, request_prefix: &str) -> Result<Self> {
        let consumer: BaseConsumer = kafka::group_offsets_reader_config(kafka_config, group)?
            .create()
            .map_err(|e| Error::kafka("creating the observer", e))?;
        let timeout = Duration::from_secs(10);
        let topics = if topics.is_empty() {
            let metadata = consumer.fetch_metadata(None, timeout).map_err(|e| Error::kafka("listing topics", e))?;
            let mut found: Vec<String> = metadata
                .topics()
                .iter()
                .map(|t| t.name().to_string())
                .filter(|n| n.starts_with(request_prefix))
                .collect();
            found.sort();
            found
        } else {
            topics
        };
        if topics.is_empty() {
            return Err(Error::Config(format!(
                "no topics to watch: none start with '{request_prefix}'; create them (tidal topics apply) or name them"
            )));
        }
        Ok(Observer { consumer, group: group.to_string(), topics, timeout })
    }

    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// One snapshot, stamped `at`.
    pub fn snapshot(&self, at: f64) -> Result<Snapshot> {
        let mut partitions = Vec::new();
        let mut tpl = TopicPartitionList::new();
        for topic in &self.topics {
            let metadata = self
                .consumer
                .fetch_metadata(Some(topic), self.timeout)
                .map_err(|e| Error::kafka(format!("reading metadata of {topic}"), e))?;
            for t in metadata.topics() {
                for p in t.partitions() {
                    let (low, high) = self
                        .consumer
                        .fetch_watermarks(topic, p.id(), self.timeout)
                        .map_err(|e| Error::kafka(format!("reading offsets of {topic}/{}", p.id()), e))?;
                    partitions.push(PartitionState {
                        topic: topic.clone(),
                        partition: p.id(),
                        end_offset: high,
                        start_offset: low,
                        committed: None,
                        owner: None,
                    });
                    tpl.add_partition(topic, p.id());
                }
            }
        }
        let committed = self
            .consumer
            .committed_offsets(tpl, self.timeout)
            .map_err(|e| Error::kafka(format!("reading the committed offsets of group {}", self.group), e))?;
        for element in committed.elements() {
            if let Offset::Offset(offset) = element.offset() {
                if let Some(p) =
                    partitions.iter_mut().find(|p| p.topic == element.topic() && p.partition == element.partition())
                {
                    p.committed = Some(offset);
                }
            }
        }
        let group = describe_group(self.consumer.client(), &self.group, self.timeout)
            .map_err(|e| Error::kafka(format!("describing group {}", self.group), e))?;
        let consumers = group.members.len() as u32;
        let (replicas, ready_replicas) = count_replicas(group.members.iter().map(|m| m.client_id.as_str()));
        let group_state = group.state;
        for member in &group.members {
            for (topic, partition) in &member.assignment {
                if let Some(p) = partitions.iter_mut().find(|p| &p.topic == topic && p.partition == *partition) {
                    p.owner = Some(member.client_id.clone());
                }
            }
        }
        Ok(Snapshot { at, partitions, consumers, replicas, ready_replicas, group_state })
    }
}

/// (replicas, ready replicas) among members' client ids: a replica is ready when it has as many
/// members as the fullest one (every worker of a process joins; one still joining has fewer).
pub fn count_replicas<'a>(client_ids: impl Iterator<Item = &'a str>) -> (u32, u32) {
    let mut members: std::collections::BTreeMap<&str, u32> = std::collections::BTreeMap::new();
    for id in client_ids {
        *members.entry(replica_of(id)).or_default() += 1;
    }
    let fullest = members.values().copied().max().unwrap_or(0);
    (members.len() as u32, members.values().filter(|&&n| n == fullest).count() as u32)
}

/// The replica a member belongs to: its client id without the trailing `-<worker>` index
/// (`shop-pod-a-1` → `shop-pod-a`). Other clients' ids are taken whole.
pub fn replica_of(client_id: &str) -> &str {
    match client_id.rsplit_once('-') {
        Some((process, worker)) if !worker.is_empty() && worker.bytes().all(|b| b.is_ascii_digit()) => process,
        _ => client_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(partition: i32, end: i64, committed: Option<i64>) -> PartitionState {
        PartitionState { topic: "t".into(), partition, end_offset: end, start_offset: 0, committed, owner: None }
    }

    #[test]
    fn lag_and_rates() {
        let before = Snapshot {
            at: 10.0,
            partitions: vec![part(0, 100, Some(90)), part(1, 50, None)],
            consumers: 1,
            replicas: 1,
            ready_replicas: 1,
            group_state: "Stable".into(),
        };
        let after = Snapshot {
            at: 12.0,
            partitions: vec![part(0, 140, Some(130)), part(1, 70, Some(20))],
            consumers: 1,
            replicas: 1,
            ready_replicas: 1,
            group_state: "Stable".into(),
        };
        assert_eq!(before.total_lag(), 10 + 50);
        assert_eq!(after.total_lag(), 10 + 50);
        // Ingest: 40 + 20 over 2 s; processed: 40 + 20 over 2 s.
        assert_eq!(after.rates_since(&before), (30.0, 30.0));
        assert_eq!(before.rates_since(&after), (0.0, 0.0), "time going backwards gives nothing");
    }

    #[test]
    fn members_of_one_process_are_one_replica() {
        assert_eq!(replica_of("shop-pod-a-0"), "shop-pod-a");
        assert_eq!(replica_of("shop-pod-a-12"), "shop-pod-a");
        assert_eq!(replica_of("tidal-tidal-7d9f-abcde-1"), "tidal-tidal-7d9f-abcde");
        assert_eq!(replica_of("kcat"), "kcat", "not a worker: counted whole");
        assert_eq!(replica_of("reader-x"), "reader-x");
    }

    #[test]
    fn a_replica_still_joining_is_not_ready() {
        let ids = ["app-a-0", "app-a-1", "app-b-0", "app-b-1", "app-c-0"];
        assert_eq!(count_replicas(ids.into_iter()), (3, 2), "c has 1 of its 2 workers in the group");
        assert_eq!(count_replicas(["app-a-0"].into_iter()), (1, 1));
        assert_eq!(count_replicas(std::iter::empty()), (0, 0));
    }
}
