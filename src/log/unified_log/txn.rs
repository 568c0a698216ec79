//! Transactions on the local log: the leader's marker appends, the first unstable offset and
//! the aborted transactions a read_committed fetch needs.

use bytes::Bytes;

use super::{Origin, UnifiedLog};
use crate::log::txn_index::{self, AbortedTxn};
use crate::log::{LogAppendInfo, ProducerStateEntry, Result, VerificationGuard};
use crate::model::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};
use crate::protocol::control::{build_marker_batch, EndTransactionMarker};

pub(super) fn entry(
    producer_id: i64,
    s: &crate::log::producer_state::ProducerState,
) -> ProducerStateEntry {
    let last = s.batches.back();
    ProducerStateEntry {
        producer_id: ProducerId(producer_id),
        producer_epoch: ProducerEpoch(s.epoch),
        last_sequence: last.map_or(-1, |b| b.last_seq),
        last_offset: Offset(last.map_or(-1, |b| b.last_offset)),
        last_timestamp_ms: s.last_timestamp,
        current_txn_start_offset: s.current_txn_first_offset.map(Offset),
        coordinator_epoch: s.coordinator_epoch,
    }
}

impl UnifiedLog {
    /// Appends the control batch that ends `producer_id`'s transaction (the leader, for the
    /// transaction coordinator). It ends the producer's open transaction, so the first
    /// unstable offset may move; an abort adds an entry to the aborted-transaction index. A
    /// marker with an epoch older than the producer's is refused (`ProducerFenced`).
    pub fn append_txn_marker(
        &self,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        marker: EndTransactionMarker,
        leader_epoch: LeaderEpoch,
    ) -> Result<LogAppendInfo> {
        let batch = build_marker_batch(
            producer_id.0,
            producer_epoch.0,
            marker,
            self.clock().now_ms(),
        );
        self.append(Bytes::from(batch), Origin::Coordinator(leader_epoch))
    }

    /// Appends a producer's batches as [`UnifiedLog::append_as_leader`] does; with
    /// `verification` (the broker verifies transactions, KIP-890), a transactional batch that
    /// would open the producer's transaction here needs that guard to still be the producer's
    /// (`LogError::TransactionNotVerified` otherwise).
    pub fn append_as_leader_with(
        &self,
        records: Bytes,
        leader_epoch: LeaderEpoch,
        verification: Option<VerificationGuard>,
    ) -> Result<LogAppendInfo> {
        self.append(records, Origin::Leader(leader_epoch, verification))
    }

    /// Starts verifying `producer_id`'s transaction at `producer_epoch` on this partition:
    /// `None` when it is already open here (its batches need no verification), else the guard
    /// to append with once the coordinator confirmed the partition is in the transaction.
    pub fn start_transaction_verification(
        &self,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
    ) -> Option<VerificationGuard> {
        let now = self.clock().now_ms();
        let mut st = self.lock();
        if st
            .producers
            .has_ongoing_txn(producer_id.0, producer_epoch.0)
        {
            return None;
        }
        Some(
            st.producers
                .verifications
                .start(producer_id.0, producer_epoch.0, now),
        )
    }

    /// The first offset of the oldest open transaction; `None` when none is open. The last
    /// stable offset is the smaller of it and the high watermark.
    pub fn first_unstable_offset(&self) -> Option<Offset> {
        self.lock().producers.first_unstable_offset().map(Offset)
    }

    /// How many producers have a transaction open on this log.
    pub fn ongoing_txn_count(&self) -> usize {
        self.lock().producers.ongoing_txn_count()
    }

