//! The fetch-session fields of the Fetch API (KIP-227), as both ends read them: the session id
//! and epoch a request carries ([`FetchMetadata`], Kafka's `FetchMetadata`), and what a request
//! asks of one partition ([`PartitionFetch`], Kafka's `FetchRequest.PartitionData`), which a
//! session remembers so that an incremental request need not repeat it.

use kafka_protocol::messages::fetch_request::FetchPartition;

use crate::model::{LeaderEpoch, Offset};

/// The session id of "no session".
pub const INVALID_SESSION_ID: i32 = 0;
/// The epoch of a full request that asks for a new session.
pub const INITIAL_EPOCH: i32 = 0;
/// The epoch of a full request that wants no session (and closes the one it names).
pub const FINAL_EPOCH: i32 = -1;

/// A fetch request's session id and epoch.
///
/// - epoch -1 ([`FINAL_EPOCH`]): a full request outside any session (sessionless); a session
///   id names a session to close.
/// - epoch 0 ([`INITIAL_EPOCH`]): a full request that asks for a new session; a session id
///   names a session to close first.
/// - epoch > 0: an incremental request in session `session_id`, which must be at that epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchMetadata {
    pub session_id: i32,
    pub epoch: i32,
}

impl FetchMetadata {
    /// A full request that asks for a session.
    pub const INITIAL: FetchMetadata = FetchMetadata {
        session_id: INVALID_SESSION_ID,
        epoch: INITIAL_EPOCH,
    };

    /// Whether the request names every partition it wants (no session state applies).
    pub fn is_full(&self) -> bool {
        self.epoch == INITIAL_EPOCH || self.epoch == FINAL_EPOCH
    }

    /// The next request in the same session.
    pub fn next_incremental(self) -> FetchMetadata {
        FetchMetadata {
            session_id: self.session_id,
            epoch: next_epoch(self.epoch),
        }
    }

    /// A full request that closes this session and asks for a new one.
    pub fn next_close_existing(self) -> FetchMetadata {
        FetchMetadata {
            session_id: self.session_id,
            epoch: INITIAL_EPOCH,
        }
    }
}

/// The epoch after `epoch`: epochs run 1..=i32::MAX and wrap to 1; a final epoch stays final.
pub fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// What a fetch asks of one partition. An incremental request sends a partition only when this
/// changed since the session last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionFetch {
    pub fetch_offset: Offset,
    /// The fetcher's own log start (followers; -1 from consumers).
    pub log_start_offset: Offset,
    pub max_bytes: i32,
    pub current_leader_epoch: LeaderEpoch,
    /// KIP-320: the epoch of the fetcher's last record (v12+), -1 when unknown.
    pub last_fetched_epoch: LeaderEpoch,
}

impl PartitionFetch {
    pub fn from_wire(p: &FetchPartition) -> PartitionFetch {
        PartitionFetch {
            fetch_offset: Offset(p.fetch_offset),
            log_start_offset: Offset(p.log_start_offset),
            max_bytes: p.partition_max_bytes,
            current_leader_epoch: LeaderEpoch(p.current_leader_epoch),
            last_fetched_epoch: LeaderEpoch(p.last_fetched_epoch),
        }
    }

    pub fn to_wire(&self, partition: i32) -> FetchPartition {
        FetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(self.fetch_offset.0)
            .with_log_start_offset(self.log_start_offset.0)
            .with_partition_max_bytes(self.max_bytes)
            .with_current_leader_epoch(self.current_leader_epoch.0)
            .with_last_fetched_epoch(self.last_fetched_epoch.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_wrap_to_one_and_final_stays_final() {
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(41), 42);
        assert_eq!(next_epoch(i32::MAX), 1);
        assert_eq!(next_epoch(FINAL_EPOCH), FINAL_EPOCH);
        assert!(FetchMetadata::INITIAL.is_full());
        assert!(FetchMetadata {
            session_id: 7,
            epoch: -1
        }
        .is_full());
        assert!(!FetchMetadata {
            session_id: 7,
            epoch: 1
        }
        .is_full());
        assert_eq!(
            FetchMetadata {
                session_id: 7,
                epoch: 3
            }
            .next_close_existing(),
            FetchMetadata {
                session_id: 7,
                epoch: 0
            }
        );
    }
}
