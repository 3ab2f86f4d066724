//! Small clients for demos and operators: produce JSON lines as requests, read results back
//! with `read_committed`.

use std::io::BufRead;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::kafka;

/// Produces each non-empty line of `input` as one record to `topic`; the key is the line's `id`
/// field when it has one. Returns the number of records written.
pub fn produce_lines(kafka_config: &KafkaConfig, topic: &str, input: impl BufRead) -> Result<usize> {
    let producer: ThreadedProducer<DefaultProducerContext> =
        kafka::plain_producer_config(kafka_config)?.create().map_err(|e| Error::kafka("creating the producer", e))?;
    let mut count = 0;
    for line in input.lines() {
        let line = line.map_err(|source| Error::Io { path: "<input>".into(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        let key = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v.get("id").and_then(|id| id.as_str().map(str::to_string)));
        let mut record: BaseRecord<'_, str, str> = BaseRecord::to(topic).payload(line.as_str());
        if let Some(key) = key.as_deref() {
            record = record.key(key);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, returned)) if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) => {
                    std::thread::sleep(Duration::from_millis(10));
                    record = returned;
                }
                Err((e, _)) => return Err(Error::kafka(format!("producing to {topic}"), e)),
            }
        }
        count += 1;
    }
    producer.flush(Duration::from_secs(30)).map_err(|e| Error::kafka(format!("flushing records to {topic}"), e))?;
    Ok(count)
}

/// Produces each image file as one raw record: the bytes as the value, `content-type:
/// image/png|jpeg` (from the file's signature) and `id: <file stem>` as headers, the stem as key.
pub fn produce_images(kafka_config: &KafkaConfig, topic: &str, paths: &[std::path::PathBuf]) -> Result<usize> {
    let producer: ThreadedProducer<DefaultProducerContext> =
        kafka::plain_producer_config(kafka_config)?.create().map_err(|e| Error::kafka("creating the producer", e))?;
    for path in paths {
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.clone(), source })?;
        let content_type = match image::guess_format(&bytes) {
            Ok(image::ImageFormat::Png) => "image/png",
            Ok(image::ImageFormat::Jpeg) => "image/jpeg",
            _ => return Err(Error::Config(format!("{} is not a PNG or JPEG file", path.display()))),
        };
        let id = path.file_stem().map_or_else(|| "image".to_string(), |s| s.to_string_lossy().into_owned());
        let headers = rdkafka::message::OwnedHeaders::new()
            .insert(rdkafka::message::Header { key: crate::codec::HEADER_CONTENT_TYPE, value: Some(content_type) })
            .insert(rdkafka::message::Header { key: crate::codec::HEADER_ID, value: Some(id.as_str()) });
        let record: BaseRecord<'_, str, [u8]> =
            BaseRecord::to(topic).key(id.as_str()).payload(bytes.as_slice()).headers(headers);
        producer.send(record).map_err(|(e, _)| Error::kafka(format!("producing {} to {topic}", path.display()), e))?;
    }
    producer.flush(Duration::from_secs(30)).map_err(|e| Error::kafka(format!("flushing records to {topic}"), e))?;
    Ok(paths.len())
}

/// Reads `topic` from the beginning with `read_committed` and calls `emit` for each value, until
/// `max` records were read or nothing arrived for `idle`. Returns the number read.
pub fn consume(
    kafka_config: &KafkaConfig,
    topic: &str,
    max: Option<usize>,
    idle: Duration,
    mut emit: impl FnMut(&str, Vec<(String, String)>),
) -> Result<usize> {
    let group = format!("tidal-reader-{}", std::process::id());
    let consumer: BaseConsumer = kafka::read_committed_consumer_config(kafka_config, &group)?
        .create()
        .map_err(|e| Error::kafka("creating the consumer", e))?;
    consumer.subscribe(&[topic]).map_err(|e| Error::kafka(format!("subscribing to {topic}"), e))?;
    let mut count = 0;
    let mut last = Instant::now();
    while max.is_none_or(|m| count < m) && last.elapsed() < idle {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
                let headers = message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                emit(&value, headers);
                count += 1;
                last = Instant::now();
            }
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            None => {}
        }
    }
    Ok(count)
}
