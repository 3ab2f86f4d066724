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
    error.rdkafka_error_code().is_some_and(is_fencing_code)
}

/// True for the codes that mean "fenced". `send()` on a producer in a fatal state reports only
/// the generic `Fatal` code: pass the producer's recorded fatal error (`client().fatal_error()`)
/// to [`fatal_is_fence`] to learn whether it was a fence.
fn is_fencing_code(code: RDKafkaErrorCode) -> bool {
    matches!(code, RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
}

/// Whether a failed call was a fence, also when it only says `Fatal` (as `send()` does) and the
/// cause is the producer's recorded fatal error.
pub fn fatal_is_fence(error: &KafkaError, recorded: Option<RDKafkaErrorCode>) -> bool {
    is_fenced(error)
        || (error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) && recorded.is_some_and(is_fencing_code))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fatal_send_is_a_fence_when_the_recorded_fatal_error_is_one() {
        let send_error = KafkaError::MessageProduction(RDKafkaErrorCode::Fatal);
        assert!(!is_fenced(&send_error), "the generic code alone does not say");
        assert!(fatal_is_fence(&send_error, Some(RDKafkaErrorCode::ProducerFenced)));
        assert!(!fatal_is_fence(&send_error, Some(RDKafkaErrorCode::OutOfOrderSequenceNumber)));
        assert!(!fatal_is_fence(&send_error, None));
        let fenced = KafkaError::MessageProduction(RDKafkaErrorCode::InvalidProducerEpoch);
        assert!(fatal_is_fence(&fenced, None));
        assert_eq!(classify(&send_error), TxnStep::Abort, "Fatal from send() alone is classified by the caller");
    }
}
