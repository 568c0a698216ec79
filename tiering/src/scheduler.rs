//! The tiering decisions, as pure functions of (manifest, local log view, time): which segment to
//! upload next, which local segments local retention may drop, which remote segments total
//! retention expires. Unit tested without a store or files (STYLE 5); [`RemotePartition`]
//! carries them out.
//!
//! [`RemotePartition`]: crate::partition::RemotePartition

use std::path::PathBuf;

use uuid::Uuid;

use crate::manifest::RemotePartitionManifest;

/// A sealed (rolled, no longer written) local segment, as the broker describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSegment {
    pub base_offset: i64,
    /// Last offset in the segment (inclusive).
    pub end_offset: i64,
    pub max_timestamp_ms: i64,
    pub size_bytes: u64,
    pub log_path: PathBuf,
    pub index_path: PathBuf,
    pub time_index_path: PathBuf,
    /// The producer-state snapshot taken when the segment rolled, if still on disk.
    pub snapshot_path: Option<PathBuf>,
    /// The segment's aborted-transaction index, if it has one.
    pub txn_index_path: Option<PathBuf>,
    /// `(epoch, start offset)` entries of the leader-epoch cache that cover the segment.
    pub leader_epochs: Vec<(i32, i64)>,
}

/// The next segment to upload: the oldest sealed segment that ends after what the manifest
/// holds and below the high watermark (only committed data leaves the broker). Segments go up
/// in offset order, one at a time per partition, so the remote log stays contiguous.
pub fn next_upload<'a>(
    manifest: &RemotePartitionManifest,
    sealed: &'a [SealedSegment],
    high_watermark: i64,
) -> Option<&'a SealedSegment> {
    let next = manifest.end_offset().map_or(i64::MIN, |e| e + 1);
    sealed
        .iter()
        .filter(|s| s.end_offset >= next && s.end_offset < high_watermark)
        .min_by_key(|s| s.base_offset)
}

/// Sealed segments waiting for upload (the upload lag): count and bytes.
pub fn upload_lag(manifest: &RemotePartitionManifest, sealed: &[SealedSegment]) -> (usize, u64) {
    let next = manifest.end_offset().map_or(i64::MIN, |e| e + 1);
    sealed
        .iter()
        .filter(|s| s.end_offset >= next)
        .fold((0, 0), |(n, b), s| (n + 1, b + s.size_bytes))
}

/// Whether local retention may delete the local segment `[base, end]`: only once the manifest
/// that names a copy of it is durable, or when the records are below the log start anyway.
pub fn local_copy_deletable(manifest: &RemotePartitionManifest, base: i64, end: i64) -> bool {
    let _ = base;
    end < manifest.log_start_offset || manifest.end_offset().is_some_and(|e| e >= end)
}

/// Remote segments that total retention expires.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemoteRetentionPlan {
    pub delete: Vec<Uuid>,
    /// The remote log start offset after the deletion.
    pub new_log_start_offset: i64,
}

