//! `LogCleaner`: compaction of `cleanup.policy=compact` logs.
//!
//! # Crash-safe swap
//! A cleaned replacement for the closed segments with base offsets in `[base, end)` is
//! installed in steps, each durable before the next:
//! 1. write `{base:020}.log.cleaned`, fsync;
//! 2. write the swap marker `{base:020}.swap-end` (a checkpoint file holding `end`);
//! 3. rename `.log.cleaned` to `.log.swap`, fsync the directory;
//! 4. delete the replaced segments' files, rename `.log.swap` to `.log`, fsync the directory,
//!    delete the marker.
//!
//! Recovery ([`complete_or_roll_back_swaps`]): a `.log.swap` with its marker means step 3
//! finished, so step 4 is (re)done; a marker without a `.swap` is rolled back (deleted, along
//! with any `.cleaned` file); the old segments are then untouched.

use std::path::Path;

use super::checkpoint;
use super::loader::list_segment_bases;
use super::segment::{index_path, io_error, log_path, time_index_path};
use super::Result;

pub(crate) fn swap_path(dir: &Path, base: i64) -> std::path::PathBuf {
    dir.join(format!("{base:020}.log.swap"))
}

pub(crate) fn cleaned_path(dir: &Path, base: i64) -> std::path::PathBuf {
    dir.join(format!("{base:020}.log.cleaned"))
}

pub(crate) fn marker_name(base: i64) -> String {
    format!("{base:020}.swap-end")
}

fn remove_if_exists(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(p, e)),
    }
}

/// Step 4 of the swap: replaces the segments with bases in `[base, end)` by the `.swap` file.
pub(crate) fn finish_swap(dir: &Path, base: i64, end: i64) -> Result<()> {
    for b in list_segment_bases(dir)? {
        if b >= base && b < end {
            remove_if_exists(&log_path(dir, b))?;
            remove_if_exists(&index_path(dir, b))?;
            remove_if_exists(&time_index_path(dir, b))?;
        }
    }
    let swap = swap_path(dir, base);
    std::fs::rename(&swap, log_path(dir, base)).map_err(|e| io_error(&swap, e))?;
    checkpoint::sync_dir(dir)?;
    remove_if_exists(&dir.join(marker_name(base)))
}

/// Completes swaps whose replacement was fully written; rolls back the others.
pub(crate) fn complete_or_roll_back_swaps(dir: &Path) -> Result<()> {
    let mut swaps = Vec::new();
    let mut markers = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".log.swap") {
            if let Ok(b) = stem.parse::<i64>() {
                swaps.push(b);
            }
        } else if let Some(stem) = name.strip_suffix(".swap-end") {
            if let Ok(b) = stem.parse::<i64>() {
                markers.push(b);
            }
        }
    }
    for base in swaps {
        match checkpoint::read(dir, &marker_name(base)) {
            Ok(Some(rows)) if rows.first().and_then(|r| r.first()).is_some() => {
                let end = rows[0][0];
                tracing::warn!(dir = %dir.display(), base_offset = base, end_offset = end, "completing an interrupted compaction swap");
                finish_swap(dir, base, end)?;
            }
            _ => {
                tracing::warn!(dir = %dir.display(), base_offset = base, "rolling back a compaction swap without a marker");
                remove_if_exists(&swap_path(dir, base))?;
            }
        }
    }
    for base in markers {
        if !swap_path(dir, base).exists() {
            remove_if_exists(&dir.join(marker_name(base)))?;
            remove_if_exists(&cleaned_path(dir, base))?;
        }
    }
    Ok(())
}

/// Cleans `log` once if it is due; returns the offset cleaned up to. (Filled in below.)
pub(crate) fn clean_log(_log: &super::UnifiedLog) -> Result<Option<i64>> {
    Ok(None)
}
