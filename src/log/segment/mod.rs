//! `LogSegment`: one `.log` file of record batches with its offset and time indexes.
//!
//! File `{base_offset:020}.log`: magic-2 record batches back to back, byte for byte as they
//! travel on the wire, with the broker-assigned baseOffset and partitionLeaderEpoch written in.
//! No framing of Strata's own: the batch header's length field delimits batches and its CRC-32C
//! protects everything but baseOffset and partitionLeaderEpoch.
//!
//! Invariants: every batch's base offset is >= the segment's base offset and >= the previous
//! batch's next offset (compaction leaves gaps); batches are written only at the end, with
//! `pwrite` at `size`, and a failed write is cut back so the file ends on a batch boundary.
//! Bytes below `size` never change except by truncation (`truncate_to`) or replacement
//! (the cleaner's swap), so readers may copy them without the log lock.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

mod scan;

pub use scan::{read_batches, scan_batches, ScanEnd, SegmentRead};

use super::index::OffsetIndex;
use super::time_index::TimeIndex;
use super::{LogError, Result};
use crate::protocol::record_batch::{BatchHeader, HEADER_SIZE};

/// At most this many chunks go to one `pwritev` (Linux's `IOV_MAX`).
const MAX_IOVECS: usize = 1024;

/// `write_all_at` for a list of chunks: one positioned vectored write for the common case,
/// more where the kernel writes short.
fn write_all_vectored_at(file: &File, chunks: &[Bytes], mut offset: u64) -> std::io::Result<()> {
    let mut rest: Vec<&[u8]> = chunks
        .iter()
        .map(|c| &c[..])
        .filter(|c| !c.is_empty())
        .collect();
    let mut first = 0;
    while first < rest.len() {
        let slices: Vec<std::io::IoSlice<'_>> = rest[first..]
            .iter()
            .take(MAX_IOVECS)
            .map(|c| std::io::IoSlice::new(c))
            .collect();
        let mut n = match rustix::io::pwritev(file, &slices, offset) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        offset += n as u64;
        while n > 0 {
            let head = rest[first];
            if n < head.len() {
                rest[first] = &head[n..];
                n = 0;
            } else {
                n -= head.len();
                first += 1;
            }
        }
    }
    Ok(())
}

/// Reads are verified with CRC-32C, every batch, every time. Measured on the 2-core dev box
/// (see docs/BENCHMARKS.md): crc32c (SSE4.2) runs at several GB/s and the page-cache copy
/// dominates, so checking keeps sequential reads above the 2 GB/s target while guaranteeing
/// that a flipped bit in a segment is an error, never bytes handed to a consumer.
pub const VERIFY_CRC_ON_READ: bool = true;

/// Chunk size for scans (recovery, index rebuild, producer-state replay).
const SCAN_CHUNK_BYTES: usize = 1 << 20;

