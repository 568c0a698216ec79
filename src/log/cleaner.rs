//! `LogCleaner`: compaction of `cleanup.policy=compact` logs.
//!
//! # What a pass does
//! 1. Decides (under the log lock, purely over its state) what is cleanable: the closed
//!    segments from the log start (on a tiered log, from the first segment not uploaded nor
//!    claimed by an upload, the [`CleanerFloor`](super::CleanerFloor)) up to the first that is younger than
//!    `min.compaction.lag.ms` (by its largest timestamp) or reaches past the first unstable
//!    offset (an open transaction) — never the active segment. The pass
//!    runs only if the dirty part (bytes at or after the cleaner checkpoint,
//!    `cleaner-offset-checkpoint`) is at least `min.cleanable.dirty.ratio` of them.
//! 2. Without the lock, builds the key → latest offset map over the cleanable range
//!    (bounded by [`MAX_MAP_KEYS`]; a full map shortens the range), then rewrites each group of
//!    consecutive segments (at most `segment.bytes` of input) keeping a record only if it is
//!    the newest for its key within the range. Tombstones (null values) are kept until their
//!    segment's largest timestamp is older than `delete.retention.ms`, then dropped.
//!    On a tiered log tombstones and markers are always kept: older values of their keys may
//!    be in the remote part, and remote compaction (`log::remote`) drops them together.
//!    Offsets are preserved (gaps are fine); a batch whose records all survive is copied byte
//!    for byte; otherwise it is decoded (any compression) and re-encoded with the same
//!    compression, attributes, max timestamp and producer fields; an emptied batch is dropped.
//!    Transactions ([`CleanedTransactions`]): batches of aborted transactions are left out of
//!    the map and dropped whole; an end-transaction marker whose transaction has no data left
//!    is dropped like a tombstone, once its segment is older than `delete.retention.ms` (an
//!    abort marker survives the pass that drops its data).
//! 3. Installs each group with the crash-safe swap below, under the lock, after checking the
//!    segments it replaces are unchanged (retention or truncation may have moved meanwhile; then
//!    the group is abandoned), and advances the cleaner checkpoint.
//!
//! # Crash-safe swap
//! A cleaned replacement for the closed segments with base offsets in `[base, end)` is
//! installed in steps, each durable before the next:
//! 1. write `{base:020}.log.cleaned`, fsync;
//! 2. write the swap marker `{base:020}.swap-end` (a checkpoint file holding `end`);
//! 3. rename `.log.cleaned` to `.log.swap`, fsync the directory;
//! 4. merge the replaced segments' `.txnindex` entries whose marker is still in the `.swap`
//!    file into the first one's, delete the
//!    replaced segments' files, rename `.log.swap` to `.log`, fsync the directory,
//!    delete the marker.
//!
//! Recovery ([`complete_or_roll_back_swaps`]): a `.log.swap` with its marker means step 3
//! finished, so step 4 is (re)done; a marker without a `.swap` is rolled back (deleted, along
//! with any `.cleaned` file); the old segments are then untouched.

use std::path::Path;

