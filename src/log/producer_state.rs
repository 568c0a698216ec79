//! Idempotent-producer state of one partition (`ProducerStateManager`).
//!
//! Per producer id: its current epoch and the metadata of its last
//! [`MAX_BATCHES_PER_PRODUCER`] batches (first/last sequence, first/last offset), which is
//! enough to recognise a retried batch and return its original offsets, as Kafka does.
//!
//! The checks are pure ([`ProducerStateManager::check`] returns a decision and a pending
//! update; nothing changes until the caller has written the batch and calls `apply`).
//!
//! Transactions: a producer's ongoing transaction is the offset of its first transactional
//! batch since its last marker (`current_txn_first_offset`); a control batch (commit or abort
//! marker) ends it. The smallest such offset over all producers is the log's first unstable
//! offset, which bounds the last stable offset (LSO) that read_committed consumers read to.
//! Each marker also records the epoch of the coordinator that wrote it; a marker from an older
//! coordinator epoch is fenced (Kafka's `TransactionCoordinatorFencedException`).
//!
//! Snapshot file `{offset:020}.snapshot`: the state after every batch below `offset`.
//! Binary, big-endian:
//! ```text
//! u16 version (3) | u32 producer count
//! per producer: i64 producer_id | i16 epoch | i64 last_timestamp
//!   | i64 current_txn_first_offset (-1: none; absent in version 1)
//!   | i32 coordinator_epoch (-1: no marker yet; absent in versions 1 and 2) | u8 batch count
//!   per batch:  i32 first_seq | i32 last_seq | i64 first_offset | i64 last_offset
//! u32 crc32fast of every byte above
//! ```
//! Version 1 (no transactions) and 2 (no coordinator epoch) snapshots are still read.
//! A snapshot that fails its CRC is ignored and the state rebuilt from an older one (or from
//! the log start) by replaying batch headers.

mod verification;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use super::txn_index::AbortedTxn;
use super::{LogError, Result};
use crate::protocol::control::{self, TransactionResult};
use crate::protocol::record_batch::BatchHeader;
pub use verification::{VerificationGuard, VerificationStates};

/// How many recent batches per producer are remembered for duplicate detection (Kafka: 5, the
/// most in-flight requests an idempotent producer may have).
pub const MAX_BATCHES_PER_PRODUCER: usize = 5;
/// Producers are forgotten after this long without writing (Kafka's
/// `producer.id.expiration.ms` default), which bounds the map.
pub const PRODUCER_EXPIRATION_MS: i64 = 24 * 3600 * 1000;
/// Snapshots kept on disk; older ones are deleted when a new one is written.
const SNAPSHOTS_KEPT: usize = 2;
const SNAPSHOT_VERSION: u16 = 3;
/// A producer's coordinator epoch before any marker (Kafka's `RecordBatch.NO_PARTITION_LEADER_EPOCH`).
pub const NO_COORDINATOR_EPOCH: i32 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerState {
    pub epoch: i16,
    pub batches: VecDeque<BatchMetadata>,
    pub last_timestamp: i64,
    /// The first offset of the producer's ongoing transaction, if one is open.
    pub current_txn_first_offset: Option<i64>,
    /// The coordinator epoch of the producer's last marker ([`NO_COORDINATOR_EPOCH`]: none).
    pub coordinator_epoch: i32,
}

/// A transaction ended by a marker (Kafka's `CompletedTxn`): from the producer's first
/// transactional batch to the marker itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub is_aborted: bool,
}

/// The outcome of checking one batch against producer state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Not idempotent (no producer id) or a control batch: nothing to track.
    Untracked,
    /// Append it.
    Accept,
    /// Already in the log at these offsets.
    Duplicate(BatchMetadata),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceError {
    Fenced {
        epoch: i16,
        current: i16,
    },
    OutOfOrder {
        sequence: i32,
        expected: i32,
    },
    /// A non-transactional batch from a producer with an open transaction (Kafka:
    /// INVALID_TXN_STATE).
    InvalidTxnState,
    /// A marker from a coordinator older than the one that wrote the producer's last marker
    /// (Kafka: TRANSACTION_COORDINATOR_FENCED).
    CoordinatorFenced {
        coordinator_epoch: i32,
        current: i32,
    },
}

