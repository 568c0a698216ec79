//! `LogLoader`: opens a partition directory and recovers it after a crash.
//!
//! # Crash consistency
//! - Segments wholly below the recovery point were fsynced before the checkpoint was written:
//!   they are trusted, and only their indexes are sanity-checked (rebuilt if wrong).
//! - Every segment that may hold data at or after the recovery point is scanned batch by batch
//!   (size, magic, CRC-32C); the first torn or corrupt batch and everything after it is cut,
//!   with a warning naming the file and position, and any later segment is deleted. Whatever
//!   was fsynced is intact and so survives the scan; only unacknowledged bytes are dropped.
//! - Then all surviving data is fsynced and the recovery point moved to the end, so what the
//!   log reports after opening is durable.
//! - Half-done operations: `*.tmp` and `*.cleaned` files are deleted (rolled back); a
//!   `*.log.swap` file with its swap marker means the cleaner finished writing a replacement
//!   segment, so the swap is completed (see [`cleaner`](super::cleaner)).
//! - The leader-epoch cache and producer state are reloaded from their checkpoints and
//!   snapshots (corrupt ones are ignored) and replayed from batch headers where needed.

use std::collections::BTreeMap;
use std::path::Path;

use super::checkpoint;
use super::cleaner;
use super::epoch_cache::LeaderEpochFileCache;
use super::local_log::LocalLog;
use super::producer_state::ProducerStateManager;
use super::segment::{io_error, LogSegment};
use super::{LogConfig, Result};

/// Offsets of the `.log` files in `dir`, ascending.
pub(crate) fn list_segment_bases(dir: &Path) -> Result<Vec<i64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".log") {
            if let Ok(b) = stem.parse::<i64>() {
                bases.push(b);
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

fn remove_leftovers(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale =
            name.ends_with(".tmp") || name.ends_with(".cleaned") || name.ends_with(".deleted");
        let orphan_index = (name.ends_with(".index")
            || name.ends_with(".timeindex")
            || name.ends_with(".txnindex"))
            && name
                .split('.')
                .next()
                .map(|stem| !dir.join(format!("{stem}.log")).exists())
                .unwrap_or(false);
        if stale || orphan_index {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(|e| io_error(&p, e))?;
        }
    }
    Ok(())
}

/// Opens and recovers the log in `dir` (which must exist).
pub(crate) fn load(dir: &Path, config: &LogConfig, now_ms: i64) -> Result<LocalLog> {
    cleaner::complete_or_roll_back_swaps(dir)?;
    remove_leftovers(dir)?;
    let lso_ckpt = checkpoint::read_offset(dir, checkpoint::LOG_START_OFFSET_FILE);
    let rp_ckpt = checkpoint::read_offset(dir, checkpoint::RECOVERY_POINT_FILE).unwrap_or(0);
    let bases = list_segment_bases(dir)?;
    let mut segments: BTreeMap<i64, LogSegment> = BTreeMap::new();
    let (ib, iib) = (config.segment_index_bytes, config.index_interval_bytes);
    let mut recovered_any = false;
    let mut cut_at: Option<usize> = None;
    for (i, &base) in bases.iter().enumerate() {
        let mut seg = LogSegment::open(dir, base, ib, iib, now_ms)?;
        let next_base = bases.get(i + 1).copied().unwrap_or(i64::MAX);
        if next_base > rp_ckpt {
            recovered_any = true;
            let cut = seg.recover(|_| {})?;
            let prev_next = segments.values().next_back().map(|s| s.next_offset);
            if prev_next.is_some_and(|p| p > base) {
                tracing::warn!(path = %seg.path().display(), "segment overlaps its predecessor; dropping it and later segments");
                seg.delete_files()?;
                cut_at = Some(i + 1);
                break;
            }
            segments.insert(base, seg);
            if cut > 0 {
                cut_at = Some(i + 1);
                break;
            }
        } else {
            seg.load(bases.get(i + 1).copied())?;
            segments.insert(base, seg);
        }
    }
    if let Some(from) = cut_at {
        for &base in &bases[from..] {
            tracing::warn!(dir = %dir.display(), base_offset = base, "deleting segment after a corrupt one");
            let seg = LogSegment::open(dir, base, ib, iib, now_ms)?;
            seg.delete_files()?;
        }
    }
    if segments.is_empty() {
        let base = lso_ckpt.unwrap_or(0).max(0);
        segments.insert(base, LogSegment::create(dir, base, ib, iib, now_ms)?);
    }
    let last = segments.len() - 1;
    for (i, seg) in segments.values_mut().enumerate() {
        if i == last {
            seg.make_active()?;
        } else {
            seg.on_become_inactive()?;
        }
    }
    let first_base = segments.keys().next().copied().unwrap_or(0);
    let leo = segments.values().next_back().map_or(0, |s| s.next_offset);
    let lso = lso_ckpt.unwrap_or(first_base).max(first_base).min(leo);
    let (epoch_cache, epochs_ok) = LeaderEpochFileCache::load(dir.to_path_buf());
    let mut log = LocalLog {
        dir: dir.to_path_buf(),
        config: config.clone(),
        segments,
        local_log_start_offset: lso,
        recovery_point: rp_ckpt.min(leo),
        checkpointed_recovery_point: rp_ckpt,
        epoch_cache,
        producers: ProducerStateManager::default(),
        aborted_txns: Vec::new(),
        unflushed_files: Vec::new(),
        dir_dirty: false,
        unflushed_messages: 0,
        last_flush_ms: now_ms,
        truncations: 0,
        guard: None,
        cleaner_floor: None,
        closed: false,
    };
    if !epochs_ok {
        // Rebuild from the batches' partitionLeaderEpoch fields; only changes are kept, so the
        // list is as short as the cache itself.
        let mut starts: Vec<(i32, i64)> = Vec::new();
        log.for_each_batch_from(i64::MIN, |h, _| {
            let e = h.partition_leader_epoch;
            if e >= 0 && starts.last().is_none_or(|&(le, _)| e > le) {
                starts.push((e, h.base_offset));
            }
        })?;
        log.epoch_cache.clear();
        for (e, o) in starts {
            log.epoch_cache.assign(e, o);
        }
        log.epoch_cache.persist()?;
    }
    let mut changed = log.epoch_cache.truncate_from_end(leo);
    changed |= log.epoch_cache.truncate_from_start(lso);
    if changed {
        log.epoch_cache.persist()?;
    }
    log.rebuild_producer_state()?;
    if recovered_any || log.recovery_point < leo {
        // What survived recovery may exist only in the page cache (the process died, not the
        // machine): make it durable before reporting it, then checkpoint.
        for seg in log.segments.values() {
            if seg.next_offset > log.recovery_point {
                seg.file.sync_data()?;
            }
        }
        checkpoint::sync_dir(dir)?;
        log.recovery_point = leo;
    }
    log.checkpoint()?;
    Ok(log)
}
