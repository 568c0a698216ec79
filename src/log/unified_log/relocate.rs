//! Moving a replica to another log dir (AlterReplicaLogDirs): the swap of a caught-up future
//! log into the partition's `UnifiedLog`.
//!
//! The future log ([`crate::log::alter_log_dirs`]) lives at its final path,
//! `<target dir>/<topic>-<partition>`, marked by the file [`FUTURE_MARKER`] while it catches up.
//! The swap happens inside the `UnifiedLog` every holder already shares (the partition, the
//! log manager, tiering), under its append lock: the last batches are copied, the future is
//! fsynced whole, then the two `LocalLog`s trade places and the `UnifiedLog` points at the new
//! dir (its failure channel and disk pressure follow: `DirHealth::moved_to`). Offsets do not
//! change, so the high watermark and the last stable offset (held by the `Partition`, derived
//! from the producer state) stay as they were.
//!
//! # Crash consistency
//! Two files make the outcome durable, both written under the lock before the swap:
//! 1. [`MOVED_MARKER`] in the old dir (fsynced): from here the new dir is the replica;
//! 2. the removal of [`FUTURE_MARKER`] from the new dir (fsynced).
//!
//! A restart before 1 finds the old dir current and the future dir still marked: the move
//! resumes. After 1 it deletes the old dir and promotes a marked future dir that has no current
//! copy (see `LogManager::open`).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{lock_ignoring_poison, UnifiedLog};
use crate::log::local_log::LocalLog;
use crate::log::segment::{read_batches, SegmentRead};
use crate::log::{checkpoint, producer_state, LogError, Result};
use crate::model::Offset;

/// In a partition dir: this copy is a future replica, still catching up.
pub(crate) const FUTURE_MARKER: &str = "future-replica";
/// In a partition dir: the replica moved to another log dir; this copy is to be deleted.
pub(crate) const MOVED_MARKER: &str = "replica-moved";

/// At most this much is copied under the append lock at the swap; with more left the swap is
/// put off (the copy task catches up further first), so producers wait at most this long.
pub(crate) const SWAP_MAX_LAG_BYTES: usize = 1 << 20;

/// How a swap attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SwapOutcome {
    /// The future log is now the partition's log; the old copy, in this dir, is to be removed.
    Swapped { old_dir: PathBuf },
    /// More than [`SWAP_MAX_LAG_BYTES`] arrived meanwhile: copy more and try again.
    NotCaughtUp,
    /// The log was truncated since the copy started (a follower's truncation): the future log
    /// may hold records the partition no longer has; it starts over.
    Diverged,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes an empty marker file into `dir` and makes it durable.
pub(crate) fn write_marker(dir: &Path, name: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .and_then(|f| f.sync_all())
        .map_err(io(&path))?;
    checkpoint::sync_dir(dir)
}

/// Reads batches of `st` from `from` on (at least one batch, at most `max_bytes` otherwise).
fn read_locked(st: &LocalLog, from: i64, max_bytes: usize) -> Result<Bytes> {
    let leo = st.log_end_offset();
    let (mut target, mut after_base) = (from, None::<i64>);
    loop {
        let seg = match after_base {
            None => st.floor_segment(target),
            Some(b) => st.segments.range(b + 1..).next().map(|(_, s)| s),
        };
        let Some(seg) = seg.filter(|_| target < leo) else {
            return Ok(Bytes::new());
        };
        target = target.max(seg.base_offset);
        after_base = Some(seg.base_offset);
        let pos = seg.lookup_position(target);
        match read_batches(&seg.file, pos, seg.size, target, max_bytes, i64::MAX, true)? {
            SegmentRead::Data(records) => return Ok(records),
            SegmentRead::NotHere => continue,
        }
    }
}

impl UnifiedLog {
    /// A failed fsync of the copy in `path`: when the log moved to another dir meanwhile, the
    /// old copy's files no longer matter (the new copy was fsynced whole at the swap).
    pub(super) fn flush_failed(
        &self,
        files: Vec<std::sync::Arc<crate::log::segment::SegmentFile>>,
        dir: bool,
        path: &Path,
        e: LogError,
    ) -> Result<()> {
        if self.dir() != path {
            return Ok(());
        }
        self.fsync_failed(files, dir, &e);
        Err(e)
    }

