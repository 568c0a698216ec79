//! `LocalLog`: the segments of one partition on local disk and the state that moves with them
//! (log start offset, recovery point, leader epochs, producer state).
//!
//! Owned by [`UnifiedLog`](super::UnifiedLog) behind one mutex; every method here runs with
//! that lock held and never awaits. Long copies (reads) and fsyncs happen outside it, on
//! `Arc<SegmentFile>` handles taken under it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::checkpoint;
use super::epoch_cache::LeaderEpochFileCache;
use super::producer_state::{self, ProducerStateManager};
use super::segment::{scan_batches, LogSegment, SegmentFile};
use super::txn_index::{self, AbortedTxn};
use super::unified_log::{CleanerFloor, RetentionGuard};
use super::{LogConfig, LogError, Result};
use crate::protocol::record_batch::BatchHeader;

/// See the module documentation.
pub(crate) struct LocalLog {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// By base offset; never empty: the last one is the active segment.
    pub(crate) segments: BTreeMap<i64, LogSegment>,
    pub(crate) local_log_start_offset: i64,
    /// Everything below it is fsynced (in memory; the checkpoint file may lag).
    pub(crate) recovery_point: i64,
    /// The recovery point the checkpoint file holds (as far as this process wrote it).
    pub(crate) checkpointed_recovery_point: i64,
    pub(crate) epoch_cache: LeaderEpochFileCache,
    pub(crate) producers: ProducerStateManager,
    /// Every aborted transaction of the local log, by marker offset; each segment's
    /// `.txnindex` file holds those whose marker it contains.
    pub(crate) aborted_txns: Vec<AbortedTxn>,
    /// Inactive segments and `.txnindex` files written since the last fsync.
    pub(crate) unflushed_files: Vec<Arc<SegmentFile>>,
    /// A segment was created or deleted since the last fsync of the directory.
    pub(crate) dir_dirty: bool,
    pub(crate) unflushed_messages: u64,
    pub(crate) last_flush_ms: i64,
    /// Bumped by every truncation, so a flush that raced with one does not advance the
    /// durable offset past data that was replaced.
    pub(crate) truncations: u64,
    pub(crate) guard: Option<RetentionGuard>,
    /// Tiered compacted logs: the first offset the cleaner may rewrite (see [`CleanerFloor`]).
    pub(crate) cleaner_floor: Option<CleanerFloor>,
    pub(crate) closed: bool,
}

impl std::fmt::Debug for LocalLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLog")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("local_log_start_offset", &self.local_log_start_offset)
            .field("log_end_offset", &self.log_end_offset())
            .field("recovery_point", &self.recovery_point)
            .field("closed", &self.closed)
            .finish()
    }
}

impl LocalLog {
    pub(crate) fn active(&self) -> &LogSegment {
        match self.segments.values().next_back() {
            Some(s) => s,
            None => unreachable!("a log always has an active segment"),
        }
    }

    pub(crate) fn active_mut(&mut self) -> &mut LogSegment {
        match self.segments.values_mut().next_back() {
            Some(s) => s,
            None => unreachable!("a log always has an active segment"),
        }
    }

    pub(crate) fn log_end_offset(&self) -> i64 {
        self.segments
            .values()
            .next_back()
            .map_or(self.local_log_start_offset, |s| s.next_offset)
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }

    /// The segment that would hold `offset`: the last one with base <= offset.
    pub(crate) fn floor_segment(&self, offset: i64) -> Option<&LogSegment> {
        self.segments
            .range(..=offset)
            .next_back()
            .map(|(_, s)| s)
            .or_else(|| self.segments.values().next())
    }

