//! Log dirs that failed an I/O (Kafka's `LogDirFailureChannel`).
//!
//! A write or an fsync that fails leaves the kernel's view of a file unknown: after a failed
//! fsync Linux may have dropped the dirty pages and marked them clean, so a second fsync
//! "succeeds" without the data ever reaching the disk. Nothing written to the dir since its last
//! good fsync can be trusted, so the whole dir goes offline at once: every log in it refuses
//! reads and writes (`LogError::LogDirOffline`, KAFKA_STORAGE_ERROR on the wire) until the
//! broker restarts and recovery checks what is on disk. The broker's heartbeat names the
//! partitions in offline dirs, so the controller elects other leaders for them and drops this
//! broker from their ISR. The other log dirs keep serving; when none is left the broker halts,
//! as Kafka does.
//!
//! A full disk (ENOSPC on a write) is not a dir failure: the append is cut back to the last
//! batch boundary before the error is returned, so the log stays consistent and the produce
//! can be retried once space is freed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::disk_pressure::LogDirPressure;
use super::LogError;

/// The I/O that failed, the `kind` label of `strata_log_storage_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    Write,
    Fsync,
    Read,
    DiskFull,
    Corrupt,
}

impl StorageErrorKind {
    pub const ALL: [StorageErrorKind; 5] = [
        StorageErrorKind::Write,
        StorageErrorKind::Fsync,
        StorageErrorKind::Read,
        StorageErrorKind::DiskFull,
        StorageErrorKind::Corrupt,
    ];

    pub fn label(self) -> &'static str {
        match self {
            StorageErrorKind::Write => "write",
            StorageErrorKind::Fsync => "fsync",
            StorageErrorKind::Read => "read",
            StorageErrorKind::DiskFull => "disk_full",
            StorageErrorKind::Corrupt => "corrupt",
        }
    }
}

/// Counts a storage error of `kind`.
pub fn count_storage_error(kind: StorageErrorKind) {
    super::metrics()
        .storage_errors
        .with_label_values(&[kind.label()])
        .inc();
}

#[derive(Debug)]
struct LogDir {
    path: PathBuf,
    offline: AtomicBool,
}

/// Which of this broker's log dirs are offline. Shared by the `LogManager` and every log it
/// opened; a dir only ever goes offline (back online takes a restart, as in Kafka).
#[derive(Debug)]
pub struct LogDirFailureChannel {
    dirs: Vec<LogDir>,
    // The number of offline dirs, for whoever must act on a change (the broker halts at all).
    offline_count: tokio::sync::watch::Sender<usize>,
}

impl LogDirFailureChannel {
    pub fn new(dirs: &[PathBuf]) -> Arc<LogDirFailureChannel> {
        Arc::new(LogDirFailureChannel {
            dirs: dirs
                .iter()
                .map(|p| LogDir {
                    path: p.clone(),
                    offline: AtomicBool::new(false),
                })
                .collect(),
            offline_count: tokio::sync::watch::Sender::new(0),
        })
    }

    /// The index of the configured dir holding `path`.
    pub fn dir_of(&self, path: &Path) -> Option<usize> {
        self.dirs.iter().position(|d| path.starts_with(&d.path))
    }

    pub fn is_offline(&self, index: usize) -> bool {
        self.dirs[index].offline.load(Ordering::SeqCst)
    }

    /// Takes dir `index` offline because of `error`; returns whether it was online until now.
    pub fn mark_offline(&self, index: usize, error: &LogError) -> bool {
        let dir = &self.dirs[index];
        if dir.offline.swap(true, Ordering::SeqCst) {
            return false;
        }
        let offline = self.offline_dirs().len();
        tracing::error!(
            log_dir = %dir.path.display(),
            error = %error,
            offline_dirs = offline,
            total_dirs = self.dirs.len(),
            "log dir offline: every partition in it stops serving on this broker"
        );
        super::metrics().log_dirs_offline.set(offline as i64);
        self.offline_count.send_replace(offline);
        true
    }

