//! Restoring a corrupt range by itself: a batch whose CRC-32C no longer matches is re-read
//! from the tiered copy, or re-fetched from the leader, instead of staying unserved.
//!
//! The decision is pure ([`decide_corrupt_range`]): where the corrupt batch lies, the remote
//! log's end, and the replica's role and ISR give the action. Its pieces run where their state
//! lives:
//! - the tiered copy: [`PartitionLog`](super::PartitionLog), the one place that decides which
//!   part answers a read, sends reads of the damaged segment to the remote part and drops the
//!   local copy when it is the oldest local segment;
//! - the replica copy: `replication::repair` leaves the ISR (giving up the leadership if it
//!   holds it) by reporting the partition offline in the broker heartbeat, and once the image
//!   shows it out of the ISR asks the follower fetcher to truncate to the batch and fetch it
//!   again from the leader; the leader adds it back to the ISR when it has caught up.
//!
//! The state of a log's corrupt range ([`CorruptRanges`]) sits with the log's disk health and
//! lives in memory only: after a restart the first read of the batch finds it again.

use std::sync::Mutex;

use crate::model::{BrokerId, Offset};

/// The `source` labels of `strata_log_corrupt_ranges_repaired_total`.
pub const REPAIR_SOURCES: [&str; 2] = ["remote", "replica"];

/// Counts a corrupt range restored from `source` (one of [`REPAIR_SOURCES`]).
pub fn count_repaired(source: &str) {
    super::metrics()
        .corrupt_ranges_repaired
        .with_label_values(&[source])
        .inc();
}

/// Where a corrupt batch lies in the local log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorruptBatch {
    /// Where the first batch that fails its check starts: everything before it in the log is
    /// intact, so a replica truncates to here.
    pub batch_base: Offset,
    /// The segment holding it: its base offset and its last offset (the next segment's base
    /// minus one).
    pub segment_base: Offset,
    pub segment_last: Offset,
    /// Whether the segment is the oldest local one (its local copy can then be dropped by
    /// moving the local log start past it).
    pub oldest_local: bool,
    /// Where a replica that re-fetches the range has restored it: the end of the segment, or
    /// the log end when the batch was found if that came first.
    pub refetch_until: Offset,
}

/// The replica facts the decision needs, as the metadata image last said.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaView<'a> {
    pub local: BrokerId,
    pub leader: BrokerId,
    pub replicas: &'a [BrokerId],
    pub isr: &'a [BrokerId],
}

/// Why a corrupt range cannot be restored by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrepairable {
    /// This broker holds the partition's only replica, and there is no tiered copy.
    OnlyReplica,
    /// Other replicas exist but none is in the ISR: none is known to hold the range.
    NoOtherInSyncReplica,
}

impl Unrepairable {
    pub fn describe(self) -> &'static str {
        match self {
            Unrepairable::OnlyReplica => "this is the only replica and there is no tiered copy",
            Unrepairable::NoOtherInSyncReplica => {
                "no other in-sync replica holds the range and there is no tiered copy"
            }
        }
    }
}

/// What to do about a corrupt batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorruptRangeAction {
    /// The segment is uploaded: serve its range from the remote copy; drop the local copy when
    /// it is the oldest local segment (reads below the local log start go remote anyway).
    ServeFromRemote { drop_local_segment: bool },
    /// This broker is in the ISR with other members: report the partition offline, so that
    /// the controller drops it from the ISR and, if it leads, elects another member. Truncating
    /// first would leave an ISR member without committed records, electable as leader.
    LeaveIsr,
    /// A follower out of the ISR: truncate to the corrupt batch and fetch it again.
    TruncateAndRefetch { to: Offset },
    /// Not served, and reported: nothing holds another copy.
    KeepUnserved(Unrepairable),
}

/// Whether the remote copy holds the corrupt batch's whole segment (`remote_end` is the
/// highest offset uploaded, `None` when nothing is or the topic is not tiered).
pub fn remote_covers(batch: &CorruptBatch, remote_end: Option<Offset>) -> bool {
    remote_end.is_some_and(|end| end >= batch.segment_last)
}

/// The decision: the tiered copy first, then another replica, else leave it unserved.
pub fn decide_corrupt_range(
    batch: &CorruptBatch,
    remote_end: Option<Offset>,
    replica: &ReplicaView<'_>,
) -> CorruptRangeAction {
    if remote_covers(batch, remote_end) {
        return CorruptRangeAction::ServeFromRemote {
            drop_local_segment: batch.oldest_local,
        };
    }
    let in_isr = replica.isr.contains(&replica.local);
    let others_in_isr = replica.isr.iter().any(|b| *b != replica.local);
    if in_isr && others_in_isr {
        return CorruptRangeAction::LeaveIsr;
    }
    if !in_isr && replica.leader != replica.local {
        return CorruptRangeAction::TruncateAndRefetch {
            to: batch.batch_base,
        };
    }
    if replica.replicas.iter().all(|b| *b == replica.local) {
        CorruptRangeAction::KeepUnserved(Unrepairable::OnlyReplica)
    } else {
        CorruptRangeAction::KeepUnserved(Unrepairable::NoOtherInSyncReplica)
    }
}

