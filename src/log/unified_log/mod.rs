//! `UnifiedLog`: a partition's log, the API the rest of the broker uses.
//!
//! # Overview
//! One [`LocalLog`] (segments, checkpoints, epochs, producer state) behind a `std::sync::Mutex`
//! held only for short, non-awaiting sections: validation and CRC checks of appended batches
//! run before taking it, reads copy bytes after releasing it (through an `Arc` of the segment
//! file), and fsyncs run outside it.
//!
//! # Consistency
//! Appends are atomic: a request's batches are all written or, on any error (validation,
//! producer sequence, I/O, full disk), none are and the log is unchanged. Offsets are assigned
//! from the log end offset under the lock, so they are dense and ordered.
//!
//! # Crash consistency
//! With [`FlushPolicy::GroupCommit`] an append is acknowledged only after
//! [`UnifiedLog::wait_durable`] saw an `fdatasync` cover it (and the directory fsync for any
//! new segment file). Waiters queue on an async mutex; the holder fsyncs up to the current end,
//! so one fsync serves everyone who arrived meanwhile. Recovery ([`loader`](super::loader))
//! never cuts below a durable offset because durable batches are whole and CRC-valid.

mod health;
mod lookup;
mod relocate;
mod tiering;
mod txn;

pub(crate) use relocate::{write_marker, SwapOutcome, FUTURE_MARKER, MOVED_MARKER};
pub use tiering::{CleanerFloor, SealedSegmentInfo};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::local_log::LocalLog;
use super::producer_state::{Check, SequenceError};
use super::segment::{read_batches, SegmentFile, SegmentRead};
use super::txn_index::AbortedTxn;
use super::validator::{self, ValidBatch};
use super::{
    checkpoint, loader, retention, FetchDataInfo, FlushPolicy, LogAppendInfo, LogConfig, LogError,
    ProducerStateEntry, Result, TimestampType,
};
use crate::clock::SharedClock;
use crate::model::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};
use crate::protocol::control::{parse_marker, TransactionResult};
use crate::protocol::record_batch::{self, validate_batch, BatchError, BatchIter};
use txn::entry;

/// Asked before retention deletes a closed segment: `false` holds it back (tiered storage keeps
/// a segment until it is uploaded). Arguments: base offset and last offset of the segment.
pub type RetentionGuard = Arc<dyn Fn(Offset, Offset) -> bool + Send + Sync>;

/// A partition's log: its segments, indexes, checkpoints and producer state.
pub struct UnifiedLog {
    // Changes only when the replica moves to another log dir, under the `state` lock.
    dir: std::sync::RwLock<PathBuf>,
    clock: SharedClock,
    // Short critical sections only; never held across `.await`, a read's copy, or an fsync.
    state: Mutex<LocalLog>,
    // Group commit: at most one fsync in flight; waiters behind it re-check the durable offset.
    flush_lock: tokio::sync::Mutex<()>,
    durable: AtomicI64,
    /// One cleaner pass per log at a time.
    pub(crate) cleaner_lock: Mutex<()>,
    /// Orders writes of the recovery-point checkpoint: the periodic one fsyncs outside `state`,
    /// and truncations (which lower the recovery point) take this first, so an older, higher
    /// value never lands on disk after theirs.
    checkpoint_lock: Mutex<()>,
    health: super::dir_failure::DirHealth,
}

impl std::fmt::Debug for UnifiedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnifiedLog")
            .field("dir", &self.dir())
            .field("durable", &self.durable.load(Ordering::Relaxed))
            .finish()
    }
}

enum Origin {
    /// With the guard of a KIP-890 verification, when the broker verifies transactions.
    Leader(LeaderEpoch, Option<super::VerificationGuard>),
    /// The leader appending a control batch it built itself (a transaction marker): not
    /// subject to the client checks that refuse control batches.
    Coordinator(LeaderEpoch),
    Follower,
    /// A mirror topic's leader copying a source cluster: offsets and records kept, the local
    /// leader epoch stamped (outside the CRC) so the epoch lineage is this cluster's.
    Mirror(LeaderEpoch),
}

fn batch_error(position: usize, e: BatchError) -> LogError {
    match e {
        BatchError::BadMagic { magic } => LogError::UnsupportedMagic { magic },
        e => LogError::CorruptBatch {
            position,
            reason: e.to_string(),
        },
    }
}