/// Total retention over the remote part: walks live segments oldest first and stops at the
/// first one that is kept, so the remote log stays a contiguous suffix. `local_only_bytes` is
/// the size of local data not yet uploaded, which counts towards `retention.bytes`. Segments
/// whose deletion started before a crash are included (the step is repeated), those replaced
/// by remote compaction once their `delete_after_ms` has passed.
pub fn remote_retention(
    manifest: &RemotePartitionManifest,
    now_ms: i64,
    retention_ms: i64,
    retention_bytes: i64,
    local_only_bytes: u64,
) -> RemoteRetentionPlan {
    use crate::manifest::RemoteLogSegmentState as S;
    let mut plan = RemoteRetentionPlan {
        delete: Vec::new(),
        new_log_start_offset: manifest.log_start_offset,
    };
    for s in &manifest.segments {
        // Replaced by compaction: kept for readers of the older manifest until its time.
        if s.state == S::DeleteSegmentStarted && now_ms >= s.delete_after_ms {
            plan.delete.push(s.segment_id);
        }
    }
    let mut remaining = (manifest.live_bytes() + local_only_bytes) as i64;
    for s in manifest
        .segments
        .iter()
        .filter(|s| s.state == S::CopySegmentFinished)
    {
        let below_start = s.end_offset < manifest.log_start_offset;
        let by_time = retention_ms >= 0 && now_ms - s.max_timestamp_ms > retention_ms;
        let by_size = retention_bytes >= 0 && remaining - s.segment_bytes as i64 >= retention_bytes;
        if !(below_start || by_time || by_size) {
            break;
        }
        if !below_start {
            remaining -= s.segment_bytes as i64;
        }
        plan.delete.push(s.segment_id);
        plan.new_log_start_offset = plan.new_log_start_offset.max(s.end_offset + 1);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::seg;

    fn sealed(base: i64, end: i64) -> SealedSegment {
        SealedSegment {
            base_offset: base,
            end_offset: end,
            max_timestamp_ms: 0,
            size_bytes: 100,
            log_path: PathBuf::new(),
            index_path: PathBuf::new(),
            time_index_path: PathBuf::new(),
            snapshot_path: None,
            txn_index_path: None,
            leader_epochs: vec![],
        }
    }

    #[test]
    fn uploads_go_in_order_below_the_high_watermark() {
        let mut m = RemotePartitionManifest::empty("t", Uuid::nil(), 0);
        let local = vec![sealed(0, 9), sealed(10, 19), sealed(20, 29)];
        assert_eq!(next_upload(&m, &local, 5), None);
        assert_eq!(next_upload(&m, &local, 10).map(|s| s.base_offset), Some(0));
        m.add_copied(seg(0, 9, 100, 0));
        assert_eq!(next_upload(&m, &local, 25).map(|s| s.base_offset), Some(10));
        assert_eq!(upload_lag(&m, &local), (2, 200));
        m.add_copied(seg(10, 19, 100, 0));
        m.add_copied(seg(20, 29, 100, 0));
        assert_eq!(next_upload(&m, &local, 100), None);
        // A restart that finds the manifest ahead of a partly lost local log uploads nothing twice.
        assert_eq!(next_upload(&m, &local[2..], 100), None);
    }

    #[test]
    fn local_deletion_waits_for_the_manifest() {
        let mut m = RemotePartitionManifest::empty("t", Uuid::nil(), 0);
        assert!(!local_copy_deletable(&m, 0, 9));
        m.add_copied(seg(0, 9, 100, 0));
        assert!(local_copy_deletable(&m, 0, 9));
        assert!(!local_copy_deletable(&m, 10, 19));
    }

    #[test]
    fn remote_retention_by_time_size_and_start() {
        let mut m = RemotePartitionManifest::empty("t", Uuid::nil(), 0);
        let (a, b, c) = (
            seg(0, 9, 100, 1_000),
            seg(10, 19, 100, 2_000),
            seg(20, 29, 100, 3_000),
        );
        for s in [&a, &b, &c] {
            m.add_copied(s.clone());
        }
        assert!(remote_retention(&m, 3_000, -1, -1, 0).delete.is_empty());
        let p = remote_retention(&m, 3_500, 1_000, -1, 0);
        assert_eq!(p.delete, vec![a.segment_id, b.segment_id]);
        assert_eq!(p.new_log_start_offset, 20);
        // 300 remote + 50 local, bound 200: the two oldest go.
        let p = remote_retention(&m, 0, -1, 200, 50);
        assert_eq!(p.delete, vec![a.segment_id]);
        let p = remote_retention(&m, 0, -1, 150, 50);
        assert_eq!(p.delete, vec![a.segment_id, b.segment_id]);
        // DeleteRecords moved the start past the first segment.
        m.log_start_offset = 12;
        let p = remote_retention(&m, 0, -1, -1, 0);
        assert_eq!(p.delete, vec![a.segment_id]);
        assert_eq!(p.new_log_start_offset, 12);
        // A deletion that started before a crash is finished.
        m.mark_deleting(&[b.segment_id]);
        let p = remote_retention(&m, 0, -1, -1, 0);
        assert!(p.delete.contains(&b.segment_id));
    }
}