use super::checkpoint;
use super::loader::list_segment_bases;
use super::segment::{index_path, io_error, log_path, time_index_path};
use super::txn_index::{self, CleanedTransactions};
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
    let bases = list_segment_bases(dir)?;
    // The merged segment keeps the aborted transactions of every segment it replaces; written
    // first, so a redo after a crash finds them all (duplicates are dropped).
    let replaced: Vec<i64> = bases
        .iter()
        .copied()
        .filter(|&b| b >= base && b < end)
        .collect();
    // An entry stays only while its marker does (compaction may drop markers): a consumer
    // told of an abort whose marker is gone would skip that producer's later data.
    let markers = control_offsets(&swap_path(dir, base))?;
    txn_index::merge_into(dir, base, &replaced, |t| markers.contains(&t.last_offset))?;
    for b in bases {
        if b >= base && b < end {
            if b != base {
                remove_if_exists(&txn_index::txn_index_path(dir, b))?;
            }
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

/// The offsets of the control batches (end-transaction markers) in a segment file.
fn control_offsets(path: &Path) -> Result<std::collections::HashSet<i64>> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let len = file.metadata().map_err(|e| io_error(path, e))?.len();
    let seg = SegmentFile {
        path: path.to_path_buf(),
        file,
    };
    let mut out = std::collections::HashSet::new();
    scan_batches(&seg, 0, len, false, 1 << 20, |_, h, _| {
        if h.is_control() {
            out.insert(h.base_offset);
        }
        true
    })?;
    Ok(out)
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

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

use super::segment::{scan_batches, LogSegment, SegmentFile};
use super::{LogError, UnifiedLog};
use crate::protocol::control::{parse_marker, TransactionResult};
use crate::protocol::record_batch::{self, BatchHeader};

/// Bound on distinct keys held by one pass (Kafka bounds its dedupe buffer the same way); the
/// rest of the range waits for the next pass.
pub const MAX_MAP_KEYS: usize = 1_000_000;

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanerStats {
    /// The cleaner checkpoint after the pass: the first offset not yet cleaned.
    pub cleaned_up_to: i64,
    pub segments_rewritten: usize,
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct LogCleaner;

#[derive(Debug, Clone)]
struct SegmentView {
    base: i64,
    file: Arc<SegmentFile>,
    size: u64,
    next_offset: i64,
    max_timestamp: i64,
}

fn compression_of(h: &BatchHeader) -> Compression {
    match h.compression() {
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => Compression::None,
    }
}

fn corrupt(path: &Path, position: u64, reason: impl Into<String>) -> LogError {
    LogError::CorruptSegment {
        path: path.to_path_buf(),
        position,
        reason: reason.into(),
    }
}

/// Decodes the records of one whole batch.
fn decode(path: &Path, pos: u64, batch: &[u8]) -> Result<Vec<Record>> {
    let mut b = Bytes::copy_from_slice(batch);
    RecordBatchDecoder::decode(&mut b)
        .map(|set| set.records)
        .map_err(|e| corrupt(path, pos, format!("cannot decode batch: {e}")))
}

/// Calls `f(position, header, bytes)` for every batch of a segment, CRC-checked.
fn for_each_batch(
    seg: &SegmentView,
    mut f: impl FnMut(u64, &BatchHeader, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut err = None;
    let end = scan_batches(&seg.file, 0, seg.size, true, 1 << 20, |pos, h, b| {
        match f(pos, h, b) {
            Ok(()) => true,
            Err(e) => {
                err = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = err {
        return Err(e);
    }
    if let Some((pos, reason)) = end.error {
        return Err(corrupt(&seg.file.path, pos, reason));
    }
    Ok(())
}

impl LogCleaner {
    /// Runs one pass over `log` if it is compacted and due; `None` when nothing was done.
    pub fn clean(log: &UnifiedLog) -> Result<Option<CleanerStats>> {
        let Ok(_one_pass) = log.cleaner_lock.try_lock() else {
            return Ok(None);
        };
        let now = log.clock().now_ms();
        // 1. Decide what is cleanable.
        let (dir, cfg, views, cleaned_to, aborted) = {
            let st = log.lock();
            if st.closed {
                return Err(LogError::Closed);
            }
            let cfg = st.config.clone();
            if !cfg.cleanup_policy.compacts() {
                return Ok(None);
            }
            let checkpoint_offset =
                checkpoint::read_offset(&st.dir, checkpoint::CLEANER_OFFSET_FILE)
                    .unwrap_or(st.local_log_start_offset);
            let closed = st.segments.len().saturating_sub(1);
            // Open transactions are not cleaned: whether their data is aborted is not known.
            let first_unstable = st.producers.first_unstable_offset().unwrap_or(i64::MAX);
            // A tiered log leaves what is uploaded (or going up) to remote compaction.
            let floor = match (&st.cleaner_floor, cfg.remote_storage_enable) {
                (Some(f), true) => match f() {
                    Some(floor) => floor,
                    None => return Ok(None),
                },
                _ => i64::MIN,
            };
            let mut views = Vec::new();
            for seg in st.segments.values().take(closed) {
                if seg.base_offset < floor {
                    continue;
                }
                if seg.max_timestamp > now - cfg.min_compaction_lag_ms
                    || seg.next_offset > first_unstable
                {
                    break;
                }
                views.push(SegmentView {
                    base: seg.base_offset,
                    file: Arc::clone(&seg.file),
                    size: seg.size,
                    next_offset: seg.next_offset,
                    max_timestamp: seg.max_timestamp,
                });
            }
            let aborted = st.aborted_txns.clone();
            (st.dir.clone(), cfg, views, checkpoint_offset, aborted)
        };
        let total: u64 = views.iter().map(|v| v.size).sum();
        if total == 0 {
            return Ok(None);
        }
        let dirty: u64 = views
            .iter()
            .filter(|v| v.next_offset > cleaned_to)
            .map(|v| v.size)
            .sum();
        if (dirty as f64) / (total as f64) < cfg.min_cleanable_dirty_ratio
            || dirty == 0 && cfg.min_cleanable_dirty_ratio > 0.0
        {
            return Ok(None);
        }

        // 2. The offset map: newest offset of each key in the range.
        // Aborted records never shadow committed ones: they are left out of the map.
        let mut map: HashMap<Bytes, i64> = HashMap::new();
        let mut txns = CleanedTransactions::new(aborted.clone());
        let mut usable = 0;
        for v in &views {
            for_each_batch(v, |pos, h, b| {
                map_batch(&v.file.path, pos, h, b, &mut txns, &mut map)
            })?;
            usable += 1;
            if map.len() >= MAX_MAP_KEYS {
                break;
            }
        }
        let views = &views[..usable];
        let range_end = views.last().map_or(cleaned_to, |v| {
            // The next segment's base: everything below it was considered.
            v.next_offset
        });

        // Groups of consecutive segments, at most segment.bytes of input each.
        let mut groups: Vec<Vec<SegmentView>> = Vec::new();
        for v in views {
            match groups.last_mut() {
                Some(g)
                    if g.iter().map(|x| x.size).sum::<u64>() + v.size <= cfg.segment_bytes
                        && v.next_offset - g[0].base < u32::MAX as i64 =>
                {
                    g.push(v.clone())
                }
                _ => groups.push(vec![v.clone()]),
            }
        }

        let mut stats = CleanerStats {
            cleaned_up_to: range_end,
            ..CleanerStats::default()
        };
        let mut txns = CleanedTransactions::new(aborted);
        for group in groups {
            let base = group[0].base;
            let cleaned = cleaned_path(&dir, base);
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&cleaned).map_err(|e| io_error(&cleaned, e))?,
            );
            let mut removed = 0u64;
            let mut written = 0u64;
            for v in &group {
                // A tiered log's older values of a key may be in the remote part, which this
                // pass does not see: its tombstones and markers go up and remote compaction,
                // which sees both parts, drops them with those values.
                let drop_tombstones =
                    v.max_timestamp + cfg.delete_retention_ms < now && !cfg.remote_storage_enable;
                for_each_batch(v, |pos, h, b| {
                    let kept =
                        rewrite_batch(&v.file.path, pos, h, b, &map, &mut txns, drop_tombstones)?;
                    removed += kept.removed;
                    if let Some(bytes) = kept.bytes {
                        out.write_all(&bytes).map_err(|e| io_error(&cleaned, e))?;
                        written += bytes.len() as u64;
                    }
                    Ok(())
                })?;
            }
            let file = out
                .into_inner()
                .map_err(|e| io_error(&cleaned, e.into_error()))?;
            file.sync_all().map_err(|e| io_error(&cleaned, e))?;
            drop(file);
            let before: u64 = group.iter().map(|v| v.size).sum();
            let end = group.last().map_or(base, |v| v.next_offset);
            if !Self::install(log, &dir, &group, end)? {
                // The log changed under us; this group waits for the next pass.
                remove_if_exists(&cleaned)?;
                stats.cleaned_up_to = stats.cleaned_up_to.min(base);
                break;
            }
            stats.segments_rewritten += group.len();
            stats.records_removed += removed;
            stats.bytes_before += before;
            stats.bytes_after += written;
        }
        checkpoint::write_offset(&dir, checkpoint::CLEANER_OFFSET_FILE, stats.cleaned_up_to)?;
        Ok(Some(stats))
    }

    /// Swaps the cleaned file in for `group` (see the module documentation). Returns false if
    /// the group no longer matches the log.
    fn install(log: &UnifiedLog, dir: &Path, group: &[SegmentView], _end: i64) -> Result<bool> {
        let mut st = log.lock();
        if st.closed {
            return Err(LogError::Closed);
        }
        let active_base = st.active().base_offset;
        // An upload may have claimed the group's first segment since the pass began.
        let floor = match (&st.cleaner_floor, st.config.remote_storage_enable) {
            (Some(f), true) => f().unwrap_or(i64::MAX),
            _ => i64::MIN,
        };
        let unchanged = group[0].base >= floor
            && group.iter().all(|v| {
                v.base < active_base
                    && st
                        .segments
                        .get(&v.base)
                        .is_some_and(|s| s.size == v.size && s.next_offset == v.next_offset)
            });
        if !unchanged {
            return Ok(false);
        }
        let base = group[0].base;
        // Everything from `base` up to the segment after the group is replaced.
        let last = group.last().map_or(base, |v| v.base);
        let swap_end = st
            .segments
            .range(last + 1..)
            .next()
            .map_or(i64::MAX, |(&b, _)| b);
        checkpoint::write(dir, &marker_name(base), &[vec![swap_end]])?;
        let cleaned = cleaned_path(dir, base);
        std::fs::rename(&cleaned, swap_path(dir, base)).map_err(|e| io_error(&cleaned, e))?;
        checkpoint::sync_dir(dir)?;
        for v in group {
            st.segments.remove(&v.base);
        }
        finish_swap(dir, base, swap_end)?;
        // The in-memory index follows the file: entries of dropped markers go.
        st.aborted_txns
            .retain(|t| t.last_offset < base || t.last_offset >= swap_end);
        st.aborted_txns
            .extend(txn_index::read_entries(&txn_index::txn_index_path(
                dir, base,
            )));
        st.aborted_txns.sort_by_key(|t| t.last_offset);
        let (ib, iib) = (
            st.config.segment_index_bytes,
            st.config.index_interval_bytes,
        );
        let mut seg = LogSegment::open(dir, base, ib, iib, log.clock().now_ms())?;
        seg.rebuild_indexes()?;
        if seg.size == 0 {
            seg.next_offset = base;
        }
        seg.on_become_inactive()?;
        st.segments.insert(base, seg);
        Ok(true)
    }
}

/// The offset map's step for one batch: a data batch that is not aborted records the offset
/// of each of its keys (the newest so far wins); markers advance the transaction walk.
pub(crate) fn map_batch(
    path: &Path,
    pos: u64,
    h: &BatchHeader,
    b: &[u8],
    txns: &mut CleanedTransactions,
    map: &mut HashMap<Bytes, i64>,
) -> Result<()> {
    if h.is_control() {
        if let Some(m) = parse_marker(b) {
            let abort = m.result == TransactionResult::Abort;
            txns.on_marker(h.producer_id, h.base_offset, abort);
        }
        return Ok(());
    }
    if txns.on_data_batch(h.producer_id, h.is_transactional(), h.last_offset()) {
        return Ok(());
    }
    for r in decode(path, pos, b)? {
        if let Some(k) = r.key {
            map.insert(k, r.offset);
        }
    }
    Ok(())
}

/// What a rewrite keeps of one batch.
pub(crate) struct KeptBatch<'a> {
    /// The batch as written (the input bytes when every record stays), `None` when dropped.
    pub(crate) bytes: Option<std::borrow::Cow<'a, [u8]>>,
    /// Records (and markers) left out.
    pub(crate) removed: u64,
}

/// The rewrite's step for one batch (see the module documentation): records shadowed by a
/// newer offset of their key in `map`, tombstones and empty markers past the delete horizon
/// (`drop_tombstones`), and aborted data go; a batch that keeps everything is kept byte for
/// byte, one that keeps some is re-encoded with its offsets, compression and producer fields.
pub(crate) fn rewrite_batch<'a>(
    path: &Path,
    pos: u64,
    h: &BatchHeader,
    b: &'a [u8],
    map: &HashMap<Bytes, i64>,
    txns: &mut CleanedTransactions,
    drop_tombstones: bool,
) -> Result<KeptBatch<'a>> {
    use std::borrow::Cow;
    let whole = |removed| KeptBatch {
        bytes: Some(Cow::Borrowed(b)),
        removed,
    };
    let dropped = |removed| KeptBatch {
        bytes: None,
        removed,
    };
    if h.is_control() {
        let no_data_left = parse_marker(b).is_some_and(|m| {
            let abort = m.result == TransactionResult::Abort;
            txns.on_marker(h.producer_id, h.base_offset, abort)
        });
        // Like a tombstone, a marker outlives delete.retention.ms, so a consumer that read
        // the data before the clean still meets it.
        if no_data_left && drop_tombstones {
            return Ok(dropped(1));
        }
        return Ok(whole(0));
    }
    if txns.on_data_batch(h.producer_id, h.is_transactional(), h.last_offset()) {
        return Ok(dropped(h.records_count as u64));
    }
    let records = decode(path, pos, b)?;
    let total = records.len();
    let keep: Vec<Record> = records
        .into_iter()
        .filter(|r| match &r.key {
            Some(k) => {
                map.get(k).is_none_or(|&newest| r.offset >= newest)
                    && !(r.value.is_none() && drop_tombstones)
            }
            None => true,
        })
        .collect();
    let removed = (total - keep.len()) as u64;
    if keep.len() == total {
        return Ok(whole(0));
    }
    if keep.is_empty() {
        return Ok(dropped(removed));
    }
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        keep.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: compression_of(h),
        },
    )
    .map_err(|e| corrupt(path, pos, format!("cannot re-encode batch: {e}")))?;
    let mut nb = buf.to_vec();
    let first_seq = if h.base_sequence < 0 {
        -1
    } else {
        let delta = (keep[0].offset - h.base_offset) as i32;
        h.base_sequence.wrapping_add(delta)
    };
    record_batch::set_partition_leader_epoch(&mut nb, h.partition_leader_epoch);
    record_batch::set_covered_fields(&mut nb, h.attributes, h.max_timestamp, first_seq);
    record_batch::validate_batch(&nb)
        .map_err(|e| corrupt(path, pos, format!("re-encoded batch invalid: {e}")))?;
    Ok(KeptBatch {
        bytes: Some(Cow::Owned(nb)),
        removed,
    })
}

/// Cleans `log` once if it is due; returns the offset cleaned up to.
pub(crate) fn clean_log(log: &UnifiedLog) -> Result<Option<i64>> {
    LogCleaner::clean(log).map(|s| s.map(|s| s.cleaned_up_to))
}
