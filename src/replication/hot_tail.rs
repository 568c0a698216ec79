//! A new replica of a tiered partition copies only the hot tail: the records the leader has
//! not uploaded yet (Kafka's follower fetch protocol of KIP-405, and KIP-1023's start of an
//! empty follower at the last tiered offset).
//!
//! A follower looks at the remote log in two cases ([`Trigger`]):
//! - its local log is empty when it starts following at a leader epoch (a reassignment's
//!   adding replica, a replica whose disk was replaced);
//! - the leader answered OFFSET_MOVED_TO_TIERED_STORAGE: the follower's log ends below the
//!   leader's local log start, and what lies between is only in object storage.
//!
//! In both, [`decide_follower_start`] (pure) picks where the local log starts: right after the
//! last uploaded offset, which the leader still holds locally (its local retention only drops
//! segments once the manifest naming them is durable). The follower then re-reads the manifest,
//! takes the last remote segment's leader-epoch checkpoint and producer snapshot (Kafka's
//! `buildRemoteLogAuxState`), restarts its local log empty there with those epochs and
//! producers, and fetches from that offset on. Its log start offset stays the remote log's
//! (from the manifest), its local log start is the restart point, and reads below it go to
//! object storage like on any replica. As leader later, it uploads from its local log start
//! on: the manifest already ends just below it, so nothing is uploaded twice or deleted.

use std::sync::Arc;

use super::{Partition, PartitionError};
use crate::log::remote::RemoteLogError;
use crate::model::{LeaderEpoch, Offset};

/// Why a follower looks at the remote log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// It starts following the partition (at a leader epoch) with an empty local log.
    EmptyLog,
    /// The leader answered OFFSET_MOVED_TO_TIERED_STORAGE to its fetch.
    LeaderMovedToTieredStorage,
}

/// What the follower knows when it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerLogFacts {
    pub local_log_start_offset: Offset,
    pub log_end_offset: Offset,
    /// The last offset of the remote log from a manifest read just now; `None`: nothing
    /// uploaded (or the topic is not tiered here).
    pub remote_end_offset: Option<Offset>,
}

/// Where the follower's fetching goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerStart {
    /// From its log end, as any follower (nothing to skip, or data of its own to keep).
    FetchFromLogEnd,
    /// Restart the local log empty at this offset, right after the remote log's end, with the
    /// remote log's leader epochs and producer state.
    StartAfterRemote(Offset),
    /// Not decidable yet; the fetcher backs off and asks again.
    Retry(&'static str),
}

/// See the module documentation. A follower keeps its own records unless the leader said it
/// must skip them; it never starts past the remote end + 1, which the leader holds locally.
pub fn decide_follower_start(trigger: Trigger, facts: FollowerLogFacts) -> FollowerStart {
    let moved = trigger == Trigger::LeaderMovedToTieredStorage;
    let Some(remote_end) = facts.remote_end_offset else {
        return if moved {
            FollowerStart::Retry("the leader says the data is tiered, but the remote log is empty")
        } else {
            FollowerStart::FetchFromLogEnd
        };
    };
    let start = remote_end.next();
    if facts.log_end_offset >= start {
        return if moved {
            // The leader's local log starts past this replica's end, so it uploaded more than
            // the manifest read here names (a read racing an upload): read it again.
            FollowerStart::Retry("the remote log ends before the leader's local log starts")
        } else {
            FollowerStart::FetchFromLogEnd
        };
    }
    let empty = facts.log_end_offset == facts.local_log_start_offset;
    if moved || empty {
        FollowerStart::StartAfterRemote(start)
    } else {
        FollowerStart::FetchFromLogEnd
    }
}

/// Whether `p`'s follower should look at the remote log before its first fetch at an epoch.
pub(super) fn starts_empty_on_tiered(p: &Partition) -> bool {
    let log = p.log();
    p.log_view().has_remote_storage()
        && log.config().remote_storage_enable
        && log.log_end_offset() == log.local_log_start_offset()
}

