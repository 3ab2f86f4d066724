//! What this client's principal may do, as the brokers' authorizer answers it: the operations it
//! is granted on each topic and on the consumer group (Kafka's `include_authorized_operations`
//! on DescribeTopics and DescribeConsumerGroups). `tidal doctor` compares them with what
//! `serve` needs, so that a missing ACL is named before a processor waits on it. Without an
//! authorizer the brokers grant every operation. (rdkafka has no safe wrapper for these calls;
//! the shared FFI plumbing is in `ffi`.)

use std::collections::BTreeMap;
use std::ffi::{c_char, CString};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::ffi::{admin_call, describe_consumer_group, text};

/// Operations granted on one resource (`READ`, `WRITE`, `DESCRIBE`, ... as Kafka names them), or
/// why the brokers would not describe it (e.g. `TopicAuthorizationFailed`, `GroupIdNotFound`).
pub type Granted = Result<Vec<String>, RDKafkaErrorCode>;

/// The operations granted on each of `topics`.
pub fn topic_operations<C: ClientContext>(
    client: &Client<C>,
    topics: &[String],
    timeout: Duration,
) -> Result<BTreeMap<String, Granted>, KafkaError> {
    let names: Vec<CString> = topics
        .iter()
        .map(|t| CString::new(t.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| KafkaError::AdminOpCreation("a topic name contains a NUL byte".into()))?;
    let mut pointers: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
    // SAFETY: the collection copies the names; it and every other object created here are
    // destroyed before returning, and the result is read only while its event is alive.
    unsafe {
        let collection = rd::rd_kafka_TopicCollection_of_topic_names(pointers.as_mut_ptr(), pointers.len());
        let answer = admin_call(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
            timeout,
            true,
            |rk, options, queue| rd::rd_kafka_DescribeTopics(rk, collection, options, queue),
            |event| {
                let result = rd::rd_kafka_event_DescribeTopics_result(event);
                let mut count = 0usize;
                let described = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
                let mut granted = BTreeMap::new();
                for i in 0..if described.is_null() { 0 } else { count } {
                    let topic = *described.add(i);
                    let name = text(rd::rd_kafka_TopicDescription_name(topic));
                    let error = rd::rd_kafka_TopicDescription_error(topic);
                    let operations = if !error.is_null()
                        && rd::rd_kafka_error_code(error) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                    {
                        Err(rd::rd_kafka_error_code(error).into())
                    } else {
                        let mut n = 0usize;
                        let ops = rd::rd_kafka_TopicDescription_authorized_operations(topic, &mut n);
                        Ok(operation_names(ops, n))
                    };
                    granted.insert(name, operations);
                }
                granted
            },
        );
        rd::rd_kafka_TopicCollection_destroy(collection);
        answer
    }
}

/// The operations granted on consumer group `group`.
pub fn group_operations<C: ClientContext>(
    client: &Client<C>,
    group: &str,
    timeout: Duration,
) -> Result<Granted, KafkaError> {
    // SAFETY: the description is alive for the call (`describe_consumer_group`).
    describe_consumer_group(client, group, timeout, true, |description| unsafe {
        let mut count = 0usize;
        let ops = rd::rd_kafka_ConsumerGroupDescription_authorized_operations(description, &mut count);
        operation_names(ops, count)
    })
}

/// Kafka's names of `count` ACL operations at `ops` (none when null).
///
/// # Safety
/// `ops` must be null or point to `count` operations alive for this call.
unsafe fn operation_names(ops: *const rd::rd_kafka_AclOperation_t, count: usize) -> Vec<String> {
    if ops.is_null() {
        return Vec::new();
    }
    std::slice::from_raw_parts(ops, count).iter().map(|op| text(rd::rd_kafka_AclOperation_name(*op))).collect()
}