fn next_seq(s: i32) -> i32 {
    if s == i32::MAX {
        0
    } else {
        s + 1
    }
}

/// See the module documentation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerState>,
    /// KIP-890 verifications under way; not in snapshots.
    pub verifications: VerificationStates,
}

impl ProducerStateManager {
    pub fn get(&self, producer_id: i64) -> Option<&ProducerState> {
        self.producers.get(&producer_id)
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&i64, &ProducerState)> {
        self.producers.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Decides whether batch `h` may be appended. `pending` holds updates from earlier batches
    /// of the same request, consulted before the committed state.
    pub fn check(
        &self,
        pending: &HashMap<i64, ProducerState>,
        h: &BatchHeader,
    ) -> std::result::Result<Check, SequenceError> {
        if h.producer_id < 0 {
            return Ok(Check::Untracked);
        }
        let Some(state) = pending
            .get(&h.producer_id)
            .or_else(|| self.producers.get(&h.producer_id))
        else {
            // An unknown producer is accepted at any sequence (Kafka >= 2.5 treats the state
            // as possibly expired or truncated away).
            return Ok(Check::Accept);
        };
        if h.producer_epoch < state.epoch {
            return Err(SequenceError::Fenced {
                epoch: h.producer_epoch,
                current: state.epoch,
            });
        }
        if h.is_control() || h.base_sequence < 0 {
            return Ok(Check::Untracked);
        }
        if !h.is_transactional()
            && h.producer_epoch == state.epoch
            && state.current_txn_first_offset.is_some()
        {
            return Err(SequenceError::InvalidTxnState);
        }
        if h.producer_epoch > state.epoch {
            // A bumped epoch restarts the sequence.
            if h.base_sequence != 0 {
                return Err(SequenceError::OutOfOrder {
                    sequence: h.base_sequence,
                    expected: 0,
                });
            }
            return Ok(Check::Accept);
        }
        let last_seq = h.last_sequence();
        if let Some(dup) = state
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
        {
            return Ok(Check::Duplicate(*dup));
        }
        match state.batches.back() {
            Some(last) if h.base_sequence != next_seq(last.last_seq) => {
                Err(SequenceError::OutOfOrder {
                    sequence: h.base_sequence,
                    expected: next_seq(last.last_seq),
                })
            }
            _ => Ok(Check::Accept),
        }
    }

    /// The state of `h`'s producer after appending `h` (already carrying its final offsets).
    pub fn updated(
        &self,
        pending: &HashMap<i64, ProducerState>,
        h: &BatchHeader,
        timestamp_ms: i64,
    ) -> Option<ProducerState> {
        if h.producer_id < 0 {
            return None;
        }
        let mut state = pending
            .get(&h.producer_id)
            .or_else(|| self.producers.get(&h.producer_id))
            .cloned()
            .unwrap_or(ProducerState {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
                last_timestamp: timestamp_ms,
                current_txn_first_offset: None,
                coordinator_epoch: NO_COORDINATOR_EPOCH,
            });
        if h.producer_epoch > state.epoch {
            state.epoch = h.producer_epoch;
            state.batches.clear();
        }
        if h.is_control() {
            state.current_txn_first_offset = None;
        } else if h.is_transactional() && state.current_txn_first_offset.is_none() {
            state.current_txn_first_offset = Some(h.base_offset);
        }
        state.last_timestamp = state.last_timestamp.max(timestamp_ms);
        if !h.is_control() && h.base_sequence >= 0 {
            state.batches.push_back(BatchMetadata {
                first_seq: h.base_sequence,
                last_seq: h.last_sequence(),
                first_offset: h.base_offset,
                last_offset: h.last_offset(),
            });
            while state.batches.len() > MAX_BATCHES_PER_PRODUCER {
                state.batches.pop_front();
            }
        }
        Some(state)
    }

    /// Decides whether a marker written by coordinator epoch `coordinator_epoch` may end
    /// `producer_id`'s transaction: not when a newer coordinator already wrote one (a
    /// coordinator that lost its transactional id to another must not complete it).
    pub fn check_coordinator_epoch(
        &self,
        pending: &HashMap<i64, ProducerState>,
        producer_id: i64,
        coordinator_epoch: i32,
    ) -> std::result::Result<(), SequenceError> {
        let current = pending
            .get(&producer_id)
            .or_else(|| self.producers.get(&producer_id))
            .map_or(NO_COORDINATOR_EPOCH, |s| s.coordinator_epoch);
        if coordinator_epoch < current {
            return Err(SequenceError::CoordinatorFenced {
                coordinator_epoch,
                current,
            });
        }
        Ok(())
    }

    /// The transaction that control batch `h` (already carrying its offset) ends. A marker for
    /// a producer with no open transaction covers only itself, as in Kafka.
    pub fn completed_txn(
        &self,
        pending: &HashMap<i64, ProducerState>,
        h: &BatchHeader,
        is_aborted: bool,
    ) -> CompletedTxn {
        let first = pending
            .get(&h.producer_id)
            .or_else(|| self.producers.get(&h.producer_id))
            .and_then(|s| s.current_txn_first_offset);
        CompletedTxn {
            producer_id: h.producer_id,
            first_offset: first.unwrap_or(h.base_offset),
            last_offset: h.base_offset,
            is_aborted,
        }
    }

    /// Whether transactional batch `h` may be appended by a leader that verified it with
    /// `guard` (KIP-890): yes when its producer's transaction is already open here at its
    /// epoch, otherwise only if `guard` is still the producer's.
    pub fn verified(
        &self,
        pending: &HashMap<i64, ProducerState>,
        h: &BatchHeader,
        guard: VerificationGuard,
    ) -> bool {
        if !h.is_transactional() || h.is_control() || h.producer_id < 0 {
            return true;
        }
        let open = pending
            .get(&h.producer_id)
            .or_else(|| self.producers.get(&h.producer_id))
            .is_some_and(|s| s.current_txn_first_offset.is_some() && s.epoch == h.producer_epoch);
        open || self.verifications.verify(h.producer_id, guard)
    }

    /// Whether `producer_id` has a transaction open here at `producer_epoch` (Kafka's
    /// `hasOngoingTransaction`): its next batches need no verification.
    pub fn has_ongoing_txn(&self, producer_id: i64, producer_epoch: i16) -> bool {
        self.producers
            .get(&producer_id)
            .is_some_and(|s| s.current_txn_first_offset.is_some() && s.epoch == producer_epoch)
    }

    /// The smallest first offset of any open transaction: nothing at or after it is stable.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers
            .values()
            .filter_map(|s| s.current_txn_first_offset)
            .min()
    }

