//! Remote compaction of a compacted topic's remote log: which remote segments a pass rewrites
//! (the pure [`plan_remote_compaction`]), and the store steps that carry a pass out on the
//! partition's [`RemotePartition`]: reading a segment's objects to a file, writing a rewritten
//! segment's objects, and swapping the rewritten segments into the manifest.
//!
//! The records themselves are filtered by the broker (it owns the batch format and the
//! cleaner's rules); this module only decides and moves objects.
//!
//! # Crash consistency
//! A rewritten segment keeps the offsets of the segments it replaces (its base is the first
//! one's, its end the last one's; records inside may be sparse). Its objects are written under
//! a new segment id first; one manifest write ([`RemotePartition::swap_compacted`]) then names
//! them and marks the replaced segments `DeleteSegmentStarted` with a `delete_after_ms`. A crash
//! before that write leaves orphans (swept after `remote.orphan.grace.ms`); after it, the
//! manifest is complete. The replaced objects stay until `delete_after_ms` (the topic's
//! `file.delete.delay.ms`), so a reader that took the manifest before the swap finishes its
//! read; remote retention deletes them afterwards, a step that may be repeated.

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::{Result, TieringError};
use crate::keys::SegmentFileKind;
use crate::manifest::{RemoteLogSegmentMetadata, RemoteLogSegmentState, RemotePartitionManifest};
use crate::partition::RemotePartition;
use crate::retry::retry;
use crate::scheduler::SealedSegment;

/// The topic settings a plan depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteCompactionPolicy {
    /// `segment.bytes`: the most input bytes one rewritten segment replaces.
    pub segment_bytes: u64,
    /// `min.cleanable.dirty.ratio`: the least share of the remote bytes uploaded since the
    /// last pass for a pass to run.
    pub min_cleanable_dirty_ratio: f64,
}

/// What one remote compaction pass rewrites.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteCompactionPlan {
    /// Runs of consecutive live segments, oldest first; each becomes one rewritten segment.
    /// Together they are every live segment: a key's newest remote value may be anywhere.
    pub groups: Vec<Vec<RemoteLogSegmentMetadata>>,
    /// The remote end offset the pass covers (recorded as `compacted_end_offset`).
    pub end_offset: i64,
}

/// Decides whether a pass is due and what it rewrites: `None` while the bytes uploaded since
/// the last pass (segments past `compacted_end_offset`) are less than
/// `min.cleanable.dirty.ratio` of the live remote bytes, or none were uploaded.
pub fn plan_remote_compaction(
    manifest: &RemotePartitionManifest,
    policy: RemoteCompactionPolicy,
) -> Option<RemoteCompactionPlan> {
    let end_offset = manifest.end_offset()?;
    let live: Vec<&RemoteLogSegmentMetadata> = manifest.live_segments().collect();
    let is_dirty = |s: &RemoteLogSegmentMetadata| {
        manifest
            .compacted_end_offset
            .is_none_or(|c| s.end_offset > c)
    };
    if !live.iter().any(|s| is_dirty(s)) {
        return None;
    }
    let total: u64 = live.iter().map(|s| s.segment_bytes).sum();
    let dirty: u64 = live
        .iter()
        .filter(|s| is_dirty(s))
        .map(|s| s.segment_bytes)
        .sum();
    if total > 0 && (dirty as f64) / (total as f64) < policy.min_cleanable_dirty_ratio {
        return None;
    }
    let mut groups: Vec<Vec<RemoteLogSegmentMetadata>> = Vec::new();
    for s in live {
        match groups.last_mut() {
            // Offsets inside a segment are relative to its base in 32 bits (the index).
            Some(g)
                if g.iter().map(|x| x.segment_bytes).sum::<u64>() + s.segment_bytes
                    <= policy.segment_bytes
                    && s.end_offset - g[0].base_offset < i64::from(u32::MAX) =>
            {
                g.push(s.clone())
            }
            _ => groups.push(vec![s.clone()]),
        }
    }
    Some(RemoteCompactionPlan { groups, end_offset })
}

