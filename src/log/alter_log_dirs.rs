//! Moving replicas between this broker's log dirs (AlterReplicaLogDirs; Kafka's
//! `ReplicaAlterLogDirsManager` and its future logs).
//!
//! # Overview
//! A move creates a future log at its final path in the target dir, marked by
//! [`FUTURE_MARKER`](super::unified_log::FUTURE_MARKER), and one task copies the partition's
//! batches into it (offsets, producer ids and sequences, leader epochs as they are) while the
//! partition goes on serving as leader or follower. A tiered partition's future log starts at
//! the local log start, with the leader epochs below it, as a new follower starts after the
//! remote log: only the local tail is copied. When the copy is near the end, the rest is copied
//! and the logs swap under the partition's append lock ([`UnifiedLog::swap_in_future`]), then
//! the old copy is deleted.
//!
//! Moves run at most one per log dir at a time (Kafka's `num.replica.alter.log.dirs.threads`
//! defaults to the number of dirs) and share `replica.alter.log.dirs.io.max.bytes.per.second`.
//!
//! # Consistency
//! The copy starts over when the partition is truncated meanwhile (a follower truncating to
//! its leader), since the future log may hold records the partition no longer has.
//!
//! # Crash consistency
//! The future dir is the record of the move: `LogManager::open` resumes a marked future dir
//! whose partition has a current copy in another dir (keeping what agrees with it by leader
//! epoch: the pure [`decide_copy_start`]), and promotes one that has none (the crash hit after
//! the swap's commit point).
//!
//! # Cancellation
//! Moving a replica back to its current dir, or deleting the partition, cancels its move and
//! deletes the future dir. A broker shutting down stops the copy and leaves the dir to resume.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::unified_log::{write_marker, SwapOutcome, FUTURE_MARKER, MOVED_MARKER};
use super::{LogError, UnifiedLog};
use crate::model::{LeaderEpoch, Offset, TopicPartition};

/// Bytes read from the current log per copy step.
const COPY_CHUNK_BYTES: usize = 256 * 1024;
/// The lag (in offsets) below which the copy tries to swap: what is left is copied under the
/// append lock, unthrottled (at most `SWAP_MAX_LAG_BYTES`, else the swap is put off).
const SWAP_LAG_OFFSETS: i64 = 100;

/// The `outcome` labels of `strata_log_dir_moves_total`.
pub const MOVE_OUTCOMES: [&str; 2] = ["moved", "failed"];

/// What AlterReplicaLogDirs asked of one partition came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlterLogDirOutcome {
    /// The replica already lives in that dir (any move elsewhere is cancelled).
    AlreadyThere,
    /// A move to that dir is under way (started now or before).
    Moving,
    /// No replica here yet: it will be created in that dir when it arrives.
    Preferred,
}

/// Why AlterReplicaLogDirs refused a partition.
#[derive(Debug, thiserror::Error)]
pub enum AlterLogDirError {
    #[error("{dir} is not one of log.dirs")]
    LogDirNotFound { dir: PathBuf },
    #[error("log dir {dir} is offline")]
    LogDirOffline { dir: PathBuf },
    #[error("starting the future log in {dir}: {source}")]
    FutureLog {
        dir: PathBuf,
        #[source]
        source: LogError,
    },
}

/// A move under way.
#[derive(Debug, Clone)]
pub struct FutureReplica {
    pub dir_index: usize,
    pub future: Arc<UnifiedLog>,
    cancel: CancellationToken,
}

