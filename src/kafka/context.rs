//! The worker clients' contexts. The consumer's counts rebalances (so the worker can drop a
//! half-collected batch whose partitions moved) and turns librdkafka statistics into the
//! per-partition lag gauge; the producer's counts failed deliveries.

use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::ProducerContext;
use rdkafka::statistics::Statistics;

use crate::metrics;

/// Context of a worker's consumer.
#[derive(Debug, Default)]
pub struct WorkerConsumerContext {
    rebalances: AtomicU64,
}

impl WorkerConsumerContext {
    /// Number of rebalance events seen so far; a change means assignments may have moved.
    pub fn rebalance_count(&self) -> u64 {
        self.rebalances.load(Ordering::SeqCst)
    }
}

impl ClientContext for WorkerConsumerContext {
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

/// Context of a worker's producer: counts failed deliveries, which an at-least-once worker checks
/// before committing offsets (a transactional producer learns of them from the commit instead).
#[derive(Debug, Default)]
pub struct WorkerProducerContext {
    failed: AtomicU64,
}

impl WorkerProducerContext {
    /// Deliveries that failed so far.
    pub fn failed_deliveries(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }
}

impl ClientContext for WorkerProducerContext {}

impl ProducerContext for WorkerProducerContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            tracing::warn!(error = %e, "a record was not delivered");
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
    }
}
