//! Remote compaction: the leader of a tiered compacted partition rewrites its remote segments
//! on a schedule (`remote.compaction.interval.ms`), keeping the newest value of each key, as
//! the local cleaner does for the local log.
//!
//! # What a pass does
//! 1. `strata_tiering::plan_remote_compaction` decides from the manifest whether a pass is due
//!    (the bytes uploaded since the last pass reach `min.cleanable.dirty.ratio`) and groups
//!    every live remote segment into runs of at most `segment.bytes`.
//! 2. The offset map (key → newest offset) is built over every remote segment, then over the
//!    local log from the remote end up to the last stable offset: a key written later, remote
//!    or local, shadows its older remote values. Aborted transactional data never shadows
//!    anything (the aborted transactions come from the remote and local transaction indexes).
//!    Each segment is read into a scratch file and scanned, one at a time.
//! 3. Each group is read again and rewritten into one segment with the cleaner's rules
//!    (`cleaner::rewrite_batch`): shadowed records go, tombstones and markers without data go
//!    once their segment is older than `delete.retention.ms`, aborted data goes. Offsets are
//!    kept; the new segment spans the group's offsets (gaps are fine, as in any compacted
//!    log). Its indexes are built as for a local segment, it carries the group's leader
//!    epochs and, for the last group, the last segment's producer snapshot, and its objects
//!    go up under a new segment id.
//! 4. One manifest write swaps the new segments in (see `strata_tiering::compaction` for
//!    crash consistency and readers of the older manifest).
//!
//! A rewritten segment has no transaction index: every aborted transaction's data in the
//! remote log was dropped by the pass, so no read_committed reader needs one.
//!
//! The scans and rewrites run under `runtime::block_in_place`: they read and write files and
//! decode records, which must not hold up the reactor.
//!
//! # Bounds
//! The map holds at most [`MAX_MAP_KEYS`] keys; a partition with more is left uncompacted
//! remotely (a warning says so). Scratch space is one remote segment during the map and one
//! group's input and output during the rewrite, under `{first log dir}/remote-compaction`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use bytes::Bytes;
use strata_tiering::{
    plan_remote_compaction, RemoteCompactionPolicy, RemoteLogSegmentMetadata, SealedSegment,
    SegmentFileKind, TieringError,
};

