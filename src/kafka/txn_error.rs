//! The error classes of librdkafka's transactional producer, and what a worker does for each.

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// What to do after a transactional call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnStep {
    /// Call again with the same arguments.
    Retry,
    /// Abort the transaction, rewind the consumer to the batch's first offsets, redo the batch.
    Abort,
    /// The producer is unusable (e.g. fenced by a newer instance): rebuild consumer and producer.
    Fatal,
}

/// True when the producer was fenced: a producer with the same `transactional.id` initialised
/// after it (a second process with the same instance), or its transaction outlived the
/// transaction timeout and the coordinator bumped the epoch.
pub fn is_fenced(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
    )
}

/// Classifies an error from a transactional call or from `send`.
pub fn classify(error: &KafkaError) -> TxnStep {
    match error {
        KafkaError::Transaction(e) if e.is_fatal() => TxnStep::Fatal,
        KafkaError::Transaction(e) if e.txn_requires_abort() => TxnStep::Abort,
        KafkaError::Transaction(e) if e.is_retriable() => TxnStep::Retry,
        _ if is_fenced(error) => TxnStep::Fatal,
        _ => TxnStep::Abort,
    }
}
