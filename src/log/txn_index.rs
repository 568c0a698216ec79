//! `TransactionIndex`: the aborted transactions of a log, for read_committed fetches.
//!
//! One file per segment, `{base_offset:020}.txnindex`, holding the transactions whose abort
//! marker lies in that segment, in marker order. An entry is Kafka's, 34 bytes big-endian:
//! ```text
//! i16 version (0) | i64 producer_id | i64 first_offset | i64 last_offset (the marker)
//! | i64 last_stable_offset (the LSO right after the abort)
//! ```
//! Entries are appended when an abort marker is appended (by the leader or a follower copying
//! it). The file is fsynced with its segment: an append hands the log the open file to fsync
//! at its next flush (and marks the directory when it created the file), so an entry is
//! durable no later than the marker it indexes. Recovery reads the entries below the
//! producer-state snapshot it replays from and rewrites (and fsyncs) the files of the segments
//! it replays; a file is deleted or truncated with its segment.
//!
//! In memory the log keeps all entries in one list ordered by marker offset (what fetches
//! search); its size is bounded by the aborts the log's retention keeps.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::producer_state::CompletedTxn;
use super::segment::io_error;
use super::Result;

const ENTRY_BYTES: usize = 34;
const ENTRY_VERSION: i16 = 0;

/// One aborted transaction (Kafka's `AbortedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    pub fn new(txn: &CompletedTxn, last_stable_offset: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: txn.producer_id,
            first_offset: txn.first_offset,
            last_offset: txn.last_offset,
            last_stable_offset,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&ENTRY_VERSION.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.first_offset.to_be_bytes());
        out.extend_from_slice(&self.last_offset.to_be_bytes());
        out.extend_from_slice(&self.last_stable_offset.to_be_bytes());
    }

    fn decode(b: &[u8]) -> Option<AbortedTxn> {
        let i64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b.get(at..at + 8)?);
            Some(i64::from_be_bytes(a))
        };
        if i16::from_be_bytes([*b.first()?, *b.get(1)?]) != ENTRY_VERSION {
            return None;
        }
        Some(AbortedTxn {
            producer_id: i64_at(2)?,
            first_offset: i64_at(10)?,
            last_offset: i64_at(18)?,
            last_stable_offset: i64_at(26)?,
        })
    }
}

pub fn txn_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.txnindex"))
}

/// Reads a segment's entries; a missing file is empty, and a torn or unreadable tail is
/// dropped (recovery rewrites what it replays).
pub fn read_entries(path: &Path) -> Vec<AbortedTxn> {
    let Ok(data) = std::fs::read(path) else {
        return Vec::new();
    };
    decode_entries(&data)
}

/// The entries of a file's bytes (a local file or its remote copy), up to a torn tail.
pub fn decode_entries(data: &[u8]) -> Vec<AbortedTxn> {
    data.chunks_exact(ENTRY_BYTES)
        .map_while(AbortedTxn::decode)
        .collect()
}

/// Appends one entry to a segment's file. Returns the open file, for the caller to fsync with
/// the segment, and whether this append created it (its directory entry needs an fsync too).
pub fn append_entry(path: &Path, entry: &AbortedTxn) -> Result<(std::fs::File, bool)> {
    let mut b = Vec::with_capacity(ENTRY_BYTES);
    entry.encode(&mut b);
    let created = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    f.write_all(&b).map_err(|e| io_error(path, e))?;
    Ok((f, created))
}

/// Replaces a segment's file with `entries` (none: the file is removed).
pub fn write_entries(path: &Path, entries: &[AbortedTxn]) -> Result<()> {
    if entries.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(path, e)),
            _ => Ok(()),
        };
    }
    let mut b = Vec::with_capacity(entries.len() * ENTRY_BYTES);
    for e in entries {
        e.encode(&mut b);
    }
    // Recovery and the cleaner rewrite whole files and rarely: fsyncing here keeps them out of
    // the flush bookkeeping.
    std::fs::File::create(path)
        .and_then(|mut f| {
            f.write_all(&b)?;
            f.sync_data()
        })
        .map_err(|e| io_error(path, e))
}

/// Compaction merged the segments `replaced` (ascending, the first being `base`) into one:
/// their entries go to `base`'s file, in marker order, without duplicates (a merge redone after
/// a crash finds some twice), keeping only those `keep` accepts (compaction drops the entries
/// of the markers it removed). Written to a temporary file and renamed over, so a crash leaves
/// the old file or the new one.
pub fn merge_into(
    dir: &Path,
    base: i64,
    replaced: &[i64],
    keep: impl Fn(&AbortedTxn) -> bool,
) -> Result<()> {
    let mut all: Vec<AbortedTxn> = replaced
        .iter()
        .flat_map(|&b| read_entries(&txn_index_path(dir, b)))
        .filter(|t| keep(t))
        .collect();
    all.sort_by_key(|t| (t.last_offset, t.producer_id));
    all.dedup();
    let path = txn_index_path(dir, base);
    if all.is_empty() {
        return write_entries(&path, &[]);
    }
    let tmp = path.with_extension("txnindex.tmp");
    write_entries(&tmp, &all)?;
    std::fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))
}

