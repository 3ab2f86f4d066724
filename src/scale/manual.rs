//! The manual override: a replica count that wins over every policy while it is set, from a file
//! (`watch.override_file`) or from the latest record of a topic (`watch.override_topic`). The
//! scaler reads it every interval; `tidal scale override` writes it. Both sides live here so that
//! the format is written down once.

use std::path::Path;
use std::time::Duration;

use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::kafka;

/// The record or file content that clears an override.
pub const CLEAR: &str = "clear";

/// Follows an override topic from its beginning; the latest record wins.
pub struct OverrideReader {
    consumer: rdkafka::consumer::BaseConsumer,
    value: Option<u32>,
}

impl OverrideReader {
    pub fn new(kafka_config: &KafkaConfig, topic: &str) -> Result<Self> {
        use rdkafka::consumer::Consumer;
        let consumer: rdkafka::consumer::BaseConsumer =
            kafka::read_committed_consumer_config(kafka_config, "tidal-scale-override")?
                .create()
                .map_err(|e| Error::kafka("creating the override reader", e))?;
        let mut assignment = rdkafka::TopicPartitionList::new();
        for partition in super::run::require_topic(consumer.client(), topic, "override_topic", "tidal.scale.override")?
        {
            assignment
                .add_partition_offset(topic, partition, rdkafka::Offset::Beginning)
                .map_err(|e| Error::kafka(format!("assigning {topic}"), e))?;
        }
        consumer.assign(&assignment).map_err(|e| Error::kafka(format!("assigning {topic}"), e))?;
        Ok(OverrideReader { consumer, value: None })
    }

    /// Reads what arrived since the last call; returns the override in force.
    pub fn latest(&mut self) -> Option<u32> {
        use rdkafka::message::Message;
        while let Some(Ok(message)) = self.consumer.poll(Duration::from_millis(0)) {
            let text = message.payload().map(String::from_utf8_lossy).unwrap_or_default();
            self.value = parse_override(&text);
        }
        self.value
    }
}

/// `"6"` → 6; `"clear"`, empty or anything else → no override.
pub fn parse_override(text: &str) -> Option<u32> {
    text.trim().parse().ok()
}

/// The override file's replica count, if the file exists and holds a number.
pub fn read_file(path: Option<&Path>) -> Option<u32> {
    parse_override(&std::fs::read_to_string(path?).ok()?)
}

/// Sets (`Some(n)`) or clears (`None`) the override file; says what it did.
pub fn write_file(path: &Path, replicas: Option<u32>) -> Result<String> {
    let io = |source| Error::Io { path: path.into(), source };
    match replicas {
        Some(n) => {
            std::fs::write(path, format!("{n}\n")).map_err(io)?;
            Ok(format!("override set: {n} replicas until `tidal scale override --clear`"))
        }
        None => match std::fs::remove_file(path) {
            Ok(()) => Ok(format!("override cleared ({} removed)", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok("no override was set".into()),
            Err(e) => Err(io(e)),
        },
    }
}

/// The record that sets (`Some(n)`) or clears (`None`) the override on its topic.
pub fn topic_record(replicas: Option<u32>) -> String {
    replicas.map_or_else(|| CLEAR.to_string(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_override_file_wins_while_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("override");
        assert_eq!(read_file(Some(&path)), None);
        std::fs::write(&path, "4\n").unwrap();
        assert_eq!(read_file(Some(&path)), Some(4));
        std::fs::write(&path, "many").unwrap();
        assert_eq!(read_file(Some(&path)), None);
    }

    #[test]
    fn what_the_writer_writes_the_reader_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("override");
        write_file(&path, Some(6)).unwrap();
        assert_eq!(read_file(Some(&path)), Some(6));
        write_file(&path, None).unwrap();
        assert_eq!(read_file(Some(&path)), None);
        assert_eq!(write_file(&path, None).unwrap(), "no override was set");
        assert_eq!(parse_override(&topic_record(Some(3))), Some(3));
        assert_eq!(parse_override(&topic_record(None)), None);
    }
}
