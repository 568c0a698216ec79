//! `RemoteLogManager`: tiered storage under the partition logs (Kafka's `RemoteLogManager`).
//!
//! # Overview
//! One task wakes every `remote.log.manager.task.interval.ms` and, for each partition of a
//! tiered topic (`remote.storage.enable`):
//! - as leader: loads the remote manifest, sweeps orphans (at the first round, then every
//!   `remote.orphan.sweep.interval.ms`), uploads sealed segments below
//!   the high watermark in offset order (at most `remote.upload.concurrency` uploads at once
//!   across partitions), runs local retention (whose guard lets a segment go only once the
//!   manifest naming it is durable), and expires remote segments by `retention.ms/bytes`;
//!   a compacted topic's segments go up only once the cleaner has passed them (below the
//!   cleaner checkpoint), and its remote log is compacted on a schedule (`compaction.rs`);
//! - as follower: re-reads the manifest, so its guard follows what the leader uploaded;
//! - as leader of a tiered topic's partition 0: writes the topic manifest
//!   (`{topic}-{topic_id}/topic.json`: partition count, config overrides) when it changed,
//!   which is what `strata restore` reads to rebuild the topic from the bucket alone.
//!
//! Reads below the local log start come here through the partition's
//! [`PartitionLog`](super::PartitionLog), which alone decides between the local and the remote
//! part: reads go through the [`ChunkCache`] (ranged GETs, disk cache, coalescing,
//! read-ahead), and every batch served is CRC-32C checked; a mismatch or a store failure is a
//! retriable error to the client.
//!
//! The submodules:
//! - `upload.rs`: the periodic task and the leader's upload round;
//! - `retention.rs`: remote retention, DeleteRecords over the remote part, deleted topics;
//! - `read.rs`: remote reads and lookups by timestamp;
//! - `compaction.rs`: remote compaction of compacted topics;
//! - `recovery.rs`: loading the remote metadata (the manifest), and restarting a local log
//!   that lost its data after the remote end at startup.
//!
//! The manager never reaches into replication: the replicas it walks are [`TieredPartitions`]
//! and [`TieredPartition`], which `replication` implements.
//!
//! # Failure
//! A failing store makes a partition back off (exponential with jitter, per partition) while
//! its local log keeps every segment not yet uploaded; `strata_tiering_upload_errors_total`
//! and a warning say so. When the store as a whole keeps failing, its circuit breaker
//! (`strata_tiering::breaker`) opens: no round starts while it is open, rounds it stops are
//! neither errors nor warnings, and its probe decides when uploads resume. Nothing here
//! stops the broker.
//!
//! The decisions themselves are the pure functions of `strata_tiering::scheduler`.

mod compaction;
mod metrics;
mod read;
mod recovery;
mod retention;
mod upload;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use strata_tiering::scheduler;
use strata_tiering::{
    ChunkCache, ChunkCacheConfig, PartitionPath, ReadAheadPolicy, RemotePartition,
    RemotePartitionManifest, RemoteReadQuota, RemoteStorage, RetryPolicy, TieringError,
};
use tokio::sync::Semaphore;

pub use metrics::TieringMetrics;
use tokio_util::sync::CancellationToken;

use super::UnifiedLog;
use crate::clock::SharedClock;
use crate::model::{LeaderEpoch, Offset, TopicId, TopicPartition};

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
    /// `remote.cache.memory.bytes`: chunks also kept in memory.
    pub cache_memory_bytes: u64,
    /// The first read-ahead window, and the widest.
    pub readahead_chunks: u64,
    pub readahead_max_chunks: u64,
    pub fetch_concurrency: usize,
    /// `remote.log.manager.fetch.max.bytes.per.second`; 0 or `i64::MAX`: unlimited.
    pub fetch_max_bytes_per_second: u64,
    /// `remote.compaction.interval.ms`: how often a led compacted partition's remote log is
    /// considered for compaction.
    pub compaction_interval_ms: i64,
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
    /// This broker compared its local log with the remote end since it began leading here
    /// (a partition created by a restore, or led after its disk was lost, starts after it).
    remote_end_checked: AtomicBool,
    /// Compacted topics: the offset after the segment an upload has claimed; the local
    /// cleaner leaves everything below it alone (see [`UnifiedLog::set_cleaner_floor`]).
    upload_claim: AtomicI64,
    /// Clock time of the next remote compaction pass (0: at the first round as leader).
    next_compaction_ms: AtomicI64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct RemoteLogManager {
    storage: Arc<dyn RemoteStorage>,
    cache: Arc<ChunkCache>,
    /// Scratch space of remote compaction.
    compaction_dir: std::path::PathBuf,
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
    // Short sections only: the store and cache counters last copied into the metrics.
    seen_store: Mutex<metrics::SeenStore>,
    // Short sections only: the topic manifests this broker last wrote, by topic id.
    published_topics: Mutex<HashMap<TopicId, strata_tiering::RemoteTopicManifest>>,
    /// A task is writing topic manifests.
    publishing_topics: AtomicBool,
}

/// A partition replica as the remote log manager's task sees it. `replication::Partition`
/// implements it; the manager only reads these facts and never changes the replica's state
/// other than through [`local_log_restarted`](Self::local_log_restarted).
///
/// # To ensure correctness
/// `high_watermark` and `leader_epoch` must be the replica's current values at each call (the
/// upload round re-reads them between uploads), and `is_leader` true only while this broker
/// leads the partition.
pub trait TieredPartition: Send + Sync {
    fn topic_partition(&self) -> &TopicPartition;
    fn topic_id(&self) -> TopicId;
    /// The local log of the replica.
    fn local_log(&self) -> &Arc<UnifiedLog>;
    fn is_leader(&self) -> bool;
    fn leader_epoch(&self) -> LeaderEpoch;
    fn high_watermark(&self) -> Offset;
    /// The last stable offset (at most the high watermark): only segments wholly below it are
    /// uploaded, as Kafka does, so no open transaction is tiered.
    fn last_stable_offset(&self) -> Offset {
        self.high_watermark()
    }
    /// The local log was restarted empty after the remote end: the high watermark may move.
    fn local_log_restarted(&self);
}

