//! `TimeIndex`: the sparse timestamp → offset index of one segment.
//!
//! File `{base_offset:020}.timeindex`: 12-byte entries, a big-endian 8-byte timestamp (the
//! largest timestamp seen in the segment so far) and a 4-byte offset relative to the segment's
//! base offset (the batch that carried it). An entry is added beside each offset-index entry
//! when the max timestamp has grown, and once more when the segment becomes inactive so the
//! last entry holds the segment's largest timestamp (retention reads it after a restart).
//!
//! Invariants: timestamps and offsets are strictly increasing. Because each entry is a running
//! maximum, an entry `(t, o)` with `t < target` proves every record up to `o` is older than
//! `target`, which is what lets a timestamp lookup skip ahead. Preallocation, trimming and
//! rebuild after a crash are as for [`OffsetIndex`](super::index::OffsetIndex).

use std::path::{Path, PathBuf};

use super::index::MappedEntries;
use super::Result;

const ENTRY_SIZE: usize = 12;

/// See the module documentation for the format.
#[derive(Debug)]
pub struct TimeIndex {
    base_offset: i64,
    store: MappedEntries,
}

fn ts(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}
fn rel(b: &[u8]) -> i64 {
    u32::from_be_bytes([b[8], b[9], b[10], b[11]]) as i64
}

impl TimeIndex {
    pub fn open(path: PathBuf, base_offset: i64) -> Result<TimeIndex> {
        Ok(TimeIndex {
            base_offset,
            store: MappedEntries::open(path, ENTRY_SIZE)?,
        })
    }

    /// `max_bytes` is the offset index's size; the time index gets room for as many entries.
    pub fn extend(&mut self, max_bytes: u32) -> Result<()> {
        let max_bytes = (max_bytes as u64 / 8 * ENTRY_SIZE as u64).min(u32::MAX as u64) as u32;
        self.store.extend(max_bytes)
    }

    pub fn entries(&self) -> usize {
        self.store.entries()
    }

    pub fn is_full(&self) -> bool {
        self.store.is_full()
    }

    pub fn last_entry(&self) -> Option<(i64, i64)> {
        let n = self.store.entries();
        (n > 0).then(|| {
            let e = self.store.entry(n - 1);
            (ts(e), self.base_offset + rel(e))
        })
    }

    /// Appends `(timestamp, offset)` if both grow past the last entry.
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) {
        let relative = offset - self.base_offset;
        if !(0..=u32::MAX as i64).contains(&relative) {
            return;
        }
        if let Some((lt, lo)) = self.last_entry() {
            if timestamp <= lt || offset <= lo {
                return;
            }
        }
        let mut e = [0u8; ENTRY_SIZE];
        e[..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..].copy_from_slice(&(relative as u32).to_be_bytes());
        self.store.push(&e);
    }

    /// The offset after which a record at or after `timestamp` may first appear: the offset of
    /// the greatest entry whose timestamp is below `timestamp`, or the base offset.
    pub fn lookup_before(&self, timestamp: i64) -> i64 {
        match self.store.floor(timestamp - 1, ts) {
            Some(i) => self.base_offset + rel(self.store.entry(i)),
            None => self.base_offset,
        }
    }

    /// Drops entries at or after `offset`.
    pub fn truncate_to_offset(&mut self, offset: i64) {
        let mut keep = self.store.entries();
        while keep > 0 && self.base_offset + rel(self.store.entry(keep - 1)) >= offset {
            keep -= 1;
        }
        self.store.truncate_entries(keep);
    }

    pub fn reset(&mut self) {
        self.store.truncate_entries(0);
    }

    /// Entries ordered, offsets below `next_offset`.
    pub fn sanity_check(&self, next_offset: i64) -> bool {
        let mut prev: Option<(i64, i64)> = None;
        for i in 0..self.store.entries() {
            let e = self.store.entry(i);
            let (t, o) = (ts(e), rel(e));
            if self.base_offset + o >= next_offset {
                return false;
            }
            if let Some((pt, po)) = prev {
                if t <= pt || o <= po {
                    return false;
                }
            }
            prev = Some((t, o));
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

    #[test]
    fn running_max_lookup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = TimeIndex::open(dir.path().join("t"), 10).expect("open");
        t.extend(800).expect("extend");
        t.maybe_append(100, 10);
        t.maybe_append(90, 12); // not a new max: ignored
        t.maybe_append(200, 15);
        t.maybe_append(300, 20);
        assert_eq!(t.entries(), 3);
        assert_eq!(t.lookup_before(50), 10);
        assert_eq!(t.lookup_before(100), 10);
        assert_eq!(t.lookup_before(101), 10);
        assert_eq!(t.lookup_before(250), 15);
        assert_eq!(t.last_entry(), Some((300, 20)));
        t.truncate_to_offset(15);
        assert_eq!(t.last_entry(), Some((100, 10)));
        assert!(t.sanity_check(16));
        assert!(!t.sanity_check(10));
    }
}
