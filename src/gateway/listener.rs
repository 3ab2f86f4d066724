//! The gateway's reader of answers: every partition of the result topics and of the dead-letter
//! topic, `read_committed`, assigned (no consumer group, so it never disturbs the processors),
//! starting at the end offsets read *before* the gateway accepts its first request — so no answer
//! to one of its requests can be skipped. Partitions added later are picked up from their start.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::waiters::{Answer, Waiters};
use crate::codec::dead_letter::{HEADER_KIND, HEADER_REASON};
use crate::codec::HEADER_ID;
use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::kafka;

/// How often new partitions are looked for.
const REFRESH: Duration = Duration::from_secs(10);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// A running listener; stops when dropped.
pub struct Listener {
    stop: Arc<AtomicBool>,
    alive: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    /// Assigns every partition of `topics` at its current end, then reads on a thread of its own.
    pub fn start(kafka_config: &KafkaConfig, topics: Vec<String>, waiters: Arc<Waiters>) -> Result<Self> {
        let group = format!("tidal-gateway-{}", std::process::id());
        let consumer: BaseConsumer = kafka::read_committed_consumer_config(kafka_config, &group)?
            .create()
            .map_err(|e| Error::kafka("creating the gateway's result reader", e))?;
        let mut assigned = HashSet::new();
        assign_new_partitions(&consumer, &topics, &mut assigned, Start::End)?;
        let stop = Arc::new(AtomicBool::new(false));
        let alive = Arc::new(AtomicBool::new(true));
        let thread = std::thread::Builder::new()
            .name("gateway-listener".into())
            .spawn({
                let (stop, alive) = (stop.clone(), alive.clone());
                move || {
                    listen(&consumer, &topics, &mut assigned, &waiters, &stop);
                    alive.store(false, Ordering::Relaxed);
                }
            })
            .map_err(|e| Error::Gateway(format!("cannot start the result listener's thread: {e}")))?;
        Ok(Listener { stop, alive, thread: Some(thread) })
    }

    /// False once the reader thread ended.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Clone, Copy)]
enum Start {
    /// The partition's current end (partitions present at start-up).
    End,
    /// The partition's beginning (partitions created while running).
    Beginning,
}

fn listen(
    consumer: &BaseConsumer,
    topics: &[String],
    assigned: &mut HashSet<(String, i32)>,
    waiters: &Waiters,
    stop: &AtomicBool,
) {
    let mut refreshed = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                if let Some((id, answer)) = answer_of(&message) {
                    waiters.deliver(&id, answer);
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "gateway reader: consumer error (librdkafka retries)"),
            None => {}
        }
        if refreshed.elapsed() >= REFRESH {
            refreshed = Instant::now();
            if let Err(e) = assign_new_partitions(consumer, topics, assigned, Start::Beginning) {
                tracing::warn!(error = %e, "gateway reader: looking for new partitions failed; retrying later");
            }
        }
    }
}

/// The id and answer a record carries: a dead letter (it has the error headers; the id is the
/// original record's key, which the gateway sets to the id) or a result (JSON with an `id`).
fn answer_of(message: &impl Message) -> Option<(String, Answer)> {
    let header = |name: &str| {
        message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
        })
    };
    if let Some(kind) = header(HEADER_KIND) {
        let key = message.key().map(|k| String::from_utf8_lossy(k).into_owned());
        let id = key.or_else(|| header(HEADER_ID))?;
        return Some((id, Answer::DeadLetter { kind, reason: header(HEADER_REASON).unwrap_or_default() }));
    }
    let value: serde_json::Value = serde_json::from_slice(message.payload()?).ok()?;
    let id = value.get("id")?.as_str()?.to_string();
    Some((id, Answer::Result(value)))
}

fn assign_new_partitions(
    consumer: &BaseConsumer,
    topics: &[String],
    assigned: &mut HashSet<(String, i32)>,
    start: Start,
) -> Result<()> {
    let mut new = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(|e| Error::kafka(format!("reading the metadata of {topic}"), e))?;
        let partitions = metadata.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
        if partitions == 0 {
            return Err(Error::Config(format!(
                "topic {topic} does not exist: create the topics first (`tidal topics apply`)"
            )));
        }
        for partition in 0..partitions as i32 {
            if assigned.contains(&(topic.clone(), partition)) {
                continue;
            }
            let offset = match start {
                Start::Beginning => Offset::Beginning,
                Start::End => Offset::Offset(end_offset(consumer, topic, partition)?),
            };
            new.add_partition_offset(topic, partition, offset)
                .map_err(|e| Error::kafka(format!("assigning {topic}/{partition}"), e))?;
            assigned.insert((topic.clone(), partition));
        }
    }
    if new.count() > 0 {
        consumer.incremental_assign(&new).map_err(|e| Error::kafka("assigning the result partitions", e))?;
        tracing::debug!(partitions = new.count(), "gateway reader: partitions assigned");
    }
    Ok(())
}

/// The partition's end offset. Retried for a while: a just-created topic has no leader yet
/// (`NotLeaderForPartition`), and the gateway often starts together with the topics.
fn end_offset(consumer: &BaseConsumer, topic: &str, partition: i32) -> Result<i64> {
    let started = Instant::now();
    loop {
        match consumer.fetch_watermarks(topic, partition, METADATA_TIMEOUT) {
            Ok((_, high)) => return Ok(high),
            Err(e) if started.elapsed() < METADATA_TIMEOUT * 3 => {
                tracing::debug!(error = %e, topic, partition, "end offset not available yet; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(Error::kafka(format!("reading the end offset of {topic}/{partition}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    fn message(key: Option<&str>, value: &str, headers: &[(&str, &str)]) -> OwnedMessage {
        let mut owned = OwnedHeaders::new();
        for (k, v) in headers {
            owned = owned.insert(Header { key: k, value: Some(*v) });
        }
        OwnedMessage::new(
            Some(value.as_bytes().to_vec()),
            key.map(|k| k.as_bytes().to_vec()),
            "t".into(),
            Timestamp::NotAvailable,
            0,
            0,
            (!headers.is_empty()).then_some(owned),
        )
    }

    #[test]
    fn a_result_is_matched_by_its_id_field() {
        let (id, answer) = answer_of(&message(Some("k"), r#"{"id":"r1","label":"positive"}"#, &[])).unwrap();
        assert_eq!(id, "r1");
        assert_eq!(answer, Answer::Result(serde_json::json!({"id": "r1", "label": "positive"})));
    }

    #[test]
    fn a_dead_letter_is_matched_by_its_key_and_carries_the_reason() {
        let headers = [(HEADER_KIND, "invalid_json"), (HEADER_REASON, "value is not JSON")];
        let (id, answer) = answer_of(&message(Some("r2"), "{oops", &headers)).unwrap();
        assert_eq!(id, "r2");
        assert_eq!(answer, Answer::DeadLetter { kind: "invalid_json".into(), reason: "value is not JSON".into() });
    }

    #[test]
    fn records_without_an_id_are_ignored() {
        assert!(answer_of(&message(None, r#"{"label":"positive"}"#, &[])).is_none());
        assert!(answer_of(&message(None, "not json", &[])).is_none());
    }
}
