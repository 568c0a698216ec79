//! `OffsetIndex`: the sparse offset → file position index of one segment.
//!
//! File `{base_offset:020}.index`: a flat array of 8-byte entries, each a big-endian 4-byte
//! offset relative to the segment's base offset and a 4-byte byte position in the `.log` file
//! where the batch with that base offset starts. One entry is written per
//! `index.interval.bytes` of log data, so the index is sparse: a lookup finds the greatest entry
//! at or below the target and the reader scans batch headers forward from there.
//!
//! Invariants: entries are strictly increasing in both offset and position; every position is
//! the start of a batch whose base offset is the entry's offset. While the segment is active the
//! file is preallocated to `segment.index.bytes` (rounded down to whole entries) and memory
//! mapped; the number of valid entries lives in memory only. When the segment becomes inactive
//! (roll, close) the file is trimmed to its valid entries. After a crash the file is not
//! trusted: [`OffsetIndex::sanity_check`] rejects trailing zeros or disorder, and the loader
//! rebuilds the index from the log.

// The index is memory mapped (memmap2), which needs `unsafe`: the mapping is only sound while
// no other process truncates the file, and Strata owns its log directories exclusively.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use super::{LogError, Result};

const ENTRY_SIZE: usize = 8;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A memory-mapped array of fixed-size entries: the storage shared by the offset and time
/// indexes. `entry_size` is 8 for the offset index and 12 for the time index.
#[derive(Debug)]
pub(crate) struct MappedEntries {
    path: PathBuf,
    file: File,
    mmap: Option<MmapMut>,
    entry_size: usize,
    entries: usize,
    max_entries: usize,
}

impl MappedEntries {
    /// Opens (creating if absent) `path`, mapped at its current length: existing content is
    /// taken as `len / entry_size` entries, which callers sanity-check. [`Self::extend`] makes
    /// room for appends.
    pub(crate) fn open(path: PathBuf, entry_size: usize) -> Result<MappedEntries> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len() as usize;
        let entries = len / entry_size;
        let mut m = MappedEntries {
            path,
            file,
            mmap: None,
            entry_size,
            entries,
            max_entries: entries,
        };
        m.resize_file(entries * entry_size)?;
        Ok(m)
    }

    /// Preallocates the file to `max_bytes` (whole entries) so the segment can take appends.
    pub(crate) fn extend(&mut self, max_bytes: u32) -> Result<()> {
        let max_entries = (max_bytes as usize / self.entry_size).max(1);
        if max_entries == self.max_entries && self.mmap.is_some() {
            return Ok(());
        }
        self.max_entries = max_entries.max(self.entries);
        self.resize_file(self.max_entries * self.entry_size)
    }

    fn resize_file(&mut self, bytes: usize) -> Result<()> {
        self.mmap = None;
        self.file
            .set_len(bytes as u64)
            .map_err(io_err(&self.path))?;
        if bytes > 0 {
            // SAFETY: the file is ours alone (see the module comment) and stays at `bytes`
            // length until the next resize, which drops this mapping first.
            let mmap = unsafe { MmapMut::map_mut(&self.file) }.map_err(io_err(&self.path))?;
            self.mmap = Some(mmap);
        }
        Ok(())
    }

    pub(crate) fn entry(&self, i: usize) -> &[u8] {
        match &self.mmap {
            Some(m) => &m[i * self.entry_size..(i + 1) * self.entry_size],
            None => &[],
        }
    }

    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries >= self.max_entries
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        debug_assert_eq!(bytes.len(), self.entry_size);
        if self.is_full() {
            return;
        }
        let at = self.entries * self.entry_size;
        if let Some(m) = &mut self.mmap {
            if at + self.entry_size <= m.len() {
                m[at..at + self.entry_size].copy_from_slice(bytes);
                self.entries += 1;
            }
        }
    }

    /// Keeps the first `n` entries, zeroing the rest so a crash cannot resurrect them.
    pub(crate) fn truncate_entries(&mut self, n: usize) {
        if n >= self.entries {
            return;
        }
        let (from, to) = (n * self.entry_size, self.entries * self.entry_size);
        if let Some(m) = &mut self.mmap {
            let to = to.min(m.len());
            m[from..to].fill(0);
        }
        self.entries = n;
    }

    /// Trims the file to the valid entries (segment becomes inactive).
    pub(crate) fn trim(&mut self) -> Result<()> {
        self.flush()?;
        self.max_entries = self.entries;
        self.resize_file(self.entries * self.entry_size)
    }

    /// Writes dirty pages back; the index is rebuilt after a crash, so this is for tidiness on
    /// close, never on the append path.
    pub(crate) fn flush(&self) -> Result<()> {
        if let Some(m) = &self.mmap {
            m.flush().map_err(io_err(&self.path))?;
        }
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Binary search: index of the last entry whose key (per `key`) is <= `target`.
    pub(crate) fn floor(&self, target: i64, key: impl Fn(&[u8]) -> i64) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.entries);
        if hi == 0 || key(self.entry(0)) > target {
            return None;
        }
        // Invariant: key(lo) <= target, key(hi) > target (hi may be one past the end).
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if key(self.entry(mid)) <= target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(lo)
    }
}

/// See the module documentation for the format.
#[derive(Debug)]
pub struct OffsetIndex {
    base_offset: i64,
    store: MappedEntries,
}

