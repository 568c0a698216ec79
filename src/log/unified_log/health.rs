//! The log's side of a failed disk: which errors take its dir offline, and refusing every
//! operation once it is (see [`dir_failure`](crate::log::dir_failure)).

use std::sync::Arc;

use bytes::Bytes;

use super::{Origin, UnifiedLog};
use crate::log::dir_failure::count_storage_error;
use crate::log::dir_failure::{classify, LogDirFailureChannel, StorageErrorKind};
use crate::log::disk_pressure::LogDirPressure;
use crate::log::repair::CorruptBatch;
use crate::log::segment::{scan_batches, SegmentFile};
use crate::log::{LogAppendInfo, LogError, Result};
use crate::model::Offset;

impl UnifiedLog {
    /// Ties this log to dir `index` of `channel`: a failure of any log there takes this one
    /// offline too, and this log's failures take the dir offline.
    pub fn attach_log_dir(&self, channel: Arc<LogDirFailureChannel>, index: usize) {
        self.health.attach(channel, index);
    }

    /// Whether this log's dir is offline: it serves nothing until the broker restarts.
    pub fn is_offline(&self) -> bool {
        self.health.is_offline()
    }

    /// Ties this log to dir `index` of the manager's disk pressure.
    pub fn attach_disk_pressure(&self, pressure: Arc<LogDirPressure>, index: usize) {
        self.health.attach_pressure(pressure, index);
    }

    /// Refuses a produce while the log's dir is past its disk refuse mark (see
    /// [`disk_pressure`](crate::log::disk_pressure)); asked before a client's batches are
    /// appended, so nothing is written.
    pub fn check_disk_pressure(&self) -> Result<()> {
        if self.health.refuses_produce() {
            return Err(LogError::DiskPressure { path: self.dir() });
        }
        Ok(())
    }

    pub(super) fn check_online(&self) -> Result<()> {
        if self.health.is_offline() {
            return Err(LogError::LogDirOffline { path: self.dir() });
        }
        Ok(())
    }

    /// An append; a write that failed on the disk takes the dir offline (a full disk only
    /// refuses the append, which left the log as it was).
    pub(super) fn append(&self, records: Bytes, origin: Origin) -> Result<LogAppendInfo> {
        self.append_checked(records, origin).inspect_err(|e| {
            if let Some(kind) = classify(e, false) {
                self.health.failed(kind, e, &self.dir());
            }
        })
    }

    /// A failed fsync is never retried: the kernel may have dropped the pages it could not
    /// write, so a later fsync could succeed without them. The dir goes offline and nothing
    /// written since the last good fsync is acknowledged.
    pub(super) fn fsync_failed(&self, files: Vec<Arc<SegmentFile>>, dir: bool, error: &LogError) {
        self.lock().flush_failed(files, dir);
        self.health
            .failed(StorageErrorKind::Fsync, error, &self.dir());
    }

    /// A read that failed on the disk takes the dir offline, as a failed write does. A batch
    /// whose CRC-32C no longer matches (reads check every batch, see
    /// `segment::VERIFY_CRC_ON_READ`) is never served from this copy: the read stops before
    /// it, or fails (KAFKA_STORAGE_ERROR) when it starts there. Each such read is counted; the
    /// first that meets a batch locates it and logs it, for the repair to act on (see
    /// [`repair`](crate::log::repair)). The dir stays online: the rest of the log reads fine.
    pub fn read_failed(&self, offset: Offset, error: &LogError) {
        match error {
            LogError::Io { .. } => self
                .health
                .failed(StorageErrorKind::Read, error, &self.dir()),
            LogError::CorruptSegment { .. } => {
                count_storage_error(StorageErrorKind::Corrupt);
                if self.health.corrupt.knows(offset) {
                    return;
                }
                let located = self.locate_corrupt_batch(offset);
                let batch = located.as_ref().ok().copied().flatten();
                tracing::error!(
                    log = %self.dir().display(),
                    read_from = %offset,
                    batch_base_offset = ?batch.map(|b| b.batch_base.0),
                    error = %error,
                    "corrupt batch in a segment: not served from this copy"
                );
                match located {
                    Ok(Some(batch)) => self.health.corrupt.record_found(batch),
                    Err(e @ LogError::Io { .. }) => {
                        self.health.failed(StorageErrorKind::Read, &e, &self.dir())
                    }
                    Ok(None) | Err(_) => {}
                }
            }
            _ => {}
        }
    }