    pub fn offline_dirs(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .filter(|d| d.offline.load(Ordering::SeqCst))
            .map(|d| d.path.clone())
            .collect()
    }

    pub fn online_dirs(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .filter(|d| !d.offline.load(Ordering::SeqCst))
            .map(|d| d.path.clone())
            .collect()
    }

    /// Whether every configured dir is offline (the broker cannot serve any partition).
    pub fn all_offline(&self) -> bool {
        self.dirs.iter().all(|d| d.offline.load(Ordering::SeqCst))
    }

    /// Changes of the number of offline dirs.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<usize> {
        self.offline_count.subscribe()
    }
}

/// One log's view of its dir's health: its own failure (a log opened outside a `LogManager`),
/// or its dir's in the manager's channel.
#[derive(Debug, Default)]
pub(crate) struct DirHealth {
    failed: AtomicBool,
    channel: OnceLock<Arc<LogDirFailureChannel>>,
    // The dir's disk pressure (`super::disk_pressure`), which may refuse produce.
    pressure: OnceLock<Arc<LogDirPressure>>,
    /// Which of `log.dirs` the log lives in; it changes when the log moves to another dir
    /// (AlterReplicaLogDirs, `UnifiedLog::swap_in_future`).
    dir_index: AtomicUsize,
    /// A corrupt batch found in the log and how far its repair went (see `log::repair`).
    pub(crate) corrupt: super::repair::CorruptRanges,
}

impl DirHealth {
    /// Ties the log to dir `index` of `channel`.
    pub(crate) fn attach(&self, channel: Arc<LogDirFailureChannel>, index: usize) {
        let _ = self.channel.set(channel);
        self.dir_index.store(index, Ordering::SeqCst);
    }

    /// Ties the log to dir `index` of the manager's disk pressure.
    pub(crate) fn attach_pressure(&self, pressure: Arc<LogDirPressure>, index: usize) {
        let _ = self.pressure.set(pressure);
        self.dir_index.store(index, Ordering::SeqCst);
    }

    /// The log now lives in dir `index` (a replica moved between log dirs).
    pub(crate) fn moved_to(&self, index: usize) {
        self.dir_index.store(index, Ordering::SeqCst);
    }

    fn index(&self) -> usize {
        self.dir_index.load(Ordering::Relaxed)
    }

    /// Whether the dir is past its disk refuse mark (counted as a refusal when it is).
    pub(crate) fn refuses_produce(&self) -> bool {
        self.pressure
            .get()
            .is_some_and(|p| p.refuses_produce(self.index()))
    }

    pub(crate) fn is_offline(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
            || self
                .channel
                .get()
                .is_some_and(|c| c.is_offline(self.index()))
    }

    /// Records a failed I/O of `kind`: a write or fsync failure takes the dir offline, a full
    /// disk does not (see the module doc).
    pub(crate) fn failed(&self, kind: StorageErrorKind, error: &LogError, log: &Path) {
        count_storage_error(kind);
        if kind == StorageErrorKind::DiskFull {
            tracing::warn!(log = %log.display(), error = %error, "append refused: disk full");
            return;
        }
        self.failed.store(true, Ordering::SeqCst);
        match self.channel.get() {
            Some(c) => {
                c.mark_offline(self.index(), error);
            }
            None => tracing::error!(log = %log.display(), error = %error, "log offline"),
        }
    }
}

/// What an append's or fsync's error says about the disk, if anything.
pub(crate) fn classify(error: &LogError, fsync: bool) -> Option<StorageErrorKind> {
    match error {
        _ if fsync && matches!(error, LogError::Io { .. } | LogError::DiskFull { .. }) => {
            Some(StorageErrorKind::Fsync)
        }
        LogError::DiskFull { .. } => Some(StorageErrorKind::DiskFull),
        LogError::Io { .. } => Some(StorageErrorKind::Write),
        _ => None,
    }
}
