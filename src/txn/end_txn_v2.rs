//! EndTxn for transaction version 2 clients (KIP-890 part 2, EndTxn v5+): every end bumps the
//! producer epoch, so the markers carry an epoch above the transaction's batches and a late
//! batch of the ended transaction is fenced at the partition. The answer tells the producer
//! the epoch (or, once the epochs of its id are spent, the new producer id at epoch 0) to use
//! next. Because the epoch moved, a retried EndTxn is recognised by the epoch before the bump
//! rather than by state alone, and an abort with nothing added is allowed (the producer aborts
//! after an error before its first send).

use super::{Decision, TxnError, TxnShard, TxnState, TV2};

impl TxnShard {
    /// Decides an EndTxn v5+: the decision and the id and epoch the producer continues with.
    pub(super) fn end_txn_v2(
        &mut self,
        transactional_id: &str,
        (producer_id, producer_epoch): (i64, i16),
        commit: bool,
        fresh_producer_id: i64,
        now_ms: i64,
    ) -> Result<(Decision, (i64, i16)), TxnError> {
        let m = self
            .txns
            .get_mut(transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        // A retry of an end whose epoch bump was written, and of one that also moved the
        // producer to a new id.
        let retry_on_bump = m.producer_id == producer_id
            && i32::from(m.producer_epoch) == i32::from(producer_epoch) + 1;
        let retry_on_overflow = m.previous_producer_id == producer_id
            && producer_epoch == i16::MAX - 1
            && m.producer_epoch == 0;
        if m.producer_id != producer_id && !retry_on_overflow {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        let current = producer_epoch == m.producer_epoch && m.producer_id == producer_id;
        let valid = match m.state {
            TxnState::Ongoing | TxnState::Empty | TxnState::Dead => current,
            TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_bump,
            TxnState::CompleteCommit | TxnState::CompleteAbort => {
                retry_on_bump || retry_on_overflow || current
            }
            TxnState::PrepareEpochFence => false,
        };
        if !valid {
            return Err(TxnError::ProducerFenced);
        }
        let retry = retry_on_bump || retry_on_overflow;
        let now = (m.producer_id, m.producer_epoch);
        match (m.state, commit) {
            (TxnState::Ongoing, _) => {}
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) if retry => {
                return Ok((Decision::default(), now))
            }
            (TxnState::CompleteCommit | TxnState::CompleteAbort, _) if retry => {
                return Err(TxnError::InvalidTxnState)
            }
            // Abort with nothing added: allowed, and it bumps the epoch too.
            (TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort, false) => {}
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                return Err(TxnError::ConcurrentTransactions)
            }
            _ => return Err(TxnError::InvalidTxnState),
        }
        if m.epoch_exhausted() {
            if fresh_producer_id < 0 {
                // The handler takes a fresh id when the producer's epoch says it may be
                // needed; without one the producer retries.
                return Err(TxnError::ConcurrentTransactions);
            }
            m.next_producer_id = fresh_producer_id;
        }
        if m.state != TxnState::Ongoing {
            m.partitions.clear();
            m.start_ms = now_ms;
        }
        m.last_producer_epoch = m.producer_epoch;
        m.producer_epoch = m.producer_epoch.saturating_add(1);
        m.client_version = TV2;
        let next = if m.next_producer_id >= 0 {
            (m.next_producer_id, 0)
        } else {
            (m.producer_id, m.producer_epoch)
        };
        let (id, epoch) = (m.producer_id, m.producer_epoch);
        let mut d = Self::prepare(m, commit, now_ms);
        if d.markers.iter().all(|job| job.partitions.is_empty()) {
            // No partition to write a marker on: complete at once, in the same write.
            d.markers.clear();
            let done = self.complete(transactional_id, id, epoch, now_ms);
            d.records.extend(done.records);
            d.replies.extend(done.replies);
            d.committed += done.committed;
            d.aborted += done.aborted;
        }
        Ok((d, next))
    }
}