fn lock_ignoring_poison(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl UnifiedLog {
    /// Opens the log in `dir`, creating it if absent, and recovers every segment after the
    /// recovery point (truncating a torn or corrupt tail, rebuilding missing indexes).
    pub fn open(dir: PathBuf, config: LogConfig, clock: SharedClock) -> Result<Arc<UnifiedLog>> {
        super::checkpoint::create_dir_all_durable(&dir).map_err(|e| LogError::Io {
            path: dir.clone(),
            source: e,
        })?;
        let local = loader::load(&dir, &config, clock.now_ms())?;
        let durable = local.recovery_point;
        Ok(Arc::new(UnifiedLog {
            dir: std::sync::RwLock::new(dir),
            clock,
            state: Mutex::new(local),
            flush_lock: tokio::sync::Mutex::new(()),
            durable: AtomicI64::new(durable),
            cleaner_lock: Mutex::new(()),
            checkpoint_lock: Mutex::new(()),
            health: Default::default(),
        }))
    }

    /// The partition's directory (it changes when the replica moves to another log dir).
    pub fn dir(&self) -> PathBuf {
        self.dir.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The lock, recovering from poisoning: every mutation leaves `LocalLog` consistent before
    /// anything that could panic, so a panicked holder does not invalidate it.
    pub(crate) fn lock(&self) -> MutexGuard<'_, LocalLog> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_open(&self) -> Result<MutexGuard<'_, LocalLog>> {
        let st = self.lock();
        if st.closed {
            return Err(LogError::Closed);
        }
        self.check_online()?;
        Ok(st)
    }

    pub(crate) fn clock(&self) -> &SharedClock {
        &self.clock
    }

    pub fn config(&self) -> LogConfig {
        self.lock().config.clone()
    }

    /// The flush policy alone, without copying the whole config (read on every append).
    pub fn flush_policy(&self) -> FlushPolicy {
        self.lock().config.flush_policy
    }

    /// Applies a changed topic config; takes effect at the next append / retention pass.
    pub fn update_config(&self, config: LogConfig) {
        let mut st = self.lock();
        let (ib, iib) = (config.segment_index_bytes, config.index_interval_bytes);
        for seg in st.segments.values_mut() {
            seg.set_config(ib, iib);
        }
        st.config = config;
    }

    /// Validates `records` (one or more magic-2 batches: sizes, CRC-32C, record counts,
    /// `max.message.bytes`, each record's key and timestamp as the topic requires, producer
    /// sequence), recompresses batches whose codec is not the topic's `compression.type`,
    /// assigns offsets from the log end offset,
    /// stamps LogAppendTime if configured, records `leader_epoch` in each batch's
    /// partition-leader-epoch field and the epoch cache, and appends. A retried duplicate of an
    /// idempotent batch returns the original offsets with `duplicate = true`. On any error the
    /// log is unchanged.
    pub fn append_as_leader(
        &self,
        records: Bytes,
        leader_epoch: LeaderEpoch,
    ) -> Result<LogAppendInfo> {
        self.append(records, Origin::Leader(leader_epoch, None))
    }

    /// Appends batches that already carry their offsets (a follower copying its leader).
    pub fn append_as_follower(&self, records: Bytes) -> Result<LogAppendInfo> {
        self.append(records, Origin::Follower)
    }

    /// Appends batches copied from a mirror link's source cluster, at the source's offsets
    /// (producer state kept as a follower keeps it), with `leader_epoch` in each batch's
    /// partition-leader-epoch field, the one header field outside the CRC: records, offsets,
    /// producer ids and sequences, timestamps, headers and compression stay the source's.
    pub fn append_as_mirror(
        &self,
        records: Bytes,
        leader_epoch: LeaderEpoch,
    ) -> Result<LogAppendInfo> {
        self.append(records, Origin::Mirror(leader_epoch))
    }

    /// Checks every batch (sizes, CRC-32C) and, for a leader, validates and possibly rewrites
    /// it ([`validator`](super::validator)). Returns the batches to write, in order.
    fn validate(&self, records: &Bytes, leader: bool) -> Result<Vec<ValidBatch>> {
        let cfg = self.lock().config.clone();
        let max = cfg.max_message_bytes;
        let now = self.clock.now_ms();
        let dir = self.dir();
        let tp = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let too_large = |size_bytes: usize| LogError::BatchTooLarge {
            size_bytes,
            max_bytes: max,
        };
        let mut batches = Vec::new();
        for item in BatchIter::new(records) {
            let (pos, h) = item.map_err(|(pos, e)| batch_error(pos, e))?;
            if h.total_size() > max as usize {
                return Err(too_large(h.total_size()));
            }
            validate_batch(&records[pos..pos + h.total_size()]).map_err(|e| batch_error(pos, e))?;
            let whole = records.slice(pos..pos + h.total_size());
            if !leader {
                batches.push(ValidBatch {
                    bytes: whole,
                    header: h,
                });
                continue;
            }
            let valid =
                validator::validate_leader_batch(whole, h, &cfg, now, tp).map_err(|e| match e {
                    LogError::CorruptBatch { reason, .. } => LogError::CorruptBatch {
                        position: pos,
                        reason,
                    },
                    e => e,
                })?;
            // Recompression may have grown it.
            if valid.bytes.len() > max as usize {
                return Err(too_large(valid.bytes.len()));
            }
            batches.push(valid);
        }
        if batches.is_empty() {
            return Err(LogError::CorruptBatch {
                position: 0,
                reason: "no record batch".to_string(),
            });
        }
        Ok(batches)
    }

    fn append_checked(&self, records: Bytes, origin: Origin) -> Result<LogAppendInfo> {
        let leader = !matches!(origin, Origin::Follower);
        // CRC checks are the costly part: done before taking the lock.
        let mut batches = self.validate(&records, matches!(origin, Origin::Leader(..)))?;
        let mut st = self.lock_open()?;
        let now = self.clock.now_ms();
        let log_append_time = leader && st.config.timestamp_type == TimestampType::LogAppendTime;
        let leo = st.log_end_offset();
        let mut pending = HashMap::new();
        let mut completed = Vec::new();
        let mut next = leo;
        // What is written: the request's own bytes, except the few header bytes a leader
        // rewrites, which go in small patched copies (no copy of the records themselves).
        let mut chunks: Vec<Bytes> = Vec::with_capacity(2 * batches.len());
        for ValidBatch {
            bytes: whole,
            header: h,
        } in batches.iter_mut()
        {
            let whole = whole.clone();
            let marker = h.is_control().then(|| parse_marker(&whole)).flatten();
            match origin {
                Origin::Leader(epoch, _) | Origin::Coordinator(epoch) => {
                    h.base_offset = next;
                    h.partition_leader_epoch = epoch.0;
                    if log_append_time {
                        // The stamp is CRC-covered: the whole batch is rewritten.
                        let mut batch = whole.to_vec();
                        record_batch::set_base_offset(&mut batch, next);
                        record_batch::set_partition_leader_epoch(&mut batch, epoch.0);
                        record_batch::set_log_append_time(&mut batch, now);
                        h.max_timestamp = now;
                        h.attributes |= 1 << 3;
                        chunks.push(Bytes::from(batch));
                    } else {
                        let mut head = whole[..record_batch::UNCOVERED_PREFIX].to_vec();
                        record_batch::set_base_offset(&mut head, next);
                        record_batch::set_partition_leader_epoch(&mut head, epoch.0);
                        chunks.push(Bytes::from(head));
                        chunks.push(whole.slice(record_batch::UNCOVERED_PREFIX..));
                    }
                }
                Origin::Follower | Origin::Mirror(_) => {
                    if h.base_offset < next {
                        return Err(LogError::OffsetOutOfRange {
                            offset: Offset(h.base_offset),
                            log_start_offset: Offset(st.local_log_start_offset),
                            log_end_offset: Offset(leo),
                        });
                    }
                    if let Origin::Mirror(epoch) = origin {
                        h.partition_leader_epoch = epoch.0;
                        let mut head = whole[..record_batch::UNCOVERED_PREFIX].to_vec();
                        record_batch::set_partition_leader_epoch(&mut head, epoch.0);
                        chunks.push(Bytes::from(head));
                        chunks.push(whole.slice(record_batch::UNCOVERED_PREFIX..));
                    } else {
                        chunks.push(whole);
                    }
                }
            }
            match st.producers.check(&pending, h) {
                Ok(Check::Duplicate(m)) if leader => {
                    return Ok(LogAppendInfo {
                        first_offset: Offset(m.first_offset),
                        last_offset: Offset(m.last_offset),
                        log_append_time_ms: if log_append_time { now } else { -1 },
                        local_log_start_offset: Offset(st.local_log_start_offset),
                        record_count: (m.last_offset - m.first_offset + 1) as u64,
                        size_bytes: 0,
                        duplicate: true,
                    });
                }
                Ok(_) => {}
                Err(_) if !leader => {} // a follower copies whatever its leader accepted
                Err(SequenceError::Fenced { epoch, current }) => {
                    return Err(LogError::ProducerFenced {
                        producer_id: ProducerId(h.producer_id),
                        epoch: ProducerEpoch(epoch),
                        current: ProducerEpoch(current),
                    })
                }
                Err(SequenceError::OutOfOrder { sequence, expected }) => {
                    return Err(LogError::OutOfOrderSequence {
                        producer_id: ProducerId(h.producer_id),
                        sequence,
                        expected,
                    })
                }
                Err(SequenceError::InvalidTxnState) => {
                    return Err(LogError::InvalidTxnState {
                        producer_id: ProducerId(h.producer_id),
                    })
                }
                // Only `check_coordinator_epoch` returns it, below.
                Err(SequenceError::CoordinatorFenced { .. }) => {}
            }
            if let Origin::Leader(_, Some(guard)) = origin {
                if !st.producers.verified(&pending, h, guard) {
                    let producer_id = ProducerId(h.producer_id);
                    return Err(LogError::TransactionNotVerified { producer_id });
                }
            }
            if let Some(marker) = marker {
                // A follower copies what its leader accepted, as Kafka only logs it there.
                let fenced = st.producers.check_coordinator_epoch(
                    &pending,
                    h.producer_id,
                    marker.coordinator_epoch,
                );
                if let (true, Err(SequenceError::CoordinatorFenced { current, .. })) =
                    (leader, fenced)
                {
                    return Err(LogError::TransactionCoordinatorFenced {
                        producer_id: ProducerId(h.producer_id),
                        coordinator_epoch: marker.coordinator_epoch,
                        current,
                    });
                }
                let aborted = marker.result == TransactionResult::Abort;
                completed.push(st.producers.completed_txn(&pending, h, aborted));
            }
            if let Some(mut s) = st.producers.updated(&pending, h, h.max_timestamp.max(now)) {
                if let Some(marker) = marker {
                    s.coordinator_epoch = marker.coordinator_epoch;
                }
                pending.insert(h.producer_id, s);
            }
            next = h.next_offset();
        }
        // Where each batch lands in what is written (a rewritten batch may differ in size).
        let mut placed = Vec::with_capacity(batches.len());
        let mut at = 0usize;
        for b in &batches {
            placed.push((at, b.header));
            at += b.bytes.len();
        }
        let first_offset = placed.first().map_or(leo, |(_, h)| h.base_offset);
        let last_offset = next - 1;
        let record_count: u64 = placed.iter().map(|(_, h)| h.records_count as u64).sum();
        let max_timestamp = placed
            .iter()
            .map(|(_, h)| h.max_timestamp)
            .max()
            .unwrap_or(-1);
        let size: usize = chunks.iter().map(Bytes::len).sum();
        if st.should_roll(size, last_offset, max_timestamp, now) {
            st.roll(now)?;
        }
        let preallocate = st.config.preallocate_bytes;
        st.active_mut().append(&chunks, &placed, preallocate)?;
        st.producers.apply(pending);
        for txn in completed.iter().filter(|t| t.is_aborted) {
            let lso = st.producers.last_stable_offset_after(txn);
            st.record_aborted(AbortedTxn::new(txn, lso))?;
        }
        let mut epochs_changed = false;
        match origin {
            Origin::Leader(epoch, _) | Origin::Coordinator(epoch) | Origin::Mirror(epoch) => {
                epochs_changed |= st.epoch_cache.assign(epoch.0, first_offset)
            }
            Origin::Follower => {
                for (_, h) in &placed {
                    epochs_changed |= st
                        .epoch_cache
                        .assign(h.partition_leader_epoch, h.base_offset);
                }
            }
        }
        if epochs_changed {
            // Leader changes are rare; the data is written, so a failure here is reported but
            // the cache is rebuilt from batch headers on the next open anyway.
            st.epoch_cache.persist()?;
        }
        st.unflushed_messages += record_count;
        let flush_now = matches!(st.config.flush_policy, FlushPolicy::Interval { messages, .. } if st.unflushed_messages >= messages);
        let info = LogAppendInfo {
            first_offset: Offset(first_offset),
            last_offset: Offset(last_offset),
            log_append_time_ms: if log_append_time { now } else { -1 },
            local_log_start_offset: Offset(st.local_log_start_offset),
            record_count,
            size_bytes: size as u64,
            duplicate: false,
        };
        drop(st);
        if flush_now {
            self.flush()?;
        }
        Ok(info)
    }

    fn sync_files(files: &[Arc<SegmentFile>], dir: Option<&Path>) -> Result<()> {
        if let Some(d) = dir {
            checkpoint::sync_dir(d)?;
        }
        for f in files {
            f.sync_data()?;
        }
        Ok(())
    }

    fn finish_flush(&self, target: i64, truncations: u64) {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        if st.flush_done(target, truncations, now).is_some() {
            self.durable.fetch_max(target, Ordering::SeqCst);
        }
    }

    /// Resolves once every record below `end_offset` is durable under the flush policy: with
    /// group commit, after an fsync that covers it (one fsync serves every waiter that arrived
    /// meanwhile); with the interval policy, at once.
    pub async fn wait_durable(&self, end_offset: Offset) -> Result<()> {
        if self.lock_open()?.config.flush_policy != FlushPolicy::GroupCommit {
            return Ok(());
        }
        if self.durable.load(Ordering::SeqCst) >= end_offset.0 {
            return Ok(());
        }
        let waited = std::time::Instant::now();
        let _flushing = self.flush_lock.lock().await;
        if self.durable.load(Ordering::SeqCst) >= end_offset.0 {
            super::metrics()
                .flush_latency
                .observe(waited.elapsed().as_secs_f64());
            return Ok(());
        }
        let ((files, dir, target, truncations), path) = {
            let mut st = self.lock_open()?;
            (st.flush_targets(), st.dir.clone())
        };
        let sync_dir = dir.then(|| path.clone());
        let files2 = files.clone();
        let res =
            tokio::task::spawn_blocking(move || Self::sync_files(&files2, sync_dir.as_deref()))
                .await
                .map_err(|e| LogError::Io {
                    path: self.dir(),
                    source: std::io::Error::other(e),
                })
                .and_then(|r| r);
        if let Err(e) = res {
            return self.flush_failed(files, dir, &path, e);
        }
        self.finish_flush(target, truncations);
        super::metrics()
            .flush_latency
            .observe(waited.elapsed().as_secs_f64());
        Ok(())
    }

    /// The offset below which everything is known to be on disk.
    pub fn durable_offset(&self) -> Offset {
        Offset(self.durable.load(Ordering::SeqCst))
    }

    /// fsyncs everything written so far.
    pub fn flush(&self) -> Result<()> {
        let ((files, dir, target, truncations), path) = {
            let mut st = self.lock_open()?;
            (st.flush_targets(), st.dir.clone())
        };
        if let Err(e) = Self::sync_files(&files, dir.then_some(path.as_path())) {
            return self.flush_failed(files, dir, &path, e);
        }
        self.finish_flush(target, truncations);
        Ok(())
    }

    /// Interval policy: flushes if `flush.ms` passed since the last flush with data pending.
    /// Returns whether it flushed. Called by the [`LogManager`](super::LogManager)'s task.
    pub fn flush_if_due(&self) -> Result<bool> {
        let due = {
            let st = self.lock_open()?;
            match st.config.flush_policy {
                FlushPolicy::Interval { ms, .. } => {
                    st.unflushed_messages > 0 && self.clock.now_ms() - st.last_flush_ms >= ms as i64
                }
                FlushPolicy::GroupCommit => false,
            }
        };
        if due {
            self.flush()?;
        }
        Ok(due)
    }

    /// Persists the recovery point if it moved since it was last written (the log start offset
    /// is written whenever it moves). The fsyncs run outside the log lock, so appends never wait
    /// behind them.
    pub fn checkpoint(&self) -> Result<()> {
        let _serial = lock_ignoring_poison(&self.checkpoint_lock);
        let (dir, recovery_point) = {
            let st = self.lock_open()?;
            if st.recovery_point == st.checkpointed_recovery_point {
                return Ok(());
            }
            (st.dir.clone(), st.recovery_point)
        };
        // Appends go on meanwhile: they only raise the in-memory recovery point.
        checkpoint::write_offset(&dir, checkpoint::RECOVERY_POINT_FILE, recovery_point)?;
        self.lock().checkpointed_recovery_point = recovery_point;
        Ok(())
    }

    /// Reads whole batches starting with the one that contains `offset`, up to `max_bytes`,
    /// never past `max_offset` (exclusive: the high watermark). With `min_one_batch`, the first
    /// batch is returned even if it is larger than `max_bytes`. `offset` outside
    /// `[log_start_offset, log_end_offset]` is `OffsetOutOfRange`; at the end, empty.
    ///
    /// Reads from one segment per call; every returned batch has passed a CRC-32C check
    /// ([`VERIFY_CRC_ON_READ`](super::segment::VERIFY_CRC_ON_READ)).
    pub fn read(
        &self,
        offset: Offset,
        max_bytes: usize,
        max_offset: Offset,
        min_one_batch: bool,
    ) -> Result<FetchDataInfo> {
        let mut target = offset.0;
        let mut after_base: Option<i64> = None;
        loop {
            let (file, pos, end, lso, leo) = {
                let st = self.lock_open()?;
                let (lso, leo) = (st.local_log_start_offset, st.log_end_offset());
                if offset.0 < lso || offset.0 > leo {
                    return Err(LogError::OffsetOutOfRange {
                        offset,
                        log_start_offset: Offset(lso),
                        log_end_offset: Offset(leo),
                    });
                }
                let seg = match after_base {
                    None => st.floor_segment(target),
                    Some(b) => st.segments.range(b + 1..).next().map(|(_, s)| s),
                };
                let Some(seg) = seg.filter(|_| target < leo) else {
                    return Ok(FetchDataInfo {
                        records: Bytes::new(),
                        local_log_start_offset: Offset(lso),
                        log_end_offset: Offset(leo),
                    });
                };
                target = target.max(seg.base_offset);
                after_base = Some(seg.base_offset);
                let pos = seg.lookup_position(target);
                (Arc::clone(&seg.file), pos, seg.size, lso, leo)
            };
            match read_batches(
                &file,
                pos,
                end,
                target,
                max_bytes,
                max_offset.0,
                min_one_batch,
            )? {
                SegmentRead::Data(records) => {
                    return Ok(FetchDataInfo {
                        records,
                        local_log_start_offset: Offset(lso),
                        log_end_offset: Offset(leo),
                    })
                }
                SegmentRead::NotHere => continue,
            }
        }
    }

    /// The first offset on local disk (a tiered partition's log starts earlier, in remote
    /// storage: see [`PartitionLog`](super::PartitionLog)).
    pub fn local_log_start_offset(&self) -> Offset {
        Offset(self.lock().local_log_start_offset)
    }

    pub fn log_end_offset(&self) -> Offset {
        Offset(self.lock().log_end_offset())
    }

    /// Whether `offset` falls in the active (newest) segment.
    pub fn in_active_segment(&self, offset: Offset) -> bool {
        self.lock().active().base_offset <= offset.0
    }

    /// Removes every record at or after `offset` (replication truncation). The fsyncs that
    /// make the removal durable, and the recovery-point checkpoint after them, run outside the
    /// log lock.
    pub fn truncate_to(&self, offset: Offset) -> Result<()> {
        let _serial = lock_ignoring_poison(&self.checkpoint_lock);
        let (file, recovery_point) = {
            let mut st = self.lock_open()?;
            let now = self.clock.now_ms();
            let Some(file) = st.truncate_to(offset.0, now)? else {
                return Ok(());
            };
            let leo = st.log_end_offset();
            self.durable.fetch_min(leo, Ordering::SeqCst);
            (file, st.recovery_point)
        };
        Self::sync_files(&[file], Some(&self.dir()))?;
        // Ahead of the fsyncs, a checkpoint could name a recovery point below data that a crash
        // then brings back: recovery would keep it. Written after them, it names only what is.
        checkpoint::write_offset(&self.dir(), checkpoint::RECOVERY_POINT_FILE, recovery_point)?;
        self.lock().checkpointed_recovery_point = recovery_point;
        Ok(())
    }

    /// DeleteRecords: moves the log start offset forward to `offset` and deletes segments wholly
    /// below it. Returns the new log start offset.
    pub fn delete_records(&self, offset: Offset) -> Result<Offset> {
        let mut st = self.lock_open()?;
        let leo = st.log_end_offset();
        if offset.0 > leo || offset.0 < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: Offset(st.local_log_start_offset),
                log_end_offset: Offset(leo),
            });
        }
        if offset.0 > st.local_log_start_offset {
            st.set_local_log_start_offset(offset.0)?;
            while st.segments.len() > 1
                && st
                    .segments
                    .values()
                    .next()
                    .is_some_and(|s| s.next_offset <= offset.0)
                && st.segments.keys().nth(1).is_some_and(|&b| b <= offset.0)
            {
                st.delete_oldest()?;
            }
        }
        Ok(Offset(st.local_log_start_offset))
    }

    /// One retention pass: deletes closed segments past `retention.ms` / `retention.bytes` and
    /// wholly below the log start offset, never the active one, asking the guard first.
    /// Returns how many segments were deleted.
    pub fn delete_old_segments(&self) -> Result<usize> {
        // A wall clock set back must not hold segments for as long as the jump: ages count
        // from the later of the two clocks (a jump forward deletes what Kafka's would).
        let now = self.clock.now_ms().max(self.clock.monotonic_ms());
        let (candidates, guard) = {
            let mut st = self.lock_open()?;
            st.producers.remove_expired(now);
            (retention::deletable_segments(&st, now), st.guard.clone())
        };
        // The guard may be slow (tiered storage): asked without the lock.
        let mut allowed = Vec::new();
        for c in candidates {
            if let Some(g) = &guard {
                if !g(Offset(c.0), Offset(c.1 - 1)) {
                    break;
                }
            }
            allowed.push(c);
        }
        // The log may have changed while the lock was released: only delete what is still
        // the oldest closed segment.
        let mut allowed = allowed.into_iter();
        let mut st = self.lock_open()?;
        st.delete_oldest_while(|base, _| allowed.next().is_some_and(|(b, _)| b == base))
    }

    pub fn set_retention_guard(&self, guard: RetentionGuard) {
        self.lock().guard = Some(guard);
    }

    pub fn producer_state(&self, producer_id: ProducerId) -> Option<ProducerStateEntry> {
        let st = self.lock();
        st.producers
            .get(producer_id.0)
            .map(|s| entry(producer_id.0, s))
    }

    /// Every producer this log tracks (DescribeProducers), by producer id.
    pub fn producer_states(&self) -> Vec<ProducerStateEntry> {
        let st = self.lock();
        let mut all: Vec<ProducerStateEntry> =
            st.producers.iter().map(|(&id, s)| entry(id, s)).collect();
        all.sort_by_key(|e| e.producer_id.0);
        all
    }

    pub fn size_bytes(&self) -> u64 {
        self.lock().size_bytes()
    }

    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<Offset> {
        self.lock().segments.keys().map(|&b| Offset(b)).collect()
    }

    /// Rolls the active segment now if it holds data (tests, tools and tiering use it).
    pub fn roll(&self) -> Result<()> {
        let mut st = self.lock_open()?;
        let now = self.clock.now_ms();
        st.roll(now)
    }

    /// Flushes and writes the checkpoints (recovery point, producer snapshot) so the next open
    /// does not rescan. Further calls fail with `Closed`.
    pub fn close(&self) -> Result<()> {
        self.flush()?;
        let _serial = lock_ignoring_poison(&self.checkpoint_lock);
        let mut st = self.lock_open()?;
        let leo = st.log_end_offset();
        super::producer_state::write_snapshot(&st.dir, leo, &st.producers)?;
        st.epoch_cache.persist()?;
        st.checkpoint()?;
        for seg in st.segments.values() {
            seg.index.flush()?;
            seg.time_index.flush()?;
        }
        let active = st.active_mut();
        active.on_become_inactive()?;
        st.closed = true;
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}