    /// Finds the first batch that fails its checks in the segment that holds `offset`,
    /// scanning the segment from its start (a rare event: once per corrupt batch found).
    /// `None` when the segment reads clean now.
    pub fn locate_corrupt_batch(&self, offset: Offset) -> Result<Option<CorruptBatch>> {
        let (file, size, segment_base, segment_last, oldest_local, leo) = {
            let st = self.lock_open()?;
            let Some(seg) = st.floor_segment(offset.0) else {
                return Ok(None);
            };
            let next_base = st
                .segments
                .range(seg.base_offset + 1..)
                .next()
                .map_or(seg.next_offset, |(b, _)| *b);
            let oldest = st.segments.keys().next() == Some(&seg.base_offset);
            (
                Arc::clone(&seg.file),
                seg.size,
                seg.base_offset,
                next_base - 1,
                oldest,
                st.log_end_offset(),
            )
        };
        let mut good_end = segment_base;
        let scan = scan_batches(&file, 0, size, true, 64 * 1024, |_, h, _| {
            good_end = h.next_offset();
            true
        })?;
        Ok(scan.error.map(|_| CorruptBatch {
            batch_base: Offset(good_end),
            segment_base: Offset(segment_base),
            segment_last: Offset(segment_last),
            oldest_local,
            refetch_until: Offset(leo.min(segment_last + 1)),
        }))
    }

    /// The corrupt batch found and not restored yet.
    pub fn corrupt_batch(&self) -> Option<CorruptBatch> {
        self.health.corrupt.found()
    }

    /// Whether reads of `offset` go to the remote copy: its local segment is corrupt.
    pub fn corrupt_range_served_remotely(&self, offset: Offset) -> bool {
        self.health.corrupt.served_remotely(offset)
    }

    /// Reads of `batch`'s segment go to the remote copy from now on; with `drop_local_segment`
    /// (the segment is the oldest local one) the local log start moves past it and the segment
    /// is deleted. Returns whether the range was new (to be counted once).
    pub(crate) fn serve_corrupt_remotely(
        &self,
        batch: &CorruptBatch,
        drop_local_segment: bool,
    ) -> Result<bool> {
        let new = !self.health.corrupt.served_remotely(batch.segment_base);
        self.health.corrupt.serve_remotely(batch);
        if drop_local_segment && self.local_log_start_offset() == batch.segment_base {
            let start = self.delete_records(batch.segment_last.next())?;
            self.health.corrupt.forget_below(start);
        }
        Ok(new)
    }

    /// Whether the partition is reported offline to leave the ISR for a repair (the broker
    /// heartbeat reports it with the partitions of offline dirs).
    pub fn reports_offline_for_repair(&self) -> bool {
        self.health.corrupt.report_offline()
    }

    /// Reports (or stops reporting) the partition offline for a repair; the previous value.
    pub fn set_offline_for_repair(&self, offline: bool) -> bool {
        self.health.corrupt.set_report_offline(offline)
    }

    /// Asks the follower fetcher to truncate to `to` before its next fetch.
    pub fn request_repair_truncation(&self, to: Offset) {
        self.health.corrupt.request_truncation(to);
    }

    pub fn repair_truncation_pending(&self) -> bool {
        self.health.corrupt.truncation_pending()
    }

    pub fn cancel_repair_truncation(&self) {
        self.health.corrupt.cancel_truncation();
    }

    /// The truncation the follower fetcher is to run now, if any (see
    /// [`request_repair_truncation`](Self::request_repair_truncation)).
    pub fn take_repair_truncation(&self) -> Option<Offset> {
        self.health.corrupt.take_truncation()
    }

    /// After a repair truncation, the log end the re-fetch waited for, once it is reached
    /// (once).
    pub fn repair_refetched(&self) -> Option<Offset> {
        self.health.corrupt.refetched(self.log_end_offset())
    }

    /// Whether an unrepairable corrupt batch is to be logged now (once per batch).
    pub fn log_unrepairable_once(&self) -> bool {
        self.health.corrupt.log_unrepairable()
    }
}