/// Owned by the `LogManager`: the moves under way, where replicas not here yet go, the rate.
#[derive(Debug)]
pub struct ReplicaAlterLogDirs {
    moves: Mutex<HashMap<TopicPartition, FutureReplica>>,
    preferred: Mutex<HashMap<TopicPartition, usize>>,
    permits: Arc<tokio::sync::Semaphore>,
    /// `replica.alter.log.dirs.io.max.bytes.per.second`; 0: unlimited.
    rate_bytes_per_second: AtomicU64,
    /// When the throttle lets the next bytes through (a leaky bucket shared by every move).
    next_free: tokio::sync::Mutex<tokio::time::Instant>,
    /// Moves found on disk at startup, started with the background tasks.
    pub(crate) to_resume: Mutex<Vec<(TopicPartition, usize, Arc<UnifiedLog>)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ReplicaAlterLogDirs {
    pub fn new(dirs: usize) -> ReplicaAlterLogDirs {
        ReplicaAlterLogDirs {
            moves: Mutex::default(),
            preferred: Mutex::default(),
            permits: Arc::new(tokio::sync::Semaphore::new(dirs.max(1))),
            rate_bytes_per_second: AtomicU64::new(0),
            next_free: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            to_resume: Mutex::default(),
        }
    }

    /// Sets `replica.alter.log.dirs.io.max.bytes.per.second` (<= 0 or `i64::MAX`: unlimited).
    pub fn set_rate(&self, bytes_per_second: i64) {
        let rate = Some(bytes_per_second)
            .filter(|r| *r > 0 && *r < i64::MAX)
            .unwrap_or(0);
        self.rate_bytes_per_second
            .store(rate as u64, Ordering::Relaxed);
    }

    /// The dir index a replica not here yet is to be created in.
    pub fn preferred_dir(&self, tp: &TopicPartition) -> Option<usize> {
        lock(&self.preferred).get(tp).copied()
    }

    pub fn remember_preferred(&self, tp: &TopicPartition, index: usize) {
        lock(&self.preferred).insert(tp.clone(), index);
    }

    pub fn forget_preferred(&self, tp: &TopicPartition) {
        lock(&self.preferred).remove(tp);
    }

    /// The moves under way.
    pub fn futures(&self) -> Vec<(TopicPartition, FutureReplica)> {
        lock(&self.moves)
            .iter()
            .map(|(tp, f)| (tp.clone(), f.clone()))
            .collect()
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<FutureReplica> {
        lock(&self.moves).get(tp).cloned()
    }

    /// Cancels the move of `tp`, if any, and deletes its future dir.
    pub fn cancel(&self, tp: &TopicPartition) {
        let Some(m) = lock(&self.moves).remove(tp) else {
            return;
        };
        m.cancel.cancel();
        let _ = m.future.close();
        let dir = m.future.dir();
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(partition = %tp, dir = %dir.display(), error = %e, "removing a cancelled future log failed");
        }
    }

    /// Registers a move of `tp` to dir `dir_index` with its future log.
    pub(crate) fn register(
        &self,
        tp: &TopicPartition,
        dir_index: usize,
        future: Arc<UnifiedLog>,
        shutdown: &CancellationToken,
    ) -> FutureReplica {
        let m = FutureReplica {
            dir_index,
            future,
            cancel: shutdown.child_token(),
        };
        lock(&self.moves).insert(tp.clone(), m.clone());
        m
    }

    async fn throttle(&self, bytes: usize) {
        let rate = self.rate_bytes_per_second.load(Ordering::Relaxed);
        if rate == 0 {
            return;
        }
        let until = {
            let mut next = self.next_free.lock().await;
            let now = tokio::time::Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(bytes as f64 / rate as f64);
            *next
        };
        tokio::time::sleep_until(until).await;
    }

    fn chunk_bytes(&self) -> usize {
        match self.rate_bytes_per_second.load(Ordering::Relaxed) {
            0 => COPY_CHUNK_BYTES,
            // A small rate in small steps, so the copy does not burst a second's worth at once.
            r => COPY_CHUNK_BYTES.min((r / 4).max(1) as usize),
        }
    }
}

/// What a (re)starting copy knows of the two logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyFacts {
    pub current_local_start: Offset,
    pub future_local_start: Offset,
    pub future_end: Offset,
    /// The future log's latest leader epoch.
    pub future_epoch: Option<LeaderEpoch>,
    /// The current log's answer for that epoch: the largest epoch up to it and where it ends.
    pub current_end_for_epoch: Option<(LeaderEpoch, Offset)>,
}

/// Where the copy goes on from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyStart {
    /// From the future log's end: what it holds agrees with the current log.
    Continue,
    /// Cut the future log back to this offset (its records past it diverge), then go on.
    TruncateTo(Offset),
    /// Empty the future log and start it at the current local log start, with the leader
    /// epochs below it (a new copy, or one that shares nothing with the current log).
    StartOver(Offset),
}

/// What a future log found on disk keeps (Kafka's follower truncation by leader epoch): the
/// records of its latest epoch up to where that epoch ends in the current log, when both hold
/// that epoch and the copy starts at or after the current local log start.
pub fn decide_copy_start(f: CopyFacts) -> CopyStart {
    let start_over = CopyStart::StartOver(f.current_local_start);
    if f.future_end <= f.future_local_start || f.future_local_start < f.current_local_start {
        return start_over;
    }
    match (f.future_epoch, f.current_end_for_epoch) {
        (Some(epoch), Some((e, end))) if e == epoch && end > f.future_local_start => {
            if end < f.future_end {
                CopyStart::TruncateTo(end)
            } else {
                CopyStart::Continue
            }
        }
        _ => start_over,
    }
}

