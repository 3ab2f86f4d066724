//! The worker clients' contexts. The consumer's counts rebalances (so the worker can drop a
//! half-collected batch whose partitions moved) and turns librdkafka statistics into the
//! per-partition lag gauge; the producer's counts failed deliveries and remembers which records
//! the broker refused for a reason of their own (too large, invalid), so that the worker can
//! dead-letter those requests instead of redoing their batch forever. Both throttle librdkafka's
//! connection failures (see `connection_errors`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::ProducerContext;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;

use super::connection_errors::ConnectionErrors;
use crate::metrics;

/// Context of a worker's consumer.
#[derive(Debug, Default)]
pub struct WorkerConsumerContext {
    rebalances: AtomicU64,
    connection_errors: ConnectionErrors,
}

impl WorkerConsumerContext {
    /// Number of rebalance events seen so far; a change means assignments may have moved.
    pub fn rebalance_count(&self) -> u64 {
        self.rebalances.load(Ordering::SeqCst)
    }
}

impl ClientContext for WorkerConsumerContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.connection_errors.error(&error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        self.connection_errors.log(level, facility, message);
    }

    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                // Partition -1 is librdkafka's internal "unassigned" bucket.
                if *partition < 0 || p.app_offset < 0 || p.ls_offset < 0 {
                    continue;
                }
                metrics::consumer_lag(topic, *partition, (p.ls_offset - p.app_offset).max(0));
            }
        }
    }
}

impl ConsumerContext for WorkerConsumerContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        let kind = match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                "assign"
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                "revoke"
            }
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "rebalance error");
                "error"
            }
        };
        metrics::rebalance(kind);
    }
}

/// A record the broker (or librdkafka's own size check) refused for a reason of its own: it
/// will be refused however often it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The record's position in the batch's list of records to write.
    pub index: usize,
    pub code: RDKafkaErrorCode,
}

/// Error codes that belong to the record (or the produce batch it was part of), not to the
/// cluster: retrying the same record cannot succeed.
pub fn refuses_the_record(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidTimestamp
    )
}

/// Context of a worker's producer: counts failed deliveries (an at-least-once worker checks them
/// before committing offsets; a transactional producer learns of them from the commit too) and
/// keeps the refusals of the current batch. Each record carries its index as delivery opaque.
#[derive(Debug, Default)]
pub struct WorkerProducerContext {
    failed: AtomicU64,
    refused: Mutex<Vec<Refusal>>,
    connection_errors: ConnectionErrors,
}

impl WorkerProducerContext {
    /// Deliveries that failed so far.
    pub fn failed_deliveries(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }

    /// Records a refusal (also called for a record that `send` refused before queueing it).
    pub fn refuse(&self, index: usize, code: RDKafkaErrorCode) {
        if let Ok(mut refused) = self.refused.lock() {
            if !refused.iter().any(|r| r.index == index) {
                refused.push(Refusal { index, code });
            }
        }
    }

    /// The refusals since the last call, in record order.
    pub fn take_refusals(&self) -> Vec<Refusal> {
        let mut refused = self.refused.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default();
        refused.sort_by_key(|r| r.index);
        refused
    }
}

impl ClientContext for WorkerProducerContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.connection_errors.error(&error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        self.connection_errors.log(level, facility, message);
    }
}

impl ProducerContext for WorkerProducerContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        if let Err((e, _)) = result {
            // Records purged by an abort are expected: the batch is redone.
            if e.rdkafka_error_code() == Some(RDKafkaErrorCode::PurgeQueue) {
                tracing::debug!(error = %e, "a record was purged by the abort");
            } else {
                tracing::warn!(error = %e, "a record was not delivered");
            }
            self.failed.fetch_add(1, Ordering::SeqCst);
            if let Some(code) = e.rdkafka_error_code().filter(|&c| refuses_the_record(c)) {
                self.refuse(index, code);
            }
        }
    }
}