/// A log's corrupt range and how far its repair went. One per log; a short mutex, never held
/// across I/O.
#[derive(Debug, Default)]
pub(crate) struct CorruptRanges {
    inner: Mutex<RangesInner>,
}

#[derive(Debug, Default)]
struct RangesInner {
    /// Found by a read and not restored yet.
    found: Option<CorruptBatch>,
    /// Local segments (base, last offset) whose reads go to the remote copy.
    remote: Vec<(Offset, Offset)>,
    /// The partition is reported offline in the broker heartbeat (leaving the ISR).
    report_offline: bool,
    /// A truncation the follower fetcher is to run before its next fetch.
    truncate_to: Option<Offset>,
    /// Re-fetching from the leader: repaired once the log end is back here.
    refetch_until: Option<Offset>,
    /// The unrepairable case was logged (once per batch found).
    unrepairable_logged: bool,
}

impl CorruptRanges {
    fn lock(&self) -> std::sync::MutexGuard<'_, RangesInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `offset` lies in a range already known (found, or served remotely), so a read
    /// that meets it again need not locate it again.
    pub(crate) fn knows(&self, offset: Offset) -> bool {
        let r = self.lock();
        r.found
            .is_some_and(|b| b.batch_base <= offset && offset <= b.segment_last)
            || r.remote
                .iter()
                .any(|(lo, hi)| *lo <= offset && offset <= *hi)
    }

    pub(crate) fn record_found(&self, batch: CorruptBatch) {
        let mut r = self.lock();
        if r.found.is_none() {
            r.found = Some(batch);
            r.unrepairable_logged = false;
        }
    }

    pub(crate) fn found(&self) -> Option<CorruptBatch> {
        self.lock().found
    }

    /// The range of `batch`'s segment is read from the remote copy from now on.
    pub(crate) fn serve_remotely(&self, batch: &CorruptBatch) {
        let mut r = self.lock();
        let range = (batch.segment_base, batch.segment_last);
        if !r.remote.contains(&range) {
            r.remote.push(range);
        }
        if r.found
            .is_some_and(|f| f.segment_base == batch.segment_base)
        {
            r.found = None;
            r.report_offline = false;
        }
    }

    pub(crate) fn served_remotely(&self, offset: Offset) -> bool {
        self.lock()
            .remote
            .iter()
            .any(|(lo, hi)| *lo <= offset && offset <= *hi)
    }

    /// Drops the remote ranges wholly below `local_log_start` (their segments are gone).
    pub(crate) fn forget_below(&self, local_log_start: Offset) {
        self.lock().remote.retain(|(_, hi)| *hi >= local_log_start);
    }

    pub(crate) fn set_report_offline(&self, offline: bool) -> bool {
        std::mem::replace(&mut self.lock().report_offline, offline)
    }

    pub(crate) fn report_offline(&self) -> bool {
        self.lock().report_offline
    }

    /// Asks the follower fetcher to truncate to `to`; the partition stops being reported
    /// offline (it is out of the ISR already).
    pub(crate) fn request_truncation(&self, to: Offset) {
        let mut r = self.lock();
        r.truncate_to = Some(to);
        r.report_offline = false;
    }

    pub(crate) fn truncation_pending(&self) -> bool {
        self.lock().truncate_to.is_some()
    }

    /// Withdraws a truncation not run yet (the replica leads again: it must not truncate).
    pub(crate) fn cancel_truncation(&self) {
        self.lock().truncate_to = None;
    }

    /// The fetcher takes the truncation it is to run; the range is then re-fetching.
    pub(crate) fn take_truncation(&self) -> Option<Offset> {
        let mut r = self.lock();
        let to = r.truncate_to.take()?;
        r.refetch_until = r.found.take().map(|b| b.refetch_until);
        Some(to)
    }

    /// Whether a re-fetch reached `log_end_offset` (then it is done): the end it waited for.
    pub(crate) fn refetched(&self, log_end_offset: Offset) -> Option<Offset> {
        let mut r = self.lock();
        match r.refetch_until {
            Some(until) if log_end_offset >= until => r.refetch_until.take(),
            _ => None,
        }
    }

    /// Whether the unrepairable case is to be logged now (once per batch found).
    pub(crate) fn log_unrepairable(&self) -> bool {
        !std::mem::replace(&mut self.lock().unrepairable_logged, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B1: BrokerId = BrokerId(1);
    const B2: BrokerId = BrokerId(2);
    const B3: BrokerId = BrokerId(3);

    fn batch(oldest_local: bool) -> CorruptBatch {
        CorruptBatch {
            batch_base: Offset(12),
            segment_base: Offset(10),
            segment_last: Offset(19),
            oldest_local,
            refetch_until: Offset(20),
        }
    }

    fn view<'a>(
        leader: BrokerId,
        replicas: &'a [BrokerId],
        isr: &'a [BrokerId],
    ) -> ReplicaView<'a> {
        ReplicaView {
            local: B1,
            leader,
            replicas,
            isr,
        }
    }

