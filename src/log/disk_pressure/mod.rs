//! Disk pressure: keeping each log dir's filesystem from filling up.
//!
//! A duty of the [`LogManager`](super::LogManager) reads each online dir's usage every
//! `strata.log.dir.disk.check.interval.ms` through a [`DiskUsageSource`] (statvfs, or a fake in
//! tests) and moves the dir between three states ([`decide_pressure`], pure):
//!
//! - past `strata.log.dir.disk.high.watermark.ratio` (0.90) the dir is **high**: the local copies
//!   of segments already in remote storage are deleted, the dir's oldest data first, until it is
//!   below `strata.log.dir.disk.low.watermark.ratio` (0.80). Local retention of tiered partitions
//!   thus shrinks toward their uploaded offset; reads below the new local log start are served
//!   from the remote part. Nothing that is not in the remote manifest is ever deleted for
//!   pressure: a partition that is not tiered, or whose uploads lag, keeps its data;
//! - past `strata.log.dir.disk.refuse.ratio` (0.95) the dir is **refusing**: Produce to partitions
//!   in it is answered KAFKA_STORAGE_ERROR (`LogError::DiskPressure`) before anything is
//!   written, so that the disk never fills under acknowledged data. Fetches, replication and
//!   the coordinators' own writes go on;
//! - below the low watermark the dir is **normal** again and produce resumes by itself.
//!
//! Each change of state is logged once (WARN entering pressure, INFO leaving it) and exported
//! (`strata_log_dir_disk_pressure_state`, `strata_log_dir_disk_usage_ratio`,
//! `strata_log_dir_produce_refused_total`).
//!
//! KAFKA_STORAGE_ERROR because Kafka has no "disk full, retry later" code and this one is
//! retriable for every client that matters: librdkafka refreshes metadata and retries the batch
//! (it is in its list of retriable produce errors), kafka-python's `KafkaStorageError` is
//! `retriable` (and `invalid_metadata`), the Java client's `KafkaStorageException` is a
//! `RetriableException`. A producer therefore backs off and retries until the dir is below the
//! low watermark or its delivery timeout passes. THROTTLING_QUOTA_EXCEEDED was the other
//! candidate; clients treat it as fatal outside topic and partition creation.

mod decide;
mod usage;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

pub use decide::{
    bytes_to_free, decide_pressure, plan_reclaim, DiskPressureMarks, PressureState, ReclaimStep,
    UploadedSegment,
};
pub use usage::{DiskUsage, DiskUsageSource, StatvfsUsage, UsageFromFile};

/// The settings of disk pressure (node configs `strata.log.dir.disk.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct DiskPressureConfig {
    pub marks: DiskPressureMarks,
    /// `strata.log.dir.disk.check.interval.ms`
    pub check_interval_ms: u64,
    /// `strata.test.log.dir.disk.usage.file`: tests only; see [`UsageFromFile`].
    pub usage_file: Option<PathBuf>,
}

impl Default for DiskPressureConfig {
    fn default() -> Self {
        DiskPressureConfig {
            marks: DiskPressureMarks::default(),
            check_interval_ms: 5_000,
            usage_file: None,
        }
    }
}

/// The disk pressure metrics, one set per process, labelled by log dir (a bounded set: the
/// configured `log.dirs`).
#[derive(Debug, Clone)]
pub struct DiskPressureMetrics {
    pub usage_ratio: prometheus::GaugeVec,
    pub state: prometheus::IntGaugeVec,
    pub produce_refused: prometheus::IntCounterVec,
    pub deleted_segments: prometheus::IntCounterVec,
}

pub fn metrics() -> &'static DiskPressureMetrics {
    static METRICS: std::sync::OnceLock<DiskPressureMetrics> = std::sync::OnceLock::new();
    METRICS.get_or_init(|| {
        let opts = |name: &str, help: &str| prometheus::Opts::new(name, help);
        DiskPressureMetrics {
            usage_ratio: prometheus::GaugeVec::new(
                opts(
                    "strata_log_dir_disk_usage_ratio",
                    "Used fraction of the filesystem holding each log dir, as disk pressure last read it.",
                ),
                &["log_dir"],
            )
            .expect("metric definition is valid"),
            state: prometheus::IntGaugeVec::new(
                opts(
                    "strata_log_dir_disk_pressure_state",
                    "Disk pressure of each log dir: 0 normal, 1 high (deleting uploaded local segments), 2 refusing produce.",
                ),
                &["log_dir"],
            )
            .expect("metric definition is valid"),
            produce_refused: prometheus::IntCounterVec::new(
                opts(
                    "strata_log_dir_produce_refused_total",
                    "Produce partitions refused because their log dir is past its refuse mark.",
                ),
                &["log_dir"],
            )
            .expect("metric definition is valid"),
            deleted_segments: prometheus::IntCounterVec::new(
                opts(
                    "strata_log_dir_disk_pressure_deleted_segments_total",
                    "Local copies of uploaded segments deleted to relieve disk pressure.",
                ),
                &["log_dir"],
            )
            .expect("metric definition is valid"),
        }
    })
}

#[derive(Debug)]
struct DirPressure {
    path: PathBuf,
    label: String,
    state: AtomicU8,
}

