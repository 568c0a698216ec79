//! Glue to the `kafka-protocol` crate: framing constants, string conversions, and the one place
//! where Strata's typed errors become Kafka error codes.

pub mod errors;
pub mod record_batch;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

/// The size prefix of every request and response frame.
pub const FRAME_PREFIX_BYTES: usize = 4;

pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub fn topic_name(s: impl Into<String>) -> TopicName {
    TopicName(str_bytes(s))
}
