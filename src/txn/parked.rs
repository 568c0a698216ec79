//! AddPartitionsToTxn requests held while the previous transaction of their transactional id
//! is still writing its markers.
//!
//! Kafka answers such a request CONCURRENT_TRANSACTIONS and the producer backs off (about
//! 20 ms in librdkafka) before it retries; a producer that begins its next transaction right
//! after a commit pays that back-off on every transaction. Held here instead, the request is
//! decided the moment the previous transaction completes, or told to retry at its deadline if
//! the markers take longer.

use super::state::Waiter;
use crate::model::TopicPartition;

/// How long a request is held before it is told to retry.
pub(super) const PARK_MAX_MS: i64 = 1_000;

#[derive(Debug)]
pub(super) struct ParkedAdd {
    pub(super) waiter: Waiter,
    pub(super) transactional_id: String,
    pub(super) producer: (i64, i16),
    pub(super) partitions: Vec<TopicPartition>,
    pub(super) client_version: i16,
    pub(super) deadline_ms: i64,
}

/// Takes the held requests for which `take` says yes, keeping the others in their order.
pub(super) fn take_where(
    parked: &mut Vec<ParkedAdd>,
    take: impl Fn(&ParkedAdd) -> bool,
) -> Vec<ParkedAdd> {
    let (taken, kept): (Vec<ParkedAdd>, Vec<ParkedAdd>) =
        std::mem::take(parked).into_iter().partition(|p| take(p));
    *parked = kept;
    taken
}
