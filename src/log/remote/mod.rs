//! `RemoteLogManager`: tiered storage wired into the broker (Kafka's `RemoteLogManager`).
//!
//! # Overview
//! One task wakes every `remote.log.manager.task.interval.ms` and, for each partition of a
//! tiered topic (`remote.storage.enable`):
//! - as leader: loads the remote manifest, sweeps orphans (at the first round, then every
//!   `remote.orphan.sweep.interval.ms`), uploads sealed segments below
//!   the high watermark in offset order (at most `remote.upload.concurrency` uploads at once
//!   across partitions), runs local retention (whose guard lets a segment go only once the
//!   manifest naming it is durable), and expires remote segments by `retention.ms/bytes`;
//! - as follower: re-reads the manifest, so its guard follows what the leader uploaded.
//!
//! Fetch and ListOffsets come here for offsets below the local log start: reads go through the
//! [`ChunkCache`] (ranged GETs, disk cache, coalescing, read-ahead), and every batch served is
//! CRC-32C checked; a mismatch or a store failure is a retriable error to the client.
//!
//! # Failure
//! A failing store makes a partition back off (exponential with jitter, per partition) while
//! its local log keeps every segment not yet uploaded; `strata_tiering_upload_errors_total`
//! and a warning say so. Nothing here stops the broker.
//!
//! The decisions themselves are the pure functions of `strata_tiering::scheduler`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use strata_tiering::scheduler::{self, SealedSegment};
use strata_tiering::{
    Backoff, ChunkCache, PartitionPath, RemoteLogSegmentMetadata, RemotePartition,
    RemotePartitionManifest, RemoteStorage, RetryPolicy, SegmentFileKind, TieringError,
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{Partition, ReplicaManager};
use crate::clock::SharedClock;
use crate::config::NodeConfig;
use crate::log::{FetchDataInfo, SealedSegmentInfo, TimestampAndOffset, UnifiedLog};
use crate::metrics::TieringMetrics;
use crate::model::{LeaderEpoch, Offset, TopicId, TopicPartition};
use crate::protocol::record_batch::{validate_batch, BatchHeader, HEADER_SIZE, LOG_OVERHEAD};

/// Settings from the node config.
#[derive(Debug, Clone)]
pub struct RemoteLogManagerConfig {
    pub task_interval_ms: u64,
    pub upload_concurrency: usize,
    pub orphan_grace_ms: i64,
    pub orphan_sweep_interval_ms: i64,
    pub fetch_max_bytes: usize,
    pub cache_bytes: u64,
    pub cache_chunk_bytes: u64,
    pub readahead_chunks: u64,
}

impl RemoteLogManagerConfig {
    pub fn from_node(node: &NodeConfig) -> RemoteLogManagerConfig {
        RemoteLogManagerConfig {
            task_interval_ms: node.get_i64("remote.log.manager.task.interval.ms").max(10) as u64,
            upload_concurrency: node.get_i32("remote.upload.concurrency").max(1) as usize,
            orphan_grace_ms: node.get_i64("remote.orphan.grace.ms").max(0),
            orphan_sweep_interval_ms: node.get_i64("remote.orphan.sweep.interval.ms").max(0),
            fetch_max_bytes: node.get_i32("remote.fetch.max.bytes").max(64 * 1024) as usize,
            cache_bytes: node.get_i64("remote.cache.bytes").max(0) as u64,
            cache_chunk_bytes: node.get_i32("remote.cache.chunk.bytes").max(4096) as u64,
            readahead_chunks: node.get_i32("remote.cache.readahead.chunks").max(0) as u64,
        }
    }
}

/// Errors of remote reads and remote steps; all map to KAFKA_STORAGE_ERROR at the handler edge.
#[derive(Debug, thiserror::Error)]
pub enum RemoteLogError {
    #[error("{tp}: remote storage: {source}")]
    Storage {
        tp: TopicPartition,
        #[source]
        source: TieringError,
    },
    #[error("{tp}: remote segment {segment} at byte {position}: {reason}")]
    CorruptBatch {
        tp: TopicPartition,
        segment: String,
        position: u64,
        reason: String,
    },
    #[error("{tp}: the remote manifest is not loaded yet")]
    NotLoaded { tp: TopicPartition },
}

/// The remote side of one partition on this broker.
#[derive(Debug)]
struct RemoteLogPartition {
    remote: RemotePartition,
    /// A task is working on this partition (uploads are strictly ordered per partition).
    busy: AtomicBool,
    /// Clock time of the next orphan sweep (0: at the first round as leader).
    next_sweep_ms: AtomicI64,
    /// Consecutive failed rounds, and the clock time before which no new round starts.
    failures: AtomicU32,
    retry_after_ms: AtomicU64,
    /// Sealed-but-not-uploaded bytes and segments at the last round (leader only).
    lag_bytes: AtomicU64,
    lag_segments: AtomicU64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct RemoteLogManager {
    storage: Arc<dyn RemoteStorage>,
    cache: Arc<ChunkCache>,
    config: RemoteLogManagerConfig,
    clock: SharedClock,
    metrics: TieringMetrics,
    upload_slots: Arc<Semaphore>,
    // Short sections only: look up or insert a partition's entry.
    partitions: Mutex<HashMap<TopicPartition, Arc<RemoteLogPartition>>>,
    cancel: CancellationToken,
    /// Cache counters already copied into the metrics.
    seen_hits: AtomicU64,
    seen_misses: AtomicU64,
}

fn round_backoff() -> Backoff {
    Backoff {
        base: Duration::from_millis(500),
        max: Duration::from_secs(30),
    }
}

fn to_sealed(s: &SealedSegmentInfo) -> SealedSegment {
    SealedSegment {
        base_offset: s.base_offset.0,
        end_offset: s.last_offset.0,
        max_timestamp_ms: s.max_timestamp_ms,
        size_bytes: s.size_bytes,
        log_path: s.log_path.clone(),
        index_path: s.index_path.clone(),
        time_index_path: s.time_index_path.clone(),
        snapshot_path: s.producer_snapshot_path.clone(),
        leader_epochs: s.leader_epochs.iter().map(|(e, o)| (e.0, o.0)).collect(),
    }
}

impl RemoteLogManager {
    pub fn new(
        storage: Arc<dyn RemoteStorage>,
        cache_dir: std::path::PathBuf,
        config: RemoteLogManagerConfig,
        clock: SharedClock,
        metrics: TieringMetrics,
        cancel: CancellationToken,
    ) -> Result<Arc<RemoteLogManager>, TieringError> {
        let cache = ChunkCache::open(
            cache_dir,
            config.cache_bytes,
            config.cache_chunk_bytes,
            config.readahead_chunks,
            storage.clone(),
        )?;
        Ok(Arc::new(RemoteLogManager {
            storage,
            cache,
            upload_slots: Arc::new(Semaphore::new(config.upload_concurrency)),
            config,
            clock,
            metrics,
            partitions: Mutex::new(HashMap::new()),
            cancel,
            seen_hits: AtomicU64::new(0),
            seen_misses: AtomicU64::new(0),
        }))
    }

    pub fn storage(&self) -> &Arc<dyn RemoteStorage> {
        &self.storage
    }

    fn partitions(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<TopicPartition, Arc<RemoteLogPartition>>> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn entry(&self, tp: &TopicPartition, topic_id: TopicId) -> Arc<RemoteLogPartition> {
        let mut m = self.partitions();
        if let Some(e) = m.get(tp).filter(|e| e.remote.path().topic_id == topic_id.0) {
            return e.clone();
        }
        let e = Arc::new(RemoteLogPartition {
            remote: RemotePartition::new(
                PartitionPath::new(&tp.topic, topic_id.0, tp.partition.0),
                self.storage.clone(),
                RetryPolicy::default(),
            ),
            busy: AtomicBool::new(false),
            next_sweep_ms: AtomicI64::new(0),
            failures: AtomicU32::new(0),
            retry_after_ms: AtomicU64::new(0),
            lag_bytes: AtomicU64::new(0),
            lag_segments: AtomicU64::new(0),
        });
        m.insert(tp.clone(), e.clone());
        e
    }

    fn get(&self, tp: &TopicPartition) -> Option<Arc<RemoteLogPartition>> {
        self.partitions().get(tp).cloned()
    }

    /// A partition replica appeared on this broker: installs the retention guard that keeps
    /// local segments of a tiered topic until the manifest naming them is durable.
    pub fn on_partition_created(&self, partition: &Partition) {
        let entry = self.entry(&partition.tp, partition.topic_id);
        let weak_entry: Weak<RemoteLogPartition> = Arc::downgrade(&entry);
        let weak_log: Weak<UnifiedLog> = Arc::downgrade(partition.log());
        partition
            .log()
            .set_retention_guard(Arc::new(move |base: Offset, last: Offset| {
                let tiered = weak_log
                    .upgrade()
                    .is_some_and(|l| l.config().remote_storage_enable);
                if !tiered {
                    return true;
                }
                let Some(e) = weak_entry.upgrade() else {
                    return false;
                };
                e.remote
                    .manifest()
                    .is_some_and(|m| scheduler::local_copy_deletable(&m, base.0, last.0))
            }));
    }

    /// The topic was deleted: its remote data goes too (manifest marked, objects, manifest).
    pub fn on_topic_deleted(&self, tp: &TopicPartition, topic_id: TopicId) {
        let entry = self.entry(tp, topic_id);
        self.partitions().remove(tp);
        let cancel = self.cancel.clone();
        let metrics = self.metrics.clone();
        let tp = tp.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let r = async {
                entry.remote.load(&cancel).await?;
                entry.remote.delete_all(&cancel).await
            }
            .await;
            match r {
                Ok(n) => tracing::info!(partition = %tp, objects = n, "deleted remote data of a deleted topic"),
                Err(TieringError::ShuttingDown) => {}
                Err(e) => {
                    metrics.delete_errors.inc();
                    tracing::warn!(partition = %tp, error = %e, "deleting remote data of a deleted topic failed; objects are left behind")
                }
            }
        });
    }

    /// Runs the periodic task until shutdown.
    pub fn start(self: &Arc<Self>, replicas: Arc<ReplicaManager>) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = this.cancel.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(this.config.task_interval_ms)) => {}
                }
                this.run_once(&replicas);
                this.sync_metrics();
            }
        });
    }

    /// One round: starts work for every tiered partition that is not already busy or backing
    /// off. Returns at once; the work runs on tasks.
    pub fn run_once(self: &Arc<Self>, replicas: &Arc<ReplicaManager>) {
        let now = self.clock.now_ms();
        let (mut lag_bytes, mut lag_segments) = (0u64, 0u64);
        for p in replicas.all() {
            if !p.log().config().remote_storage_enable {
                continue;
            }
            let entry = self.entry(&p.tp, p.topic_id);
            lag_bytes += entry.lag_bytes.load(Ordering::Relaxed);
            lag_segments += entry.lag_segments.load(Ordering::Relaxed);
            if now < entry.retry_after_ms.load(Ordering::Relaxed) as i64 {
                continue;
            }
            if entry.busy.swap(true, Ordering::AcqRel) {
                continue;
            }
            let this = self.clone();
            tokio::spawn(async move {
                let leader = p.is_leader();
                let r = if leader {
                    this.leader_round(&p, &entry).await
                } else {
                    entry.remote.reload(&this.cancel).await.map(|_| ())
                };
                match r {
                    Ok(()) => {
                        entry.failures.store(0, Ordering::Relaxed);
                        entry.retry_after_ms.store(0, Ordering::Relaxed);
                    }
                    Err(TieringError::ShuttingDown) => {}
                    Err(e) => {
                        let n = entry.failures.fetch_add(1, Ordering::Relaxed);
                        let wait = round_backoff().delay(n);
                        entry.retry_after_ms.store(
                            (this.clock.now_ms() + wait.as_millis() as i64) as u64,
                            Ordering::Relaxed,
                        );
                        this.metrics.upload_errors.inc();
                        tracing::warn!(
                            partition = %p.tp, error = %e, failures = n + 1,
                            retry_in_ms = wait.as_millis() as u64,
                            "tiering round failed; local segments are kept until uploaded"
                        );
                    }
                }
                entry.busy.store(false, Ordering::Release);
            });
        }
        self.metrics.upload_lag_bytes.set(lag_bytes as i64);
        self.metrics.upload_lag_segments.set(lag_segments as i64);
    }

    async fn leader_round(
        &self,
        p: &Arc<Partition>,
        entry: &RemoteLogPartition,
    ) -> Result<(), TieringError> {
        let cancel = &self.cancel;
        let manifest = entry.remote.load(cancel).await?;
        let now = self.clock.now_ms();
        if now >= entry.next_sweep_ms.load(Ordering::Relaxed) {
            let n = entry
                .remote
                .sweep_orphans(now, self.config.orphan_grace_ms, cancel)
                .await?;
            if n > 0 {
                tracing::info!(partition = %p.tp, orphans = n, "deleted orphaned remote objects");
            }
            entry.next_sweep_ms.store(
                now.saturating_add(self.config.orphan_sweep_interval_ms),
                Ordering::Relaxed,
            );
        }
        let mut manifest = manifest;
        loop {
            let sealed: Vec<SealedSegment> =
                p.log().sealed_segments().iter().map(to_sealed).collect();
            let (n, bytes) = scheduler::upload_lag(&manifest, &sealed);
            entry.lag_segments.store(n as u64, Ordering::Relaxed);
            entry.lag_bytes.store(bytes, Ordering::Relaxed);
            let hw = p.high_watermark().0;
            let Some(seg) = scheduler::next_upload(&manifest, &sealed, hw).cloned() else {
                break;
            };
            let epoch = p.state().leader_epoch.0;
            let _slot = tokio::select! {
                s = self.upload_slots.clone().acquire_owned() => s.map_err(|_| TieringError::ShuttingDown)?,
                () = cancel.cancelled() => return Err(TieringError::ShuttingDown),
            };
            let started = std::time::Instant::now();
            let out = entry
                .remote
                .upload(&seg, epoch, self.clock.now_ms(), cancel)
                .await?;
            self.metrics.upload_bytes.inc_by(out.bytes);
            self.metrics.uploaded_segments.inc();
            self.metrics
                .upload_latency
                .observe(started.elapsed().as_secs_f64());
            tracing::debug!(partition = %p.tp, base = seg.base_offset, end = seg.end_offset, bytes = out.bytes, "uploaded segment");
            manifest = entry.remote.manifest().unwrap_or(manifest);
        }
        // Local retention now that the manifest moved; blocking file deletes off the reactor.
        let log = p.log().clone();
        let tp = p.tp.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = log.delete_old_segments() {
                tracing::warn!(partition = %tp, error = %e, "local retention failed");
            }
        })
        .await;
        // Total retention over the remote part.
        let cfg = p.log().config();
        let remote_end = manifest.end_offset().unwrap_or(-1);
        let local_only: u64 = {
            let sealed = p.log().sealed_segments();
            let sealed_bytes: u64 = sealed.iter().map(|s| s.size_bytes).sum();
            let active = p.log().size_bytes().saturating_sub(sealed_bytes);
            sealed
                .iter()
                .filter(|s| s.last_offset.0 > remote_end)
                .map(|s| s.size_bytes)
                .sum::<u64>()
                + active
        };
        let (n, bytes) = entry
            .remote
            .enforce_retention(
                self.clock.now_ms(),
                if cfg.cleanup_policy.deletes() {
                    cfg.retention_ms
                } else {
                    -1
                },
                if cfg.cleanup_policy.deletes() {
                    cfg.retention_bytes
                } else {
                    -1
                },
                local_only,
                cancel,
            )
            .await?;
        if n > 0 {
            self.metrics.remote_deleted_segments.inc_by(n as u64);
            tracing::info!(partition = %p.tp, segments = n, bytes, "remote retention deleted segments");
        }
        if let Some(m) = entry.remote.manifest() {
            self.metrics
                .remote_log_bytes
                .with_label_values(&[p.tp.topic.as_str()])
                .set(m.live_bytes() as i64);
        }
        Ok(())
    }

    /// At startup, for each led tiered partition: loads the manifest and, when the local log
    /// ends at or before the remote end (its data was lost, e.g. a replaced disk), restarts
    /// the local log empty after the remote end so new writes continue from there.
    pub async fn recover_partitions(&self, replicas: &ReplicaManager) {
        for p in replicas.all() {
            if !p.log().config().remote_storage_enable || !p.is_leader() {
                continue;
            }
            let entry = self.entry(&p.tp, p.topic_id);
            let loaded =
                tokio::time::timeout(Duration::from_secs(20), entry.remote.load(&self.cancel))
                    .await;
            let m = match loaded {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::warn!(partition = %p.tp, error = %e, "cannot read the remote manifest at startup; serving the local log only for now");
                    continue;
                }
                Err(_) => {
                    tracing::warn!(partition = %p.tp, "timed out reading the remote manifest at startup");
                    continue;
                }
            };
            let Some(end) = m.end_offset() else { continue };
            let leo = p.log().log_end_offset().0;
            if leo <= end {
                tracing::warn!(
                    partition = %p.tp, local_end = leo, remote_end = end,
                    "local log ends before the remote log (lost local data?): restarting it after the remote end"
                );
                self.restart_after_remote(&p, &entry, end).await;
            }
        }
    }

    /// Restarts the local log of `p` empty after the remote end, with the leader epochs and
    /// producer state of the last remote segment (epoch checkpoint, producer snapshot), so an
    /// idempotent producer that resumes is recognised. Without them (unreadable), the log still
    /// restarts, with epochs and producers empty.
    async fn restart_after_remote(&self, p: &Partition, entry: &RemoteLogPartition, end: i64) {
        let aux = tokio::time::timeout(
            Duration::from_secs(20),
            entry.remote.aux_state(&self.cancel),
        )
        .await
        .unwrap_or_else(|_| Err(TieringError::Config("timed out".into())));
        let (epochs, snapshot) = match aux {
            Ok(Some(a)) if a.end_offset == end => (
                a.leader_epochs
                    .iter()
                    .map(|&(e, o)| (LeaderEpoch(e), Offset(o)))
                    .collect(),
                a.producer_snapshot,
            ),
            Ok(_) => (Vec::new(), None),
            Err(e) => {
                tracing::warn!(partition = %p.tp, error = %e, "cannot read the last remote segment's epochs and producer snapshot; producer state starts empty");
                (Vec::new(), None)
            }
        };
        let log = p.log().clone();
        let r = crate::runtime::block_in_place(|| {
            log.start_after_remote(Offset(end + 1), &epochs, snapshot.as_deref())
        });
        match r {
            Ok(()) => p.advance_high_watermark(),
            Err(e) => {
                tracing::error!(partition = %p.tp, error = %e, "cannot restart the local log after the remote end")
            }
        }
    }

    /// The last offset of the remote log of `p`, reading its manifest if needed; `None` when
    /// the partition is not tiered or nothing is uploaded yet.
    pub async fn remote_end_offset(&self, p: &Partition) -> Result<Option<Offset>, RemoteLogError> {
        Ok(self
            .manifest_of(p)
            .await?
            .and_then(|m| m.end_offset())
            .map(Offset))
    }

    /// The manifest of `tp` if the topic is tiered here and it is loaded (loading it if not).
    async fn manifest_of(
        &self,
        p: &Partition,
    ) -> Result<Option<Arc<RemotePartitionManifest>>, RemoteLogError> {
        if !p.log().config().remote_storage_enable {
            return Ok(None);
        }
        let entry = self.entry(&p.tp, p.topic_id);
        if let Some(m) = entry.remote.manifest() {
            return Ok(Some(m));
        }
        let m =
            entry
                .remote
                .load(&self.cancel)
                .await
                .map_err(|source| RemoteLogError::Storage {
                    tp: p.tp.clone(),
                    source,
                })?;
        Ok(Some(m))
    }

    /// The start offset of the whole log (remote part included), without waiting: the local
    /// log start when no manifest is loaded.
    pub fn log_start_offset(&self, p: &Partition) -> Offset {
        let local = p.log().log_start_offset();
        if !p.log().config().remote_storage_enable {
            return local;
        }
        let remote = self
            .get(&p.tp)
            .and_then(|e| e.remote.manifest())
            .and_then(|m| m.start_offset());
        match remote {
            Some(s) => Offset(s.min(local.0)),
            None => local,
        }
    }

    /// Like [`log_start_offset`](Self::log_start_offset), loading the manifest first if needed.
    pub async fn log_start_offset_loaded(&self, p: &Partition) -> Result<Offset, RemoteLogError> {
        self.manifest_of(p).await?;
        Ok(self.log_start_offset(p))
    }

    /// DeleteRecords below or across the local log start: the remote start moves (durably).
    pub async fn delete_records(
        &self,
        p: &Partition,
        offset: Offset,
    ) -> Result<(), RemoteLogError> {
        if self.manifest_of(p).await?.is_none() {
            return Ok(());
        }
        let entry = self.entry(&p.tp, p.topic_id);
        entry
            .remote
            .delete_records(offset.0, &self.cancel)
            .await
            .map_err(|source| RemoteLogError::Storage {
                tp: p.tp.clone(),
                source,
            })
    }

    /// Reads committed batches at `offset` from the remote log: `None` when the remote log does
    /// not hold `offset`. At most `remote.fetch.max.bytes`, from one remote segment.
    pub async fn read(
        &self,
        p: &Partition,
        offset: Offset,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<Option<FetchDataInfo>, RemoteLogError> {
        let Some(m) = self.manifest_of(p).await? else {
            return Ok(None);
        };
        let Some(seg) = m.segment_for(offset.0).cloned() else {
            return Ok(None);
        };
        let path = PartitionPath::new(&p.tp.topic, p.topic_id.0, p.tp.partition.0);
        let log_key = path.segment_key(&seg, SegmentFileKind::Log);
        let limit = max_bytes.min(self.config.fetch_max_bytes);
        let pos = self.index_position(p, &path, &seg, offset.0).await?;
        let hw = p.high_watermark().0;
        let mut reader = SegmentReader::new(self, p, &log_key, &seg, pos);
        let mut out = BytesMut::new();
        while let Some((batch_pos, batch)) =
            reader.next_batch(limit.saturating_sub(out.len())).await?
        {
            let h = parse_header(&p.tp, &log_key, batch_pos, &batch)?;
            if h.last_offset() < offset.0 {
                continue;
            }
            if h.base_offset >= hw {
                break;
            }
            let fits = out.len() + batch.len() <= limit;
            if !fits && !(out.is_empty() && min_one_batch) {
                break;
            }
            out.extend_from_slice(&batch);
            if out.len() >= limit {
                break;
            }
        }
        if reader.at_end() {
            if let Some(next) = m.next_segment(seg.base_offset) {
                let key = path.segment_key(next, SegmentFileKind::Log);
                self.cache.prefetch(&key, next.segment_bytes, 0);
            }
        }
        self.metrics.remote_fetch_bytes.inc_by(out.len() as u64);
        Ok(Some(FetchDataInfo {
            records: out.freeze(),
            log_start_offset: self.log_start_offset(p),
            log_end_offset: p.log().log_end_offset(),
        }))
    }

    /// ListOffsets by time over the remote part: the first record at or after `timestamp_ms` in
    /// the remote segments below the local log start, or `None` to look locally.
    pub async fn offset_for_timestamp(
        &self,
        p: &Partition,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampAndOffset>, RemoteLogError> {
        let Some(m) = self.manifest_of(p).await? else {
            return Ok(None);
        };
        let local_start = p.log().log_start_offset().0;
        let path = PartitionPath::new(&p.tp.topic, p.topic_id.0, p.tp.partition.0);
        let candidates: Vec<RemoteLogSegmentMetadata> = m
            .live_segments()
            .filter(|s| s.base_offset < local_start && s.max_timestamp_ms >= timestamp_ms)
            .cloned()
            .collect();
        for seg in candidates {
            if let Some(found) = self
                .find_timestamp_in(p, &m, &path, &seg, timestamp_ms)
                .await?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// ListOffsets `MAX_TIMESTAMP` (-3, KIP-734) over the remote part: the first record with
    /// the greatest timestamp among the remote segments below the local log start, or `None`.
    /// The caller compares it with the local log's.
    pub async fn max_timestamp(
        &self,
        p: &Partition,
    ) -> Result<Option<TimestampAndOffset>, RemoteLogError> {
        let Some(m) = self.manifest_of(p).await? else {
            return Ok(None);
        };
        let local_start = p.log().log_start_offset().0;
        // The first of the segments with the greatest timestamp (`max_by_key` keeps the last).
        let best = m
            .live_segments()
            .filter(|s| s.base_offset < local_start)
            .fold(None::<&RemoteLogSegmentMetadata>, |best, s| match best {
                Some(b) if b.max_timestamp_ms >= s.max_timestamp_ms => Some(b),
                _ => Some(s),
            })
            .cloned();
        let Some(seg) = best else {
            return Ok(None);
        };
        let path = PartitionPath::new(&p.tp.topic, p.topic_id.0, p.tp.partition.0);
        self.find_timestamp_in(p, &m, &path, &seg, seg.max_timestamp_ms)
            .await
    }

    /// The first record of remote segment `seg` at or after `timestamp_ms` (and at or after
    /// the remote log start).
    async fn find_timestamp_in(
        &self,
        p: &Partition,
        m: &RemotePartitionManifest,
        path: &PartitionPath,
        seg: &RemoteLogSegmentMetadata,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampAndOffset>, RemoteLogError> {
        let log_key = path.segment_key(seg, SegmentFileKind::Log);
        let start = m.log_start_offset.max(seg.base_offset);
        let pos = self.index_position(p, path, seg, start).await?;
        let mut reader = SegmentReader::new(self, p, &log_key, seg, pos);
        while let Some((batch_pos, batch)) = reader.next_batch(1 << 20).await? {
            let h = parse_header(&p.tp, &log_key, batch_pos, &batch)?;
            if h.last_offset() < start || h.max_timestamp < timestamp_ms {
                continue;
            }
            let epoch = Some(LeaderEpoch(h.partition_leader_epoch));
            if h.is_log_append_time() {
                return Ok(Some(TimestampAndOffset {
                    timestamp_ms: h.max_timestamp,
                    offset: Offset(h.base_offset.max(start)),
                    leader_epoch: epoch,
                }));
            }
            let mut buf = batch.clone();
            let set =
                kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).map_err(|e| {
                    RemoteLogError::CorruptBatch {
                        tp: p.tp.clone(),
                        segment: log_key.clone(),
                        position: batch_pos,
                        reason: e.to_string(),
                    }
                })?;
            if let Some(r) = set
                .records
                .iter()
                .find(|r| r.timestamp >= timestamp_ms && r.offset >= start)
            {
                return Ok(Some(TimestampAndOffset {
                    timestamp_ms: r.timestamp,
                    offset: Offset(r.offset),
                    leader_epoch: epoch,
                }));
            }
        }
        Ok(None)
    }

    /// The byte position in the `.log` object to start reading for `offset`, from the remote
    /// offset index (8-byte entries: relative offset, position, both big-endian u32).
    async fn index_position(
        &self,
        p: &Partition,
        path: &PartitionPath,
        seg: &RemoteLogSegmentMetadata,
        offset: i64,
    ) -> Result<u64, RemoteLogError> {
        if seg.index_bytes < 8 || offset <= seg.base_offset {
            return Ok(0);
        }
        let key = path.segment_key(seg, SegmentFileKind::OffsetIndex);
        let index = self
            .cache
            .read(&key, seg.index_bytes, 0..seg.index_bytes)
            .await
            .map_err(|source| RemoteLogError::Storage {
                tp: p.tp.clone(),
                source,
            })?;
        let rel = (offset - seg.base_offset).min(u32::MAX as i64) as u32;
        let entries = index.len() / 8;
        let entry = |i: usize| {
            let b = &index[i * 8..i * 8 + 8];
            (
                u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            )
        };
        // The greatest entry at or below the target.
        let (mut lo, mut hi) = (0usize, entries);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if entry(mid).0 <= rel {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(if lo == 0 { 0 } else { entry(lo - 1).1 as u64 })
    }

    /// Copies the cache counters into the metrics (counters only go up by deltas).
    pub fn sync_metrics(&self) {
        let s = &self.cache.stats;
        let hits = s.hits.load(Ordering::Relaxed);
        let misses = s.misses.load(Ordering::Relaxed);
        let old_h = self.seen_hits.swap(hits, Ordering::Relaxed);
        let old_m = self.seen_misses.swap(misses, Ordering::Relaxed);
        self.metrics.cache_hits.inc_by(hits.saturating_sub(old_h));
        self.metrics
            .cache_misses
            .inc_by(misses.saturating_sub(old_m));
        self.metrics.cache_bytes.set(self.cache.used_bytes() as i64);
    }

    pub fn record_fetch_error(&self) {
        self.metrics.remote_fetch_errors.inc();
    }
}

fn parse_header(
    tp: &TopicPartition,
    key: &str,
    pos: u64,
    batch: &[u8],
) -> Result<BatchHeader, RemoteLogError> {
    // Paired check: the CRC was verified when the batch was appended; verify it again now
    // that it came back from object storage. A mismatch is never served.
    validate_batch(batch).map_err(|e| RemoteLogError::CorruptBatch {
        tp: tp.clone(),
        segment: key.to_string(),
        position: pos,
        reason: e.to_string(),
    })
}

/// Walks whole batches of a remote `.log` object from a position, reading through the cache in
/// spans.
struct SegmentReader<'a> {
    rlm: &'a RemoteLogManager,
    tp: TopicPartition,
    key: &'a str,
    size: u64,
    /// Object position of `buf[0]`.
    buf_pos: u64,
    buf: Bytes,
    /// Object position of the next batch.
    pos: u64,
}

/// The least a span read asks for, so skipping the few batches before the target (at most
/// `index.interval.bytes` apart) costs one read.
const MIN_SPAN_BYTES: u64 = 64 * 1024;

impl<'a> SegmentReader<'a> {
    fn new(
        rlm: &'a RemoteLogManager,
        p: &Partition,
        key: &'a str,
        seg: &RemoteLogSegmentMetadata,
        pos: u64,
    ) -> Self {
        SegmentReader {
            rlm,
            tp: p.tp.clone(),
            key,
            size: seg.segment_bytes,
            buf_pos: pos,
            buf: Bytes::new(),
            pos,
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.size
    }

    /// Makes `[self.pos, self.pos + need)` available in `buf`, reading at least `want` bytes.
    async fn ensure(&mut self, need: u64, want: u64) -> Result<(), RemoteLogError> {
        let have_end = self.buf_pos + self.buf.len() as u64;
        if self.pos >= self.buf_pos && self.pos + need <= have_end {
            return Ok(());
        }
        let end = (self.pos + need.max(want).max(MIN_SPAN_BYTES)).min(self.size);
        if self.pos + need > end {
            return Err(RemoteLogError::CorruptBatch {
                tp: self.tp.clone(),
                segment: self.key.to_string(),
                position: self.pos,
                reason: format!(
                    "batch of {need} bytes runs past the end of a {}-byte segment",
                    self.size
                ),
            });
        }
        let data = self
            .rlm
            .cache
            .read(self.key, self.size, self.pos..end)
            .await
            .map_err(|source| RemoteLogError::Storage {
                tp: self.tp.clone(),
                source,
            })?;
        self.buf = data;
        self.buf_pos = self.pos;
        Ok(())
    }

    /// The next whole batch and its position, or `None` at the end of the segment.
    async fn next_batch(&mut self, want: usize) -> Result<Option<(u64, Bytes)>, RemoteLogError> {
        if self.at_end() {
            return Ok(None);
        }
        self.ensure(LOG_OVERHEAD as u64, want as u64).await?;
        let at = (self.pos - self.buf_pos) as usize;
        let len_bytes = &self.buf[at + 8..at + 12];
        let length = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        if length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
            return Err(RemoteLogError::CorruptBatch {
                tp: self.tp.clone(),
                segment: self.key.to_string(),
                position: self.pos,
                reason: format!("batch length {length}"),
            });
        }
        let total = LOG_OVERHEAD as u64 + length as u64;
        self.ensure(total, want as u64).await?;
        let at = (self.pos - self.buf_pos) as usize;
        let batch = self.buf.slice(at..at + total as usize);
        let pos = self.pos;
        self.pos += total;
        Ok(Some((pos, batch)))
    }
}

impl RemoteLogManager {
    /// For tests and tools: the loaded manifest of `tp`.
    pub fn manifest(&self, tp: &TopicPartition) -> Option<Arc<RemotePartitionManifest>> {
        self.get(tp).and_then(|e| e.remote.manifest())
    }
}
