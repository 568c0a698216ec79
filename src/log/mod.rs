//! The storage engine: one [`UnifiedLog`] per partition directory.
//!
//! Layout of a partition directory `{log.dir}/{topic}-{partition}/`:
//! - `{base_offset:020}.log`: record batches (magic 2) exactly as they travel on the wire,
//!   with the broker-assigned base offset written into each batch header;
//! - `{base_offset:020}.index`: the sparse [`OffsetIndex`](index) of that segment;
//! - `{base_offset:020}.timeindex`: its time index;
//! - `{base_offset:020}.txnindex`: the aborted transactions whose abort marker it holds
//!   ([`txn_index`]);
//! - checkpoints: local log start offset, recovery point, leader-epoch cache, producer-state
//!   snapshots.
//!
//! `docs/on-disk-format.md` gives the byte layouts.
//!
//! This file is the contract the rest of the broker uses; the engine lives in the submodules,
//! named as Kafka names them:
//! - [`PartitionLog`] (`partition_log.rs`): a partition's whole log, local and remote, the API
//!   fetch, ListOffsets and DeleteRecords use; it alone decides which part answers;
//! - [`UnifiedLog`] (`unified_log.rs`): the local log's API; locking, group commit, reads
//!   outside the lock;
//! - `local_log.rs`: the segments and the state that moves with them;
//! - [`segment`]: `LogSegment`, the `.log` file, batch scans and reads;
//! - [`index`] / [`time_index`]: `OffsetIndex` and `TimeIndex`, memory-mapped;
//! - `loader.rs`: `LogLoader`, recovery at open;
//! - [`epoch_cache`]: `LeaderEpochFileCache`; [`producer_state`]: idempotent producers;
//! - [`checkpoint`]: the checksummed checkpoint files; `retention.rs`: what retention deletes;
//! - [`validator`]: `LogValidator`, the leader's per-record checks (KIP-467 record errors) and
//!   broker-side recompression (`compression.type`);
//! - [`cleaner`]: `LogCleaner`, compaction; [`LogManager`] (`manager.rs`): all logs and their
//!   background tasks;
//! - [`disk_pressure`]: each log dir's disk pressure (usage against its marks, deleting
//!   uploaded local segments, refusing produce);
//! - [`remote`]: `RemoteLogManager`, tiered storage (the `strata-tiering` crate) under the
//!   logs: uploads, remote retention, remote reads, loading the remote metadata.
//!
//! `log` depends on `protocol`, `model`, `config`, `metrics` and `clock` only, never on
//! `replication`, `handlers` or the broker: what it needs of a partition replica comes in as
//! values or through the [`remote::TieredPartition`] trait.

use std::path::PathBuf;

use bytes::Bytes;

use crate::model::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};

/// How appends are made durable (`log.flush.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fsync before acknowledging, with group commit: one fsync covers every append that arrived
    /// while the previous one ran. The default.
    GroupCommit,
    /// Flush after `flush.messages` records or `flush.ms` milliseconds, otherwise leave it to the
    /// page cache (Kafka's default behaviour).
    Interval { messages: u64, ms: u64 },
}

/// `cleanup.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactDelete,
}

impl CleanupPolicy {
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }

    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
}

/// `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// `compression.type`, with the level of its codec (`compression.gzip.level`,
/// `compression.lz4.level`, `compression.zstd.level`; KIP-390).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerCompression {
    /// Keep each batch as the producer compressed it (the default, and the zero-copy path).
    Producer,
    Uncompressed,
    Gzip {
        level: i32,
    },
    Snappy,
    Lz4 {
        level: i32,
    },
    Zstd {
        level: i32,
    },
}

