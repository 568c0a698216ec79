//! `UnifiedLog`: a partition's log. (Contract stub; the engine fills it in.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::{
    FetchDataInfo, LogAppendInfo, LogConfig, ProducerStateEntry, Result, TimestampAndOffset,
};
use crate::clock::SharedClock;
use crate::model::{LeaderEpoch, Offset, ProducerId};

/// Asked before retention deletes a closed segment: `false` holds it back (tiered storage keeps
/// a segment until it is uploaded). Arguments: base offset and last offset of the segment.
pub type RetentionGuard = Arc<dyn Fn(Offset, Offset) -> bool + Send + Sync>;

/// A partition's log: its segments, indexes, checkpoints and producer state.
#[derive(Debug)]
pub struct UnifiedLog {
    dir: PathBuf,
    #[allow(dead_code)]
    clock: SharedClock,
}

#[allow(unused_variables, clippy::unused_async)]
impl UnifiedLog {
    /// Opens the log in `dir`, creating it if absent, and recovers every segment after the
    /// recovery point (truncating a torn or corrupt tail, rebuilding missing indexes).
    pub fn open(dir: PathBuf, config: LogConfig, clock: SharedClock) -> Result<Arc<UnifiedLog>> {
        todo!()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> LogConfig {
        todo!()
    }

    /// Applies a changed topic config; takes effect at the next append / retention pass.
    pub fn update_config(&self, config: LogConfig) {
        todo!()
    }

    /// Validates `records` (one or more magic-2 batches: sizes, CRC-32C, record counts,
    /// `max.message.bytes`, producer sequence), assigns offsets from the log end offset,
    /// stamps LogAppendTime if configured, records `leader_epoch` in each batch's
    /// partition-leader-epoch field and the epoch cache, and appends. A retried duplicate of an
    /// idempotent batch returns the original offsets with `duplicate = true`. On any error the
    /// log is unchanged.
    pub fn append_as_leader(
        &self,
        records: Bytes,
        leader_epoch: LeaderEpoch,
    ) -> Result<LogAppendInfo> {
        todo!()
    }

    /// Appends batches that already carry their offsets (a follower copying its leader).
    pub fn append_as_follower(&self, records: Bytes) -> Result<LogAppendInfo> {
        todo!()
    }

    /// Resolves once every record below `end_offset` is durable under the flush policy: with
    /// group commit, after an fsync that covers it (one fsync serves every waiter that arrived
    /// meanwhile); with the interval policy, at once.
    pub async fn wait_durable(&self, end_offset: Offset) -> Result<()> {
        todo!()
    }

    /// The offset below which everything is known to be on disk.
    pub fn durable_offset(&self) -> Offset {
        todo!()
    }

    /// fsyncs everything written so far.
    pub fn flush(&self) -> Result<()> {
        todo!()
    }

    /// Reads whole batches starting with the one that contains `offset`, up to `max_bytes`,
    /// never past `max_offset` (exclusive: the high watermark). With `min_one_batch`, the first
    /// batch is returned even if it is larger than `max_bytes`. `offset` outside
    /// `[log_start_offset, log_end_offset]` is `OffsetOutOfRange`; at the end, empty.
    pub fn read(
        &self,
        offset: Offset,
        max_bytes: usize,
        max_offset: Offset,
        min_one_batch: bool,
    ) -> Result<FetchDataInfo> {
        todo!()
    }

    pub fn log_start_offset(&self) -> Offset {
        todo!()
    }

    pub fn log_end_offset(&self) -> Offset {
        todo!()
    }

    /// ListOffsets: `EARLIEST_TIMESTAMP`, `LATEST_TIMESTAMP`, `MAX_TIMESTAMP`, or the first
    /// offset whose timestamp is at or after `timestamp_ms` (None if there is none).
    pub fn fetch_offset_by_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampAndOffset>> {
        todo!()
    }

    /// The leader epoch of the newest entry in the epoch cache.
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        todo!()
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `epoch` and the end offset of that epoch.
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        todo!()
    }

    /// Removes every record at or after `offset` (replication truncation).
    pub fn truncate_to(&self, offset: Offset) -> Result<()> {
        todo!()
    }

    /// DeleteRecords: moves the log start offset forward to `offset` and deletes segments wholly
    /// below it. Returns the new log start offset.
    pub fn delete_records(&self, offset: Offset) -> Result<Offset> {
        todo!()
    }

    /// One retention pass: deletes closed segments past `retention.ms` / `retention.bytes` and
    /// wholly below the log start offset, never the active one, asking the guard first.
    /// Returns how many segments were deleted.
    pub fn delete_old_segments(&self) -> Result<usize> {
        todo!()
    }

    pub fn set_retention_guard(&self, guard: RetentionGuard) {
        todo!()
    }

    pub fn producer_state(&self, producer_id: ProducerId) -> Option<ProducerStateEntry> {
        todo!()
    }

    pub fn size_bytes(&self) -> u64 {
        todo!()
    }

    pub fn segment_count(&self) -> usize {
        todo!()
    }

    /// Flushes and writes the checkpoints (recovery point, producer snapshot) so the next open
    /// does not rescan. Further calls fail with `Closed`.
    pub fn close(&self) -> Result<()> {
        todo!()
    }
}
