//! The few librdkafka admin calls rdkafka has no safe wrapper for (DescribeConsumerGroups and
//! DescribeTopics, used by `groups` and `access`) share this plumbing: a queue, options with a
//! timeout, one result event read and destroyed. Every `unsafe` block of the Kafka code is here or
//! in those two modules, and the cached high watermark a worker reads for its priority lanes.

use std::ffi::{c_char, CStr, CString};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// Runs one admin call (asking for the principal's authorized operations when
/// `with_operations`) and reads its result event with `read`; librdkafka's error when the call
/// failed as a whole or got no answer within `timeout`.
///
/// # Safety
/// `start` must issue one admin request of kind `op` on the queue it is given; `read` must only
/// read the event it is given.
pub(super) unsafe fn admin_call<C: ClientContext, T>(
    client: &Client<C>,
    op: rd::rd_kafka_admin_op_t,
    timeout: Duration,
    with_operations: bool,
    start: impl FnOnce(*mut rd::rd_kafka_t, *const rd::rd_kafka_AdminOptions_t, *mut rd::rd_kafka_queue_t),
    read: impl FnOnce(*mut rd::rd_kafka_event_t) -> T,
) -> Result<T, KafkaError> {
    let rk = client.native_ptr();
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let queue = rd::rd_kafka_queue_new(rk);
    let options = rd::rd_kafka_AdminOptions_new(rk, op);
    let mut errstr = [0 as c_char; 256];
    rd::rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, errstr.as_mut_ptr(), errstr.len());
    if with_operations {
        let error = rd::rd_kafka_AdminOptions_set_include_authorized_operations(options, 1);
        if !error.is_null() {
            rd::rd_kafka_error_destroy(error);
        }
    }
    start(rk, options, queue);
    rd::rd_kafka_AdminOptions_destroy(options);
    let event = rd::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1000));
    let answer = if event.is_null() {
        Err(KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut))
    } else {
        let code = rd::rd_kafka_event_error(event);
        let answer = if code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Ok(read(event))
        } else {
            Err(KafkaError::AdminOp(code.into()))
        };
        rd::rd_kafka_event_destroy(event);
        answer
    };
    rd::rd_kafka_queue_destroy(queue);
    answer
}

/// Describes consumer group `group` (with the principal's authorized operations when
/// `with_operations`) and hands its description to `read`, which may use the pointer only during
/// the call; or the group's own error code (e.g. `GroupIdNotFound`, `GroupAuthorizationFailed`).
pub(super) fn describe_consumer_group<C: ClientContext, T>(
    client: &Client<C>,
    group: &str,
    timeout: Duration,
    with_operations: bool,
    read: impl FnOnce(*const rd::rd_kafka_ConsumerGroupDescription_t) -> T,
) -> Result<Result<T, RDKafkaErrorCode>, KafkaError> {
    let group_c = CString::new(group)
        .map_err(|_| KafkaError::AdminOpCreation(format!("group id {group:?} contains a NUL byte")))?;
    let mut groups = [group_c.as_ptr()];
    let op = rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS;
    // SAFETY: `groups` outlives the call; the description is read only while its event is alive.
    unsafe {
        admin_call(
            client,
            op,
            timeout,
            with_operations,
            |rk, options, queue| rd::rd_kafka_DescribeConsumerGroups(rk, groups.as_mut_ptr(), 1, options, queue),
            |event| {
                let result = rd::rd_kafka_event_DescribeConsumerGroups_result(event);
                let mut count = 0usize;
                let described = rd::rd_kafka_DescribeConsumerGroups_result_groups(result, &mut count);
                if described.is_null() || count == 0 {
                    return Err(RDKafkaErrorCode::GroupIdNotFound);
                }
                let description = *described;
                let error = rd::rd_kafka_ConsumerGroupDescription_error(description);
                if !error.is_null() {
                    let code = rd::rd_kafka_error_code(error);
                    if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                        return Err(code.into());
                    }
                }
                Ok(read(description))
            },
        )
    }
}

/// A C string copied out (empty when null).
///
/// # Safety
/// `pointer` must be null or a NUL-terminated string alive for this call.
pub(super) unsafe fn text(pointer: *const c_char) -> String {
    if pointer.is_null() {
        String::new()
    } else {
        CStr::from_ptr(pointer).to_string_lossy().into_owned()
    }
}

/// The high watermark of `topic` [`partition`] as the consumer's fetcher last saw it, read from
/// librdkafka's cache without a request (rdkafka wraps only the querying form); `None` before the
/// partition's first fetch answer.
pub fn cached_high_watermark<C: ClientContext>(client: &Client<C>, topic: &str, partition: i32) -> Option<i64> {
    let topic = CString::new(topic).ok()?;
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the client is alive for the call; librdkafka only reads the topic name and writes
    // the two offsets.
    let code = unsafe {
        rd::rd_kafka_get_watermark_offsets(client.native_ptr(), topic.as_ptr(), partition, &mut low, &mut high)
    };
    (code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}
