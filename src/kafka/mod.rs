//! Kafka plumbing: client options (the one place raw librdkafka keys live), the consumer context
//! (rebalances and statistics), topic administration, group descriptions (both protocols),
//! transactional error classes, the start-up probe (brokers reachable, topics present) and what
//! each broker speaks (its APIs, hence its release).

pub mod access;
mod admin;
pub mod broker_apis;
mod client;
mod connection_errors;
mod context;
mod ffi;
pub mod groups;
pub mod probe;
mod txn_error;

pub use admin::{apply_topics, compare_topics, load_topic_specs, TopicReport, TopicSpec};
pub use client::{
    admin_client, bound_consumer_prefetch, bound_producer_queue, consumer_config, group_offsets_reader_config,
    idempotent_producer_config, plain_producer_config, probe_config, quick_resume, read_committed_consumer_config,
    transactional_producer_config, MAX_RECORD_BYTES,
};
pub use context::{refuses_the_record, Refusal, WorkerConsumerContext, WorkerProducerContext};
pub use ffi::cached_high_watermark;
pub use txn_error::{classify, fatal_is_fence, is_fenced, TxnStep};
