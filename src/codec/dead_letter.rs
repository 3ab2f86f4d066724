//! Dead-letter headers: the original key and value go to `tidal.dlq` unchanged; these headers say
//! why and where from, so an operator can inspect, fix and replay.

use super::BadInput;

/// Header names (stable; part of the wire contract).
pub const HEADER_KIND: &str = "tidal.error.kind";
pub const HEADER_REASON: &str = "tidal.error.reason";
pub const HEADER_TOPIC: &str = "tidal.source.topic";
pub const HEADER_PARTITION: &str = "tidal.source.partition";
pub const HEADER_OFFSET: &str = "tidal.source.offset";
pub const HEADER_MODEL: &str = "tidal.model";

/// Where the bad record came from.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterSource<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub model: &'a str,
}

/// The headers of a dead letter, as (name, value) pairs.
pub fn dead_letter_headers(bad: &BadInput, source: DeadLetterSource<'_>) -> [(&'static str, String); 6] {
    [
        (HEADER_KIND, bad.kind.as_str().to_string()),
        (HEADER_REASON, bad.reason.clone()),
        (HEADER_TOPIC, source.topic.to_string()),
        (HEADER_PARTITION, source.partition.to_string()),
        (HEADER_OFFSET, source.offset.to_string()),
        (HEADER_MODEL, source.model.to_string()),
    ]
}
