//! `LogManager`: every partition log under the configured log dirs.
//!
//! Directory layout: `{log.dir}/{topic}-{partition}/` per partition. A directory whose name
//! ends in `-delete` is a partition deleted before a crash finished removing it: it is removed
//! at startup. New partitions go to the log dir AlterReplicaLogDirs named for them, else to
//! the one holding the fewest partitions. A partition dir may also be a future replica or a
//! moved-away copy (see [`super::alter_log_dirs`]).
//!
//! Background work (on tokio, stopped by the cancellation token): a retention pass every
//! `retention_check_interval_ms` (Kafka's `log.retention.check.interval.ms`), interval-policy
//! flushes and recovery-point checkpoints, the cleaner for compacted logs, and the disk
//! pressure duty (`super::disk_pressure`) every `strata.log.dir.disk.check.interval.ms`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::alter_log_dirs::{
    self as alter, AlterLogDirError, AlterLogDirOutcome, DirRole, ReplicaAlterLogDirs,
};
use super::dir_failure::LogDirFailureChannel;
use super::disk_pressure::{plan_reclaim, DiskPressureConfig, LogDirPressure, PressureState};
use super::{LogConfig, LogError, Result, UnifiedLog};
use crate::clock::SharedClock;
use crate::model::TopicPartition;

/// Owns the partition logs of this node and their background work (retention, interval
/// flushes, compaction).
#[derive(Debug)]
pub struct LogManager {
    log_dirs: Vec<PathBuf>,
    // Which dirs failed a write or an fsync; every log is attached to its dir's entry.
    failures: Arc<LogDirFailureChannel>,
    // Each dir's disk pressure; every log is attached to its dir's entry.
    pressure: Arc<LogDirPressure>,
    clock: SharedClock,
    // Short critical sections only (lookups and inserts), never held across I/O or `.await`.
    logs: Mutex<HashMap<TopicPartition, Arc<UnifiedLog>>>,
    /// Partitions found in a dir that failed at startup, whose logs could not be opened:
    /// reported offline, never created elsewhere. Short sections only.
    unopened: Mutex<BTreeSet<TopicPartition>>,
    /// A dir could not even be listed at startup: any partition may be there, so none is
    /// created anew until a restart (each one asked for is reported offline instead).
    unlisted_offline_dir: bool,
    // Serialises log creation, which does I/O: two creators of one partition must not both
    // initialise its directory. Held across that I/O, never by lookups.
    create_lock: Mutex<()>,
    /// Replicas moving between log dirs (AlterReplicaLogDirs).
    alter_dirs: Arc<ReplicaAlterLogDirs>,
    /// The background tasks' token (a move's task stops with it), set by `start_background`.
    shutdown_token: std::sync::OnceLock<tokio_util::sync::CancellationToken>,
    /// `log.retention.check.interval.ms`; settable before `start_background`.
    pub retention_check_interval_ms: AtomicU64,
    /// How often interval-policy logs are checked for a due flush.
    pub flush_check_interval_ms: AtomicU64,
    /// How often recovery points are written (Kafka's `log.flush.offset.checkpoint.interval.ms`):
    /// each write is two fsyncs per partition, and a crash only costs a longer recovery scan.
    pub checkpoint_interval_ms: AtomicU64,
    /// `log.cleaner.backoff.ms`: pause between cleaner passes.
    pub cleaner_backoff_ms: AtomicU64,
}