    /// How many producers have an open transaction.
    pub fn ongoing_txn_count(&self) -> usize {
        self.producers
            .values()
            .filter(|s| s.current_txn_first_offset.is_some())
            .count()
    }

    pub fn apply(&mut self, pending: HashMap<i64, ProducerState>) {
        // Whatever a producer appended, a verification it started has served: its transaction
        // is open here now, or ended (see `verification`).
        for producer_id in pending.keys() {
            self.verifications.clear(*producer_id);
        }
        self.producers.extend(pending);
    }

    /// Replays one batch already in the log (recovery): `batch` is its whole bytes, read for
    /// a control batch's marker. Returns the transaction an abort marker ends, for the
    /// aborted-transaction index.
    pub fn replay(&mut self, h: &BatchHeader, batch: &[u8]) -> Option<AbortedTxn> {
        let none = HashMap::new();
        let marker = h
            .is_control()
            .then(|| control::parse_marker(batch))
            .flatten();
        let completed =
            marker.map(|m| self.completed_txn(&none, h, m.result == TransactionResult::Abort));
        if let Some(mut s) = self.updated(&none, h, h.max_timestamp) {
            if let Some(m) = marker {
                s.coordinator_epoch = m.coordinator_epoch;
            }
            self.producers.insert(h.producer_id, s);
        }
        let txn = completed.filter(|t| t.is_aborted)?;
        Some(AbortedTxn::new(&txn, self.last_stable_offset_after(&txn)))
    }

