//! Load through the broker: topics per target, requests produced as a backlog or open loop at a
//! fixed rate (each request's scheduled send time kept, so queueing behind a slow target counts
//! in its latency), and a `read_committed` reader that timestamps every answer.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::corpus::{self, Corpus};
use super::cpu::CpuMeter;
use super::measure::{self, RunResult};
use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::kafka;

/// Creates `names` with `partitions` each (replication 1: the local broker).
pub fn create_topics(brokers: &KafkaConfig, names: &[&str], partitions: i32) -> Result<()> {
    let admin = kafka::admin_client(brokers)?;
    let topics: Vec<NewTopic<'_>> =
        names.iter().map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1))).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Bench(format!("cannot start a Tokio runtime: {e}")))?;
    let results = runtime
        .block_on(admin.create_topics(&topics, &AdminOptions::new()))
        .map_err(|e| Error::kafka("creating the benchmark topics", e))?;
    for result in results {
        if let Err((topic, code)) = result {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                return Err(Error::kafka(format!("creating topic {topic}"), KafkaError::AdminOp(code)));
            }
        }
    }
    Ok(())
}

/// Produces requests to one topic.
pub struct RequestProducer {
    producer: BaseProducer,
    topic: String,
    corpus: Corpus,
}

impl RequestProducer {
    pub fn new(brokers: &KafkaConfig, topic: &str, corpus: Corpus) -> Result<Self> {
        let producer = kafka::plain_producer_config(brokers)?
            .create()
            .map_err(|e| Error::kafka("creating the benchmark producer", e))?;
        Ok(RequestProducer { producer, topic: topic.to_string(), corpus })
    }

    fn send(&self, seq: u64) -> Result<()> {
        let (key, value) = (format!("r{seq}"), self.corpus.request(seq));
        let mut record = BaseRecord::to(&self.topic).key(&key).payload(&value);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    self.producer.poll(Duration::from_millis(5));
                    record = back;
                }
                Err((e, _)) => return Err(Error::kafka(format!("producing to {}", self.topic), e)),
            }
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    /// Produces `seqs` as fast as the broker takes them and waits until all are written.
    pub fn backlog(&self, seqs: Range<u64>, progress: &ProgressBar) -> Result<()> {
        for seq in seqs {
            self.send(seq)?;
            progress.inc(1);
        }
        self.producer.flush(Duration::from_secs(60)).map_err(|e| Error::kafka("flushing the backlog", e))
    }

    /// Produces `seqs` at `rate` per second (open loop: the schedule never waits for answers) and
    /// returns each request's scheduled send time.
    pub fn open_loop(&self, seqs: Range<u64>, rate: f64, progress: &ProgressBar) -> Result<Vec<Instant>> {
        let start = Instant::now();
        let mut scheduled = Vec::with_capacity((seqs.end - seqs.start) as usize);
        for (i, seq) in seqs.enumerate() {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            while Instant::now() < due {
                self.producer.poll(due.saturating_duration_since(Instant::now()).min(Duration::from_millis(1)));
            }
            self.send(seq)?;
            scheduled.push(due);
            progress.inc(1);
        }
        self.producer.flush(Duration::from_secs(60)).map_err(|e| Error::kafka("flushing the requests", e))?;
        Ok(scheduled)
    }
}

/// Answers seen for a range of requests.
#[derive(Debug, Default)]
pub struct Arrivals {
    /// First arrival of each answered request.
    pub at: HashMap<u64, Instant>,
    pub duplicates: u64,
    /// Answers whose status is not `ok`, or from another model version (not predictions of this model).
    pub errors: u64,
}

impl Arrivals {
    /// Backlog result: the drain rate from the first to the last answer.
    pub fn backlog_result(&self, name: &str, requests: u64) -> RunResult {
        let origin = self.at.values().min().copied().unwrap_or_else(Instant::now);
        let offsets: Vec<f64> = self.at.values().map(|t| t.duration_since(origin).as_secs_f64()).collect();
        RunResult {
            name: name.to_string(),
            requests,
            results: self.at.len() as u64,
            duplicates: self.duplicates,
            errors: self.errors,
            throughput: measure::drain_rate(&offsets),
            per_second: measure::per_second(&offsets),
            ..RunResult::default()
        }
    }

    /// CPU microseconds per answer that `meter` saw over the window the drain rate spans.
    pub fn cpu_per_answer(&self, meter: &CpuMeter) -> Option<f64> {
        let origin = self.at.values().min().copied()?;
        let offsets: Vec<f64> = self.at.values().map(|t| t.duration_since(origin).as_secs_f64()).collect();
        let (first, last, counted) = measure::drain_window(&offsets)?;
        let at = |offset: f64| origin + Duration::from_secs_f64(offset);
        let seconds = meter.seconds_between(at(first), at(last))?;
        Some(seconds * 1e6 / counted as f64)
    }