/// Why a replica could not start after the remote log (yet). The fetcher logs it and backs
/// off; every kind but `NoRemoteStorage` may clear by itself.
#[derive(Debug, thiserror::Error)]
pub enum HotTailError {
    #[error("the leader's data is tiered and this broker has no remote storage")]
    NoRemoteStorage,
    #[error(transparent)]
    Remote(#[from] RemoteLogError),
    #[error("not decidable yet: {0}")]
    Retry(&'static str),
    #[error("cannot restart the local log: {0}")]
    Restart(#[from] PartitionError),
    #[error("the restart task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Runs the decision for `p` with a manifest read now, and restarts its local log after the
/// remote end when that is the answer. `Ok(true)`: the local log was restarted.
pub async fn start_from_remote(p: &Arc<Partition>, trigger: Trigger) -> Result<bool, HotTailError> {
    let log = p.log_view();
    if !log.has_remote_storage() {
        return match trigger {
            Trigger::EmptyLog => Ok(false),
            Trigger::LeaderMovedToTieredStorage => Err(HotTailError::NoRemoteStorage),
        };
    }
    let aux = log.remote_aux_state().await?;
    let facts = FollowerLogFacts {
        local_log_start_offset: log.local_log_start_offset(),
        log_end_offset: log.log_end_offset(),
        remote_end_offset: aux.as_ref().map(|a| Offset(a.end_offset)),
    };
    let (start, aux) = match (decide_follower_start(trigger, facts), aux) {
        (FollowerStart::FetchFromLogEnd, _) => return Ok(false),
        (FollowerStart::Retry(why), _) => return Err(HotTailError::Retry(why)),
        (FollowerStart::StartAfterRemote(start), Some(aux)) => (start, aux),
        (FollowerStart::StartAfterRemote(_), None) => {
            return Err(HotTailError::Retry("the remote log is empty"))
        }
    };
    tracing::info!(
        partition = %p.tp, ?trigger, local_end = %facts.log_end_offset, start = %start,
        "rebuilding the replica after the remote log's end; only the leader's local tail is copied"
    );
    let epochs: Vec<(LeaderEpoch, Offset)> = aux
        .leader_epochs
        .iter()
        .map(|&(e, o)| (LeaderEpoch(e), Offset(o)))
        .collect();
    let p = Arc::clone(p);
    // Deletes the old segments and fsyncs the new start: off the reactor.
    tokio::task::spawn_blocking(move || {
        p.restart_log_at(start, |l| {
            l.start_after_remote(start, &epochs, aux.producer_snapshot.as_deref())
        })
    })
    .await??;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(start: i64, end: i64, remote_end: Option<i64>) -> FollowerLogFacts {
        FollowerLogFacts {
            local_log_start_offset: Offset(start),
            log_end_offset: Offset(end),
            remote_end_offset: remote_end.map(Offset),
        }
    }

    use FollowerStart::*;
    use Trigger::*;

    #[test]
    fn an_empty_replica_starts_after_the_remote_end() {
        assert_eq!(
            decide_follower_start(EmptyLog, facts(0, 0, Some(999))),
            StartAfterRemote(Offset(1000))
        );
        // Empty at an offset below the remote end (an earlier restart): the same.
        assert_eq!(
            decide_follower_start(EmptyLog, facts(40, 40, Some(999))),
            StartAfterRemote(Offset(1000))
        );
    }

    #[test]
    fn an_empty_replica_of_a_partition_with_nothing_uploaded_fetches_from_its_end() {
        assert_eq!(
            decide_follower_start(EmptyLog, facts(0, 0, None)),
            FetchFromLogEnd
        );
    }

    #[test]
    fn a_replica_with_records_keeps_them_unless_the_leader_moved_them() {
        assert_eq!(
            decide_follower_start(EmptyLog, facts(0, 10, Some(999))),
            FetchFromLogEnd
        );
        assert_eq!(
            decide_follower_start(LeaderMovedToTieredStorage, facts(0, 10, Some(999))),
            StartAfterRemote(Offset(1000))
        );
    }

    #[test]
    fn a_replica_at_or_past_the_remote_end_fetches_on() {
        assert_eq!(
            decide_follower_start(EmptyLog, facts(1000, 1000, Some(999))),
            FetchFromLogEnd
        );
        assert_eq!(
            decide_follower_start(EmptyLog, facts(500, 1200, Some(999))),
            FetchFromLogEnd
        );
    }

    #[test]
    fn a_moved_answer_the_manifest_cannot_explain_is_retried() {
        // Nothing uploaded as far as this replica can see.
        assert!(matches!(
            decide_follower_start(LeaderMovedToTieredStorage, facts(0, 0, None)),
            Retry(_)
        ));
        // The manifest read here ends below this replica's end: an upload it has not seen.
        assert!(matches!(
            decide_follower_start(LeaderMovedToTieredStorage, facts(0, 1000, Some(999))),
            Retry(_)
        ));
    }

    #[test]
    fn the_start_is_never_past_the_remote_end_plus_one() {
        for end in [0i64, 5, 999, 1000, 5000] {
            for remote in [None, Some(0i64), Some(998), Some(999), Some(4000)] {
                for trigger in [EmptyLog, LeaderMovedToTieredStorage] {
                    if let StartAfterRemote(s) =
                        decide_follower_start(trigger, facts(end.min(10), end, remote))
                    {
                        let r = remote.expect("a start needs a remote end");
                        assert_eq!(s, Offset(r + 1));
                        assert!(s > Offset(end), "never moves a follower backwards");
                    }
                }
            }
        }
    }
}
