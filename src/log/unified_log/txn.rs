//! Transactions on the local log: the leader's marker appends, the first unstable offset and
//! the aborted transactions a read_committed fetch needs.

use bytes::Bytes;

use super::{Origin, UnifiedLog};
use crate::log::txn_index::{self, AbortedTxn};
use crate::log::{LogAppendInfo, Result};
use crate::model::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};
use crate::protocol::control::{build_marker_batch, EndTransactionMarker};

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