pub fn log_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.log"))
}
pub fn index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.index"))
}
pub fn time_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.timeindex"))
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> LogError {
    if source.raw_os_error() == Some(libc::ENOSPC) {
        LogError::DiskFull {
            path: path.to_path_buf(),
        }
    } else {
        LogError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The open `.log` file, shared (by `Arc`) with readers that copy outside the log lock (the
/// flush bookkeeping also carries `.txnindex` files in it, to fsync them with the segment). An
/// unlinked segment stays readable through it until the last reader drops it.
#[derive(Debug)]
pub struct SegmentFile {
    pub path: PathBuf,
    pub file: File,
}

impl SegmentFile {
    /// Reads exactly `len` bytes at `pos`, straight into uninitialised memory: zero-filling the
    /// buffer first cost as much CPU as the copy from the page cache (profile of a consumer in
    /// docs/BENCHMARKS.md).
    pub fn read_at(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(len);
        while buf.len() < len {
            let at = pos + buf.len() as u64;
            match rustix::io::pread(&self.file, rustix::buffer::spare_capacity(&mut buf), at) {
                Ok(0) => {
                    let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
                    return Err(io_error(&self.path, eof));
                }
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(io_error(&self.path, e.into())),
            }
        }
        // The capacity may exceed `len`, and a read may fill it.
        buf.truncate(len);
        Ok(buf)
    }

    pub fn sync_data(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| io_error(&self.path, e))
    }

    pub(super) fn corrupt(&self, position: u64, reason: impl Into<String>) -> LogError {
        LogError::CorruptSegment {
            path: self.path.clone(),
            position,
            reason: reason.into(),
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct LogSegment {
    pub base_offset: i64,
    pub file: Arc<SegmentFile>,
    /// Bytes of valid batches in the file.
    pub size: u64,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    /// The offset after the last batch (the base offset while empty).
    pub next_offset: i64,
    /// Largest batch max-timestamp in the segment, -1 while empty.
    pub max_timestamp: i64,
    /// Last offset of the batch carrying `max_timestamp`.
    pub offset_of_max_timestamp: i64,
    /// Max timestamp of the first batch: what `segment.ms` is measured from.
    pub first_batch_timestamp: Option<i64>,
    pub created_ms: i64,
    bytes_since_index_entry: u64,
    index_interval_bytes: u64,
    index_bytes: u32,
    /// File offset up to which disk blocks are reserved (`preallocate`); the file's size stays
    /// `size`, so readers and recovery never see the reservation.
    reserved_to: u64,
}

impl LogSegment {
    fn open_files(
        dir: &Path,
        base_offset: i64,
        create: bool,
    ) -> Result<(Arc<SegmentFile>, OffsetIndex, TimeIndex)> {
        let path = log_path(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        let index = OffsetIndex::open(index_path(dir, base_offset), base_offset)?;
        let time_index = TimeIndex::open(time_index_path(dir, base_offset), base_offset)?;
        Ok((Arc::new(SegmentFile { path, file }), index, time_index))
    }

    /// Creates an empty segment (replacing any leftover files of that name).
    pub fn create(
        dir: &Path,
        base_offset: i64,
        index_bytes: u32,
        index_interval_bytes: u32,
        now_ms: i64,
    ) -> Result<LogSegment> {
        for p in [
            log_path(dir, base_offset),
            index_path(dir, base_offset),
            time_index_path(dir, base_offset),
        ] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&p, e)),
            }
        }
        let (file, index, time_index) = Self::open_files(dir, base_offset, true)?;
        let mut seg = LogSegment {
            base_offset,
            file,
            size: 0,
            index,
            time_index,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            first_batch_timestamp: None,
            created_ms: now_ms,
            bytes_since_index_entry: 0,
            index_interval_bytes: index_interval_bytes as u64,
            index_bytes,
            reserved_to: 0,
        };
        seg.make_active()?;
        Ok(seg)
    }

    /// Opens an existing segment as found on disk; the caller then either `recover`s it or
    /// `load`s it (trusting its content and checking its indexes).
    pub fn open(
        dir: &Path,
        base_offset: i64,
        index_bytes: u32,
        index_interval_bytes: u32,
        now_ms: i64,
    ) -> Result<LogSegment> {
        let (file, index, time_index) = Self::open_files(dir, base_offset, false)?;
        let meta = file.file.metadata().map_err(|e| io_error(&file.path, e))?;
        let size = meta.len();
        // Blocks past the end: a reservation left by a crash (released when the segment closes).
        let reserved_to = (meta.blocks() * 512).max(size);
        Ok(LogSegment {
            base_offset,
            file,
            size,
            index,
            time_index,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            first_batch_timestamp: None,
            created_ms: now_ms,
            bytes_since_index_entry: 0,
            index_interval_bytes: index_interval_bytes as u64,
            index_bytes,
            reserved_to,
        })
    }

    /// Preallocates the indexes so the segment can take appends (new, or active again after a
    /// truncation or restart).
    pub fn make_active(&mut self) -> Result<()> {
        self.index.extend(self.index_bytes)?;
        self.time_index.extend(self.index_bytes)
    }

    pub fn set_config(&mut self, index_bytes: u32, index_interval_bytes: u32) {
        self.index_bytes = index_bytes;
        self.index_interval_bytes = index_interval_bytes as u64;
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    fn note_batch(&mut self, pos: u64, h: &BatchHeader) {
        if self.first_batch_timestamp.is_none() {
            self.first_batch_timestamp = Some(h.max_timestamp);
        }
        if self.bytes_since_index_entry >= self.index_interval_bytes && pos > 0 {
            self.index.append(h.base_offset, pos);
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
            self.bytes_since_index_entry = 0;
        }
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.last_offset();
        }
        self.bytes_since_index_entry += h.total_size() as u64;
        self.next_offset = h.next_offset();
    }

    /// Writes `data`, the chunks of whole validated batches with final offsets in order
    /// (`headers` gives each batch's position within their concatenation), at the end of the
    /// file. On failure the file is cut back to its previous size and nothing else changes.
    ///
    /// With `preallocate` > 0, disk blocks are reserved ahead of the end in chunks of that size
    /// (`fallocate` with `FALLOC_FL_KEEP_SIZE`: the file's length does not change). A buffered
    /// write into reserved blocks skips the filesystem's per-page delayed-allocation work, the
    /// largest cost of an append after the copy itself (see docs/BENCHMARKS.md). The reservation
    /// is a hint: where the filesystem cannot make it, appends go on without it.
    pub fn append(
        &mut self,
        data: &[Bytes],
        headers: &[(usize, BatchHeader)],
        preallocate: u64,
    ) -> Result<()> {
        let len: u64 = data.iter().map(|c| c.len() as u64).sum();
        let end = self.size + len;
        if preallocate > 0 && end > self.reserved_to {
            self.reserve(end, preallocate);
        }
        if let Err(e) = write_all_vectored_at(&self.file.file, data, self.size) {
            // Cut back the partial write so the file still ends on a batch boundary. If that
            // fails and the file is left longer, its end is not a batch boundary: an I/O error
            // (the dir goes offline), not a full disk that a later append could retry.
            self.reserved_to = self.size;
            if self.file.file.set_len(self.size).is_err()
                && self
                    .file
                    .file
                    .metadata()
                    .map_or(true, |m| m.len() != self.size)
            {
                return Err(LogError::Io {
                    path: self.file.path.clone(),
                    source: std::io::Error::other(format!(
                        "a failed append ({e}) could not be cut back to the last whole batch"
                    )),
                });
            }
            return Err(io_error(&self.file.path, e));
        }
        let start = self.size;
        for (pos, h) in headers {
            self.note_batch(start + *pos as u64, h);
        }
        self.size = end;
        Ok(())
    }

    /// Reserves blocks from the current reservation (or the end) to past `end`, in whole chunks.
    fn reserve(&mut self, end: u64, chunk: u64) {
        let from = self.reserved_to.max(self.size);
        let len = (end - from).div_ceil(chunk) * chunk;
        let reserved = rustix::fs::fallocate(
            &self.file.file,
            rustix::fs::FallocateFlags::KEEP_SIZE,
            from,
            len,
        );
        // Unsupported, or no space for the whole chunk: the write itself says whether the data
        // fits. Not reserving again until the end passes this point keeps a failing call off
        // every append.
        self.reserved_to = if reserved.is_ok() { from + len } else { end };
    }

    /// Gives back blocks reserved past the end (a closed segment never grows).
    fn release_reservation(&mut self) -> Result<()> {
        if self.reserved_to > self.size.next_multiple_of(4096) {
            // Truncating to the current length frees blocks past it (ext4, xfs).
            self.file
                .file
                .set_len(self.size)
                .map_err(|e| io_error(&self.file.path, e))?;
        }
        self.reserved_to = self.size;
        Ok(())
    }

    /// Scans and validates (CRC) every batch, rebuilding both indexes; cuts the file at the
    /// first bad batch. Returns the number of bytes cut.
    pub fn recover(&mut self, mut on_batch: impl FnMut(&BatchHeader)) -> Result<u64> {
        self.make_active()?;
        self.index.reset();
        self.time_index.reset();
        self.reset_stats();
        let file = Arc::clone(&self.file);
        let base = self.base_offset;
        let size = self.size;
        let end = scan_batches(&file, 0, size, true, SCAN_CHUNK_BYTES, |pos, h, _| {
            if h.base_offset < base {
                return false;
            }
            self.note_batch(pos, h);
            on_batch(h);
            true
        })?;
        let cut = self.size - end.valid_end;
        if cut > 0 {
            let reason = end
                .error
                .map(|(_, r)| r)
                .unwrap_or_else(|| "batch below segment base offset".to_string());
            tracing::warn!(
                path = %self.file.path.display(),
                position = end.valid_end,
                next_offset = self.next_offset,
                bytes = cut,
                reason = %reason,
                "truncating corrupt or torn segment tail"
            );
            self.file
                .file
                .set_len(end.valid_end)
                .map_err(|e| io_error(&self.file.path, e))?;
            self.file.sync_data()?;
            self.size = end.valid_end;
            self.reserved_to = end.valid_end;
        }
        Ok(cut)
    }

    fn reset_stats(&mut self) {
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = self.base_offset;
        self.first_batch_timestamp = None;
        self.bytes_since_index_entry = 0;
    }

    /// Loads a segment below the recovery point: trusts the batches, checks the indexes
    /// (rebuilding them from headers if they fail), and finds the next offset and max timestamp.
    ///
    /// `next_segment_base` is the base offset of the following segment, if any.
    pub fn load(&mut self, next_segment_base: Option<i64>) -> Result<()> {
        let index_ok = self.index.sanity_check(self.size) && self.index_points_at_batch()?;
        if !index_ok {
            tracing::warn!(path = %self.index.path().display(), "rebuilding offset index");
            return self.rebuild_indexes_or_keep(next_segment_base);
        }
        // Next offset: scan from the last index entry to the end.
        let (_, from) = self.index.lookup(i64::MAX);
        let mut last: Option<BatchHeader> = None;
        let file = Arc::clone(&self.file);
        let end = scan_batches(
            &file,
            from,
            self.size,
            false,
            SCAN_CHUNK_BYTES,
            |_, h, _| {
                last = Some(*h);
                true
            },
        )?;
        if let Some((position, reason)) = end.error {
            match next_segment_base {
                // A closed segment is never cut at load: its data was acknowledged. Reads of
                // the damaged batch fail with CorruptSegment instead.
                Some(next) => {
                    tracing::warn!(
                        path = %self.file.path.display(),
                        position,
                        reason = %reason,
                        "corrupt batch in a closed segment; reads of it will fail"
                    );
                    self.next_offset = next;
                }
                // The last segment (below the recovery point after a clean shutdown): recover
                // it like any unflushed tail.
                None => {
                    self.recover(|_| {})?;
                    return Ok(());
                }
            }
        } else {
            self.next_offset = last.map_or(self.base_offset, |h| h.next_offset());
        }
        if self.size > 0 {
            let first = BatchHeader::parse(&self.file.read_at(0, HEADER_SIZE)?)
                .map_err(|e| self.file.corrupt(0, e.to_string()))?;
            self.first_batch_timestamp = Some(first.max_timestamp);
        }
        let time_ok = self.time_index.sanity_check(self.next_offset);
        match (time_ok, self.time_index.last_entry()) {
            (true, Some((t, o))) => {
                self.max_timestamp = t;
                self.offset_of_max_timestamp = o;
                // The tail after the last entry may hold a larger timestamp.
                if let Some(h) = last {
                    if h.max_timestamp > t {
                        self.max_timestamp = h.max_timestamp;
                        self.offset_of_max_timestamp = h.last_offset();
                    }
                }
            }
            _ => {
                self.rebuild_indexes_or_keep(next_segment_base)?;
            }
        }
        Ok(())
    }

    /// Rebuilds the indexes; if the segment turns out to be damaged and is not the last, the
    /// indexes cover the good prefix and the damage is left for reads to report.
    fn rebuild_indexes_or_keep(&mut self, next_segment_base: Option<i64>) -> Result<()> {
        match (self.rebuild_indexes(), next_segment_base) {
            (Ok(()), _) => Ok(()),
            (
                Err(LogError::CorruptSegment {
                    position, reason, ..
                }),
                Some(next),
            ) => {
                tracing::warn!(
                    path = %self.file.path.display(),
                    position,
                    reason = %reason,
                    "corrupt batch in a closed segment; reads of it will fail"
                );
                self.next_offset = next;
                Ok(())
            }
            (Err(LogError::CorruptSegment { .. }), None) => self.recover(|_| {}).map(|_| ()),
            (Err(e), _) => Err(e),
        }
    }

    fn index_points_at_batch(&self) -> Result<bool> {
        let Some((off, pos)) = self.index.last_entry() else {
            return Ok(true);
        };
        if pos + HEADER_SIZE as u64 > self.size {
            return Ok(false);
        }
        let h = BatchHeader::parse(&self.file.read_at(pos, HEADER_SIZE)?);
        Ok(matches!(h, Ok(h) if h.base_offset == off))
    }

    /// Rebuilds both indexes and the segment stats from batch headers (no CRC check).
    pub fn rebuild_indexes(&mut self) -> Result<()> {
        self.make_active()?;
        self.index.reset();
        self.time_index.reset();
        self.reset_stats();
        let file = Arc::clone(&self.file);
        let size = self.size;
        let end = scan_batches(&file, 0, size, false, SCAN_CHUNK_BYTES, |pos, h, _| {
            self.note_batch(pos, h);
            true
        })?;
        if let Some((pos, reason)) = end.error {
            return Err(self.file.corrupt(pos, reason));
        }
        Ok(())
    }

    /// Position to start searching for `offset`.
    pub fn lookup_position(&self, offset: i64) -> u64 {
        self.index.lookup(offset).1
    }

    /// Removes every batch whose last offset is >= `offset`. Returns bytes removed.
    pub fn truncate_to(&mut self, offset: i64) -> Result<u64> {
        let start = self.lookup_position(offset);
        let mut cut_at: Option<u64> = None;
        let file = Arc::clone(&self.file);
        let scan = scan_batches(
            &file,
            start,
            self.size,
            false,
            SCAN_CHUNK_BYTES,
            |pos, h, _| {
                if h.last_offset() >= offset {
                    cut_at = Some(pos);
                    false
                } else {
                    true
                }
            },
        )?;
        // A damaged header before `offset` was found ends the good part: nothing from there
        // on can be trusted (a replica truncating to a corrupt batch cuts exactly there).
        let Some(cut) = cut_at.or(scan.error.map(|(pos, _)| pos)) else {
            return Ok(0);
        };
        let removed = self.size - cut;
        self.file
            .file
            .set_len(cut)
            .map_err(|e| io_error(&self.file.path, e))?;
        self.size = cut;
        self.reserved_to = cut;
        // Rebuild stats and indexes for what remains; truncation is rare and off the hot path.
        self.rebuild_indexes()?;
        Ok(removed)
    }

    /// Time to roll by `segment.ms`? As in Kafka, the age is measured in record time when the
    /// segment's first batch carries a timestamp: the incoming batch's max timestamp against the
    /// first batch's. Comparing record time with the wall clock instead would roll a segment per
    /// append for any producer whose timestamps lie in the past (replays, mirrors, backfills).
    pub fn should_roll_for_time(
        &self,
        incoming_max_timestamp: i64,
        now_ms: i64,
        segment_ms: i64,
    ) -> bool {
        if self.size == 0 {
            return false;
        }
        match self.first_batch_timestamp {
            Some(first) if first >= 0 && incoming_max_timestamp >= 0 => {
                incoming_max_timestamp - first > segment_ms
            }
            _ => now_ms - self.created_ms > segment_ms,
        }
    }

    /// The segment stops taking appends: record the final max timestamp and trim the indexes.
    pub fn on_become_inactive(&mut self) -> Result<()> {
        self.release_reservation()?;
        if self.max_timestamp >= 0 {
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
        }
        self.index.trim()?;
        self.time_index.trim()
    }

    /// Closes and removes the segment's files.
    pub fn delete_files(&self) -> Result<()> {
        for p in [
            self.file.path.clone(),
            self.index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
            self.file.path.with_extension("txnindex"),
        ] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&p, e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;

    #[test]
    fn a_vectored_write_of_more_chunks_than_one_call_takes_lands_whole_and_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .expect("open");
        file.write_all_at(b"keep", 0).expect("prefix");
        // 3,000 chunks (three pwritev calls at most), with empty ones among them.
        let chunks: Vec<Bytes> = (0..3000u32)
            .map(|i| {
                if i % 7 == 0 {
                    Bytes::new()
                } else {
                    Bytes::from(i.to_be_bytes().to_vec())
                }
            })
            .collect();
        write_all_vectored_at(&file, &chunks, 4).expect("write");
        let want: Vec<u8> = b"keep"
            .iter()
            .copied()
            .chain(chunks.iter().flat_map(|c| c.iter().copied()))
            .collect();
        let mut got = vec![0u8; want.len()];
        file.read_exact_at(&mut got, 0).expect("read");
        assert_eq!(got, want);
        assert_eq!(file.metadata().expect("metadata").len(), want.len() as u64);
    }
}
