//! A worker's Kafka clients: a group consumer subscribed to its models' request topics and a
//! producer. Exactly-once (the default): the producer is transactional with `transactional.id`
//! `<app>-<instance>-<worker>`, stable across restarts so that a restarted worker fences the
//! producer it left behind. At-least-once: an idempotent producer with the same client id.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};

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
    pub delivery: Delivery,
}

/// The stable transactional id of a worker.
pub fn transactional_id(config: &ServeConfig, worker: usize) -> String {
    format!("{}-{}-{}", config.app, config.instance(), worker)
}

impl Clients {
    /// Creates both clients, initialises transactions (fencing any earlier producer with the same
    /// id and aborting its open transaction) and subscribes to `topics`.
    pub fn connect(config: &ServeConfig, worker: usize, topics: &[&str]) -> Result<Self> {
        let txn_id = transactional_id(config, worker);
        let delivery = config.delivery;
        let producer_config = match delivery {
            Delivery::ExactlyOnce => kafka::transactional_producer_config(&config.kafka, &txn_id)?,
            Delivery::AtLeastOnce => kafka::idempotent_producer_config(&config.kafka, &txn_id)?,
        };
        let producer: WorkerProducer = producer_config
            .create_with_context(WorkerProducerContext::default())
            .map_err(|e| Error::kafka("creating the producer", e))?;
        if delivery == Delivery::ExactlyOnce {
            init_transactions(&producer, config.kafka.call_timeout)?;
        }
        let consumer: WorkerConsumer = kafka::consumer_config(&config.kafka, &config.group_id(), &txn_id)?
            .create_with_context(WorkerConsumerContext::default())
            .map_err(|e| Error::kafka("creating the consumer", e))?;
        consumer.subscribe(topics).map_err(|e| Error::kafka(format!("subscribing to {topics:?}"), e))?;
        tracing::info!(worker, transactional_id = %txn_id, ?topics, "worker connected");
        Ok(Clients { consumer, producer, transactional_id: txn_id, delivery })
    }
}

fn init_transactions(producer: &WorkerProducer, timeout: Duration) -> Result<()> {
    let mut attempt = 1;
    loop {
        match producer.init_transactions(timeout) {
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