/// What compaction knows of transactions while it walks the log in offset order (Kafka's
/// `CleanedTransactionMetadata`): which producers are inside an aborted transaction (their
/// transactional batches are dropped whole) and which transactions still have data (their
/// markers stay). A marker whose transaction has no data left may go once past the delete
/// horizon; an abort marker whose data this walk is dropping stays until a later pass, so a
/// consumer never meets aborted data without the marker that ends it.
#[derive(Debug, Default)]
pub struct CleanedTransactions {
    /// Aborted transactions not reached yet, by first offset (the next is last).
    pending: Vec<AbortedTxn>,
    /// Producers inside an aborted transaction, and whether this walk met its data.
    aborted: std::collections::HashMap<i64, bool>,
    /// Producers inside a transaction (not aborted) whose data this walk met.
    committed_with_data: std::collections::HashSet<i64>,
}

impl CleanedTransactions {
    pub fn new(mut aborted: Vec<AbortedTxn>) -> CleanedTransactions {
        aborted.sort_by_key(|t| std::cmp::Reverse(t.first_offset));
        CleanedTransactions {
            pending: aborted,
            ..CleanedTransactions::default()
        }
    }

    fn reach(&mut self, offset: i64) {
        while self
            .pending
            .last()
            .is_some_and(|t| t.first_offset <= offset)
        {
            if let Some(t) = self.pending.pop() {
                self.aborted.insert(t.producer_id, false);
            }
        }
    }

    /// A data batch: whether it belongs to an aborted transaction (drop it).
    pub fn on_data_batch(
        &mut self,
        producer_id: i64,
        transactional: bool,
        last_offset: i64,
    ) -> bool {
        self.reach(last_offset);
        if !transactional {
            return false;
        }
        if let Some(seen) = self.aborted.get_mut(&producer_id) {
            *seen = true;
            return true;
        }
        self.committed_with_data.insert(producer_id);
        false
    }

    /// An end-transaction marker: whether its transaction has no data left (it may go once
    /// past the delete horizon).
    pub fn on_marker(&mut self, producer_id: i64, offset: i64, abort: bool) -> bool {
        self.reach(offset);
        if abort {
            self.committed_with_data.remove(&producer_id);
            self.aborted.remove(&producer_id) != Some(true)
        } else {
            !self.committed_with_data.remove(&producer_id)
        }
    }
}

/// The aborted transactions that overlap `[fetch_offset, upper_bound_offset)`: those whose
/// marker is at or after the fetch offset and whose first offset is below the bound (Kafka's
/// `collectAbortedTxns`). `entries` is ordered by marker offset.
pub fn collect_aborted(
    entries: &[AbortedTxn],
    fetch_offset: i64,
    upper_bound_offset: i64,
) -> Vec<AbortedTxn> {
    let from = entries.partition_point(|e| e.last_offset < fetch_offset);
    entries[from..]
        .iter()
        .filter(|e| e.first_offset < upper_bound_offset)
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: last + 1,
        }
    }

    #[test]
    fn file_round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = txn_index_path(dir.path(), 100);
        assert!(path.ends_with("00000000000000000100.txnindex"));
        append_entry(&path, &txn(1, 100, 105)).expect("append");
        append_entry(&path, &txn(2, 101, 110)).expect("append");
        assert_eq!(
            read_entries(&path),
            vec![txn(1, 100, 105), txn(2, 101, 110)]
        );
        let mut data = std::fs::read(&path).expect("read");
        assert_eq!(data.len(), 2 * ENTRY_BYTES);
        data.truncate(ENTRY_BYTES + 5);
        std::fs::write(&path, &data).expect("write");
        assert_eq!(read_entries(&path), vec![txn(1, 100, 105)]);
        write_entries(&path, &[]).expect("remove");
        assert!(!path.exists());
    }

    #[test]
    fn collects_overlapping_aborts() {
        let entries = [txn(1, 0, 4), txn(2, 3, 9), txn(3, 12, 15)];
        assert_eq!(collect_aborted(&entries, 0, 3), vec![txn(1, 0, 4)]);
        assert_eq!(collect_aborted(&entries, 5, 12), vec![txn(2, 3, 9)]);
        assert_eq!(
            collect_aborted(&entries, 4, 100),
            vec![txn(1, 0, 4), txn(2, 3, 9), txn(3, 12, 15)]
        );
        assert_eq!(collect_aborted(&entries, 16, 100), vec![]);
    }

    #[test]
    fn a_merge_keeps_every_entry_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        append_entry(&txn_index_path(dir.path(), 0), &txn(1, 0, 4)).expect("append");
        append_entry(&txn_index_path(dir.path(), 10), &txn(2, 9, 12)).expect("append");
        merge_into(dir.path(), 0, &[0, 10], |_| true).expect("merge");
        // Redone after a crash before the replaced file was removed: no duplicates.
        merge_into(dir.path(), 0, &[0, 10], |_| true).expect("merge again");
        assert_eq!(
            read_entries(&txn_index_path(dir.path(), 0)),
            vec![txn(1, 0, 4), txn(2, 9, 12)]
        );
    }
}
