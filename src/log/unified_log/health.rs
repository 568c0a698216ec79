//! The log's side of a failed disk: which errors take its dir offline, and refusing every
//! operation once it is (see [`dir_failure`](crate::log::dir_failure)).

use std::sync::Arc;

use bytes::Bytes;

use super::{Origin, UnifiedLog};
use crate::log::dir_failure::count_storage_error;
use crate::log::dir_failure::{classify, LogDirFailureChannel, StorageErrorKind};
use crate::log::disk_pressure::LogDirPressure;
use crate::log::segment::SegmentFile;
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
            return Err(LogError::DiskPressure {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    pub(super) fn check_online(&self) -> Result<()> {
        if self.health.is_offline() {
            return Err(LogError::LogDirOffline {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// An append; a write that failed on the disk takes the dir offline (a full disk only
    /// refuses the append, which left the log as it was).
    pub(super) fn append(&self, records: Bytes, origin: Origin) -> Result<LogAppendInfo> {
        self.append_checked(records, origin).inspect_err(|e| {
            if let Some(kind) = classify(e, false) {
                self.health.failed(kind, e, &self.dir);
            }
        })
    }

    /// A failed fsync is never retried: the kernel may have dropped the pages it could not
    /// write, so a later fsync could succeed without them. The dir goes offline and nothing
    /// written since the last good fsync is acknowledged.
    pub(super) fn fsync_failed(&self, files: Vec<Arc<SegmentFile>>, dir: bool, error: &LogError) {
        self.lock().flush_failed(files, dir);
        self.health
            .failed(StorageErrorKind::Fsync, error, &self.dir);
    }

    /// A read that failed on the disk takes the dir offline, as a failed write does. A batch
    /// whose CRC-32C no longer matches (reads check every batch, see
    /// `segment::VERIFY_CRC_ON_READ`) is never served: the read stops before it, or fails
    /// (KAFKA_STORAGE_ERROR) when it starts there, and each such read is logged and counted.
    /// The dir stays online: the rest of the log reads fine.
    pub fn read_failed(&self, offset: Offset, error: &LogError) {
        match error {
            LogError::Io { .. } => self.health.failed(StorageErrorKind::Read, error, &self.dir),
            LogError::CorruptSegment { .. } => {
                count_storage_error(StorageErrorKind::Corrupt);
                tracing::error!(
                    log = %self.dir.display(),
                    read_from = %offset,
                    error = %error,
                    "corrupt batch in a segment: not served"
                );
            }
            _ => {}
        }
    }
}