fn rel(b: &[u8]) -> i64 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64
}
fn pos(b: &[u8]) -> u64 {
    u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as u64
}

impl OffsetIndex {
    /// Opens the index as found; see [`MappedEntries::open`].
    pub fn open(path: PathBuf, base_offset: i64) -> Result<OffsetIndex> {
        Ok(OffsetIndex {
            base_offset,
            store: MappedEntries::open(path, ENTRY_SIZE)?,
        })
    }

    /// Preallocates to `max_bytes` (`segment.index.bytes`) for appends.
    pub fn extend(&mut self, max_bytes: u32) -> Result<()> {
        self.store.extend(max_bytes)
    }

    pub fn entries(&self) -> usize {
        self.store.entries()
    }

    pub fn is_full(&self) -> bool {
        self.store.is_full()
    }

    /// Appends `(offset, position)`; ignored if it would break the ordering invariant.
    pub fn append(&mut self, offset: i64, position: u64) {
        let relative = offset - self.base_offset;
        if !(0..=u32::MAX as i64).contains(&relative) || position > u32::MAX as u64 {
            return;
        }
        if let Some((last_off, last_pos)) = self.last_entry() {
            if offset <= last_off || position <= last_pos {
                return;
            }
        }
        let mut e = [0u8; ENTRY_SIZE];
        e[..4].copy_from_slice(&(relative as u32).to_be_bytes());
        e[4..].copy_from_slice(&(position as u32).to_be_bytes());
        self.store.push(&e);
    }

    pub fn last_entry(&self) -> Option<(i64, u64)> {
        let n = self.store.entries();
        (n > 0).then(|| {
            let e = self.store.entry(n - 1);
            (self.base_offset + rel(e), pos(e))
        })
    }

    /// The greatest entry at or below `offset`, or the segment start.
    pub fn lookup(&self, offset: i64) -> (i64, u64) {
        match self.store.floor(offset - self.base_offset, rel) {
            Some(i) => {
                let e = self.store.entry(i);
                (self.base_offset + rel(e), pos(e))
            }
            None => (self.base_offset, 0),
        }
    }

    /// Drops entries at or after `offset`.
    pub fn truncate_to_offset(&mut self, offset: i64) {
        let keep = match self.store.floor(offset - self.base_offset - 1, rel) {
            Some(i) => i + 1,
            None => 0,
        };
        self.store.truncate_entries(keep);
    }

    pub fn reset(&mut self) {
        self.store.truncate_entries(0);
    }

    /// Checks ordering and that positions lie inside a log of `log_size` bytes.
    pub fn sanity_check(&self, log_size: u64) -> bool {
        let mut prev: Option<(i64, u64)> = None;
        for i in 0..self.store.entries() {
            let e = self.store.entry(i);
            let (o, p) = (rel(e), pos(e));
            if p >= log_size.max(1) {
                return false;
            }
            if let Some((po, pp)) = prev {
                if o <= po || p <= pp {
                    return false;
                }
            }
            prev = Some((o, p));
        }
        true
    }

    pub fn trim(&mut self) -> Result<()> {
        self.store.trim()
    }

    pub fn flush(&self) -> Result<()> {
        self.store.flush()
    }

    pub fn path(&self) -> &Path {
        self.store.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lookup_and_truncate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut idx = OffsetIndex::open(dir.path().join("0.index"), 100).expect("open");
        idx.extend(80).expect("extend");
        assert_eq!(idx.lookup(150), (100, 0));
        for i in 1..=10 {
            idx.append(100 + i * 10, i as u64 * 1000);
        }
        assert!(idx.is_full());
        assert_eq!(idx.lookup(105), (100, 0));
        assert_eq!(idx.lookup(110), (110, 1000));
        assert_eq!(idx.lookup(139), (130, 3000));
        assert_eq!(idx.lookup(1000), (200, 10000));
        idx.truncate_to_offset(130);
        assert_eq!(idx.entries(), 2);
        assert_eq!(idx.lookup(139), (120, 2000));
        idx.trim().expect("trim");
        drop(idx);
        let idx = OffsetIndex::open(dir.path().join("0.index"), 100).expect("reopen");
        assert_eq!(idx.entries(), 2);
        assert!(idx.sanity_check(5000));
        assert!(!idx.sanity_check(1500));
    }

    #[test]
    fn untrimmed_index_fails_sanity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("0.index");
        let mut idx = OffsetIndex::open(p.clone(), 0).expect("open");
        idx.extend(800).expect("extend");
        idx.append(5, 100);
        idx.flush().expect("flush");
        drop(idx); // a crash: no trim
        let idx = OffsetIndex::open(p, 0).expect("open");
        assert!(!idx.sanity_check(10_000));
    }

    proptest! {
        #[test]
        fn lookup_matches_linear_scan(gaps in proptest::collection::vec(1i64..50, 0..60), q in 0i64..3000) {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut idx = OffsetIndex::open(dir.path().join("i"), 7).expect("open");
            idx.extend(4096).expect("extend");
            let mut entries = vec![];
            let mut o = 7;
            for (i, g) in gaps.iter().enumerate() {
                o += g;
                idx.append(o, (i as u64 + 1) * 10);
                entries.push((o, (i as u64 + 1) * 10));
            }
            let expect = entries.iter().rev().find(|(eo, _)| *eo <= q).copied().unwrap_or((7, 0));
            prop_assert_eq!(idx.lookup(q), expect);
        }
    }
}
