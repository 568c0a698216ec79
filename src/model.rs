//! Newtypes for the numbers that must never be mixed up: offsets, epochs, ids.
//!
//! Each wraps the integer Kafka puts on the wire, so converting at the protocol edge is a
//! `.0` or a `From`, and inside the broker the compiler keeps a leader epoch out of an offset.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! newtype {
    ($(#[$meta:meta])* $name:ident($inner:ty)) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl From<$inner> for $name {
            fn from(v: $inner) -> Self {
                Self(v)
            }
        }

        impl From<$name> for $inner {
            fn from(v: $name) -> Self {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

newtype!(
    /// A record's position in a partition log. Offsets only grow; compaction leaves gaps.
    Offset(i64)
);
newtype!(
    /// The generation of a partition's leadership; it rises by one at every leader change.
    LeaderEpoch(i32)
);
newtype!(
    /// A broker's `node.id`.
    BrokerId(i32)
);
newtype!(
    /// A partition's index within its topic.
    PartitionIndex(i32)
);
newtype!(
    /// The id an idempotent or transactional producer gets from InitProducerId.
    ProducerId(i64)
);
newtype!(
    /// The epoch of a producer id, bumped when a producer is fenced or restarts.
    ProducerEpoch(i16)
);

impl Offset {
    pub const INVALID: Offset = Offset(-1);

    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

impl LeaderEpoch {
    /// What Kafka sends when a request carries no epoch.
    pub const UNKNOWN: LeaderEpoch = LeaderEpoch(-1);
}

impl ProducerId {
    /// A producer that is not idempotent.
    pub const NONE: ProducerId = ProducerId(-1);
}

/// A topic's UUID, fixed at creation; the name may be reused after deletion, the id never is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct TopicId(pub uuid::Uuid);

impl TopicId {
    pub fn random() -> TopicId {
        TopicId(uuid::Uuid::new_v4())
    }

    pub fn is_nil(&self) -> bool {
        self.0.is_nil()
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A topic name and partition index: the name of one partition log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: PartitionIndex,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition: PartitionIndex(partition),
        }
    }

    /// The directory name of this partition's log under a log dir: `{topic}-{partition}`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition.0)
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition.0)
    }
}