/// The pressure state of this broker's log dirs. Written only by the `LogManager`'s disk
/// pressure duty (one task), read by every produce through the logs attached to it.
#[derive(Debug)]
pub struct LogDirPressure {
    dirs: Vec<DirPressure>,
    // Short sections only: replaced before the duty starts (or by tests), read once a pass.
    config: Mutex<DiskPressureConfig>,
    source: Mutex<Arc<dyn DiskUsageSource>>,
}

/// What one check of a dir found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PressureCheck {
    pub usage: DiskUsage,
    pub state: PressureState,
    /// Bytes to free by deleting uploaded local segments (0 when normal).
    pub reclaim_bytes: u64,
}

impl LogDirPressure {
    pub fn new(dirs: &[PathBuf]) -> Arc<LogDirPressure> {
        let m = metrics();
        let dirs: Vec<DirPressure> = dirs
            .iter()
            .map(|p| {
                let label = p.display().to_string();
                // Exported from the start, so the alert sees every dir on a healthy broker.
                m.usage_ratio.with_label_values(&[&label]);
                m.state.with_label_values(&[&label]).set(0);
                m.produce_refused.with_label_values(&[&label]);
                m.deleted_segments.with_label_values(&[&label]);
                DirPressure {
                    path: p.clone(),
                    label,
                    state: AtomicU8::new(PressureState::Normal as u8),
                }
            })
            .collect();
        Arc::new(LogDirPressure {
            dirs,
            config: Mutex::new(DiskPressureConfig::default()),
            source: Mutex::new(Arc::new(StatvfsUsage)),
        })
    }

    pub fn config(&self) -> DiskPressureConfig {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets the marks and interval; a usage file replaces the usage source.
    pub fn set_config(&self, config: DiskPressureConfig) {
        if let Some(path) = &config.usage_file {
            tracing::warn!(file = %path.display(), "disk usage is read from a file (strata.test.log.dir.disk.usage.file): for tests only");
            self.set_usage_source(Arc::new(UsageFromFile { path: path.clone() }));
        }
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// Replaces where usage is read (tests inject a fake here).
    pub fn set_usage_source(&self, source: Arc<dyn DiskUsageSource>) {
        *self.source.lock().unwrap_or_else(|p| p.into_inner()) = source;
    }

    pub fn state(&self, index: usize) -> PressureState {
        PressureState::from_u8(self.dirs[index].state.load(Ordering::Acquire))
    }

    pub fn path(&self, index: usize) -> &Path {
        &self.dirs[index].path
    }

    /// Whether produce to partitions in dir `index` is refused; counts the refusal.
    pub(crate) fn refuses_produce(&self, index: usize) -> bool {
        let refusing = self.state(index) == PressureState::Refusing;
        if refusing {
            metrics()
                .produce_refused
                .with_label_values(&[&self.dirs[index].label])
                .inc();
        }
        refusing
    }

    /// Reads dir `index`'s usage, moves its state and says what to free. Called by the duty
    /// only. An unreadable usage keeps the state (and is logged).
    pub fn check(&self, index: usize) -> Option<PressureCheck> {
        let dir = &self.dirs[index];
        let source = Arc::clone(&self.source.lock().unwrap_or_else(|p| p.into_inner()));
        let marks = self.config().marks;
        let usage = match source.usage(&dir.path) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(log_dir = %dir.path.display(), error = %e, "cannot read the log dir's disk usage");
                return None;
            }
        };
        let ratio = usage.used_ratio();
        let before = self.state(index);
        let state = decide_pressure(before, ratio, &marks);
        let m = metrics();
        m.usage_ratio.with_label_values(&[&dir.label]).set(ratio);
        if state != before {
            dir.state.store(state as u8, Ordering::Release);
            m.state.with_label_values(&[&dir.label]).set(state as i64);
            log_transition(&dir.path, before, state, ratio, &marks);
        }
        Some(PressureCheck {
            usage,
            state,
            reclaim_bytes: bytes_to_free(state, usage.used_bytes(), usage.total_bytes, &marks),
        })
    }

    pub(crate) fn count_deleted(&self, index: usize, segments: usize) {
        metrics()
            .deleted_segments
            .with_label_values(&[&self.dirs[index].label])
            .inc_by(segments as u64);
    }
}

fn log_transition(
    dir: &Path,
    from: PressureState,
    to: PressureState,
    ratio: f64,
    marks: &DiskPressureMarks,
) {
    let used = format!("{:.3}", ratio);
    match to {
        PressureState::Refusing => tracing::warn!(
            log_dir = %dir.display(), used_ratio = %used, refuse_ratio = marks.refuse_ratio,
            low_watermark_ratio = marks.low_watermark_ratio,
            "log dir past its disk refuse mark: produce to its partitions is refused (KAFKA_STORAGE_ERROR) until it is below the low watermark; uploaded local segments are being deleted"
        ),
        PressureState::High => tracing::warn!(
            log_dir = %dir.display(), used_ratio = %used, high_watermark_ratio = marks.high_watermark_ratio,
            from = from.label(),
            "log dir past its disk high watermark: deleting local copies of uploaded segments down to the low watermark"
        ),
        PressureState::Normal => tracing::info!(
            log_dir = %dir.display(), used_ratio = %used, from = from.label(),
            "log dir below its disk low watermark: disk pressure over, produce served"
        ),
    }
}