use super::{RemoteLogManager, RemoteLogPartition, TieredPartition};
use crate::log::cleaner::{map_batch, rewrite_batch, MAX_MAP_KEYS};
use crate::log::segment::{scan_batches, LogSegment, SegmentFile};
use crate::log::txn_index::{AbortedTxn, CleanedTransactions};
use crate::log::LogError;
use crate::model::Offset;
use crate::protocol::record_batch::BatchIter;

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct RemoteCompactionStats {
    pub(super) segments_before: usize,
    pub(super) segments_after: usize,
    pub(super) bytes_before: u64,
    pub(super) bytes_after: u64,
    pub(super) records_removed: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TieringError + '_ {
    move |source| TieringError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A local log error met while compacting (a corrupt batch in a downloaded segment, a scratch
/// file): the pass fails and is tried again at the next round.
fn log_err(e: LogError) -> TieringError {
    TieringError::Config(format!("remote compaction: {e}"))
}

fn open_segment_file(path: &Path) -> Result<(SegmentFile, u64), TieringError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let len = file.metadata().map_err(io(path))?.len();
    Ok((
        SegmentFile {
            path: path.to_path_buf(),
            file,
        },
        len,
    ))
}

/// Calls `f` on every batch of a scratch segment file, CRC-checked.
fn for_each_batch(
    path: &Path,
    mut f: impl FnMut(u64, &crate::protocol::record_batch::BatchHeader, &[u8]) -> crate::log::Result<()>,
) -> Result<(), TieringError> {
    let (file, len) = open_segment_file(path)?;
    let mut err = None;
    let end = scan_batches(&file, 0, len, true, 1 << 20, |pos, h, b| {
        match f(pos, h, b) {
            Ok(()) => true,
            Err(e) => {
                err = Some(e);
                false
            }
        }
    })
    .map_err(log_err)?;
    if let Some(e) = err {
        return Err(log_err(e));
    }
    if let Some((pos, reason)) = end.error {
        return Err(TieringError::Corrupt {
            key: path.display().to_string(),
            reason: format!("at byte {pos}: {reason}"),
        });
    }
    Ok(())
}

/// `(epoch, start offset)` of a group's segments, each epoch once, both increasing.
fn merged_epochs(group: &[RemoteLogSegmentMetadata]) -> Vec<(i32, i64)> {
    let mut out: Vec<(i32, i64)> = Vec::new();
    for &(epoch, start) in group.iter().flat_map(|s| s.segment_leader_epochs.iter()) {
        match out.last() {
            Some(&(e, _)) if epoch <= e => {}
            _ => out.push((epoch, start)),
        }
    }
    out
}

impl RemoteLogManager {
    /// Runs a remote compaction pass on a led tiered compacted partition when its interval has
    /// passed and the plan says one is due.
    pub(super) async fn maybe_compact_remote(
        &self,
        p: &dyn TieredPartition,
        entry: &RemoteLogPartition,
    ) -> Result<(), TieringError> {
        let cfg = p.local_log().config();
        if !cfg.cleanup_policy.compacts() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        if now < entry.next_compaction_ms.load(Ordering::Relaxed) {
            return Ok(());
        }
        entry.next_compaction_ms.store(
            now.saturating_add(self.config.compaction_interval_ms),
            Ordering::Relaxed,
        );
        let started = std::time::Instant::now();
        let Some(stats) = self.compact_remote(p, entry).await? else {
            return Ok(());
        };
        self.metrics.remote_compactions.inc();
        self.metrics
            .remote_compaction_removed_records
            .inc_by(stats.records_removed);
        tracing::info!(
            partition = %p.topic_partition(),
            segments_before = stats.segments_before, segments_after = stats.segments_after,
            bytes_before = stats.bytes_before, bytes_after = stats.bytes_after,
            records_removed = stats.records_removed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "compacted the remote log"
        );
        Ok(())
    }

    /// One pass (see the module documentation); `None` when none was due or it was abandoned.
    pub(super) async fn compact_remote(
        &self,
        p: &dyn TieredPartition,
        entry: &RemoteLogPartition,
    ) -> Result<Option<RemoteCompactionStats>, TieringError> {
        let log = p.local_log();
        let cfg = log.config();
        let Some(manifest) = entry.remote.manifest() else {
            return Ok(None);
        };
        let policy = RemoteCompactionPolicy {
            segment_bytes: cfg.segment_bytes,
            min_cleanable_dirty_ratio: cfg.min_cleanable_dirty_ratio,
        };
        let Some(plan) = plan_remote_compaction(&manifest, policy) else {
            return Ok(None);
        };
        let tp = p.topic_partition();
        let scratch = self
            .compaction_dir
            .join(format!("{}-{}", tp.topic, tp.partition.0));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).map_err(io(&scratch))?;
        let r = self.compact_in(p, entry, &plan, &scratch).await;
        let _ = std::fs::remove_dir_all(&scratch);
        r
    }

    async fn compact_in(
        &self,
        p: &dyn TieredPartition,
        entry: &RemoteLogPartition,
        plan: &strata_tiering::RemoteCompactionPlan,
        scratch: &Path,
    ) -> Result<Option<RemoteCompactionStats>, TieringError> {
        let cancel = &self.cancel;
        let log = p.local_log();
        let tp = p.topic_partition();
        let remote = &entry.remote;
        let segments: Vec<&RemoteLogSegmentMetadata> = plan.groups.iter().flatten().collect();

        // The aborted transactions of the whole log, remote indexes and local ones.
        let at = super::PartitionRef {
            tp,
            topic_id: p.topic_id(),
            log,
        };
        let mut aborted: Vec<AbortedTxn> = self
            .collect_aborted_txns(at, Offset(0), Offset(i64::MAX))
            .await
            .map_err(|e| TieringError::Config(e.to_string()))?;
        aborted.extend(log.collect_aborted_txns(Offset(0), Offset(i64::MAX)));
        aborted.sort_by_key(|t| (t.last_offset, t.producer_id));
        aborted.dedup();

        // 2. The offset map over the remote segments, then the local log.
        let mut map: HashMap<Bytes, i64> = HashMap::new();
        let mut txns = CleanedTransactions::new(aborted.clone());
        let input = scratch.join("input.log");
        for s in &segments {
            remote
                .download(s, SegmentFileKind::Log, s.segment_bytes, &input, cancel)
                .await?;
            crate::runtime::block_in_place(|| {
                for_each_batch(&input, |pos, h, b| {
                    map_batch(&input, pos, h, b, &mut txns, &mut map)
                })
            })?;
            if map.len() > MAX_MAP_KEYS {
                tracing::warn!(partition = %tp, keys = map.len(), "too many keys to compact the remote log; leaving it as it is");
                return Ok(None);
            }
        }
        let stable = p.last_stable_offset();
        let mut offset = Offset(plan.end_offset + 1).max(log.local_log_start_offset());
        while offset < stable {
            let read =
                match crate::runtime::block_in_place(|| log.read(offset, 1 << 20, stable, true)) {
                    Ok(r) => r,
                    // Retention moved the local start past the remote end meanwhile: nothing
                    // between them is lost (the guard keeps what is not uploaded), so go on there.
                    Err(LogError::OffsetOutOfRange {
                        log_start_offset, ..
                    }) if log_start_offset > offset => {
                        offset = log_start_offset;
                        continue;
                    }
                    Err(e) => return Err(log_err(e)),
                };
            if read.records.is_empty() {
                break;
            }
            let before = offset;
            let path = log.dir().to_path_buf();
            crate::runtime::block_in_place(|| {
                for item in BatchIter::new(&read.records) {
                    let Ok((at, h)) = item else { break };
                    if h.base_offset >= stable.0 {
                        break;
                    }
                    offset = Offset(h.next_offset());
                    // The batch holding the remote end was read from the remote copy already.
                    if h.last_offset() <= plan.end_offset {
                        continue;
                    }
                    let b = &read.records[at..at + h.total_size()];
                    map_batch(&path, at as u64, &h, b, &mut txns, &mut map).map_err(log_err)?;
                }
                Ok::<(), TieringError>(())
            })?;
            if offset == before || map.len() > MAX_MAP_KEYS {
                if map.len() > MAX_MAP_KEYS {
                    tracing::warn!(partition = %tp, keys = map.len(), "too many keys to compact the remote log; leaving it as it is");
                    return Ok(None);
                }
                break;
            }
        }

        // 3. Rewrite each group into one segment and upload it.
        let now = self.clock.now_ms();
        let mut txns = CleanedTransactions::new(aborted);
        let mut stats = RemoteCompactionStats {
            segments_before: segments.len(),
            ..RemoteCompactionStats::default()
        };
        let mut uploaded: Vec<RemoteLogSegmentMetadata> = Vec::new();
        let last_group = plan.groups.len().saturating_sub(1);
        for (gi, group) in plan.groups.iter().enumerate() {
            let r = self
                .rewrite_group(
                    p,
                    entry,
                    group,
                    gi == last_group,
                    &map,
                    &mut txns,
                    now,
                    scratch,
                    &mut stats,
                )
                .await;
            match r {
                Ok(meta) => {
                    uploaded.push(meta);
                }
                Err(e) => {
                    for m in &uploaded {
                        remote.delete_objects(m).await;
                    }
                    return Err(e);
                }
            }
        }
        stats.segments_after = uploaded.len();
        stats.bytes_after = uploaded.iter().map(|m| m.segment_bytes).sum();

        // 4. The swap.
        let old: Vec<uuid::Uuid> = segments.iter().map(|s| s.segment_id).collect();
        let delete_after_ms = now.saturating_add(log.config().file_delete_delay_ms.max(0));
        let swapped = remote
            .swap_compacted(
                &old,
                uploaded.clone(),
                delete_after_ms,
                plan.end_offset,
                cancel,
            )
            .await;
        match swapped {
            Ok(Some(_)) => Ok(Some(stats)),
            Ok(None) => {
                tracing::info!(partition = %tp, "the remote log changed during compaction; trying again later");
                for m in &uploaded {
                    remote.delete_objects(m).await;
                }
                Ok(None)
            }
            // A failed conditional write may still have landed: leave the objects to the
            // orphan sweep, which keeps whatever the stored manifest names.
            Err(e) => Err(e),
        }
    }

    /// Rewrites one group into one segment in `scratch` and uploads its objects (unnamed until
    /// the swap). Returns the new segment's metadata.
    #[allow(clippy::too_many_arguments)]
    async fn rewrite_group(
        &self,
        p: &dyn TieredPartition,
        entry: &RemoteLogPartition,
        group: &[RemoteLogSegmentMetadata],
        last_group: bool,
        map: &HashMap<Bytes, i64>,
        txns: &mut CleanedTransactions,
        now: i64,
        scratch: &Path,
        stats: &mut RemoteCompactionStats,
    ) -> Result<RemoteLogSegmentMetadata, TieringError> {
        use std::io::Write;
        let cancel = &self.cancel;
        let remote = &entry.remote;
        let cfg = p.local_log().config();
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            return Err(TieringError::Config("empty compaction group".into()));
        };
        let base = first.base_offset;
        let out_dir = scratch.join(format!("out-{base}"));
        std::fs::create_dir_all(&out_dir).map_err(io(&out_dir))?;
        let out_path = crate::log::segment::log_path(&out_dir, base);
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(&out_path).map_err(io(&out_path))?);
        let input = scratch.join("input.log");
        for s in group {
            remote
                .download(s, SegmentFileKind::Log, s.segment_bytes, &input, cancel)
                .await?;
            stats.bytes_before += s.segment_bytes;
            let drop_tombstones = s.max_timestamp_ms.saturating_add(cfg.delete_retention_ms) < now;
            let mut write_err = None;
            crate::runtime::block_in_place(|| {
                for_each_batch(&input, |pos, h, b| {
                    let kept = rewrite_batch(&input, pos, h, b, map, txns, drop_tombstones)?;
                    stats.records_removed += kept.removed;
                    if let Some(bytes) = kept.bytes {
                        if let Err(e) = out.write_all(&bytes) {
                            write_err = Some(e);
                        }
                    }
                    Ok(())
                })
            })?;
            if let Some(e) = write_err {
                return Err(io(&out_path)(e));
            }
        }
        out.into_inner()
            .map_err(|e| io(&out_path)(e.into_error()))?
            .sync_all()
            .map_err(io(&out_path))?;
        // The indexes, as for a local segment that was just rolled.
        let size = crate::runtime::block_in_place(|| {
            let mut seg = LogSegment::open(
                &out_dir,
                base,
                cfg.segment_index_bytes,
                cfg.index_interval_bytes,
                now,
            )
            .map_err(log_err)?;
            seg.rebuild_indexes().map_err(log_err)?;
            seg.on_become_inactive().map_err(log_err)?;
            Ok::<u64, TieringError>(seg.size)
        })?;
        let snapshot_path = if last_group && last.has_snapshot {
            let path = scratch.join("snapshot");
            let data = remote
                .read_object(last, SegmentFileKind::ProducerSnapshot, cancel)
                .await?;
            std::fs::write(&path, &data).map_err(io(&path))?;
            Some(path)
        } else {
            None
        };
        let sealed = SealedSegment {
            base_offset: base,
            end_offset: last.end_offset,
            max_timestamp_ms: group.iter().map(|s| s.max_timestamp_ms).max().unwrap_or(-1),
            size_bytes: size,
            log_path: out_path.clone(),
            index_path: crate::log::segment::index_path(&out_dir, base),
            time_index_path: crate::log::segment::time_index_path(&out_dir, base),
            snapshot_path,
            txn_index_path: None,
            leader_epochs: merged_epochs(group),
        };
        let (_, meta) = remote
            .upload_rewritten(&sealed, p.leader_epoch().0, now, cancel)
            .await?;
        let _ = std::fs::remove_dir_all(&out_dir);
        Ok(meta)
    }
}

/// The scratch directory of remote compaction beside the chunk cache.
pub(super) fn compaction_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.parent().map_or_else(
        || PathBuf::from("remote-compaction"),
        |d| d.join("remote-compaction"),
    )
}