    /// Truncations so far: a future replica copying this log starts over when it changes.
    pub fn truncation_count(&self) -> u64 {
        self.lock().truncations
    }

    /// Swaps `future` (a copy of this log up to near its end, made since truncation count
    /// `truncations`) in as this log, which then lives in dir `dir_index` of `log.dirs`. See
    /// the module documentation.
    pub(crate) fn swap_in_future(
        &self,
        future: &UnifiedLog,
        truncations: u64,
        dir_index: Option<usize>,
    ) -> Result<SwapOutcome> {
        // The cleaner and the checkpoint writer work on the current copy's files outside the
        // log lock: neither may run across the swap.
        let _cleaning = lock_ignoring_poison(&self.cleaner_lock);
        let _serial = lock_ignoring_poison(&self.checkpoint_lock);
        let mut st = self.lock_open()?;
        if st.truncations != truncations {
            return Ok(SwapOutcome::Diverged);
        }
        let mut budget = SWAP_MAX_LAG_BYTES;
        loop {
            let from = future.log_end_offset().0;
            if from >= st.log_end_offset() {
                break;
            }
            if from < st.local_log_start_offset {
                return Ok(SwapOutcome::Diverged);
            }
            let records = read_locked(&st, from, budget)?;
            if records.is_empty() || records.len() > budget {
                return Ok(SwapOutcome::NotCaughtUp);
            }
            budget -= records.len();
            future.append_as_follower(records)?;
        }
        if st.local_log_start_offset > future.local_log_start_offset().0 {
            // DeleteRecords or retention moved the start meanwhile.
            future.delete_records(Offset(st.local_log_start_offset))?;
        }
        future.flush()?;
        let old_dir = st.dir.clone();
        let mut fut = future.lock_open()?;
        // The producer state at the log end is the current copy's (it also knows producers
        // whose last batch lies below where the copy started); the snapshot makes it the one a
        // restart loads.
        fut.producers = st.producers.clone();
        fut.guard = st.guard.take();
        fut.cleaner_floor = st.cleaner_floor.take();
        fut.config = st.config.clone();
        let leo = fut.log_end_offset();
        producer_state::write_snapshot(&fut.dir, leo, &fut.producers)?;
        // Epochs that began without a batch yet (a leader elected, nothing produced since).
        for &(epoch, start) in st.epoch_cache.entries() {
            fut.epoch_cache.assign(epoch, start);
        }
        fut.epoch_cache.persist()?;
        fut.checkpoint()?;
        for name in [
            checkpoint::HIGH_WATERMARK_FILE,
            checkpoint::CLEANER_OFFSET_FILE,
        ] {
            let from = old_dir.join(name);
            if from.exists() {
                let to = fut.dir.join(name);
                std::fs::copy(&from, &to).map_err(io(&to))?;
            }
        }
        checkpoint::sync_dir(&fut.dir)?;
        if let Err(e) = write_marker(&old_dir, MOVED_MARKER) {
            // Not committed: a marker that may have reached the disk must not outlive this.
            let _ = std::fs::remove_file(old_dir.join(MOVED_MARKER));
            return Err(e);
        }
        // Past the commit point the new copy is the replica whatever happens next: a marker
        // left behind is removed at the next start (the future dir then has no current copy).
        let marker = fut.dir.join(FUTURE_MARKER);
        let unmarked = std::fs::remove_file(&marker)
            .map_err(io(&marker))
            .and_then(|()| checkpoint::sync_dir(&fut.dir));
        if let Err(e) = unmarked {
            tracing::warn!(path = %marker.display(), error = %e, "removing the future replica's marker failed; the next start removes it");
        }
        std::mem::swap(&mut *st, &mut *fut);
        fut.closed = true;
        *self.dir.write().unwrap_or_else(|p| p.into_inner()) = st.dir.clone();
        *future.dir.write().unwrap_or_else(|p| p.into_inner()) = old_dir.clone();
        if let Some(index) = dir_index {
            self.health.moved_to(index);
        }
        self.durable.fetch_max(leo, Ordering::SeqCst);
        Ok(SwapOutcome::Swapped { old_dir })
    }
}