/// Applies [`decide_copy_start`] to the two logs.
fn align(current: &UnifiedLog, future: &UnifiedLog) -> Result<(), LogError> {
    let future_epoch = future.latest_epoch_entry().map(|(e, _)| e);
    let facts = CopyFacts {
        current_local_start: current.local_log_start_offset(),
        future_local_start: future.local_log_start_offset(),
        future_end: future.log_end_offset(),
        future_epoch,
        current_end_for_epoch: future_epoch.and_then(|e| current.end_offset_for_epoch(e)),
    };
    match decide_copy_start(facts) {
        CopyStart::Continue => Ok(()),
        CopyStart::TruncateTo(offset) => future.truncate_to(offset),
        CopyStart::StartOver(start) => {
            let epochs: Vec<_> = current
                .epoch_entries()
                .into_iter()
                .filter(|(_, o)| *o <= start)
                .collect();
            future.start_after_remote(start, &epochs, None)
        }
    }
}

/// Copies `current` into the future log until it is swapped in; see the module documentation.
pub(crate) async fn run_move(
    owner: Arc<ReplicaAlterLogDirs>,
    tp: TopicPartition,
    current: Arc<UnifiedLog>,
    m: FutureReplica,
) {
    let permit = tokio::select! {
        _ = m.cancel.cancelled() => return,
        p = Arc::clone(&owner.permits).acquire_owned() => p,
    };
    let _permit = permit;
    let result = tokio::select! {
        _ = m.cancel.cancelled() => return,
        r = copy_and_swap(&owner, &tp, &current, &m) => r,
    };
    if m.cancel.is_cancelled() {
        return;
    }
    let outcome = if result.is_ok() { "moved" } else { "failed" };
    // The copy left behind goes before the move leaves the table: a next move of the
    // partition may create its future log at that same path.
    let cleanup = match result {
        Ok(old_dir) => {
            tracing::info!(partition = %tp, to = %current.dir().display(), "replica moved to another log dir");
            let doomed = old_dir.with_file_name(format!("{}-delete", tp.dir_name()));
            tokio::task::spawn_blocking(move || {
                // Only the old copy: a move back may already have put a future log there.
                if !old_dir.join(MOVED_MARKER).exists() {
                    return;
                }
                let removed = std::fs::rename(&old_dir, &doomed)
                    .and_then(|()| std::fs::remove_dir_all(&doomed));
                if let Err(e) = removed {
                    tracing::warn!(dir = %old_dir.display(), error = %e, "removing a moved replica's old copy failed (startup finishes it)");
                }
            })
        }
        Err(e) => {
            // A failing target dir fails the move, never the partition.
            tracing::error!(partition = %tp, error = %e, "moving a replica to another log dir failed");
            let future = Arc::clone(&m.future);
            tokio::task::spawn_blocking(move || {
                let _ = future.close();
                let _ = std::fs::remove_dir_all(future.dir());
            })
        }
    };
    let _ = cleanup.await;
    super::metrics()
        .log_dir_moves
        .with_label_values(&[outcome])
        .inc();
    lock(&owner.moves).remove(&tp);
}

