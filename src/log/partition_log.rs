//! `PartitionLog`: a partition's whole log, the local part and the remote part, behind one API.

use std::sync::Arc;

use bytes::Bytes;
use strata_tiering::RemoteLogAuxState;

use super::remote::{RemoteLog, RemoteLogError};
use super::repair::{self, CorruptBatch};
use super::txn_index::AbortedTxn;
use super::{
    LogError, TimestampAndOffset, UnifiedLog, EARLIEST_LOCAL_TIMESTAMP, EARLIEST_TIMESTAMP,
    LATEST_TIERED_TIMESTAMP, LATEST_TIMESTAMP, MAX_TIMESTAMP,
};
use crate::model::Offset;

/// Errors of a [`PartitionLog`]: from the local log or from the remote part. Mapped to wire
/// codes in `handlers` (remote failures are retriable KAFKA_STORAGE_ERROR).
#[derive(Debug, thiserror::Error)]
pub enum PartitionLogError {
    #[error(transparent)]
    Local(#[from] LogError),
    #[error(transparent)]
    Remote(#[from] RemoteLogError),
}

/// What a read of the whole log returns (Kafka's `LogReadResult`, without the replica facts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReadInfo {
    /// Whole record batches; the first holds the offset read.
    pub records: Bytes,
    /// The start of the whole log, remote part included, at the time of the read.
    pub log_start_offset: Offset,
    /// The log end offset at the time of the read.
    pub log_end_offset: Offset,
}

/// A partition's whole log: the local [`UnifiedLog`] paired with the partition's remote part
/// (Kafka's `UnifiedLog`, which holds `logStartOffset`, `localLogStartOffset` and
/// `highestOffsetInRemoteStorage`).
///
/// # Ownership
/// The two parts have different owners, and neither knows the other: the local log belongs
/// to the `LogManager` (segments, checkpoints, local retention), the remote part to the
/// [`RemoteLogManager`](super::remote::RemoteLogManager) (the manifest, uploads, remote
/// retention). The partition replica (`replication::Partition`) holds one `PartitionLog`
/// that pairs them, so this type is where every answer that may lie in either part is
/// decided — reads, lookups by timestamp, the log start offset, DeleteRecords — and the only
/// place that decides it; handlers call it and never merge local and remote answers
/// themselves. It owns no state of its own: the local log and a [`RemoteLog`] handle (absent
/// on a broker without tiered storage, which then answers as a local-only log).
///
/// Facts of the replica, such as the high watermark, are passed in as values: the log never
/// reaches into replication.
///
/// # Offsets
/// - [`log_start_offset`](Self::log_start_offset): the first offset of the whole log, remote
///   part included;
/// - [`local_log_start_offset`](Self::local_log_start_offset): the first offset on local disk;
///   below it, only the remote part can answer;
/// - [`highest_offset_in_remote_storage`](Self::highest_offset_in_remote_storage): the last
///   offset uploaded, -1 when none.
///
/// # Transactions
/// A read_committed caller bounds `read` by the last stable offset (as a read_uncommitted one
/// by the high watermark) and asks [`collect_aborted_txns`](Self::collect_aborted_txns) for
/// the aborted transactions of the range it read, which answers from the remote segments'
/// transaction indexes and the local ones alike.
#[derive(Debug)]
pub struct PartitionLog {
    local: Arc<UnifiedLog>,
    remote: Option<RemoteLog>,
}

impl PartitionLog {
    /// A log with no remote part (yet): it answers from the local log alone.
    pub fn new(local: Arc<UnifiedLog>) -> PartitionLog {
        PartitionLog {
            local,
            remote: None,
        }
    }

    /// Pairs the log with its remote part (from
    /// [`RemoteLogManager::attach`](super::remote::RemoteLogManager::attach)).
    pub fn with_remote(mut self, remote: RemoteLog) -> PartitionLog {
        self.remote = Some(remote);
        self
    }

    /// The local log.
    pub fn local(&self) -> &Arc<UnifiedLog> {
        &self.local
    }

    /// Whether this broker runs tiered storage for the partition's log at all (the topic's
    /// `remote.storage.enable` is checked at each call, as it may change).
    pub fn has_remote_storage(&self) -> bool {
        self.remote.is_some()
    }

    /// The first offset on local disk.
    pub fn local_log_start_offset(&self) -> Offset {
        self.local.local_log_start_offset()
    }

    pub fn log_end_offset(&self) -> Offset {
        self.local.log_end_offset()
    }

    /// The first offset of the whole log, remote part included, without waiting: the local
    /// log start while the remote metadata is not loaded.
    pub fn log_start_offset(&self) -> Offset {
        match &self.remote {
            Some(r) => r.manager().log_start_offset(r.at(&self.local)),
            None => self.local.local_log_start_offset(),
        }
    }