    /// The LSO right after `txn` ended (its state already applied): the first offset of another
    /// open transaction, else just past the marker (Kafka's `lastStableOffset(completedTxn)`).
    pub fn last_stable_offset_after(&self, txn: &CompletedTxn) -> i64 {
        self.first_unstable_offset().unwrap_or(txn.last_offset + 1)
    }

    /// Forgets producers idle for longer than the expiration, except those with an open
    /// transaction (Kafka keeps them until the coordinator ends it).
    pub fn remove_expired(&mut self, now_ms: i64) {
        self.verifications
            .remove_expired(now_ms, PRODUCER_EXPIRATION_MS);
        self.producers.retain(|_, s| {
            s.current_txn_first_offset.is_some()
                || now_ms - s.last_timestamp < PRODUCER_EXPIRATION_MS
        });
    }

    pub fn clear(&mut self) {
        self.verifications = VerificationStates::default();
        self.producers.clear();
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + self.producers.len() * 64);
        b.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        b.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(s) = self.producers.get(&id) else {
                continue;
            };
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&s.epoch.to_be_bytes());
            b.extend_from_slice(&s.last_timestamp.to_be_bytes());
            b.extend_from_slice(&s.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
            b.extend_from_slice(&s.coordinator_epoch.to_be_bytes());
            b.push(s.batches.len() as u8);
            for m in &s.batches {
                b.extend_from_slice(&m.first_seq.to_be_bytes());
                b.extend_from_slice(&m.last_seq.to_be_bytes());
                b.extend_from_slice(&m.first_offset.to_be_bytes());
                b.extend_from_slice(&m.last_offset.to_be_bytes());
            }
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    pub fn decode(data: &[u8]) -> Option<ProducerStateManager> {
        if data.len() < 10 {
            return None;
        }
        let (body, crc) = data.split_at(data.len() - 4);
        if crc32fast::hash(body) != u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return None;
        }
        let mut r = Reader { b: body, at: 0 };
        let version = r.u16()?;
        if !(1..=SNAPSHOT_VERSION).contains(&version) {
            return None;
        }
        let n = r.u32()? as usize;
        let mut producers = HashMap::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let id = r.i64()?;
            let epoch = r.u16()? as i16;
            let last_timestamp = r.i64()?;
            let current_txn_first_offset = match version {
                1 => None,
                _ => Some(r.i64()?).filter(|&o| o >= 0),
            };
            let coordinator_epoch = match version {
                1 | 2 => NO_COORDINATOR_EPOCH,
                _ => r.u32()? as i32,
            };
            let nb = r.u8()? as usize;
            let mut batches = VecDeque::with_capacity(nb);
            for _ in 0..nb {
                batches.push_back(BatchMetadata {
                    first_seq: r.u32()? as i32,
                    last_seq: r.u32()? as i32,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                });
            }
            producers.insert(
                id,
                ProducerState {
                    epoch,
                    batches,
                    last_timestamp,
                    current_txn_first_offset,
                    coordinator_epoch,
                },
            );
        }
        (r.at == body.len()).then_some(ProducerStateManager {
            producers,
            verifications: VerificationStates::default(),
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.at..self.at + n)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn i64(&mut self) -> Option<i64> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Some(i64::from_be_bytes(a))
    }
}

pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.snapshot"))
}

/// Snapshot offsets present in `dir`, ascending.
pub fn list_snapshots(dir: &Path) -> Vec<i64> {
    let mut v: Vec<i64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".snapshot")?.parse().ok()
        })
        .collect();
    v.sort_unstable();
    v
}

/// Writes the snapshot at `offset` (write to temp, fsync, rename) and prunes older ones.
pub fn write_snapshot(dir: &Path, offset: i64, state: &ProducerStateManager) -> Result<()> {
    let path = snapshot_path(dir, offset);
    let tmp = path.with_extension("snapshot.tmp");
    let data = state.encode();
    let res = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    res.map_err(|source| {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            LogError::DiskFull { path: path.clone() }
        } else {
            LogError::Io {
                path: path.clone(),
                source,
            }
        }
    })?;
    let all = list_snapshots(dir);
    if all.len() > SNAPSHOTS_KEPT {
        for off in &all[..all.len() - SNAPSHOTS_KEPT] {
            let _ = std::fs::remove_file(snapshot_path(dir, *off));
        }
    }
    Ok(())
}

