//! `LeaderEpochFileCache`: which leader epoch wrote which offsets.
//!
//! An ordered list of `(epoch, start_offset)`: the first offset written under each epoch.
//! Invariants: epochs and start offsets are both strictly increasing. Persisted in
//! `leader-epoch-checkpoint` (rows `epoch start_offset`, see [`checkpoint`](super::checkpoint))
//! whenever it changes; it changes only on leader changes, truncation and log-start moves, so
//! the cost is off the append path.

use std::path::PathBuf;

use super::checkpoint;
use super::Result;

/// See the module documentation.
#[derive(Debug)]
pub struct LeaderEpochFileCache {
    dir: PathBuf,
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochFileCache {
    /// Loads the checkpoint; a corrupt one is dropped (with a warning) and the cache rebuilt by
    /// the caller from the batches' partition-leader-epoch fields.
    pub fn load(dir: PathBuf) -> (LeaderEpochFileCache, bool) {
        let (entries, ok) = match checkpoint::read(&dir, checkpoint::LEADER_EPOCH_FILE) {
            Ok(Some(rows)) => {
                let mut e: Vec<(i32, i64)> = Vec::with_capacity(rows.len());
                let mut ok = true;
                for r in rows {
                    match r.as_slice() {
                        [epoch, off] if *epoch >= 0 && *epoch <= i32::MAX as i64 => {
                            if let Some(&(pe, po)) = e.last() {
                                if *epoch as i32 <= pe || *off <= po {
                                    ok = false;
                                    break;
                                }
                            }
                            e.push((*epoch as i32, *off));
                        }
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                }
                if ok {
                    (e, true)
                } else {
                    (Vec::new(), false)
                }
            }
            Ok(None) => (Vec::new(), true),
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "leader epoch checkpoint corrupt; rebuilding");
                (Vec::new(), false)
            }
        };
        (LeaderEpochFileCache { dir, entries }, ok)
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// Records that `epoch` starts at `start_offset`, if it is newer than the latest entry.
    /// Returns whether the cache changed (the caller then persists it).
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 {
            return false;
        }
        match self.entries.last() {
            Some(&(e, _)) if e >= epoch => false,
            Some(&(_, o)) if o >= start_offset => {
                // A newer epoch starting where the previous one did replaces it (the old
                // leader wrote nothing).
                self.entries.retain(|&(_, so)| so < start_offset);
                self.entries.push((epoch, start_offset));
                true
            }
            _ => {
                self.entries.push((epoch, start_offset));
                true
            }
        }
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// Kafka's OffsetForLeaderEpoch: the largest epoch <= `epoch` and its end offset (the start
    /// of the next epoch, or `log_end_offset` for the latest). `None` when `epoch` is older than
    /// every entry.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let i = self.entries.iter().rposition(|&(e, _)| e <= epoch)?;
        let end = match self.entries.get(i + 1) {
            Some(&(_, next_start)) => next_start,
            None => log_end_offset,
        };
        Some((self.entries[i].0, end))
    }

    /// Removes entries starting at or after `end_offset` (log truncation).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, s)| s < end_offset);
        before != self.entries.len()
    }

    /// Moves the first entry up to `start_offset`, dropping epochs wholly below it.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let mut changed = false;
        while self.entries.len() > 1 && self.entries[1].1 <= start_offset {
            self.entries.remove(0);
            changed = true;
        }
        if let Some(first) = self.entries.first_mut() {
            if first.1 < start_offset {
                first.1 = start_offset;
                changed = true;
            }
        }
        changed
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn persist(&self) -> Result<()> {
        let rows: Vec<Vec<i64>> = self
            .entries
            .iter()
            .map(|&(e, o)| vec![e as i64, o])
            .collect();
        checkpoint::write(&self.dir, checkpoint::LEADER_EPOCH_FILE, &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_like_kafka() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut c, ok) = LeaderEpochFileCache::load(dir.path().to_path_buf());
        assert!(ok);
        assert!(c.assign(1, 0));
        assert!(!c.assign(1, 5));
        assert!(c.assign(3, 10));
        assert!(c.assign(5, 20));
        assert_eq!(c.end_offset_for(0, 30), None);
        assert_eq!(c.end_offset_for(1, 30), Some((1, 10)));
        assert_eq!(c.end_offset_for(2, 30), Some((1, 10)));
        assert_eq!(c.end_offset_for(4, 30), Some((3, 20)));
        assert_eq!(c.end_offset_for(9, 30), Some((5, 30)));
        c.truncate_from_end(15);
        assert_eq!(c.entries(), &[(1, 0), (3, 10)]);
        c.truncate_from_start(12);
        assert_eq!(c.entries(), &[(3, 12)]);
        c.persist().expect("persist");
        let (c2, ok) = LeaderEpochFileCache::load(dir.path().to_path_buf());
        assert!(ok);
        assert_eq!(c2.entries(), &[(3, 12)]);
    }
}
