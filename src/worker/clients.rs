//! A worker's Kafka clients: a group consumer subscribed to its models' request topics and a
//! transactional producer whose `transactional.id` is `<app>-<instance>-<worker>`, stable across
//! restarts so that a restarted worker fences the producer it left behind.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};

use crate::config::ServeConfig;
use crate::error::{Error, Result};
use crate::kafka::{self, TxnStep, WorkerConsumerContext};

pub type WorkerConsumer = BaseConsumer<WorkerConsumerContext>;

/// The consumer and producer of one worker.
pub struct Clients {
    pub consumer: WorkerConsumer,
    pub producer: BaseProducer,
    /// `<app>-<instance>-<worker>`.
    pub transactional_id: String,
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
        let producer: BaseProducer = kafka::transactional_producer_config(&config.kafka, &txn_id)?
            .create()
            .map_err(|e| Error::kafka("creating the transactional producer", e))?;
        init_transactions(&producer, config.kafka.call_timeout)?;
        let consumer: WorkerConsumer = kafka::consumer_config(&config.kafka, &config.group_id(), &txn_id)?
            .create_with_context(WorkerConsumerContext::default())
            .map_err(|e| Error::kafka("creating the consumer", e))?;
        consumer.subscribe(topics).map_err(|e| Error::kafka(format!("subscribing to {topics:?}"), e))?;
        tracing::info!(worker, transactional_id = %txn_id, ?topics, "worker connected");
        Ok(Clients { consumer, producer, transactional_id: txn_id })
    }
}

fn init_transactions(producer: &BaseProducer, timeout: Duration) -> Result<()> {
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
