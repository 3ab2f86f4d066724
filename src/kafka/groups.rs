//! A consumer group's state, members and their partitions, read with librdkafka's
//! `DescribeConsumerGroups` admin call, which answers for groups of both protocols: the classic
//! `DescribeGroups` request (what rdkafka's `fetch_group_list` sends) shows a KIP-848 group
//! (`kafka.group_protocol = "consumer"`) as `Dead` with no members. The FFI plumbing is in
//! `ffi`.

use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::ffi::{describe_consumer_group, text};

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
    // SAFETY: the description is alive for the call (`describe_consumer_group`).
    match describe_consumer_group(client, group, timeout, false, |d| unsafe { read_description(d) })? {
        Ok(description) => Ok(description),
        Err(RDKafkaErrorCode::GroupIdNotFound) => Ok(GroupDescription { state: "Dead".into(), members: Vec::new() }),
        Err(code) => Err(KafkaError::AdminOp(code)),
    }
}

/// A group's state and members, read from its description.
///
/// # Safety
/// `description` must point to a live group description.
unsafe fn read_description(description: *const rd::rd_kafka_ConsumerGroupDescription_t) -> GroupDescription {
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
    GroupDescription { state, members }
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
