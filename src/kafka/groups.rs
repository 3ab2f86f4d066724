//! A consumer group's state, members and their partitions, read with librdkafka's
//! `DescribeConsumerGroups` admin call, which answers for groups of both protocols: the classic
//! `DescribeGroups` request (what rdkafka's `fetch_group_list` sends) shows a KIP-848 group
//! (`kafka.group_protocol = "consumer"`) as `Dead` with no members. The FFI plumbing is in
//! `ffi`.

use std::ffi::CString;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::KafkaError;

use super::ffi::{admin_call, text};

/// One member of a group: its client id and the partitions it owns now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub client_id: String,
    pub assignment: Vec<(String, i32)>,
}

/// A group as its coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// `Stable`, `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Dead` (a group that does
    /// not exist) or `Unknown`.
    pub state: String,
    pub members: Vec<GroupMember>,
}

/// Describes `group` through `client`'s connections (any client: consumer, producer or admin).
/// A group that does not exist is `Dead` with no members.
pub fn describe_group<C: ClientContext>(
    client: &Client<C>,
    group: &str,
    timeout: Duration,
) -> Result<GroupDescription, KafkaError> {
    let group_c = CString::new(group)
        .map_err(|_| KafkaError::AdminOpCreation(format!("group id {group:?} contains a NUL byte")))?;
    let mut groups = [group_c.as_ptr()];
    // SAFETY: `groups` outlives the call; the result is read only while its event is alive and
    // strings are copied out.
    unsafe {
        admin_call(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS,
            timeout,
            false,
            |rk, options, queue| rd::rd_kafka_DescribeConsumerGroups(rk, groups.as_mut_ptr(), 1, options, queue),
            |event| read_description(event),
        )?
    }
}

/// Reads the one group of a `DescribeConsumerGroups` result event.
///
/// # Safety
/// `event` must be a live, successful result event of `rd_kafka_DescribeConsumerGroups`.
unsafe fn read_description(event: *mut rd::rd_kafka_event_t) -> Result<GroupDescription, KafkaError> {
    let result = rd::rd_kafka_event_DescribeConsumerGroups_result(event);
    let mut count = 0usize;
    let descriptions = rd::rd_kafka_DescribeConsumerGroups_result_groups(result, &mut count);
    if descriptions.is_null() || count == 0 {
        return Err(KafkaError::AdminOpCreation("the coordinator's answer holds no group".into()));
    }
    let description = *descriptions;
    let error = rd::rd_kafka_ConsumerGroupDescription_error(description);
    if !error.is_null() {
        return match rd::rd_kafka_error_code(error) {
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND => {
                Ok(GroupDescription { state: "Dead".into(), members: Vec::new() })
            }
            code => Err(KafkaError::AdminOp(code.into())),
        };
    }
    let state = text(rd::rd_kafka_consumer_group_state_name(rd::rd_kafka_ConsumerGroupDescription_state(description)));
    let members = (0..rd::rd_kafka_ConsumerGroupDescription_member_count(description))
        .map(|i| {
            let member = rd::rd_kafka_ConsumerGroupDescription_member(description, i);
            GroupMember {
                client_id: text(rd::rd_kafka_MemberDescription_client_id(member)),
                assignment: partitions(rd::rd_kafka_MemberDescription_assignment(member)),
            }
        })
        .collect();
    Ok(GroupDescription { state, members })
}

/// The topic-partitions of a member's assignment (none when absent).
///
/// # Safety
/// `assignment` must be null or point into a live result event.
unsafe fn partitions(assignment: *const rd::rd_kafka_MemberAssignment_t) -> Vec<(String, i32)> {
    if assignment.is_null() {
        return Vec::new();
    }
    let list = rd::rd_kafka_MemberAssignment_partitions(assignment);
    if list.is_null() || (*list).elems.is_null() {
        return Vec::new();
    }
    let count = usize::try_from((*list).cnt).unwrap_or(0);
    std::slice::from_raw_parts((*list).elems, count).iter().map(|p| (text(p.topic), p.partition)).collect()
}