/// The per-topic settings the engine honours, under Kafka's property names.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`
    pub segment_bytes: u64,
    /// `segment.ms`
    pub segment_ms: i64,
    /// `segment.index.bytes`: the most bytes an index file may hold before the segment rolls.
    pub segment_index_bytes: u32,
    /// `index.interval.bytes`
    pub index_interval_bytes: u32,
    /// `retention.ms`; -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes`; -1 means no size bound.
    pub retention_bytes: i64,
    /// `cleanup.policy`
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long a tombstone survives compaction.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`
    pub min_compaction_lag_ms: i64,
    /// `max.message.bytes`: the largest record batch accepted.
    pub max_message_bytes: u32,
    /// `message.timestamp.type`
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime record may be.
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime record may be.
    pub message_timestamp_after_max_ms: i64,
    /// `compression.type` and the codec's level.
    pub compression: BrokerCompression,
    /// `log.flush.policy` with `flush.messages` / `flush.ms`.
    pub flush_policy: FlushPolicy,
    /// `file.delete.delay.ms`
    pub file_delete_delay_ms: i64,
    /// `remote.storage.enable`: sealed segments are uploaded to object storage, and the local
    /// log is bounded by `local.retention.*` instead of `retention.*` (which then bound the
    /// whole log, remote part included). Compacted topics may be tiered too (their sealed
    /// segments go up once the cleaner has passed them, see `log::remote`); internal (`__`)
    /// topics only as [`for_topic`](Self::for_topic) says.
    pub remote_storage_enable: bool,
    /// `local.retention.ms`; -2 means the same as `retention.ms`.
    pub local_retention_ms: i64,
    /// `local.retention.bytes`; -2 means the same as `retention.bytes`.
    pub local_retention_bytes: i64,
    /// `log.preallocate.bytes`: disk space reserved ahead of the active segment's end, in
    /// chunks of this size (0: none). See `LogSegment::append`.
    pub preallocate_bytes: u64,
}

/// Default of `log.preallocate.bytes`.
pub const DEFAULT_PREALLOCATE_BYTES: u64 = 8 * 1024 * 1024;

/// `local.retention.*`: "the same as the total retention".
pub const LOCAL_RETENTION_SAME_AS_TOTAL: i64 = -2;

impl LogConfig {
    /// The retention bounds of the local log: `local.retention.*` for tiered topics (-2 falls
    /// back to the total), `retention.*` otherwise.
    pub fn local_retention(&self) -> (i64, i64) {
        if !self.remote_storage_enable {
            return (self.retention_ms, self.retention_bytes);
        }
        let pick = |local: i64, total: i64| {
            if local == LOCAL_RETENTION_SAME_AS_TOTAL {
                total
            } else {
                local
            }
        };
        (
            pick(self.local_retention_ms, self.retention_ms),
            pick(self.local_retention_bytes, self.retention_bytes),
        )
    }

    /// Applies the topic-name rules: internal (`__`) topics are not tiered, except the
    /// coordinators' `__consumer_offsets` and `__transaction_state`, which are when
    /// `tier_coordinator_topics` (`strata.remote.storage.internal.topics.enable`) says so. A
    /// compacted topic may be tiered, unlike in Kafka, which refuses remote storage for
    /// compacted topics (KIP-405).
    pub fn for_topic(mut self, topic: &str, tier_coordinator_topics: bool) -> LogConfig {
        if topic.starts_with("__") {
            self.remote_storage_enable = tier_coordinator_topics
                && matches!(topic, "__consumer_offsets" | "__transaction_state");
        }
        self
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 3600 * 1000,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 24 * 3600 * 1000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_message_bytes: 1024 * 1024 + 12,
            timestamp_type: TimestampType::CreateTime,
            message_timestamp_before_max_ms: i64::MAX,
            // Kafka 4.0's default (KIP-1030): at most an hour ahead of the broker's clock.
            message_timestamp_after_max_ms: 3_600_000,
            compression: BrokerCompression::Producer,
            flush_policy: FlushPolicy::GroupCommit,
            file_delete_delay_ms: 60_000,
            remote_storage_enable: false,
            local_retention_ms: LOCAL_RETENTION_SAME_AS_TOTAL,
            local_retention_bytes: LOCAL_RETENTION_SAME_AS_TOTAL,
            preallocate_bytes: DEFAULT_PREALLOCATE_BYTES,
        }
    }
}

/// What an append did, returned to the produce path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogAppendInfo {
    /// The offset of the first record appended (or, for a duplicate, of the original).
    pub first_offset: Offset,
    /// The offset of the last record appended.
    pub last_offset: Offset,
    /// The broker time used for LogAppendTime topics, -1 otherwise.
    pub log_append_time_ms: i64,
    /// The local log start offset after the append.
    pub local_log_start_offset: Offset,
    /// Number of records appended.
    pub record_count: u64,
    /// Bytes appended.
    pub size_bytes: u64,
    /// True when the batch was a retry of one already in the log (idempotent producer); nothing
    /// was written and the offsets are those of the original.
    pub duplicate: bool,
}

/// The result of a read of the local log: whole record batches, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchDataInfo {
    /// Concatenated record batches; the first contains the requested offset.
    pub records: Bytes,
    /// The local log start offset at the time of the read.
    pub local_log_start_offset: Offset,
    /// The log end offset at the time of the read.
    pub log_end_offset: Offset,
}

/// A producer's state in one partition, as the idempotence checks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerStateEntry {
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub last_sequence: i32,
    pub last_offset: Offset,
    /// The largest timestamp of its last batch (DescribeProducers' `last_timestamp`).
    pub last_timestamp_ms: i64,
    /// The first offset of its open transaction, if any.
    pub current_txn_start_offset: Option<Offset>,
    /// The coordinator epoch of its last end-transaction marker (-1: none).
    pub coordinator_epoch: i32,
}

/// ListOffsets' special timestamps.
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
/// ListOffsets v8: the local log start of a tiered partition, where `EARLIEST_TIMESTAMP` is the
/// start of the whole log, remote part included.
pub const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
/// ListOffsets v9 (KIP-1005): the last offset held in remote storage; -1 when nothing is, or
/// the topic is not tiered.
pub const LATEST_TIERED_TIMESTAMP: i64 = -5;

/// An answer to a lookup by timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampAndOffset {
    pub timestamp_ms: i64,
    pub offset: Offset,
    pub leader_epoch: Option<LeaderEpoch>,
}

/// Errors of the storage engine. Mapped to Kafka error codes once, in `handlers`.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("corrupt record batch at byte {position} of the request: {reason}")]
    CorruptBatch { position: usize, reason: String },
    #[error("record batch of {size_bytes} bytes exceeds max.message.bytes {max_bytes}")]
    BatchTooLarge { size_bytes: usize, max_bytes: u32 },
    #[error("unsupported record batch magic {magic}")]
    UnsupportedMagic { magic: i8 },
    /// A producer's batch Kafka refuses as a whole without naming records (INVALID_RECORD).
    #[error("{reason}")]
    InvalidRecord { reason: String },
    /// A producer's batch with bad records, each named by its index (KIP-467).
    #[error("{message}")]
    RecordsRejected {
        kind: RecordErrorKind,
        message: String,
        record_errors: Vec<RecordError>,
    },
    /// The bounds are those of the log that refused: the local log for a read of the
    /// [`UnifiedLog`], the whole log (remote part included) for a read of the [`PartitionLog`].
    #[error("offset {offset} is outside the log [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: Offset,
        log_start_offset: Offset,
        log_end_offset: Offset,
    },
    #[error("producer {producer_id} sequence {sequence} out of order; expected {expected}")]
    OutOfOrderSequence {
        producer_id: ProducerId,
        sequence: i32,
        expected: i32,
    },
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    ProducerFenced {
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        current: ProducerEpoch,
    },
    #[error(
        "producer {producer_id} has an open transaction; a non-transactional batch is refused"
    )]
    InvalidTxnState { producer_id: ProducerId },
    /// KIP-890: the first transactional batch of a transaction here, whose verification with
    /// the transaction coordinator is missing or was overtaken by the transaction's end.
    #[error("producer {producer_id}'s transaction was not verified to include this partition, or ended since")]
    TransactionNotVerified { producer_id: ProducerId },
    #[error("a marker for producer {producer_id} from coordinator epoch {coordinator_epoch} is older than its coordinator epoch {current}")]
    TransactionCoordinatorFenced {
        producer_id: ProducerId,
        coordinator_epoch: i32,
        current: i32,
    },
    #[error("unknown producer id {producer_id}")]
    UnknownProducerId { producer_id: ProducerId },
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    CorruptSegment {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("the disk is full writing {path}")]
    DiskFull { path: PathBuf },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Produce refused before writing: the dir is past its disk refuse mark (`disk_pressure`).
    #[error("the log dir holding {path} is past its disk refuse mark (strata.log.dir.disk.refuse.ratio); produce resumes below the low watermark")]
    DiskPressure { path: PathBuf },
    #[error("the log dir holding {path} is offline after a disk error")]
    LogDirOffline { path: PathBuf },
    #[error("the log is closed")]
    Closed,
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;

pub mod alter_log_dirs;
pub mod checkpoint;
pub mod cleaner;
pub mod dir_failure;
pub mod disk_pressure;
pub mod epoch_cache;
pub mod index;
mod loader;
mod local_log;
mod manager;
pub mod meta_properties;
mod partition_log;
pub mod producer_state;
pub mod remote;
pub mod repair;
mod retention;
pub mod segment;
pub mod time_index;
pub mod txn_index;
mod unified_log;
pub mod validator;

pub use producer_state::VerificationGuard;
pub use validator::{RecordError, RecordErrorKind};

pub use cleaner::{CleanerStats, LogCleaner};

/// The storage engine's metrics, one set per process (every log feeds them; the broker's
/// registry exports them).
#[derive(Debug, Clone)]
pub struct LogMetrics {
    /// How long an append waiting for durability waited: queueing behind the fsync in flight,
    /// then its own.
    pub flush_latency: prometheus::Histogram,
    /// Log dirs offline after a disk error (`strata_log_dirs_offline`).
    pub log_dirs_offline: prometheus::IntGauge,
    /// Storage errors by kind: write, fsync, read, disk_full, corrupt.
    pub storage_errors: prometheus::IntCounterVec,
    /// Corrupt ranges restored by themselves, by where the good copy came from: `remote` (the
    /// tiered copy) or `replica` (re-fetched from the leader).
    pub corrupt_ranges_repaired: prometheus::IntCounterVec,
    /// Replica moves between log dirs that ended, by outcome (`alter_log_dirs::MOVE_OUTCOMES`).
    pub log_dir_moves: prometheus::IntCounterVec,
    /// Bytes the moves between log dirs copied (what their throttle counts).
    pub log_dir_move_bytes: prometheus::IntCounter,
}

pub fn metrics() -> &'static LogMetrics {
    static METRICS: std::sync::OnceLock<LogMetrics> = std::sync::OnceLock::new();
    METRICS.get_or_init(|| LogMetrics {
        flush_latency: prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                "strata_log_flush_latency_seconds",
                "Time an acknowledgement waited for fsync (group commit).",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("metric definition is valid"),
        log_dirs_offline: prometheus::IntGauge::new(
            "strata_log_dirs_offline",
            "Log dirs of this broker offline after a failed write or fsync.",
        )
        .expect("metric definition is valid"),
        storage_errors: prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "strata_log_storage_errors_total",
                "Failed disk operations of partition logs, by kind.",
            ),
            &["kind"],
        )
        .expect("metric definition is valid"),
        corrupt_ranges_repaired: prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "strata_log_corrupt_ranges_repaired_total",
                "Corrupt log ranges restored from another copy, by source (remote, replica).",
            ),
            &["source"],
        )
        .expect("metric definition is valid"),
        log_dir_moves: prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "strata_log_dir_moves_total",
                "Replica moves between log dirs (AlterReplicaLogDirs) that ended, by outcome (moved, failed).",
            ),
            &["outcome"],
        )
        .expect("metric definition is valid"),
        log_dir_move_bytes: prometheus::IntCounter::new(
            "strata_log_dir_move_bytes_total",
            "Bytes copied by replica moves between log dirs.",
        )
        .expect("metric definition is valid"),
    })
}
pub use manager::LogManager;
pub use partition_log::{LogReadInfo, PartitionLog, PartitionLogError};
pub use unified_log::{CleanerFloor, RetentionGuard, SealedSegmentInfo, UnifiedLog};