    /// The aborted transactions that overlap `[fetch_offset, upper_bound_offset)`, for a
    /// read_committed fetch of that range.
    pub fn collect_aborted_txns(
        &self,
        fetch_offset: Offset,
        upper_bound_offset: Offset,
    ) -> Vec<AbortedTxn> {
        let st = self.lock();
        txn_index::collect_aborted(&st.aborted_txns, fetch_offset.0, upper_bound_offset.0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::clock::ManualClock;
    use crate::log::txn_index::txn_index_path;
    use crate::log::{FlushPolicy, LogConfig, LogError};
    use crate::protocol::control::TransactionResult;
    use crate::protocol::record_batch::{build_batch, set_covered_fields, TRANSACTIONAL_BIT};

    const EPOCH: LeaderEpoch = LeaderEpoch(0);

    fn open(dir: &std::path::Path) -> Arc<UnifiedLog> {
        let config = LogConfig {
            flush_policy: FlushPolicy::Interval {
                messages: u64::MAX,
                ms: u64::MAX / 2,
            },
            ..LogConfig::default()
        };
        UnifiedLog::open(
            dir.to_path_buf(),
            config,
            ManualClock::new(1_700_000_000_000),
        )
        .expect("open")
    }

    /// `n` records of a transactional producer, from sequence `seq`.
    fn txn_batch(pid: i64, seq: i32, n: usize) -> Bytes {
        let recs = vec![(None, Some(&b"v"[..])); n];
        let mut b = build_batch(0, 1_700_000_000_000, Some((pid, 0, seq)), &recs);
        let max_ts = 1_700_000_000_000 + n as i64 - 1;
        set_covered_fields(&mut b, TRANSACTIONAL_BIT, max_ts, seq);
        Bytes::from(b)
    }

    fn end(log: &UnifiedLog, pid: i64, result: TransactionResult) -> i64 {
        let marker = EndTransactionMarker {
            result,
            coordinator_epoch: 3,
        };
        let info = log
            .append_txn_marker(ProducerId(pid), ProducerEpoch(0), marker, EPOCH)
            .expect("marker");
        assert_eq!(info.first_offset, info.last_offset);
        info.first_offset.0
    }

    fn aborted(log: &UnifiedLog) -> Vec<(i64, i64, i64, i64)> {
        log.collect_aborted_txns(Offset(0), Offset(i64::MAX))
            .iter()
            .map(|t| {
                (
                    t.producer_id,
                    t.first_offset,
                    t.last_offset,
                    t.last_stable_offset,
                )
            })
            .collect()
    }

    #[test]
    fn markers_move_the_first_unstable_offset_and_index_aborts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(dir.path());
        log.append_as_leader(txn_batch(1, 0, 3), EPOCH).expect("a"); // 0..=2
        log.append_as_leader(txn_batch(2, 0, 2), EPOCH).expect("b"); // 3..=4
        assert_eq!(log.first_unstable_offset(), Some(Offset(0)));
        assert_eq!(log.ongoing_txn_count(), 2);
        // Producer 1 commits: producer 2's transaction (from 3) still holds the LSO back.
        assert_eq!(end(&log, 1, TransactionResult::Commit), 5);
        assert_eq!(log.first_unstable_offset(), Some(Offset(3)));
        log.append_as_leader(txn_batch(1, 3, 1), EPOCH)
            .expect("a again"); // 6
                                // Producer 2 aborts: the entry's LSO is producer 1's open transaction.
        assert_eq!(end(&log, 2, TransactionResult::Abort), 7);
        assert_eq!(log.first_unstable_offset(), Some(Offset(6)));
        assert_eq!(aborted(&log), vec![(2, 3, 7, 6)]);
        assert_eq!(end(&log, 1, TransactionResult::Abort), 8);
        assert_eq!(log.first_unstable_offset(), None);
        assert_eq!(aborted(&log), vec![(2, 3, 7, 6), (1, 6, 8, 9)]);
        // The markers are read back like any batch, CRC-checked.
        let read = log.read(Offset(0), 1 << 20, Offset(9), true).expect("read");
        let bases: Vec<(i64, bool)> = crate::protocol::record_batch::BatchIter::new(&read.records)
            .map(|b| b.expect("batch").1)
            .map(|h| (h.base_offset, h.is_control()))
            .collect();
        assert_eq!(
            bases,
            vec![
                (0, false),
                (3, false),
                (5, true),
                (6, false),
                (7, true),
                (8, true)
            ]
        );
        // Reads of a range see only the aborts that overlap it.
        let only_second: Vec<i64> = log
            .collect_aborted_txns(Offset(8), Offset(9))
            .iter()
            .map(|t| t.producer_id)
            .collect();
        assert_eq!(only_second, vec![1]);
        // A client may not write control batches; a marker with an old epoch is fenced.
        let marker = crate::protocol::control::build_marker_batch(
            1,
            0,
            EndTransactionMarker {
                result: TransactionResult::Commit,
                coordinator_epoch: 3,
            },
            0,
        );
        assert!(matches!(
            log.append_as_leader(Bytes::from(marker), EPOCH),
            Err(crate::log::LogError::InvalidRecord { .. })
        ));
        log.append_as_leader(txn_batch(1, 4, 1), EPOCH).expect("a"); // 9
        let plain = Bytes::from(build_batch(
            0,
            1_700_000_000_000,
            Some((1, 0, 5)),
            &[(None, Some(&b"v"[..]))],
        ));
        assert!(matches!(
            log.append_as_leader(plain, EPOCH),
            Err(crate::log::LogError::InvalidTxnState { .. })
        ));
        assert_eq!(log.first_unstable_offset(), Some(Offset(9)));
    }

    #[test]
    fn recovery_rebuilds_open_transactions_and_the_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let log = open(dir.path());
            log.append_as_leader(txn_batch(1, 0, 2), EPOCH).expect("a"); // 0..=1
            log.append_as_leader(txn_batch(2, 0, 2), EPOCH).expect("b"); // 2..=3
            end(&log, 2, TransactionResult::Abort); // 4
            log.roll().expect("roll");
            log.append_as_leader(txn_batch(3, 0, 1), EPOCH).expect("c"); // 5
            end(&log, 3, TransactionResult::Abort); // 6
            log.append_as_leader(txn_batch(4, 0, 1), EPOCH).expect("d"); // 7
            log.flush().expect("flush");
            // Dropped without close: no snapshot at the end, so the second segment is replayed.
        }
        // The second segment's index file is lost: recovery writes it again from the log.
        std::fs::remove_file(txn_index_path(dir.path(), 5)).expect("txnindex of segment 5");
        let log = open(dir.path());
        assert_eq!(log.first_unstable_offset(), Some(Offset(0)));
        assert_eq!(log.ongoing_txn_count(), 2);
        assert_eq!(aborted(&log), vec![(2, 2, 4, 0), (3, 5, 6, 0)]);
        assert!(txn_index_path(dir.path(), 5).exists());
        // Truncation below the second abort forgets it and reopens producer 3's transaction.
        log.truncate_to(Offset(6)).expect("truncate");
        assert_eq!(aborted(&log), vec![(2, 2, 4, 0)]);
        assert_eq!(log.ongoing_txn_count(), 2);
        end(&log, 1, TransactionResult::Commit); // 6
        end(&log, 3, TransactionResult::Commit); // 7
        assert_eq!(log.first_unstable_offset(), None);
        // A clean close snapshots the state; the reopened log agrees.
        log.close().expect("close");
        let log = open(dir.path());
        assert_eq!(log.first_unstable_offset(), None);
        assert_eq!(aborted(&log), vec![(2, 2, 4, 0)]);
    }

    #[test]
    fn a_follower_copying_markers_tracks_and_indexes_the_same() {
        let (ld, fd) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let (leader, follower) = (open(ld.path()), open(fd.path()));
        leader
            .append_as_leader(txn_batch(1, 0, 2), EPOCH)
            .expect("a"); // 0..=1
        leader
            .append_as_leader(txn_batch(2, 0, 1), EPOCH)
            .expect("b"); // 2
        end(&leader, 1, TransactionResult::Abort); // 3
        leader
            .append_as_leader(txn_batch(1, 2, 1), EPOCH)
            .expect("a"); // 4
        let all = leader
            .read(Offset(0), 1 << 20, Offset(5), true)
            .expect("read")
            .records;
        follower.append_as_follower(all).expect("copy");
        assert_eq!(aborted(&follower), aborted(&leader));
        assert_eq!(aborted(&follower), vec![(1, 0, 3, 2)]);
        assert_eq!(follower.first_unstable_offset(), Some(Offset(2)));
        assert_eq!(follower.ongoing_txn_count(), 2);
    }

    #[test]
    fn an_abort_entry_is_fsynced_with_the_segment_that_holds_its_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(dir.path());
        log.append_as_leader(txn_batch(1, 0, 2), EPOCH).expect("a"); // 0..=1
        log.flush().expect("flush");
        assert!(log.lock().unflushed_files.is_empty());
        end(&log, 1, TransactionResult::Abort); // 2
        end(&log, 1, TransactionResult::Abort); // 3: a second entry in the same file
        let index = txn_index_path(dir.path(), 0);
        let pending = |log: &UnifiedLog| {
            let st = log.lock();
            let paths: Vec<_> = st.unflushed_files.iter().map(|f| f.path.clone()).collect();
            (paths, st.dir_dirty)
        };
        // The new file and its directory entry wait for the flush that makes the marker durable,
        // once however many entries it holds; a roll keeps them pending.
        assert_eq!(pending(&log), (vec![index.clone()], true));
        log.roll().expect("roll");
        let (paths, dir_dirty) = pending(&log);
        assert!(paths.contains(&index) && dir_dirty, "{paths:?}");
        let (files, dir, target, _) = log.lock().flush_targets();
        assert!(files.iter().any(|f| f.path == index) && dir);
        assert_eq!(
            target, 4,
            "the flush that fsyncs the index covers the markers"
        );
        log.lock().flush_failed(files, dir);
        log.flush().expect("flush");
        assert_eq!(pending(&log), (vec![], false));
        assert_eq!(log.durable_offset(), Offset(4));
        assert_eq!(crate::log::txn_index::read_entries(&index).len(), 2);
    }

    #[test]
    fn a_marker_from_an_older_coordinator_epoch_is_fenced_and_the_epoch_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = |result, coordinator_epoch| EndTransactionMarker {
            result,
            coordinator_epoch,
        };
        {
            let log = open(dir.path());
            log.append_as_leader(txn_batch(1, 0, 2), EPOCH).expect("a"); // 0..=1
            end(&log, 1, TransactionResult::Commit); // 2, coordinator epoch 3
            log.append_as_leader(txn_batch(1, 2, 1), EPOCH).expect("a"); // 3
            let old = log.append_txn_marker(
                ProducerId(1),
                ProducerEpoch(0),
                marker(TransactionResult::Abort, 2),
                EPOCH,
            );
            assert!(
                matches!(
                    old,
                    Err(crate::log::LogError::TransactionCoordinatorFenced {
                        coordinator_epoch: 2,
                        current: 3,
                        ..
                    })
                ),
                "{old:?}"
            );
            // Nothing was written and the transaction is still open.
            assert_eq!(log.log_end_offset(), Offset(4));
            assert_eq!(log.first_unstable_offset(), Some(Offset(3)));
            let newer = marker(TransactionResult::Abort, 4);
            log.append_txn_marker(ProducerId(1), ProducerEpoch(0), newer, EPOCH)
                .expect("a newer coordinator's marker"); // 4
            let epochs: Vec<i32> = log
                .producer_states()
                .iter()
                .map(|p| p.coordinator_epoch)
                .collect();
            assert_eq!(epochs, vec![4]);
            log.close().expect("close");
        }
        // The snapshot keeps it: the old coordinator is still fenced after a restart.
        let log = open(dir.path());
        assert_eq!(log.producer_states()[0].coordinator_epoch, 4);
        let stale = marker(TransactionResult::Commit, 3);
        assert!(matches!(
            log.append_txn_marker(ProducerId(1), ProducerEpoch(0), stale, EPOCH),
            Err(crate::log::LogError::TransactionCoordinatorFenced { .. })
        ));
        // A follower copies what its leader wrote whatever the epoch (Kafka only logs it).
        let fd = tempfile::tempdir().expect("dir");
        let follower = open(fd.path());
        let copy = |b: Vec<u8>, at: i64| {
            let mut b = b;
            crate::protocol::record_batch::set_base_offset(&mut b, at);
            follower.append_as_follower(Bytes::from(b)).expect("copy");
        };
        copy(
            crate::protocol::control::build_marker_batch(
                1,
                0,
                marker(TransactionResult::Commit, 5),
                0,
            ),
            0,
        );
        copy(
            crate::protocol::control::build_marker_batch(
                1,
                0,
                marker(TransactionResult::Commit, 2),
                0,
            ),
            1,
        );
        assert_eq!(follower.log_end_offset(), Offset(2));
        assert_eq!(follower.producer_states()[0].coordinator_epoch, 2);
    }

    #[test]
    fn a_transaction_is_opened_only_with_a_guard_that_no_marker_overtook() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = open(dir.path());
        let (pid, epoch) = (ProducerId(1), ProducerEpoch(0));
        // Without the guard of a verification, the first batch of a transaction is refused.
        let refused =
            log.append_as_leader_with(txn_batch(1, 0, 1), EPOCH, Some(VerificationGuard::SENTINEL));
        assert!(
            matches!(refused, Err(LogError::TransactionNotVerified { .. })),
            "{refused:?}"
        );
        let guard = log
            .start_transaction_verification(pid, epoch)
            .expect("needs verifying");
        // A pipelined batch of the same transaction shares the guard.
        assert_eq!(log.start_transaction_verification(pid, epoch), Some(guard));
        let info = log
            .append_as_leader_with(txn_batch(1, 0, 2), EPOCH, Some(guard))
            .expect("verified"); // 0..=1
        assert_eq!(info.first_offset, Offset(0));
        // The transaction is open: its next batches need no verification, and get none.
        assert_eq!(log.start_transaction_verification(pid, epoch), None);
        log.append_as_leader_with(txn_batch(1, 2, 1), EPOCH, Some(VerificationGuard::SENTINEL))
            .expect("open"); // 2
        assert_eq!(end(&log, 1, TransactionResult::Abort), 3);
        // The next transaction: verified, but its abort marker is written before the batch
        // arrives (a batch that was in flight when the producer aborted). The guard is spent,
        // and the late batch opens no transaction that nothing would end.
        let late = log
            .start_transaction_verification(pid, epoch)
            .expect("needs verifying");
        assert_eq!(end(&log, 1, TransactionResult::Abort), 4);
        let refused = log.append_as_leader_with(txn_batch(1, 3, 1), EPOCH, Some(late));
        assert!(
            matches!(refused, Err(LogError::TransactionNotVerified { .. })),
            "{refused:?}"
        );
        assert_eq!(log.first_unstable_offset(), None);
        assert_eq!(log.log_end_offset(), Offset(5));
        // Without verification (the broker's config off, or the coordinator's own writes) a
        // transactional batch is appended as before.
        log.append_as_leader(txn_batch(1, 3, 1), EPOCH)
            .expect("unverified"); // 5
        assert_eq!(log.first_unstable_offset(), Some(Offset(5)));
    }
}