    /// Like [`log_start_offset`](Self::log_start_offset), loading the remote metadata first if
    /// needed.
    pub async fn load_log_start_offset(&self) -> Result<Offset, RemoteLogError> {
        match &self.remote {
            Some(r) => r.manager().log_start_offset_loaded(r.at(&self.local)).await,
            None => Ok(self.local.local_log_start_offset()),
        }
    }

    /// The last offset uploaded to remote storage (loading the remote metadata if needed);
    /// -1 when nothing is, or the topic is not tiered here.
    pub async fn highest_offset_in_remote_storage(&self) -> Result<Offset, RemoteLogError> {
        match &self.remote {
            Some(r) => Ok(r
                .manager()
                .remote_end_offset(r.at(&self.local))
                .await?
                .unwrap_or(Offset::INVALID)),
            None => Ok(Offset::INVALID),
        }
    }

    /// For a replica that starts its local log after the remote log (a new replica of a
    /// tiered partition): the remote log's end, leader epochs and producer snapshot, from the
    /// manifest re-read now. `None` when there is no remote part or nothing is uploaded.
    pub async fn remote_aux_state(&self) -> Result<Option<RemoteLogAuxState>, RemoteLogError> {
        match &self.remote {
            Some(r) => r.manager().fresh_aux_state(r.at(&self.local)).await,
            None => Ok(None),
        }
    }

    /// Whether a read at `offset` goes to the remote part.
    pub fn reads_remote(&self, offset: Offset) -> bool {
        self.remote.is_some() && offset < self.local.local_log_start_offset()
    }

    /// Fetches into the chunk cache what a [`read`](Self::read) at `offset` of up to `max_bytes`
    /// will take from the remote part, without reading it: a fetch warms all its remote
    /// partitions at once, then reads them in order from the cache. Nothing to do for an offset
    /// in the local log; a failure is left for the read to report.
    pub async fn warm_remote(&self, offset: Offset, max_bytes: usize) {
        let Some(r) = &self.remote else {
            return;
        };
        if !self.reads_remote(offset) || max_bytes == 0 {
            return;
        }
        if let Err(e) = r.manager().warm(r.at(&self.local), offset, max_bytes).await {
            tracing::debug!(partition = %r.topic_partition(), error = %e, "remote read-ahead failed");
        }
    }

    /// Reads whole batches from `offset`, below `max_offset` (the high watermark for a
    /// consumer), up to `max_bytes` (but one whole batch when `min_one_batch`, KIP-74).
    /// Offsets below the local log start are read from the remote part (at most
    /// `remote.fetch.max.bytes`, from one remote segment); one the remote part does not hold
    /// (a gap left by retention) continues at the local log start. `offset` outside
    /// `[log start, log end]` is `OffsetOutOfRange` with the whole log's bounds; at or above
    /// `max_offset`, or with no byte budget, the read is empty.
    pub async fn read(
        &self,
        offset: Offset,
        max_bytes: usize,
        max_offset: Offset,
        min_one_batch: bool,
    ) -> Result<LogReadInfo, PartitionLogError> {
        let r = self
            .read_inner(offset, max_bytes, max_offset, min_one_batch)
            .await;
        if let (Err(PartitionLogError::Remote(_)), Some(remote)) = (&r, &self.remote) {
            remote.manager().record_fetch_error();
        }
        r
    }