/// Parses `{topic}-{partition}`; topics may themselves contain `-`.
fn parse_dir_name(name: &str) -> Option<TopicPartition> {
    let (topic, part) = name.rsplit_once('-')?;
    let partition: i32 = part.parse().ok()?;
    if topic.is_empty() || partition < 0 {
        return None;
    }
    Some(TopicPartition::new(topic, partition))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens the partition logs of one dir into `found` (`None` for one whose files could not be
/// read: the dir fails with that error after the rest is opened); `listed` says whether every
/// entry of the dir was seen.
fn open_dir(
    dir: &Path,
    clock: &SharedClock,
    config_for: &dyn Fn(&str) -> LogConfig,
    found: &mut Vec<(TopicPartition, Option<Arc<UnifiedLog>>)>,
    futures: &mut Vec<(TopicPartition, PathBuf)>,
    listed: &mut bool,
) -> Result<()> {
    super::checkpoint::create_dir_all_durable(dir).map_err(io(dir))?;
    let mut failed = None;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.ends_with("-delete") {
            tracing::info!(path = %path.display(), "removing partially deleted partition");
            std::fs::remove_dir_all(&path).map_err(io(&path))?;
            continue;
        }
        let Some(tp) = parse_dir_name(&name) else {
            continue;
        };
        match alter::dir_role(&path) {
            DirRole::Current => {}
            DirRole::Future => {
                futures.push((tp, path));
                continue;
            }
            DirRole::Moved => {
                tracing::info!(path = %path.display(), "removing the old copy of a moved replica");
                std::fs::remove_dir_all(&path).map_err(io(&path))?;
                continue;
            }
        }
        match UnifiedLog::open(path, config_for(&tp.topic), Arc::clone(clock)) {
            Ok(log) => found.push((tp, Some(log))),
            Err(e @ LogError::Io { .. }) => {
                found.push((tp, None));
                failed = failed.or(Some(e));
            }
            Err(e) => return Err(e),
        }
    }
    *listed = true;
    failed.map_or(Ok(()), Err)
}

impl LogManager {
    /// Opens every partition directory found under `log_dirs`, recovering each;
    /// `config_for` gives the config of a topic by name.
    ///
    /// A dir that fails an I/O while it is opened (it cannot be created or listed, or a
    /// partition's files cannot be read) starts offline, as in Kafka: its partitions are
    /// reported offline and the broker serves its other dirs. Only when every dir fails does
    /// opening fail (the broker does not start).
    pub fn open(
        log_dirs: Vec<PathBuf>,
        clock: SharedClock,
        config_for: &dyn Fn(&str) -> LogConfig,
    ) -> Result<LogManager> {
        let mut logs = HashMap::new();
        let failures = LogDirFailureChannel::new(&log_dirs);
        let pressure = LogDirPressure::new(&log_dirs);
        let mut unopened = BTreeSet::new();
        let mut unlisted = false;
        let alter_dirs = Arc::new(ReplicaAlterLogDirs::new(log_dirs.len()));
        let mut futures = Vec::new();
        for (index, dir) in log_dirs.iter().enumerate() {
            let (mut found, mut listed) = (Vec::new(), false);
            let mut dir_futures = Vec::new();
            let opened = open_dir(
                dir,
                &clock,
                config_for,
                &mut found,
                &mut dir_futures,
                &mut listed,
            );
            futures.extend(dir_futures.into_iter().map(|(tp, p)| (tp, p, index)));
            match opened {
                Ok(()) => {}
                Err(e @ LogError::Io { .. }) => {
                    failures.mark_offline(index, &e);
                    // What the listing reached is reported offline; a dir not listed at all
                    // may hold any partition, so none is created elsewhere (see
                    // `get_or_create`).
                    unlisted |= !listed;
                }
                Err(e) => return Err(e),
            }
            for (tp, log) in found {
                match log {
                    Some(log) => {
                        log.attach_log_dir(Arc::clone(&failures), index);
                        log.attach_disk_pressure(Arc::clone(&pressure), index);
                        logs.insert(tp, log);
                    }
                    None => {
                        unopened.insert(tp);
                    }
                }
            }
        }
        for (tp, path, index) in futures {
            if failures.is_offline(index) || unopened.contains(&tp) {
                continue;
            }
            let current = logs.contains_key(&tp);
            if !current && unlisted {
                // The current copy may sit in the dir that could not be listed: no promotion
                // (the future dir stays for the next start).
                continue;
            }
            if !current {
                alter::promote(&path)?;
            }
            let log = match UnifiedLog::open(
                path.clone(),
                config_for(&tp.topic),
                Arc::clone(&clock),
            ) {
                Ok(log) => log,
                // An unreadable copy only costs its move (the replica is elsewhere).
                Err(e) if current => {
                    tracing::error!(partition = %tp, path = %path.display(), error = %e, "a future replica does not open: its move is dropped");
                    let _ = std::fs::remove_dir_all(&path);
                    continue;
                }
                Err(e) => return Err(e),
            };
            log.attach_log_dir(Arc::clone(&failures), index);
            log.attach_disk_pressure(Arc::clone(&pressure), index);
            if current {
                alter_dirs
                    .to_resume
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((tp, index, log));
            } else {
                logs.insert(tp, log);
            }
        }
        if failures.all_offline() {
            return Err(LogError::LogDirOffline {
                path: log_dirs.first().cloned().unwrap_or_default(),
            });
        }
        Ok(LogManager {
            log_dirs,
            failures,
            pressure,
            clock,
            logs: Mutex::new(logs),
            unopened: Mutex::new(unopened),
            unlisted_offline_dir: unlisted,
            create_lock: Mutex::new(()),
            alter_dirs,
            shutdown_token: std::sync::OnceLock::new(),
            retention_check_interval_ms: AtomicU64::new(300_000),
            flush_check_interval_ms: AtomicU64::new(1_000),
            checkpoint_interval_ms: AtomicU64::new(60_000),
            cleaner_backoff_ms: AtomicU64::new(15_000),
        })
    }

    fn logs(&self) -> std::sync::MutexGuard<'_, HashMap<TopicPartition, Arc<UnifiedLog>>> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<UnifiedLog>> {
        self.logs().get(tp).cloned()
    }

    /// Returns the log of `tp`, creating an empty one if absent.
    pub fn get_or_create(&self, tp: &TopicPartition, config: LogConfig) -> Result<Arc<UnifiedLog>> {
        if let Some(l) = self.get(tp) {
            return Ok(l);
        }
        let _creating = self.create_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = self.get(tp) {
            return Ok(l);
        }
        // Its data may sit in a dir that failed at startup: an empty log elsewhere could be
        // elected leader and lose it. Reported offline instead (the controller acts on it).
        let mut unopened = self.unopened.lock().unwrap_or_else(|p| p.into_inner());
        if unopened.contains(tp) || self.unlisted_offline_dir {
            unopened.insert(tp.clone());
            let offline = self.failures.offline_dirs();
            return Err(LogError::LogDirOffline {
                path: offline.first().cloned().unwrap_or_default(),
            });
        }
        drop(unopened);
        // The dir AlterReplicaLogDirs named, else the online dir with the fewest partitions
        // (Kafka's default placement).
        let preferred = self
            .alter_dirs
            .preferred_dir(tp)
            .filter(|i| !self.failures.is_offline(*i))
            .and_then(|i| self.log_dirs.get(i).cloned());
        let dir = if let Some(dir) = preferred {
            dir
        } else {
            let logs = self.logs();
            self.failures
                .online_dirs()
                .into_iter()
                .min_by_key(|d| logs.values().filter(|l| l.dir().starts_with(d)).count())
                .ok_or_else(|| match self.log_dirs.first() {
                    Some(d) => LogError::LogDirOffline { path: d.clone() },
                    None => LogError::Io {
                        path: PathBuf::new(),
                        source: std::io::Error::other("no log.dirs configured"),
                    },
                })?
        };
        // Opening does I/O: done without the map lock (lookups continue meanwhile).
        let log = UnifiedLog::open(dir.join(tp.dir_name()), config, Arc::clone(&self.clock))?;
        if let Some(index) = self.failures.dir_of(&dir) {
            log.attach_log_dir(Arc::clone(&self.failures), index);
            log.attach_disk_pressure(Arc::clone(&self.pressure), index);
        }
        self.alter_dirs.forget_preferred(tp);
        let mut logs = self.logs();
        Ok(Arc::clone(logs.entry(tp.clone()).or_insert(log)))
    }

    /// The replica moves between log dirs.
    pub fn alter_dirs(&self) -> &Arc<ReplicaAlterLogDirs> {
        &self.alter_dirs
    }

    /// AlterReplicaLogDirs for one partition: moves its replica to `dir` (one of `log.dirs`),
    /// or remembers `dir` for a replica not here yet. See [`super::alter_log_dirs`].
    pub fn alter_log_dir(
        &self,
        tp: &TopicPartition,
        dir: &Path,
    ) -> std::result::Result<AlterLogDirOutcome, AlterLogDirError> {
        // As written in log.dirs, or the same directory by another path (as Kafka compares
        // absolute paths).
        let canonical = |p: &Path| std::fs::canonicalize(p).ok();
        let Some(index) = self.log_dirs.iter().position(|d| d == dir).or_else(|| {
            let wanted = canonical(dir)?;
            self.log_dirs
                .iter()
                .position(|d| canonical(d).as_ref() == Some(&wanted))
        }) else {
            return Err(AlterLogDirError::LogDirNotFound {
                dir: dir.to_path_buf(),
            });
        };
        let dir = self.log_dirs[index].as_path();
        if self.failures.is_offline(index) {
            return Err(AlterLogDirError::LogDirOffline {
                dir: dir.to_path_buf(),
            });
        }
        // One request's moves at a time: two racing moves of a partition would each start a
        // future log.
        let _serial = self.create_lock.lock().unwrap_or_else(|p| p.into_inner());
        let unopened = self.unopened.lock().unwrap_or_else(|p| p.into_inner());
        if unopened.contains(tp) {
            // Its replica sits in a dir that failed at startup.
            return Err(AlterLogDirError::LogDirOffline {
                dir: dir.to_path_buf(),
            });
        }
        drop(unopened);
        let Some(current) = self.get(tp) else {
            self.alter_dirs.remember_preferred(tp, index);
            return Ok(AlterLogDirOutcome::Preferred);
        };
        if current.dir().parent() == Some(dir) {
            self.alter_dirs.cancel(tp);
            return Ok(AlterLogDirOutcome::AlreadyThere);
        }
        match self.alter_dirs.get(tp) {
            Some(m) if m.dir_index == index => return Ok(AlterLogDirOutcome::Moving),
            Some(_) => self.alter_dirs.cancel(tp),
            None => {}
        }
        let future = alter::create_future_log(dir, tp, &current)?;
        // The copy's I/O failing takes its dir offline, as any log's does; the move then
        // fails, the partition stays where it is.
        future.attach_log_dir(Arc::clone(&self.failures), index);
        future.attach_disk_pressure(Arc::clone(&self.pressure), index);
        self.start_move(tp.clone(), index, current, future);
        Ok(AlterLogDirOutcome::Moving)
    }

    fn start_move(
        &self,
        tp: TopicPartition,
        index: usize,
        current: Arc<UnifiedLog>,
        future: Arc<UnifiedLog>,
    ) {
        let token = self.shutdown_token.get().cloned().unwrap_or_default();
        let m = self.alter_dirs.register(&tp, index, future, &token);
        tokio::spawn(alter::run_move(
            Arc::clone(&self.alter_dirs),
            tp,
            current,
            m,
        ));
    }

    /// Which log dirs are offline; the broker halts when all are.
    pub fn failures(&self) -> &Arc<LogDirFailureChannel> {
        &self.failures
    }

    /// Each log dir's disk pressure: its state, settings and usage source.
    pub fn disk_pressure(&self) -> &Arc<LogDirPressure> {
        &self.pressure
    }

    /// Sets the disk pressure marks and interval (before `start_background`), and reads each
    /// dir's usage once: a broker started on a disk past its refuse mark refuses produce from
    /// its first request, not from the first pass of the duty.
    pub fn set_disk_pressure(&self, config: DiskPressureConfig) {
        self.pressure.set_config(config);
        for index in 0..self.log_dirs.len() {
            if !self.failures.is_offline(index) {
                self.pressure.check(index);
            }
        }
    }

    /// One disk pressure pass: each online dir's usage moves its state, and a dir under
    /// pressure loses the local copies of uploaded segments, its oldest data first, down to
    /// its low watermark (then its usage is read again, so that produce resumes at once).
    /// Returns the segments deleted.
    pub fn run_disk_pressure(&self) -> usize {
        let mut deleted = 0;
        for (index, dir) in self.log_dirs.iter().enumerate() {
            if self.failures.is_offline(index) {
                continue;
            }
            let Some(check) = self.pressure.check(index) else {
                continue;
            };
            if check.state == PressureState::Normal || check.reclaim_bytes == 0 {
                continue;
            }
            let n = self.reclaim(dir, check.reclaim_bytes);
            if n > 0 {
                self.pressure.count_deleted(index, n);
                deleted += n;
                self.pressure.check(index);
            }
        }
        deleted
    }

    /// Deletes uploaded local segments of the logs in `dir` to free `bytes` (the plan is the
    /// pure `plan_reclaim`).
    fn reclaim(&self, dir: &Path, bytes: u64) -> usize {
        let logs: Vec<_> = self
            .all()
            .into_iter()
            .filter(|(_, l)| l.dir().starts_with(dir))
            .collect();
        let candidates: Vec<_> = logs.iter().map(|(_, l)| l.uploaded_segments()).collect();
        let mut deleted = 0;
        for step in plan_reclaim(&candidates, bytes) {
            let (tp, log) = &logs[step.log];
            let segments = &candidates[step.log][..step.segments];
            match log.delete_uploaded_segments(segments) {
                Ok(n) => {
                    deleted += n;
                    tracing::info!(partition = %tp, segments = n, bytes = step.bytes, local_log_start_offset = %step.below, "disk pressure: deleted local copies of uploaded segments");
                }
                Err(LogError::Closed | LogError::LogDirOffline { .. }) => {}
                Err(e) => {
                    tracing::warn!(partition = %tp, error = %e, "disk pressure: deleting uploaded segments failed")
                }
            }
        }
        deleted
    }

    /// The partitions whose log dir is offline (those of a dir that failed at startup too), and
    /// those leaving the ISR to restore a corrupt range from another replica (`log::repair`):
    /// the broker heartbeat reports them.
    pub fn offline_partitions(&self) -> Vec<TopicPartition> {
        self.logs()
            .iter()
            .filter(|(_, l)| l.is_offline() || l.reports_offline_for_repair())
            .map(|(tp, _)| tp.clone())
            .chain(
                self.unopened
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .cloned(),
            )
            .collect()
    }

    /// The local log size of every replica in an online dir (the controller's balancer
    /// weighs them).
    pub fn replica_sizes(&self) -> Vec<(TopicPartition, u64)> {
        self.logs()
            .iter()
            .filter(|(_, l)| !l.is_offline())
            .map(|(tp, l)| (tp.clone(), l.size_bytes()))
            .collect()
    }

    /// Every partition log present.
    pub fn all(&self) -> Vec<(TopicPartition, Arc<UnifiedLog>)> {
        self.logs()
            .iter()
            .map(|(tp, l)| (tp.clone(), Arc::clone(l)))
            .collect()
    }

    /// Closes the log of `tp` and removes its data from disk.
    pub fn delete(&self, tp: &TopicPartition) -> Result<()> {
        self.alter_dirs.cancel(tp);
        let Some(log) = self.logs().remove(tp) else {
            return Ok(());
        };
        if let Err(e) = log.close() {
            tracing::warn!(partition = %tp, error = %e, "closing a deleted log failed");
        }
        // Rename first so a crash mid-removal leaves a `-delete` dir that startup finishes off.
        let dir = log.dir().to_path_buf();
        let doomed = dir.with_file_name(format!("{}-delete", tp.dir_name()));
        std::fs::rename(&dir, &doomed).map_err(io(&dir))?;
        std::fs::remove_dir_all(&doomed).map_err(io(&doomed))
    }

    /// One retention pass over every log; returns segments deleted.
    pub fn run_retention(&self) -> usize {
        let mut n = 0;
        for (tp, log) in self.all() {
            match log.delete_old_segments() {
                Ok(d) => n += d,
                Err(LogError::Closed | LogError::LogDirOffline { .. }) => {}
                Err(e) => tracing::warn!(partition = %tp, error = %e, "retention failed"),
            }
        }
        n
    }

    /// Flushes interval-policy logs that are due and writes recovery-point checkpoints.
    pub fn run_flushes(&self) {
        for (tp, log) in self.all() {
            match log.flush_if_due() {
                Ok(_) | Err(LogError::Closed | LogError::LogDirOffline { .. }) => {}
                Err(e) => tracing::warn!(partition = %tp, error = %e, "flush failed"),
            }
        }
    }

    /// Writes each log's recovery point if it moved (`log.flush.offset.checkpoint.interval.ms`).
    pub fn run_checkpoints(&self) {
        for (tp, log) in self.all() {
            match log.checkpoint() {
                Ok(()) | Err(LogError::Closed | LogError::LogDirOffline { .. }) => {}
                Err(e) => tracing::warn!(partition = %tp, error = %e, "checkpoint failed"),
            }
        }
    }

    /// Sets the background tasks' intervals from the node config, read by `ms`:
    /// `log.flush.offset.checkpoint.interval.ms`, `log.retention.check.interval.ms` and
    /// `log.cleaner.backoff.ms` (at least 1 ms each).
    pub fn set_intervals(&self, ms: impl Fn(&str) -> i64) {
        for (interval_ms, key) in [
            (
                &self.checkpoint_interval_ms,
                "log.flush.offset.checkpoint.interval.ms",
            ),
            (
                &self.retention_check_interval_ms,
                "log.retention.check.interval.ms",
            ),
            (&self.cleaner_backoff_ms, "log.cleaner.backoff.ms"),
        ] {
            interval_ms.store(ms(key).max(1) as u64, Ordering::Relaxed);
        }
    }

    /// One cleaner pass over compacted logs; returns logs cleaned.
    pub fn run_cleaner(&self) -> usize {
        let mut n = 0;
        for (tp, log) in self.all() {
            if !log.config().cleanup_policy.compacts() {
                continue;
            }
            match super::cleaner::clean_log(&log) {
                Ok(Some(_)) => n += 1,
                Ok(None) | Err(LogError::Closed | LogError::LogDirOffline { .. }) => {}
                Err(e) => {
                    // The cleaner reads every batch: a corrupt one is located and restored as
                    // one a fetch meets (`log::repair`).
                    if let LogError::CorruptSegment { path, .. } = &e {
                        let base = path.file_stem().and_then(|s| s.to_str()?.parse().ok());
                        if let Some(base) = base {
                            log.read_failed(crate::model::Offset(base), &e);
                        }
                    }
                    tracing::warn!(partition = %tp, error = %e, "cleaning failed")
                }
            }
        }
        n
    }

    /// Spawns retention, interval-flush and cleaner tasks on the current tokio runtime; they stop
    /// when `shutdown` is cancelled.
    pub fn start_background(self: &Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let _ = self.shutdown_token.set(shutdown.clone());
        let resume = std::mem::take(
            &mut *self
                .alter_dirs
                .to_resume
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for (tp, index, future) in resume {
            if let Some(current) = self.get(&tp) {
                tracing::info!(partition = %tp, "resuming the move of a replica to another log dir");
                self.start_move(tp, index, current, future);
            }
        }
        fn every(
            mgr: &Arc<LogManager>,
            shutdown: &tokio_util::sync::CancellationToken,
            interval: &'static (dyn Fn(&LogManager) -> u64 + Sync),
            work: fn(&LogManager),
        ) {
            let mgr = Arc::clone(mgr);
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let ms = interval(&mgr).max(1);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    }
                    let m = Arc::clone(&mgr);
                    // Segment deletion, fsync and compaction block: keep them off the reactor.
                    if tokio::task::spawn_blocking(move || work(&m)).await.is_err() {
                        tracing::error!("log background task panicked");
                    }
                }
            });
        }
        every(
            self,
            &shutdown,
            &|m| m.retention_check_interval_ms.load(Ordering::Relaxed),
            |m| {
                m.run_retention();
            },
        );
        every(
            self,
            &shutdown,
            &|m| m.flush_check_interval_ms.load(Ordering::Relaxed),
            |m| m.run_flushes(),
        );
        every(
            self,
            &shutdown,
            &|m| m.checkpoint_interval_ms.load(Ordering::Relaxed),
            |m| m.run_checkpoints(),
        );
        every(
            self,
            &shutdown,
            &|m| m.cleaner_backoff_ms.load(Ordering::Relaxed),
            |m| {
                m.run_cleaner();
            },
        );
        every(
            self,
            &shutdown,
            &|m| m.pressure.config().check_interval_ms,
            |m| {
                m.run_disk_pressure();
            },
        );
    }

    /// Closes every log (flush and checkpoints).
    pub fn shutdown(&self) -> Result<()> {
        let mut first_err = None;
        for (_, m) in self.alter_dirs.futures() {
            // Left on disk: the move resumes at the next start.
            let _ = m.future.close();
        }
        for (tp, log) in self.all() {
            match log.close() {
                Ok(()) | Err(LogError::Closed | LogError::LogDirOffline { .. }) => {}
                Err(e) => {
                    tracing::error!(partition = %tp, error = %e, "closing log failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names() {
        assert_eq!(parse_dir_name("a-b-3"), Some(TopicPartition::new("a-b", 3)));
        assert_eq!(parse_dir_name("x"), None);
        assert_eq!(parse_dir_name("-1"), None);
    }
}
