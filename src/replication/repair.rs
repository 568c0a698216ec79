//! Restoring a corrupt range from another replica (the decision is
//! [`decide_corrupt_range`](crate::log::repair::decide_corrupt_range); the tiered copy is
//! served by the log itself, see [`crate::log::repair`]).
//!
//! A replica in the ISR never truncates while it is in it: a leader, or a follower the
//! controller could elect, holding less than the high watermark could lose acknowledged
//! records. So it first leaves the ISR by reporting the partition offline in the broker
//! heartbeat, as a failed log dir does: the controller drops it from the ISR and, if it
//! leads, elects another member. Once the image shows it a follower out of the ISR, the
//! follower fetcher truncates the log to the corrupt batch and fetches from there (the
//! truncation runs in the fetcher's own task, between its fetches, so no fetch in flight
//! appends past it); the report stops and the leader adds it back to the ISR when it has
//! caught up, as for any lagging follower.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Partition, ReplicaManager};
use crate::log::repair::{self, decide_corrupt_range, CorruptRangeAction, ReplicaView};
use crate::model::{BrokerId, Offset};

/// How often the repairs are looked at: a repair waits on heartbeats and the controller
/// (hundreds of milliseconds), so a quicker pass gains nothing.
const REPAIR_TICK: Duration = Duration::from_millis(250);

/// How long a repair step waits for the remote end before deciding without it.
const REMOTE_END_WAIT: Duration = Duration::from_secs(1);

/// Runs [`ReplicaManager::repair_corrupt_ranges`] every [`REPAIR_TICK`] until `shutdown`. Its
/// own task: a pass may wait on the object store (the remote end), which must not hold up
/// ISR changes or fetches.
pub fn spawn_corrupt_range_repairs(replicas: Arc<ReplicaManager>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(REPAIR_TICK) => {}
                () = shutdown.cancelled() => break,
            }
            replicas.repair_corrupt_ranges().await;
        }
    });
}

impl ReplicaManager {
    /// One pass over the partitions whose log found a corrupt batch: decides and takes the
    /// next step of each repair.
    pub async fn repair_corrupt_ranges(&self) {
        for p in self.all() {
            if let Some(end) = p.log().repair_refetched() {
                repair::count_repaired("replica");
                tracing::warn!(partition = %p.tp, log_end_offset = end.0, "corrupt range restored from the leader");
            }
            if p.log().corrupt_batch().is_some() {
                repair_step(self.local, &p, RemoteEnd::Look).await;
            }
        }
    }
}

/// Whether a repair step asks the object store for the remote end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RemoteEnd {
    Look,
    /// Known not to cover the batch (an earlier step decided to leave the ISR for it): the
    /// follower fetcher does not wait on the store.
    NotCovering,
}

/// The next step of `p`'s repair, if its log found a corrupt batch. Run by the repair pass,
/// and by the follower fetcher before each fetch once the replica has reported itself offline
/// to leave the ISR: a former leader that became a follower out of the ISR then truncates
/// before its first fetch from the new leader, which would otherwise count it caught up (at
/// its old end) and add it back to the ISR with the corrupt batch still in its log.
pub(super) async fn repair_step(local: BrokerId, p: &Partition, remote: RemoteEnd) {
    let log = p.log();
    let Some(batch) = log.corrupt_batch() else {
        return;
    };
    let state = p.state();
    if log.repair_truncation_pending() {
        if state.leader != local {
            return; // the fetcher runs it before its next fetch
        }
        // Leading again before the fetcher ran it (an election with nobody else left):
        // a leader must not cut its log under the high watermark.
        log.cancel_repair_truncation();
    }
    // A store that fails (or retries past REMOTE_END_WAIT) gives no remote end: the replica
    // copy serves as well.
    let remote_end = if remote == RemoteEnd::Look && p.log_view().has_remote_storage() {
        let end = p.log_view().highest_offset_in_remote_storage();
        match tokio::time::timeout(REMOTE_END_WAIT, end).await {
            Ok(Ok(end)) => Some(end).filter(|o| o.0 >= 0),
            Ok(Err(e)) => {
                tracing::debug!(partition = %p.tp, error = %e, "remote end unknown");
                None
            }
            Err(_) => None,
        }
    } else {
        None
    };
    let view = ReplicaView {
        local,
        leader: state.leader,
        replicas: &state.replicas,
        isr: &state.isr,
    };
    match decide_corrupt_range(&batch, remote_end, &view) {
        CorruptRangeAction::ServeFromRemote { .. } => {
            if let Err(e) = p.log_view().serve_corrupt_remotely(&batch).await {
                tracing::warn!(partition = %p.tp, error = %e, "serving a corrupt range remotely failed");
            }
        }
        CorruptRangeAction::LeaveIsr => {
            if !log.set_offline_for_repair(true) {
                tracing::warn!(
                    partition = %p.tp,
                    batch_base_offset = batch.batch_base.0,
                    leader = state.leader.0,
                    "corrupt batch: leaving the ISR (and the leadership) to fetch it again from another replica"
                );
            }
        }
        CorruptRangeAction::TruncateAndRefetch { to } => {
            tracing::warn!(
                partition = %p.tp,
                truncate_to = to.0,
                leader = state.leader.0,
                "corrupt batch: truncating to it and fetching it again from the leader"
            );
            log.request_repair_truncation(to);
        }
        CorruptRangeAction::KeepUnserved(why) => {
            log.set_offline_for_repair(false);
            if log.log_unrepairable_once() {
                tracing::error!(
                    partition = %p.tp,
                    batch_base_offset = batch.batch_base.0,
                    "corrupt batch in a segment: not served; {}",
                    why.describe()
                );
            }
        }
    }
}

/// In the follower fetcher, before a fetch: runs the repair truncation asked of `p`, if any.
/// Returns the offset truncated to.
pub(super) fn take_truncation(p: &Partition) -> Option<Offset> {
    p.log().take_repair_truncation()
}