    async fn read_inner(
        &self,
        offset: Offset,
        max_bytes: usize,
        max_offset: Offset,
        min_one_batch: bool,
    ) -> Result<LogReadInfo, PartitionLogError> {
        let local = &self.local;
        let (local_start, end) = (local.local_log_start_offset(), local.log_end_offset());
        let start = if offset < local_start {
            self.load_log_start_offset().await?
        } else {
            self.log_start_offset()
        };
        if offset < start || offset > end {
            return Err(PartitionLogError::Local(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: start,
                log_end_offset: end,
            }));
        }
        let info = |records: Bytes| LogReadInfo {
            records,
            log_start_offset: start,
            log_end_offset: end,
        };
        if offset >= max_offset || max_bytes == 0 {
            return Ok(info(Bytes::new()));
        }
        if offset < local_start {
            if let Some(r) = &self.remote {
                let at = r.at(local);
                if let Some(records) = r
                    .manager()
                    .read(at, offset, max_bytes, max_offset, min_one_batch)
                    .await?
                {
                    return Ok(info(records));
                }
            }
            // Not in the remote part either (a gap left by retention): continue at the local
            // log start.
            let read = self.read_local(local_start, max_bytes, max_offset, min_one_batch)?;
            return Ok(info(read.records));
        }
        if self.local.corrupt_range_served_remotely(offset) {
            if let Some(records) = self
                .read_remote_copy(offset, max_bytes, max_offset, min_one_batch)
                .await?
            {
                return Ok(info(records));
            }
        }
        match self.read_local(offset, max_bytes, max_offset, min_one_batch) {
            Ok(read) => Ok(info(read.records)),
            Err(e @ LogError::CorruptSegment { .. }) => {
                match self
                    .restore_from_remote(offset, max_bytes, max_offset, min_one_batch)
                    .await?
                {
                    Some(records) => Ok(info(records)),
                    None => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A read that met a corrupt batch at `offset`: when the remote copy holds its whole
    /// segment ([`repair::remote_covers`]), the segment's reads go remote from now on (its local
    /// copy is dropped if it is the oldest local segment) and this read is answered from there.
    /// `None` when the remote copy cannot answer: the caller keeps the local error.
    async fn restore_from_remote(
        &self,
        offset: Offset,
        max_bytes: usize,
        max_offset: Offset,
        min_one_batch: bool,
    ) -> Result<Option<Bytes>, PartitionLogError> {
        if self.remote.is_none() {
            return Ok(None);
        }
        let Some(batch) = self
            .local
            .corrupt_batch()
            .filter(|b| b.segment_base <= offset && offset <= b.segment_last)
        else {
            return Ok(None);
        };
        match self.serve_corrupt_remotely(&batch).await {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            // The remote end is unknown (the store fails): the read keeps its local error.
            Err(e) => {
                tracing::debug!(log = %self.local.dir().display(), error = %e, "remote end unknown");
                return Ok(None);
            }
        }
        self.read_remote_copy(offset, max_bytes, max_offset, min_one_batch)
            .await
    }

    /// Serves `batch`'s segment from the remote copy if that holds all of it (see
    /// [`restore_from_remote`](Self::restore_from_remote)); whether it does.
    pub async fn serve_corrupt_remotely(
        &self,
        batch: &CorruptBatch,
    ) -> Result<bool, PartitionLogError> {
        let end = Some(self.highest_offset_in_remote_storage().await?).filter(|o| o.0 >= 0);
        if !repair::remote_covers(batch, end) {
            return Ok(false);
        }
        if self
            .local
            .serve_corrupt_remotely(batch, batch.oldest_local)?
        {
            repair::count_repaired("remote");
            tracing::warn!(
                log = %self.local.dir().display(),
                batch_base_offset = batch.batch_base.0,
                segment_base_offset = batch.segment_base.0,
                local_copy_dropped = batch.oldest_local,
                "corrupt batch restored: its segment is served from the tiered copy"
            );
        }
        Ok(true)
    }

    async fn read_remote_copy(
        &self,
        offset: Offset,
        max_bytes: usize,
        max_offset: Offset,
        min_one_batch: bool,
    ) -> Result<Option<Bytes>, PartitionLogError> {
        let Some(r) = &self.remote else {
            return Ok(None);
        };
        let at = r.at(&self.local);
        Ok(r.manager()
            .read(at, offset, max_bytes, max_offset, min_one_batch)
            .await?)
    }

    /// The aborted transactions overlapping `[fetch_offset, upper_bound_offset)`, for a
    /// read_committed read of that range: from the remote segments' transaction indexes when
    /// the range starts below the local log start, and from the local log's; ordered by marker
    /// offset, each once (a segment may be both uploaded and still local).
    pub async fn collect_aborted_txns(
        &self,
        fetch_offset: Offset,
        upper_bound_offset: Offset,
    ) -> Result<Vec<AbortedTxn>, PartitionLogError> {
        let mut all = Vec::new();
        if let Some(r) = &self.remote {
            if fetch_offset < self.local.local_log_start_offset() {
                let at = r.at(&self.local);
                all = r
                    .manager()
                    .collect_aborted_txns(at, fetch_offset, upper_bound_offset)
                    .await?;
            }
        }
        all.extend(
            self.local
                .collect_aborted_txns(fetch_offset, upper_bound_offset),
        );
        all.sort_by_key(|t| (t.last_offset, t.producer_id));
        all.dedup();
        Ok(all)
    }

    /// Reads the local part. The active segment was written moments ago and sits in the page
    /// cache, so a read there runs on the calling task. A read that starts in an older segment
    /// (a consumer catching up) may fault pages in from disk, so it runs with
    /// [`crate::runtime::block_in_place`]: the async worker hands its other tasks (every other
    /// connection's requests) to another worker while the read blocks.
    fn read_local(
        &self,
        offset: Offset,
        max_bytes: usize,
        max_offset: Offset,
        min_one_batch: bool,
    ) -> Result<super::FetchDataInfo, LogError> {
        let read = || {
            self.local
                .read(offset, max_bytes, max_offset, min_one_batch)
        };
        let read = if self.local.in_active_segment(offset) {
            read()
        } else {
            crate::runtime::block_in_place(read)
        };
        read.inspect_err(|e| self.local.read_failed(offset, e))
    }

    /// ListOffsets' lookups over the whole log:
    /// - `EARLIEST_TIMESTAMP`: the log start offset (remote part included), with the leader
    ///   epoch of its first batch when that is local (-1 epoch otherwise);
    /// - `EARLIEST_LOCAL_TIMESTAMP`: the local log start, with its epoch;
    /// - `LATEST_TIMESTAMP`: the log end offset with the latest epoch (ListOffsets answers the
    ///   high watermark instead, which the partition knows);
    /// - `MAX_TIMESTAMP`: see [`max_timestamp`](Self::max_timestamp);
    /// - otherwise the first record at or after the timestamp (any other negative value counts
    ///   as 0), the remote part first since it holds the oldest records.
    ///
    /// Answers by timestamp (and `MAX_TIMESTAMP`) at or above `max_offset` (the high
    /// watermark for a consumer) are not visible: `None`.
    pub async fn fetch_offset_by_timestamp(
        &self,
        timestamp_ms: i64,
        max_offset: Offset,
    ) -> Result<Option<TimestampAndOffset>, PartitionLogError> {
        let local = &self.local;
        match timestamp_ms {
            EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => {
                let local_start = local.local_log_start_offset();
                let start = if timestamp_ms == EARLIEST_TIMESTAMP {
                    self.load_log_start_offset().await?
                } else {
                    local_start
                };
                let leader_epoch = if start == local_start {
                    local
                        .fetch_offset_by_timestamp(EARLIEST_TIMESTAMP)?
                        .and_then(|t| t.leader_epoch)
                } else {
                    None
                };
                return Ok(Some(TimestampAndOffset {
                    timestamp_ms: -1,
                    offset: start,
                    leader_epoch,
                }));
            }
            LATEST_TIMESTAMP => return Ok(local.fetch_offset_by_timestamp(LATEST_TIMESTAMP)?),
            LATEST_TIERED_TIMESTAMP => {
                let highest = if local.config().remote_storage_enable {
                    self.highest_offset_in_remote_storage().await?
                } else {
                    Offset::INVALID
                };
                return Ok(Some(TimestampAndOffset {
                    timestamp_ms: -1,
                    offset: highest,
                    leader_epoch: local
                        .leader_epoch_for_offset(highest)
                        .filter(|_| highest.0 >= 0),
                }));
            }
            _ => {}
        }
        let found = if timestamp_ms == MAX_TIMESTAMP {
            self.max_timestamp().await?
        } else {
            let ts = timestamp_ms.max(0);
            let in_remote = match &self.remote {
                Some(r) => r.manager().offset_for_timestamp(r.at(local), ts).await?,
                None => None,
            };
            match in_remote {
                Some(found) => Some(found),
                None => local.fetch_offset_by_timestamp(ts)?,
            }
        };
        // Only what is below `max_offset` is visible.
        Ok(found.filter(|f| f.offset < max_offset))
    }

    /// ListOffsets `MAX_TIMESTAMP` (-3, KIP-734): the first record with the greatest
    /// timestamp in the whole log; on a tie between the parts the earlier (remote) one wins.
    pub async fn max_timestamp(&self) -> Result<Option<TimestampAndOffset>, PartitionLogError> {
        let mut found = self.local.fetch_offset_by_timestamp(MAX_TIMESTAMP)?;
        if let Some(r) = &self.remote {
            if let Some(in_remote) = r.manager().max_timestamp(r.at(&self.local)).await? {
                if found
                    .as_ref()
                    .is_none_or(|l| in_remote.timestamp_ms >= l.timestamp_ms)
                {
                    found = Some(in_remote);
                }
            }
        }
        Ok(found)
    }

    /// DeleteRecords: moves the log start offset to `offset` over both parts — the remote
    /// start first (durably, in the manifest: nothing below it is served from then on, and the
    /// objects go at the next remote retention pass), then the local one when `offset` is past
    /// it. Returns the new log start offset (the low watermark). The caller checks `offset`
    /// against the high watermark.
    pub async fn delete_records(&self, offset: Offset) -> Result<Offset, PartitionLogError> {
        if let Some(r) = &self.remote {
            r.manager()
                .delete_records(r.at(&self.local), offset)
                .await?;
        }
        if offset > self.local.local_log_start_offset() {
            self.local.delete_records(offset)?;
        }
        Ok(self.log_start_offset())
    }
}