/// Deletes snapshots taken at offsets above `offset` (truncation).
pub fn delete_snapshots_after(dir: &Path, offset: i64) {
    for off in list_snapshots(dir) {
        if off > offset {
            let _ = std::fs::remove_file(snapshot_path(dir, off));
        }
    }
}

/// The newest readable snapshot at or below `max_offset`: `(offset, state)`.
pub fn load_latest_snapshot(dir: &Path, max_offset: i64) -> Option<(i64, ProducerStateManager)> {
    for off in list_snapshots(dir).into_iter().rev() {
        if off > max_offset {
            continue;
        }
        let path = snapshot_path(dir, off);
        match std::fs::read(&path)
            .ok()
            .and_then(|d| ProducerStateManager::decode(&d))
        {
            Some(s) => return Some((off, s)),
            None => {
                tracing::warn!(path = %path.display(), "corrupt producer snapshot; ignoring it");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::record_batch::{build_batch, BatchHeader};

    fn header(pid: i64, epoch: i16, seq: i32, n: usize, base: i64) -> BatchHeader {
        let recs = vec![(None, Some(&b"v"[..])); n];
        let mut h =
            BatchHeader::parse(&build_batch(0, 0, Some((pid, epoch, seq)), &recs)).expect("header");
        h.base_offset = base;
        h
    }

    fn append(m: &mut ProducerStateManager, h: &BatchHeader) -> Check {
        let none = HashMap::new();
        let c = m.check(&none, h).expect("accepted");
        if c == Check::Accept {
            m.replay(h, &[]);
        }
        c
    }

    #[test]
    fn sequences_duplicates_fencing() {
        let mut m = ProducerStateManager::default();
        assert_eq!(append(&mut m, &header(1, 0, 0, 3, 0)), Check::Accept);
        assert_eq!(append(&mut m, &header(1, 0, 3, 2, 3)), Check::Accept);
        let none = HashMap::new();
        assert_eq!(
            m.check(&none, &header(1, 0, 0, 3, 99)),
            Ok(Check::Duplicate(BatchMetadata {
                first_seq: 0,
                last_seq: 2,
                first_offset: 0,
                last_offset: 2
            }))
        );
        assert_eq!(
            m.check(&none, &header(1, 0, 7, 1, 99)),
            Err(SequenceError::OutOfOrder {
                sequence: 7,
                expected: 5
            })
        );
        assert_eq!(append(&mut m, &header(1, 2, 0, 1, 5)), Check::Accept);
        assert_eq!(
            m.check(&none, &header(1, 1, 1, 1, 99)),
            Err(SequenceError::Fenced {
                epoch: 1,
                current: 2
            })
        );
        assert_eq!(
            m.check(&none, &header(1, 3, 4, 1, 99)),
            Err(SequenceError::OutOfOrder {
                sequence: 4,
                expected: 0
            })
        );
        // Only the last five batches are remembered.
        for i in 0..6 {
            append(&mut m, &header(1, 2, 1 + i, 1, 6 + i as i64));
        }
        assert_eq!(m.get(1).map(|s| s.batches.len()), Some(5));
        let snap = m.encode();
        assert_eq!(ProducerStateManager::decode(&snap), Some(m.clone()));
        let mut bad = snap.clone();
        bad[7] ^= 1;
        assert_eq!(ProducerStateManager::decode(&bad), None);
    }

    #[test]
    fn transactions_open_and_end_with_markers() {
        use crate::protocol::control::{build_marker_batch, EndTransactionMarker};
        use crate::protocol::record_batch::{set_covered_fields, TRANSACTIONAL_BIT};
        let txn = |pid: i64, seq: i32, base: i64| {
            let mut b = build_batch(0, 0, Some((pid, 0, seq)), &[(None, Some(&b"v"[..]))]);
            set_covered_fields(&mut b, TRANSACTIONAL_BIT, 0, seq);
            let mut h = BatchHeader::parse(&b).expect("header");
            h.base_offset = base;
            (h, b)
        };
        let marker = |pid: i64, result, base: i64| {
            let m = EndTransactionMarker {
                result,
                coordinator_epoch: 1,
            };
            let b = build_marker_batch(pid, 0, m, 0);
            let mut h = BatchHeader::parse(&b).expect("header");
            h.base_offset = base;
            (h, b)
        };
        let mut m = ProducerStateManager::default();
        for (h, b) in [txn(1, 0, 10), txn(2, 0, 11), txn(1, 1, 12)] {
            assert_eq!(m.replay(&h, &b), None);
        }
        assert_eq!(m.get(1).and_then(|s| s.current_txn_first_offset), Some(10));
        assert_eq!(m.first_unstable_offset(), Some(10));
        // A non-transactional batch of a producer inside a transaction is refused.
        let none = HashMap::new();
        assert_eq!(
            m.check(&none, &header(1, 0, 2, 1, 13)),
            Err(SequenceError::InvalidTxnState)
        );
        let (h, b) = marker(1, TransactionResult::Commit, 13);
        assert_eq!(m.replay(&h, &b), None);
        assert_eq!(m.first_unstable_offset(), Some(11));
        // The marker's coordinator epoch is recorded; an older coordinator's is fenced.
        assert_eq!(m.get(1).map(|s| s.coordinator_epoch), Some(1));
        assert_eq!(
            m.check_coordinator_epoch(&none, 1, 0),
            Err(SequenceError::CoordinatorFenced {
                coordinator_epoch: 0,
                current: 1
            })
        );
        assert_eq!(m.check_coordinator_epoch(&none, 1, 1), Ok(()));
        assert_eq!(
            m.check_coordinator_epoch(&none, 2, 0),
            Ok(()),
            "no marker yet"
        );
        // The snapshot keeps the open transaction.
        let snap = m.encode();
        assert_eq!(ProducerStateManager::decode(&snap), Some(m.clone()));
        let (h, b) = marker(2, TransactionResult::Abort, 14);
        assert_eq!(
            m.replay(&h, &b),
            Some(AbortedTxn {
                producer_id: 2,
                first_offset: 11,
                last_offset: 14,
                last_stable_offset: 15
            })
        );
        assert_eq!(m.first_unstable_offset(), None);
        assert_eq!(m.ongoing_txn_count(), 0);
        // Expiration spares producers with an open transaction.
        let (h, b) = txn(3, 0, 15);
        m.replay(&h, &b);
        m.remove_expired(i64::MAX);
        assert_eq!(m.len(), 1);
        assert_eq!(m.first_unstable_offset(), Some(15));
    }

    #[test]
    fn reads_version_1_snapshots() {
        let mut v1 = Vec::new();
        v1.extend_from_slice(&1u16.to_be_bytes());
        v1.extend_from_slice(&1u32.to_be_bytes());
        v1.extend_from_slice(&7i64.to_be_bytes());
        v1.extend_from_slice(&2i16.to_be_bytes());
        v1.extend_from_slice(&99i64.to_be_bytes());
        v1.push(0);
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_be_bytes());
        let m = ProducerStateManager::decode(&v1).expect("v1");
        let s = m.get(7).expect("producer 7");
        assert_eq!(
            (s.epoch, s.last_timestamp, s.current_txn_first_offset),
            (2, 99, None)
        );
    }

    #[test]
    fn reads_version_2_snapshots_without_a_coordinator_epoch() {
        let mut v2 = Vec::new();
        v2.extend_from_slice(&2u16.to_be_bytes());
        v2.extend_from_slice(&1u32.to_be_bytes());
        v2.extend_from_slice(&7i64.to_be_bytes());
        v2.extend_from_slice(&2i16.to_be_bytes());
        v2.extend_from_slice(&99i64.to_be_bytes());
        v2.extend_from_slice(&40i64.to_be_bytes());
        v2.push(0);
        let crc = crc32fast::hash(&v2);
        v2.extend_from_slice(&crc.to_be_bytes());
        let m = ProducerStateManager::decode(&v2).expect("v2");
        let s = m.get(7).expect("producer 7");
        assert_eq!(
            (s.current_txn_first_offset, s.coordinator_epoch),
            (Some(40), NO_COORDINATOR_EPOCH)
        );
    }
}