/// Every partition replica on this broker, as the periodic task walks them each round.
pub trait TieredPartitions: Send + Sync + 'static {
    fn tiered_partitions(&self) -> Vec<Arc<dyn TieredPartition>>;
    /// The tiered topics whose partition 0 this broker leads, described as a restore needs
    /// them (name, id, partition count, config overrides); their topic manifests are
    /// published from here.
    fn led_tiered_topics(&self) -> Vec<strata_tiering::RemoteTopicManifest> {
        Vec::new()
    }
}

/// The partition a remote step is for: its fixed names and its local log.
#[derive(Clone, Copy)]
pub(in crate::log) struct PartitionRef<'a> {
    tp: &'a TopicPartition,
    topic_id: TopicId,
    log: &'a UnifiedLog,
}

impl<'a> PartitionRef<'a> {
    fn path(&self) -> PartitionPath {
        PartitionPath::new(&self.tp.topic, self.topic_id.0, self.tp.partition.0)
    }
}

/// One partition's way to its remote part, held by its [`PartitionLog`](super::PartitionLog):
/// the manager and the names the remote objects are keyed by (fixed at creation).
#[derive(Debug, Clone)]
pub struct RemoteLog {
    manager: Arc<RemoteLogManager>,
    tp: TopicPartition,
    topic_id: TopicId,
}

impl RemoteLog {
    pub(super) fn manager(&self) -> &RemoteLogManager {
        &self.manager
    }

    pub(super) fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    pub(super) fn at<'a>(&'a self, log: &'a UnifiedLog) -> PartitionRef<'a> {
        PartitionRef {
            tp: &self.tp,
            topic_id: self.topic_id,
            log,
        }
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
        let compaction_dir = compaction::compaction_dir(&cache_dir);
        let cache = ChunkCache::open_with(
            cache_dir,
            ChunkCacheConfig {
                capacity_bytes: config.cache_bytes,
                chunk_bytes: config.cache_chunk_bytes,
                read_ahead: ReadAheadPolicy {
                    initial_chunks: config.readahead_chunks,
                    max_chunks: config.readahead_max_chunks,
                },
                fetch_concurrency: config.fetch_concurrency,
                quota: Arc::new(RemoteReadQuota::new(config.fetch_max_bytes_per_second)),
                memory_bytes: config.cache_memory_bytes,
            },
            storage.clone(),
        )?;
        Ok(Arc::new(RemoteLogManager {
            storage,
            cache,
            compaction_dir,
            upload_slots: Arc::new(Semaphore::new(config.upload_concurrency)),
            config,
            clock,
            metrics,
            partitions: Mutex::new(HashMap::new()),
            cancel,
            seen_hits: AtomicU64::new(0),
            seen_misses: AtomicU64::new(0),
            seen_store: Mutex::default(),
            published_topics: Mutex::default(),
            publishing_topics: AtomicBool::new(false),
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
            remote_end_checked: AtomicBool::new(false),
            upload_claim: AtomicI64::new(i64::MIN),
            next_compaction_ms: AtomicI64::new(0),
        });
        m.insert(tp.clone(), e.clone());
        e
    }

    fn get(&self, tp: &TopicPartition) -> Option<Arc<RemoteLogPartition>> {
        self.partitions().get(tp).cloned()
    }

    /// A partition replica appeared on this broker: installs the retention guard that keeps
    /// local segments of a tiered topic until the manifest naming them is durable, and returns
    /// the handle its [`PartitionLog`](super::PartitionLog) reaches the remote part through.
    pub fn attach(
        self: &Arc<Self>,
        tp: &TopicPartition,
        topic_id: TopicId,
        log: &Arc<UnifiedLog>,
    ) -> RemoteLog {
        let entry = self.entry(tp, topic_id);
        let weak_entry: Weak<RemoteLogPartition> = Arc::downgrade(&entry);
        let weak_log: Weak<UnifiedLog> = Arc::downgrade(log);
        log.set_retention_guard(Arc::new(move |base: Offset, last: Offset| {
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
        let weak_entry: Weak<RemoteLogPartition> = Arc::downgrade(&entry);
        log.set_cleaner_floor(Arc::new(move || {
            let e = weak_entry.upgrade()?;
            let uploaded = e
                .remote
                .manifest()?
                .end_offset()
                .map_or(i64::MIN, |o| o + 1);
            Some(uploaded.max(e.upload_claim.load(Ordering::Acquire)))
        }));
        RemoteLog {
            manager: self.clone(),
            tp: tp.clone(),
            topic_id,
        }
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
        let mut seen = self.seen_store.lock().unwrap_or_else(|p| p.into_inner());
        self.metrics
            .sync_store(&mut seen, self.storage.stats().as_deref(), &self.cache);
        if let Some(b) = self.storage.breaker() {
            self.metrics.sync_breaker(&mut seen, &b);
        }
    }

    pub fn record_fetch_error(&self) {
        self.metrics.remote_fetch_errors.inc();
    }

    /// For tests and tools: the loaded manifest of `tp`.
    pub fn manifest(&self, tp: &TopicPartition) -> Option<Arc<RemotePartitionManifest>> {
        self.get(tp).and_then(|e| e.remote.manifest())
    }
}