    /// Open-loop result: latency from each request's scheduled send time to its answer.
    pub fn open_loop_result(&self, name: &str, first_seq: u64, scheduled: &[Instant], rate: f64) -> RunResult {
        let origin = scheduled.first().copied().unwrap_or_else(Instant::now);
        let mut latencies = Vec::with_capacity(self.at.len());
        let mut offsets = Vec::with_capacity(self.at.len());
        for (seq, arrived) in &self.at {
            if let Some(sent) = seq.checked_sub(first_seq).and_then(|i| scheduled.get(i as usize)) {
                latencies.push(arrived.saturating_duration_since(*sent).as_secs_f64() * 1e3);
                offsets.push(arrived.saturating_duration_since(origin).as_secs_f64());
            }
        }
        let span = offsets.iter().fold(0.0f64, |a, &b| a.max(b));
        RunResult {
            name: name.to_string(),
            offered: Some(rate),
            requests: scheduled.len() as u64,
            results: self.at.len() as u64,
            duplicates: self.duplicates,
            throughput: if span > 0.0 { offsets.len() as f64 / span } else { 0.0 },
            latency_ms: measure::percentiles(latencies),
            per_second: measure::per_second(&offsets),
            ..RunResult::default()
        }
    }
}

/// Reads a results topic with `read_committed` on its own thread, timestamping each answer.
pub struct ResultReader {
    arrivals: Receiver<(u64, Answer)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Answers that arrived for requests outside the range being gathered (late or repeated).
    stray: HashMap<u64, Answer>,
}

impl ResultReader {
    /// Reads every partition of `topic` from its beginning. Partitions are assigned, not
    /// subscribed, so the reader is live at once (a group join would take seconds and make the
    /// first answers look late), and fetches return within 5 ms of a commit.
    /// Answers count as errors unless their status is `ok` and they come from `model_version`.
    pub fn start(
        brokers: &KafkaConfig,
        topic: &str,
        partitions: i32,
        group: &str,
        model_version: &str,
    ) -> Result<Self> {
        let consumer: BaseConsumer = kafka::read_committed_consumer_config(brokers, group)?
            .set("fetch.wait.max.ms", "5")
            .create()
            .map_err(|e| Error::kafka("creating the benchmark reader", e))?;
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(|e| Error::kafka(format!("assigning {topic}[{partition}]"), e))?;
        }
        consumer.assign(&assignment).map_err(|e| Error::kafka(format!("assigning {topic}"), e))?;
        let (sender, arrivals) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let model_version = model_version.to_string();
        let thread = thread::Builder::new()
            .name("bench-reader".into())
            .spawn(move || {
                while !stopping.load(Ordering::SeqCst) {
                    if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
                        let now = Instant::now();
                        if let Some((seq, ok)) =
                            message.payload().and_then(|v| corpus::answer_of_result(v, &model_version))
                        {
                            if sender.send((seq, Answer { at: now, ok })).is_err() {
                                return;
                            }
                        }
                    }
                }
            })
            .map_err(|e| Error::Bench(format!("cannot start the reader thread: {e}")))?;
        Ok(ResultReader { arrivals, stop, thread: Some(thread), stray: HashMap::new() })
    }

    /// Waits until every request in `seqs` was answered, or `deadline`.
    pub fn gather(&mut self, seqs: Range<u64>, deadline: Instant, progress: &ProgressBar) -> Arrivals {
        let mut arrivals = Arrivals::default();
        for seq in seqs.clone() {
            if let Some(answer) = self.stray.remove(&seq) {
                arrivals.errors += u64::from(!answer.ok);
                arrivals.at.insert(seq, answer.at);
            }
        }
        progress.set_position(arrivals.at.len() as u64);
        let wanted = seqs.end - seqs.start;
        while (arrivals.at.len() as u64) < wanted {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { break };
            let Ok((seq, answer)) = self.arrivals.recv_timeout(left.min(Duration::from_millis(200))) else { continue };
            if !seqs.contains(&seq) {
                self.stray.entry(seq).or_insert(answer);
                continue;
            }
            match arrivals.at.entry(seq) {
                Entry::Occupied(_) => arrivals.duplicates += 1,
                Entry::Vacant(slot) => {
                    slot.insert(answer.at);
                    arrivals.errors += u64::from(!answer.ok);
                    progress.inc(1);
                }
            }
        }
        // Anything already delivered beyond the last answer counts too (late duplicates).
        while let Ok((seq, answer)) = self.arrivals.try_recv() {
            if seqs.contains(&seq) {
                arrivals.duplicates += 1;
            } else {
                self.stray.entry(seq).or_insert(answer);
            }
        }
        arrivals
    }
}

/// One answer as the reader saw it.
#[derive(Debug, Clone, Copy)]
struct Answer {
    at: Instant,
    ok: bool,
}

impl Drop for ResultReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
