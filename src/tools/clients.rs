//! Small clients for demos and operators: produce JSON lines as requests (at a chosen rate,
//! with progress), read results back with `read_committed` (once, or following the topic).

use std::io::BufRead;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::kafka;

/// How `produce_lines` paces and reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProduceOptions {
    /// Records per second; `None` sends as fast as the producer takes them.
    pub rate: Option<f64>,
    /// Lines expected (for a progress bar with an ETA); `None` shows a counter.
    pub total: Option<u64>,
    /// Draw a progress bar on stderr (only when stderr is a terminal).
    pub progress: bool,
}

impl ProduceOptions {
    /// Checks what needs no broker.
    pub fn validate(&self) -> Result<()> {
        match self.rate.filter(|r| !(r.is_finite() && *r > 0.0)) {
            Some(rate) => {
                Err(Error::Config(format!("--rate must be a positive number of records per second, got {rate}")))
            }
            None => Ok(()),
        }
    }
}

/// Produces each non-empty line of `input` as one record to `topic`; the key is the line's `id`
/// field when it has one. Returns the number of records written.
pub fn produce_lines(
    kafka_config: &KafkaConfig,
    topic: &str,
    input: impl BufRead,
    options: ProduceOptions,
) -> Result<usize> {
    options.validate()?;
    let producer: ThreadedProducer<DefaultProducerContext> =
        kafka::plain_producer_config(kafka_config)?.create().map_err(|e| Error::kafka("creating the producer", e))?;
    let progress = progress_bar(options);
    let started = Instant::now();
    let mut count = 0;
    for line in input.lines() {
        let line = line.map_err(|source| Error::Io { path: "<input>".into(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rate) = options.rate {
            let due = started + Duration::from_secs_f64(count as f64 / rate);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
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
        progress.inc(1);
    }
    producer.flush(Duration::from_secs(30)).map_err(|e| Error::kafka(format!("flushing records to {topic}"), e))?;
    progress.finish_and_clear();
    Ok(count)
}

/// A bar with ETA when the total is known, a counter with the rate otherwise; hidden unless asked
/// for (indicatif also hides it when stderr is not a terminal).
fn progress_bar(options: ProduceOptions) -> ProgressBar {
    if !options.progress {
        return ProgressBar::hidden();
    }
    match options.total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} records  {per_sec}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {pos} records  {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    }
}

/// Produces each image file as one raw record: the bytes as the value, `content-type:
/// image/png|jpeg` (from the file's signature) and `id: <file stem>` as headers, the stem as key.
pub fn produce_images(kafka_config: &KafkaConfig, topic: &str, paths: &[std::path::PathBuf]) -> Result<usize> {
    let producer: ThreadedProducer<DefaultProducerContext> =
        kafka::plain_producer_config(kafka_config)?.create().map_err(|e| Error::kafka("creating the producer", e))?;
    for path in paths {
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.clone(), source })?;
        let content_type = match crate::codec::image_content_type(&bytes) {
            Some(png_or_jpeg @ ("image/png" | "image/jpeg")) => png_or_jpeg,
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

/// When `consume` stops.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeUntil {
    /// After this many records.
    pub max: Option<usize>,
    /// After nothing arrived for this long; `None` follows the topic until interrupted.
    pub idle: Option<Duration>,
}

/// Reads `topic` from the beginning with `read_committed` and calls `emit` for each value, until
/// `until` says stop. Returns the number read.
pub fn consume(
    kafka_config: &KafkaConfig,
    topic: &str,
    until: ConsumeUntil,
    mut emit: impl FnMut(&str, Vec<(String, String)>),
) -> Result<usize> {
    let group = format!("tidal-reader-{}", std::process::id());
    let consumer: BaseConsumer = kafka::read_committed_consumer_config(kafka_config, &group)?
        .create()
        .map_err(|e| Error::kafka("creating the consumer", e))?;
    consumer.subscribe(&[topic]).map_err(|e| Error::kafka(format!("subscribing to {topic}"), e))?;
    let mut count = 0;
    let mut last = Instant::now();
    while until.max.is_none_or(|m| count < m) && until.idle.is_none_or(|idle| last.elapsed() < idle) {
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
