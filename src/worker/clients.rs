//! A worker's Kafka clients: a group consumer subscribed to its models' request topics and a
//! producer. Exactly-once (the default): the producer is transactional with `transactional.id`
//! `<app>-<instance>-<worker>`, stable across restarts so that a restarted worker fences the
//! producer it left behind. At-least-once: an idempotent producer with the same client id.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};

use super::commit::Committer;
use super::watchdog::Heartbeat;
use crate::config::{Delivery, ServeConfig};
use crate::error::{Error, Result};
use crate::kafka::{self, TxnStep, WorkerConsumerContext, WorkerProducerContext};

pub type WorkerConsumer = BaseConsumer<WorkerConsumerContext>;
pub type WorkerProducer = BaseProducer<WorkerProducerContext>;

/// The consumer and producer of one worker.
pub struct Clients {
    pub consumer: WorkerConsumer,
    pub producer: WorkerProducer,
    /// `<app>-<instance>-<worker>` (the client id in at-least-once mode).
    pub transactional_id: String,
    /// How this worker commits a batch (its delivery mode).
    pub committer: Committer,
    /// The worker's marker of blocking calls, watched by the watchdog.
    pub heartbeat: std::sync::Arc<Heartbeat>,
}

/// The stable transactional id of a worker.
pub fn transactional_id(config: &ServeConfig, worker: usize) -> String {
    format!("{}-{}-{}", config.app, config.instance(), worker)
}

impl Clients {
    /// Creates both clients, initialises transactions (fencing any earlier producer with the same
    /// id and aborting its open transaction) and subscribes to `topics`.
    pub fn connect(
        config: &ServeConfig,
        worker: usize,
        topics: &[&str],
        heartbeat: &std::sync::Arc<Heartbeat>,
    ) -> Result<Self> {
        let txn_id = transactional_id(config, worker);
        let producer = create_producer(config, &txn_id, heartbeat)?;
        let mut consumer_config = kafka::consumer_config(&config.kafka, &config.group_id(), &txn_id)?;
        kafka::bound_consumer_prefetch(&mut consumer_config, config.batch.max_bytes);
        if !config.priority.models.is_empty() {
            kafka::quick_resume(&mut consumer_config);
        }
        let consumer: WorkerConsumer = consumer_config
            .create_with_context(WorkerConsumerContext::default())
            .map_err(|e| Error::kafka("creating the consumer", e))?;
        consumer.subscribe(topics).map_err(|e| Error::kafka(format!("subscribing to {topics:?}"), e))?;
        tracing::info!(worker, transactional_id = %txn_id, ?topics, "worker connected");
        let committer = Committer::for_config(config);
        Ok(Clients { consumer, producer, transactional_id: txn_id, committer, heartbeat: heartbeat.clone() })
    }
}

/// The worker's producer; exactly-once: transactional and initialised (which fences any earlier
/// producer with the same id and aborts its open transaction).
fn create_producer(config: &ServeConfig, txn_id: &str, heartbeat: &Heartbeat) -> Result<WorkerProducer> {
    let mut producer_config = match config.delivery {
        Delivery::ExactlyOnce => kafka::transactional_producer_config(&config.kafka, txn_id)?,
        Delivery::AtLeastOnce => kafka::idempotent_producer_config(&config.kafka, txn_id)?,
    };
    kafka::bound_producer_queue(&mut producer_config, config.batch.max_bytes);
    // Failed deliveries only: the delivery callback acts on failures alone (refusals, the failed
    // count), and commits wait on librdkafka's count of records in flight, which a success leaves
    // without a report to serve. One event fewer per result.
    producer_config.set("delivery.report.only.error", "true");
    let producer: WorkerProducer = producer_config
        .create_with_context(WorkerProducerContext::default())
        .map_err(|e| Error::kafka("creating the producer", e))?;
    if config.delivery == Delivery::ExactlyOnce {
        init_transactions(&producer, config.kafka.call_timeout, heartbeat)?;
    }
    Ok(producer)
}

impl Clients {
    /// Replaces a fenced or broken producer under the same transactional id and rewinds the
    /// consumer to the group's committed offsets (what the failed transaction held is redone).
    /// The consumer keeps its group membership: rebuilding it too would make the group rebalance,
    /// and a member dropped in the middle of a join can hold the next rebalance for up to
    /// `max.poll.interval.ms` (measured: minutes without results after a broker pause).
    pub fn renew_producer(&mut self, config: &ServeConfig) -> Result<()> {
        self.producer = create_producer(config, &self.transactional_id, &self.heartbeat)?;
        super::rewind::to_committed(&self.consumer, config.kafka.call_timeout)
    }
}

fn init_transactions(producer: &WorkerProducer, timeout: Duration, heartbeat: &Heartbeat) -> Result<()> {
    let mut attempt = 1;
    loop {
        let call = heartbeat.enter("init_transactions");
        let outcome = producer.init_transactions(timeout);
        drop(call);
        match outcome {
            Ok(()) => return Ok(()),
            Err(e) if kafka::classify(&e) == TxnStep::Retry && attempt < 5 => {
                tracing::warn!(error = %e, attempt, "init_transactions failed; retrying");
                attempt += 1;
            }
            Err(e) => {
                return Err(Error::kafka(
                    "initialising transactions (is the broker up, and does it allow transactions for this id?)",
                    e,
                ))
            }
        }
    }
}