    /// Rolls to a new active segment starting at the log end offset.
    pub(crate) fn roll(&mut self, now_ms: i64) -> Result<()> {
        let new_base = self.log_end_offset();
        if self.active().base_offset == new_base {
            // Empty active segment: nothing to roll away from.
            return Ok(());
        }
        let old = self.active_mut();
        old.on_become_inactive()?;
        let old_file = Arc::clone(&old.file);
        let seg = LogSegment::create(
            &self.dir,
            new_base,
            self.config.segment_index_bytes,
            self.config.index_interval_bytes,
            now_ms,
        )?;
        self.segments.insert(new_base, seg);
        self.unflushed_files.push(old_file);
        self.dir_dirty = true;
        // Kafka snapshots producer state at every roll so recovery replays one segment at most.
        producer_state::write_snapshot(&self.dir, new_base, &self.producers)?;
        Ok(())
    }

    /// Whether appending `size` bytes ending at `last_offset` needs a new segment first.
    pub(crate) fn should_roll(
        &self,
        size: usize,
        last_offset: i64,
        max_timestamp: i64,
        now_ms: i64,
    ) -> bool {
        let a = self.active();
        if a.size == 0 {
            return false;
        }
        a.size + size as u64 > self.config.segment_bytes
            || a.should_roll_for_time(max_timestamp, now_ms, self.config.segment_ms)
            || a.index.is_full()
            || a.time_index.is_full()
            || last_offset - a.base_offset > u32::MAX as i64
    }

    /// Removes and deletes the files of the oldest segment (never the active one).
    pub(crate) fn delete_oldest(&mut self) -> Result<Option<(i64, i64)>> {
        if self.segments.len() < 2 {
            return Ok(None);
        }
        let Some((&base, _)) = self.segments.iter().next() else {
            return Ok(None);
        };
        let Some(seg) = self.segments.remove(&base) else {
            return Ok(None);
        };
        seg.delete_files()?;
        self.dir_dirty = true;
        let gone = seg.next_offset;
        self.aborted_txns.retain(|t| t.last_offset >= gone);
        Ok(Some((base, seg.next_offset)))
    }

    /// Deletes closed segments from the oldest while `next` says so of the oldest one's
    /// `(base offset, next offset)` (the active segment always stays), then moves the local
    /// log start past them. Returns how many went.
    pub(crate) fn delete_oldest_while(
        &mut self,
        mut next: impl FnMut(i64, i64) -> bool,
    ) -> Result<usize> {
        let mut deleted = 0;
        while self.segments.len() >= 2 {
            let Some(oldest) = self.segments.values().next() else {
                break;
            };
            if !next(oldest.base_offset, oldest.next_offset) {
                break;
            }
            self.delete_oldest()?;
            deleted += 1;
        }
        if deleted > 0 {
            let first = self.segments.keys().next().copied().unwrap_or(0);
            if first > self.local_log_start_offset {
                self.set_local_log_start_offset(first)?;
            }
        }
        Ok(deleted)
    }

    pub(crate) fn set_local_log_start_offset(&mut self, offset: i64) -> Result<()> {
        if offset != self.local_log_start_offset {
            self.local_log_start_offset = offset;
            checkpoint::write_offset(&self.dir, checkpoint::LOG_START_OFFSET_FILE, offset)?;
            if self.epoch_cache.truncate_from_start(offset) {
                self.epoch_cache.persist()?;
            }
        }
        Ok(())
    }

    /// Rebuilds producer state from the newest snapshot at or below the log end offset by
    /// replaying batch headers after it, and the aborted-transaction index with it: entries
    /// from the segments' `.txnindex` files below the snapshot, and those of the abort markers
    /// replayed (whose files are rewritten).
    pub(crate) fn rebuild_producer_state(&mut self) -> Result<()> {
        let leo = self.log_end_offset();
        producer_state::delete_snapshots_after(&self.dir, leo);
        let (from, state) = producer_state::load_latest_snapshot(&self.dir, leo)
            .unwrap_or((i64::MIN, ProducerStateManager::default()));
        let mut aborted: Vec<AbortedTxn> = self
            .segments
            .keys()
            .flat_map(|&b| txn_index::read_entries(&txn_index::txn_index_path(&self.dir, b)))
            .filter(|t| t.last_offset < from)
            .collect();
        let mut producers = state;
        self.for_each_batch_from(from, |h, batch| {
            if let Some(t) = producers.replay(h, batch) {
                aborted.push(t);
            }
        })?;
        aborted.sort_by_key(|t| t.last_offset);
        self.producers = producers;
        self.aborted_txns = aborted;
        // Rewrite the files of the segments the replay covered (and of none below it).
        let bases: Vec<i64> = self
            .segments
            .values()
            .filter(|s| s.next_offset > from || s.base_offset >= from)
            .map(|s| s.base_offset)
            .collect();
        for base in bases {
            let end = self
                .segments
                .range(base + 1..)
                .next()
                .map_or(i64::MAX, |(&b, _)| b);
            let own: Vec<AbortedTxn> = self
                .aborted_txns
                .iter()
                .filter(|t| t.last_offset >= base && t.last_offset < end)
                .copied()
                .collect();
            txn_index::write_entries(&txn_index::txn_index_path(&self.dir, base), &own)?;
        }
        Ok(())
    }