/// The most bytes one ranged GET of [`RemotePartition::download`] asks for, which bounds the
/// memory a download holds.
const DOWNLOAD_CHUNK_BYTES: u64 = 8 * 1024 * 1024;

impl RemotePartition {
    /// Copies the `kind` object of a remote segment (`size` bytes) into the file `dest`, in
    /// ranged reads of at most 8 MiB, through the partition's store (and so its breaker).
    pub async fn download(
        &self,
        meta: &RemoteLogSegmentMetadata,
        kind: SegmentFileKind,
        size: u64,
        dest: &Path,
        cancel: &CancellationToken,
    ) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let key = self.path().segment_key(meta, kind);
        let io = |source| TieringError::Io {
            path: dest.to_path_buf(),
            source,
        };
        let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
        let mut pos = 0;
        while pos < size {
            let end = (pos + DOWNLOAD_CHUNK_BYTES).min(size);
            let data = retry(self.retry.backoff, self.retry.max_attempts, cancel, || {
                self.storage().get_range(&key, pos..end)
            })
            .await?;
            if data.len() as u64 != end - pos {
                return Err(TieringError::Corrupt {
                    key,
                    reason: format!("asked {} bytes at {pos}, got {}", end - pos, data.len()),
                });
            }
            file.write_all(&data).await.map_err(io)?;
            pos = end;
        }
        file.flush().await.map_err(io)?;
        Ok(())
    }

    /// Reads a whole (small) object of a remote segment, e.g. its producer snapshot.
    pub async fn read_object(
        &self,
        meta: &RemoteLogSegmentMetadata,
        kind: SegmentFileKind,
        cancel: &CancellationToken,
    ) -> Result<bytes::Bytes> {
        let key = self.path().segment_key(meta, kind);
        retry(self.retry.backoff, self.retry.max_attempts, cancel, || {
            self.storage().get(&key)
        })
        .await
    }

    /// Writes the objects of a rewritten segment under a new segment id. Nothing names them
    /// until [`swap_compacted`](Self::swap_compacted); a failure deletes what went up.
    pub async fn upload_rewritten(
        &self,
        seg: &SealedSegment,
        leader_epoch: i32,
        now_ms: i64,
        cancel: &CancellationToken,
    ) -> Result<(u64, RemoteLogSegmentMetadata)> {
        self.upload_new_objects(seg, leader_epoch, now_ms, cancel)
            .await
    }

    /// The swap: one manifest write names the rewritten segments `new` and marks the replaced
    /// ones `old` deleted from `delete_after_ms` on. Returns `None` and changes nothing if any
    /// of `old` is no longer live (retention or DeleteRecords got there first); the caller
    /// then deletes the objects of `new`.
    pub async fn swap_compacted(
        &self,
        old: &[Uuid],
        new: Vec<RemoteLogSegmentMetadata>,
        delete_after_ms: i64,
        compacted_end_offset: i64,
        cancel: &CancellationToken,
    ) -> Result<Option<Arc<RemotePartitionManifest>>> {
        let _w = self.writer.lock().await;
        let current = self
            .manifest()
            .ok_or_else(|| TieringError::Config("manifest not loaded".into()))?;
        let all_live = old.iter().all(|id| {
            current.segments.iter().any(|s| {
                s.segment_id == *id
                    && s.state == RemoteLogSegmentState::CopySegmentFinished
                    && s.end_offset >= current.log_start_offset
            })
        });
        if !all_live {
            return Ok(None);
        }
        let mut next = (*current).clone();
        next.replace_compacted(old, new, delete_after_ms, compacted_end_offset);
        self.write_manifest(next, cancel).await.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::seg;

    const POLICY: RemoteCompactionPolicy = RemoteCompactionPolicy {
        segment_bytes: 250,
        min_cleanable_dirty_ratio: 0.5,
    };

    fn manifest(segs: &[RemoteLogSegmentMetadata]) -> RemotePartitionManifest {
        let mut m = RemotePartitionManifest::empty("t", Uuid::nil(), 0);
        for s in segs {
            m.add_copied(s.clone());
        }
        m
    }

    fn bases(p: &RemoteCompactionPlan) -> Vec<Vec<i64>> {
        p.groups
            .iter()
            .map(|g| g.iter().map(|s| s.base_offset).collect())
            .collect()
    }

    #[test]
    fn nothing_to_do_on_an_empty_or_clean_remote_log() {
        assert_eq!(plan_remote_compaction(&manifest(&[]), POLICY), None);
        let mut m = manifest(&[seg(0, 9, 100, 0), seg(10, 19, 100, 0)]);
        m.compacted_end_offset = Some(19);
        assert_eq!(plan_remote_compaction(&m, POLICY), None);
    }

    #[test]
    fn every_live_segment_is_rewritten_in_groups_bounded_by_segment_bytes() {
        let m = manifest(&[
            seg(0, 9, 100, 0),
            seg(10, 19, 100, 0),
            seg(20, 29, 100, 0),
            seg(30, 39, 300, 0),
            seg(40, 49, 10, 0),
        ]);
        let p = plan_remote_compaction(&m, POLICY).expect("due");
        assert_eq!(bases(&p), vec![vec![0, 10], vec![20], vec![30], vec![40]]);
        assert_eq!(p.end_offset, 49);
    }

    #[test]
    fn the_dirty_ratio_gates_a_pass() {
        // 100 dirty bytes of 400: below 0.5.
        let mut m = manifest(&[seg(0, 29, 300, 0), seg(30, 39, 100, 0)]);
        m.compacted_end_offset = Some(29);
        assert_eq!(plan_remote_compaction(&m, POLICY), None);
        m.add_copied(seg(40, 49, 200, 0));
        let p = plan_remote_compaction(&m, POLICY).expect("300 of 600 dirty");
        assert_eq!(bases(&p), vec![vec![0], vec![30], vec![40]]);
    }

    #[test]
    fn segments_below_the_start_or_being_deleted_are_left_out() {
        let (a, b, c) = (seg(0, 9, 10, 0), seg(10, 19, 10, 0), seg(20, 29, 10, 0));
        let mut m = manifest(&[a.clone(), b.clone(), c.clone()]);
        m.mark_deleting(&[a.segment_id]);
        let p = plan_remote_compaction(&m, POLICY).expect("due");
        assert_eq!(bases(&p), vec![vec![10, 20]]);
        // After a swap the replaced segments are not live and the new one is clean.
        let mut merged = seg(10, 29, 5, 0);
        merged.state = RemoteLogSegmentState::CopySegmentFinished;
        m.replace_compacted(&[b.segment_id, c.segment_id], vec![merged.clone()], 99, 29);
        assert_eq!(m.start_offset(), Some(10));
        assert_eq!(m.end_offset(), Some(29));
        assert_eq!(
            m.segment_for(15).map(|s| s.segment_id),
            Some(merged.segment_id)
        );
        assert_eq!(plan_remote_compaction(&m, POLICY), None);
        // Retention deletes the replaced objects only once their time has come, and the start
        // offset stays.
        let early = crate::scheduler::remote_retention(&m, 98, -1, -1, 0);
        assert_eq!(early.delete, vec![a.segment_id]);
        let due = crate::scheduler::remote_retention(&m, 99, -1, -1, 0);
        assert_eq!(due.delete.len(), 3);
        let mut done = m.clone();
        done.mark_deleting(&due.delete);
        assert_eq!(done.log_start_offset, 10);
        done.remove(&due.delete);
        assert_eq!(done.segments.len(), 1);
    }
}