async fn copy_and_swap(
    owner: &ReplicaAlterLogDirs,
    tp: &TopicPartition,
    current: &Arc<UnifiedLog>,
    m: &FutureReplica,
) -> Result<PathBuf, LogError> {
    let future = &m.future;
    'restart: loop {
        let truncations = current.truncation_count();
        align(current, future)?;
        loop {
            if current.truncation_count() != truncations {
                tracing::info!(partition = %tp, "partition truncated during its move: copy starts over");
                future.truncate_fully_and_start_at(current.local_log_start_offset())?;
                continue 'restart;
            }
            let from = future.log_end_offset();
            let lag = current.log_end_offset().0 - from.0;
            if lag <= SWAP_LAG_OFFSETS {
                let (c, f) = (Arc::clone(current), Arc::clone(future));
                let index = m.dir_index;
                // fsync the copy first, so the swap's own fsync under the append lock only
                // covers the last batches.
                let swapped = tokio::task::spawn_blocking(move || {
                    f.flush()?;
                    c.swap_in_future(&f, truncations, Some(index))
                })
                .await
                .map_err(|e| LogError::Io {
                    path: future.dir(),
                    source: std::io::Error::other(e),
                })??;
                match swapped {
                    SwapOutcome::Swapped { old_dir } => return Ok(old_dir),
                    SwapOutcome::NotCaughtUp => {}
                    SwapOutcome::Diverged => {
                        future.truncate_fully_and_start_at(current.local_log_start_offset())?;
                        continue 'restart;
                    }
                }
                if lag == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
            match current.read(from, owner.chunk_bytes(), Offset(i64::MAX), true) {
                Ok(data) if data.records.is_empty() => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(data) => {
                    owner.throttle(data.records.len()).await;
                    super::metrics()
                        .log_dir_move_bytes
                        .inc_by(data.records.len() as u64);
                    future.append_as_follower(data.records)?;
                }
                // Retention passed the copy's end: start again at the new local start.
                Err(LogError::OffsetOutOfRange { .. }) => {
                    future.truncate_fully_and_start_at(current.local_log_start_offset())?;
                    continue 'restart;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Creates the future log of `tp` at `dir/<topic>-<partition>`, replacing any leftover there.
pub(crate) fn create_future_log(
    dir: &Path,
    tp: &TopicPartition,
    current: &UnifiedLog,
) -> Result<Arc<UnifiedLog>, AlterLogDirError> {
    let path = dir.join(tp.dir_name());
    let fail = |source| AlterLogDirError::FutureLog {
        dir: dir.to_path_buf(),
        source,
    };
    if path.exists() {
        std::fs::remove_dir_all(&path).map_err(|source| {
            fail(LogError::Io {
                path: path.clone(),
                source,
            })
        })?;
    }
    let future = UnifiedLog::open(path.clone(), current.config(), Arc::clone(current.clock()))
        .map_err(fail)?;
    write_marker(&path, FUTURE_MARKER).map_err(fail)?;
    Ok(future)
}

/// What startup makes of a partition dir: a current log, a future one, or a moved-away copy.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DirRole {
    Current,
    Future,
    Moved,
}

pub(crate) fn dir_role(path: &Path) -> DirRole {
    if path.join(MOVED_MARKER).exists() {
        DirRole::Moved
    } else if path.join(FUTURE_MARKER).exists() {
        DirRole::Future
    } else {
        DirRole::Current
    }
}

/// A future dir whose partition has no current copy: the crash came after the swap's commit
/// point, so it is the replica now.
pub(crate) fn promote(path: &Path) -> Result<(), LogError> {
    let marker = path.join(FUTURE_MARKER);
    std::fs::remove_file(&marker).map_err(|source| LogError::Io {
        path: marker,
        source,
    })?;
    super::checkpoint::sync_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(future: (i64, i64), epoch: Option<i32>, current_end: Option<(i32, i64)>) -> CopyFacts {
        CopyFacts {
            current_local_start: Offset(100),
            future_local_start: Offset(future.0),
            future_end: Offset(future.1),
            future_epoch: epoch.map(LeaderEpoch),
            current_end_for_epoch: current_end.map(|(e, o)| (LeaderEpoch(e), Offset(o))),
        }
    }

    #[test]
    fn an_empty_or_stale_copy_starts_over_at_the_current_local_start() {
        let over = CopyStart::StartOver(Offset(100));
        assert_eq!(decide_copy_start(facts((0, 0), None, None)), over);
        // Retention moved the current log's start past the copy's.
        assert_eq!(
            decide_copy_start(facts((50, 500), Some(3), Some((3, 900)))),
            over
        );
    }

    #[test]
    fn a_copy_keeps_what_agrees_by_leader_epoch() {
        // The current log holds epoch 3 beyond the copy's end.
        assert_eq!(
            decide_copy_start(facts((100, 500), Some(3), Some((3, 900)))),
            CopyStart::Continue
        );
        // Epoch 3 ended at 400 in the current log (a truncation, then a new leader).
        assert_eq!(
            decide_copy_start(facts((100, 500), Some(3), Some((3, 400)))),
            CopyStart::TruncateTo(Offset(400))
        );
        // The current log never had epoch 3, or its epoch ends before the copy starts.
        let over = CopyStart::StartOver(Offset(100));
        assert_eq!(
            decide_copy_start(facts((100, 500), Some(3), Some((2, 450)))),
            over
        );
        assert_eq!(
            decide_copy_start(facts((100, 500), Some(3), Some((3, 100)))),
            over
        );
        assert_eq!(decide_copy_start(facts((100, 500), None, None)), over);
    }
}