    /// Records a transaction that an abort marker just ended, in memory and in the active
    /// segment's `.txnindex`. The file joins the next flush's fsyncs (with the directory when
    /// it is new), so the entry is durable by the time the marker is.
    pub(crate) fn record_aborted(&mut self, txn: AbortedTxn) -> Result<()> {
        let base = self.active().base_offset;
        let path = txn_index::txn_index_path(&self.dir, base);
        let (file, created) = txn_index::append_entry(&path, &txn)?;
        self.dir_dirty |= created;
        if !self.unflushed_files.iter().any(|f| f.path == path) {
            self.unflushed_files
                .push(Arc::new(SegmentFile { path, file }));
        }
        self.aborted_txns.push(txn);
        Ok(())
    }

    /// Calls `f` with the header of every batch whose base offset is >= `from`, in order.
    pub(crate) fn for_each_batch_from(
        &self,
        from: i64,
        mut f: impl FnMut(&BatchHeader, &[u8]),
    ) -> Result<()> {
        for seg in self.segments.values() {
            if seg.next_offset <= from {
                continue;
            }
            let start = if from > seg.base_offset {
                seg.lookup_position(from)
            } else {
                0
            };
            let end = scan_batches(&seg.file, start, seg.size, false, 1 << 20, |_, h, b| {
                if h.base_offset >= from {
                    f(h, b);
                }
                true
            })?;
            if let Some((position, reason)) = end.error {
                return Err(LogError::CorruptSegment {
                    path: seg.path().to_path_buf(),
                    position,
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Removes every record at or after `offset`. Returns the active segment's file, whose
    /// shortened length (and the directory's removed entries) the caller makes durable outside
    /// the log lock, then checkpoints the recovery point; `None` when nothing was removed.
    pub(crate) fn truncate_to(
        &mut self,
        offset: i64,
        now_ms: i64,
    ) -> Result<Option<Arc<SegmentFile>>> {
        if offset >= self.log_end_offset() {
            return Ok(None);
        }
        let doomed: Vec<i64> = self.segments.range(offset..).map(|(b, _)| *b).collect();
        for b in doomed {
            if let Some(seg) = self.segments.remove(&b) {
                seg.delete_files()?;
            }
        }
        if self.segments.is_empty() {
            let seg = LogSegment::create(
                &self.dir,
                offset,
                self.config.segment_index_bytes,
                self.config.index_interval_bytes,
                now_ms,
            )?;
            self.segments.insert(offset, seg);
        }
        if offset < self.local_log_start_offset {
            self.local_log_start_offset = self.local_log_start_offset.min(offset);
            checkpoint::write_offset(
                &self.dir,
                checkpoint::LOG_START_OFFSET_FILE,
                self.local_log_start_offset,
            )?;
        }
        let active = self.active_mut();
        active.make_active()?;
        active.truncate_to(offset)?;
        let file = Arc::clone(&active.file);
        self.dir_dirty = true;
        let leo = self.log_end_offset();
        self.truncations += 1;
        if self.recovery_point > leo {
            self.recovery_point = leo;
        }
        // A crash before the caller's fsync may bring the removed tail back; the epoch cache
        // written here then lacks its epochs, so the follower's next truncation by epoch goes
        // at least as far back again, never less: safe. Written here, under the lock, because
        // a leader's new epoch is also written under it and must not be overwritten by an
        // older list.
        if self.epoch_cache.truncate_from_end(leo) {
            self.epoch_cache.persist()?;
        }
        self.rebuild_producer_state()?;
        Ok(Some(file))
    }

    /// See [`UnifiedLog::truncate_fully_and_start_at`](super::UnifiedLog::truncate_fully_and_start_at).
    pub(crate) fn truncate_fully_and_start_at(&mut self, offset: i64, now_ms: i64) -> Result<()> {
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        for b in bases {
            if let Some(seg) = self.segments.remove(&b) {
                seg.delete_files()?;
            }
        }
        let seg = LogSegment::create(
            &self.dir,
            offset,
            self.config.segment_index_bytes,
            self.config.index_interval_bytes,
            now_ms,
        )?;
        self.segments.insert(offset, seg);
        self.unflushed_files.clear();
        self.local_log_start_offset = offset;
        self.recovery_point = offset;
        self.truncations += 1;
        self.producers.clear();
        self.aborted_txns.clear();
        producer_state::delete_snapshots_after(&self.dir, -1);
        self.epoch_cache.clear();
        self.epoch_cache.persist()?;
        checkpoint::sync_dir(&self.dir)?;
        self.dir_dirty = false;
        self.checkpoint()
    }

    /// After [`truncate_fully_and_start_at`](Self::truncate_fully_and_start_at)`(offset)`:
    /// takes on the leader epochs and producer state of the log below `offset` (held
    /// elsewhere, e.g. in remote storage) and makes them durable.
    pub(crate) fn restore_state_below(
        &mut self,
        offset: i64,
        leader_epochs: &[(i32, i64)],
        producers: Option<ProducerStateManager>,
    ) -> Result<()> {
        for &(epoch, start) in leader_epochs.iter().filter(|&&(_, o)| o < offset) {
            self.epoch_cache.assign(epoch, start);
        }
        self.epoch_cache.persist()?;
        if let Some(producers) = producers {
            self.producers = producers;
            producer_state::write_snapshot(&self.dir, offset, &self.producers)?;
        }
        Ok(())
    }

    /// Files to fsync to make everything written so far durable, and the offset they cover.
    pub(crate) fn flush_targets(&mut self) -> (Vec<Arc<SegmentFile>>, bool, i64, u64) {
        let mut files = std::mem::take(&mut self.unflushed_files);
        files.push(Arc::clone(&self.active().file));
        let dir = std::mem::replace(&mut self.dir_dirty, false);
        (files, dir, self.log_end_offset(), self.truncations)
    }

    /// Puts back what a failed flush took.
    pub(crate) fn flush_failed(&mut self, files: Vec<Arc<SegmentFile>>, dir: bool) {
        self.unflushed_files.extend(files);
        self.dir_dirty |= dir;
    }

    /// Records a completed flush covering offsets below `target`. Returns the new durable
    /// offset if it moved.
    pub(crate) fn flush_done(&mut self, target: i64, truncations: u64, now_ms: i64) -> Option<i64> {
        self.last_flush_ms = now_ms;
        if truncations != self.truncations {
            return None;
        }
        self.unflushed_messages = 0;
        if target > self.recovery_point {
            self.recovery_point = target;
            return Some(target);
        }
        None
    }

    /// Writes the checkpoints that let the next open skip recovery of flushed data.
    pub(crate) fn checkpoint(&mut self) -> Result<()> {
        checkpoint::write_offset(
            &self.dir,
            checkpoint::RECOVERY_POINT_FILE,
            self.recovery_point,
        )?;
        self.checkpointed_recovery_point = self.recovery_point;
        checkpoint::write_offset(
            &self.dir,
            checkpoint::LOG_START_OFFSET_FILE,
            self.local_log_start_offset,
        )
    }
}