    #[test]
    fn an_uploaded_segment_is_served_from_the_remote_copy_whatever_the_role() {
        let all = [B1, B2, B3];
        for v in [
            view(B1, &all, &[B1, B2, B3]),
            view(B2, &all, &[B2]),
            view(B1, &[B1], &[B1]),
        ] {
            assert_eq!(
                decide_corrupt_range(&batch(true), Some(Offset(19)), &v),
                CorruptRangeAction::ServeFromRemote {
                    drop_local_segment: true
                }
            );
            assert_eq!(
                decide_corrupt_range(&batch(false), Some(Offset(30)), &v),
                CorruptRangeAction::ServeFromRemote {
                    drop_local_segment: false
                }
            );
        }
    }

    #[test]
    fn a_segment_uploaded_only_in_part_is_not_served_remotely() {
        let v = view(B1, &[B1], &[B1]);
        assert!(!remote_covers(&batch(true), Some(Offset(18))));
        assert!(!remote_covers(&batch(true), None));
        assert_eq!(
            decide_corrupt_range(&batch(true), Some(Offset(18)), &v),
            CorruptRangeAction::KeepUnserved(Unrepairable::OnlyReplica)
        );
    }

    #[test]
    fn a_leader_with_other_isr_members_leaves_the_isr() {
        let v = view(B1, &[B1, B2, B3], &[B1, B3]);
        assert_eq!(
            decide_corrupt_range(&batch(false), None, &v),
            CorruptRangeAction::LeaveIsr
        );
    }

    #[test]
    fn a_follower_in_the_isr_leaves_it_before_truncating() {
        let v = view(B2, &[B1, B2, B3], &[B2, B1]);
        assert_eq!(
            decide_corrupt_range(&batch(false), None, &v),
            CorruptRangeAction::LeaveIsr
        );
    }

    #[test]
    fn a_follower_out_of_the_isr_truncates_to_the_batch_and_refetches() {
        // Out of the ISR after reporting offline, or lagging already; or led by nobody.
        for leader in [B2, BrokerId(-1)] {
            let v = view(leader, &[B1, B2, B3], &[B2, B3]);
            assert_eq!(
                decide_corrupt_range(&batch(false), Some(Offset(5)), &v),
                CorruptRangeAction::TruncateAndRefetch { to: Offset(12) }
            );
        }
    }

    #[test]
    fn a_sole_replica_or_sole_isr_member_keeps_it_unserved() {
        assert_eq!(
            decide_corrupt_range(&batch(true), None, &view(B1, &[B1], &[B1])),
            CorruptRangeAction::KeepUnserved(Unrepairable::OnlyReplica)
        );
        assert_eq!(
            decide_corrupt_range(&batch(true), None, &view(B1, &[B1, B2], &[B1])),
            CorruptRangeAction::KeepUnserved(Unrepairable::NoOtherInSyncReplica)
        );
        // The last ISR member without a leader holds the claim to the data: it keeps it.
        assert_eq!(
            decide_corrupt_range(&batch(true), None, &view(BrokerId(-1), &[B1, B2], &[B1])),
            CorruptRangeAction::KeepUnserved(Unrepairable::NoOtherInSyncReplica)
        );
    }

    #[test]
    fn ranges_move_from_found_to_truncation_to_refetched() {
        let r = CorruptRanges::default();
        assert!(!r.knows(Offset(12)));
        r.record_found(batch(false));
        assert!(r.knows(Offset(15)) && !r.knows(Offset(11)));
        assert!(!r.set_report_offline(true));
        assert!(r.report_offline());
        r.request_truncation(Offset(12));
        assert!(!r.report_offline() && r.truncation_pending());
        assert_eq!(r.take_truncation(), Some(Offset(12)));
        assert_eq!(r.found(), None);
        assert_eq!(r.refetched(Offset(19)), None);
        assert_eq!(r.refetched(Offset(25)), Some(Offset(20)));
        assert_eq!(r.refetched(Offset(26)), None, "counted once");
    }

    #[test]
    fn a_range_served_remotely_is_known_until_its_segment_goes() {
        let r = CorruptRanges::default();
        r.record_found(batch(false));
        r.serve_remotely(&batch(false));
        assert_eq!(r.found(), None);
        assert!(r.served_remotely(Offset(10)) && r.served_remotely(Offset(19)));
        assert!(!r.served_remotely(Offset(20)));
        r.forget_below(Offset(20));
        assert!(!r.served_remotely(Offset(15)));
    }
}
