//! KIP-890's transaction verification on the produce path (Kafka's
//! `ReplicaManager.appendRecordsWithTransactionVerification`).
//!
//! Before a leader appends the first transactional batch of a producer's transaction on a
//! partition, it asks the transaction coordinator whether the partition is in that ongoing
//! transaction (AddPartitionsToTxn `verify_only`: in process when the coordinator is here, else
//! batched per coordinator broker by `txn::verification`). Later batches of the transaction
//! find it open in the partition's producer state and are appended at once: one question per
//! transaction and partition, never one per batch. The log's verification guard
//! (`log::producer_state::VerificationStates`) refuses the append if the transaction ended
//! while the question was out.
//!
//! A batch that waits for its answer is appended off the connection's ordered path. Batches of
//! the same producer on the same partition that arrive meanwhile (a producer pipelines up to
//! five requests) wait behind it in arrival order ([`PendingVerifications`]), so the log sees
//! them in sequence order as it would without verification.
//!
//! A transaction version 2 producer (Produce v12+, TxnOffsetCommit v5+) sends no
//! AddPartitionsToTxn: the same question then adds the partition to its transaction (KIP-890
//! part 2), and is asked even when verification is switched off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::{FutureExt, Shared};
use kafka_protocol::error::ResponseError as E;
use tokio::sync::oneshot;

use super::RequestContext;
use crate::group::CoordinatorError;
use crate::handlers::errors::{coordinator_error_code, txn_error_code, txn_write_error_code};
use crate::log::VerificationGuard;
use crate::model::{ProducerEpoch, ProducerId, TopicPartition};
use crate::protocol::record_batch::BatchHeader;
use crate::replication::Partition;
use crate::txn::verification::TxnToVerify;
use crate::txn::{TxnRequest, TxnResponse};

/// The broker config that turns verification on (Kafka's name and default).
pub(super) const ENABLE_KEY: &str = "transaction.partition.verification.enable";

/// Whether this broker verifies transactions now (a dynamic broker config).
pub(super) fn enabled(ctx: &RequestContext, image: &crate::controller::MetadataImage) -> bool {
    match image.broker_configs.get(ENABLE_KEY) {
        Some(v) => v.eq_ignore_ascii_case("true"),
        None => ctx.apis.metadata.static_node_config().get_bool(ENABLE_KEY),
    }
}

/// The transaction whose batches a partition's records carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProducerTxn {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Transaction version 2 (Produce v12+, TxnOffsetCommit v5+): the producer never adds
    /// partitions itself, so the leader adds the partition to the transaction rather than
    /// only verifying it, whether or not verification is switched on (Kafka's
    /// `addPartition` operation).
    pub add: bool,
}

/// The transaction `records` belong to, if their first batch is a transactional data batch;
/// `add` as [`ProducerTxn::add`].
pub(super) fn producer_txn(
    transactional_id: Option<&str>,
    records: &bytes::Bytes,
    add: bool,
) -> Option<ProducerTxn> {
    let h = BatchHeader::parse(records).ok()?;
    if !h.is_transactional() || h.is_control() || h.producer_id < 0 {
        return None;
    }
    Some(ProducerTxn {
        transactional_id: transactional_id?.to_string(),
        producer_id: h.producer_id,
        producer_epoch: h.producer_epoch,
        add,
    })
}

/// What the producer is told for the coordinator's answer `code` about its partition (Kafka's
/// `ReplicaManager` and `AddPartitionsToTxnManager` translations). Produce v11+ knows
/// TRANSACTION_ABORTABLE; older versions get INVALID_TXN_STATE. Errors a retry may cure
/// become NOT_ENOUGH_REPLICAS, which every producer retries without refreshing metadata.
pub(super) fn produce_error(code: i16, produce_version: i16) -> i16 {
    let retriable = [
        E::ConcurrentTransactions.code(),
        E::NetworkException.code(),
        E::CoordinatorLoadInProgress.code(),
        E::CoordinatorNotAvailable.code(),
        E::NotCoordinator.code(),
    ];
    if code == 0 {
        0
    } else if code == E::ProducerFenced.code() {
        E::InvalidProducerEpoch.code()
    } else if code == E::TransactionAbortable.code() && produce_version <= 10 {
        E::InvalidTxnState.code()
    } else if code == E::ClusterAuthorizationFailed.code() {
        // The coordinator refused this broker, not the producer.
        E::InvalidTxnState.code()
    } else if retriable.contains(&code) {
        E::NotEnoughReplicas.code()
    } else {
        code
    }
}

/// What a TxnOffsetCommit is told for the coordinator's answer `code` about the group's offsets
/// partition (Kafka's group coordinator, `maybeConvertOffsetCommitError`): TxnOffsetCommit v4+
/// knows TRANSACTION_ABORTABLE; a network failure becomes COORDINATOR_LOAD_IN_PROGRESS, which
/// clients retry without looking the coordinator up again.
pub(super) fn offset_commit_error(code: i16, version: i16) -> i16 {
    if code == E::ProducerFenced.code() {
        E::InvalidProducerEpoch.code()
    } else if (code == E::TransactionAbortable.code() && version < 4)
        // The coordinator refused this broker, not the producer.
        || code == E::ClusterAuthorizationFailed.code()
    {
        E::InvalidTxnState.code()
    } else if code == E::NetworkException.code() {
        E::CoordinatorLoadInProgress.code()
    } else {
        code
    }
}

/// Verifies, before a TxnOffsetCommit is written, that the group's offsets `partition` is in
/// the producer's ongoing transaction (AddOffsetsToTxn put it there): the guard to write
/// with, or the code to answer. Asked once per transaction, as for produce.
pub(super) async fn verify_offsets(
    ctx: &RequestContext,
    partition: &Partition,
    txn: &ProducerTxn,
) -> Result<VerificationGuard, i16> {
    let (pid, epoch) = (
        ProducerId(txn.producer_id),
        ProducerEpoch(txn.producer_epoch),
    );
    let Some(guard) = partition.log().start_transaction_verification(pid, epoch) else {
        return Ok(VerificationGuard::SENTINEL);
    };
    let (code, remote) = ask(ctx, txn, &partition.tp).await;
    let code = offset_commit_error(code, ctx.version());
    count(ctx, remote, code);
    if code == 0 {
        Ok(guard)
    } else {
        Err(code)
    }
}

/// Counts a verification's answer in `strata_txn_verifications_total`.
fn count(ctx: &RequestContext, remote: bool, code: i16) {
    let result = match code {
        0 => "verified",
        c if c == E::InvalidTxnState.code() || c == E::TransactionAbortable.code() => "refused",
        c if c == E::NotEnoughReplicas.code()
            || c == E::ConcurrentTransactions.code()
            || c == E::CoordinatorLoadInProgress.code()
            || c == E::CoordinatorNotAvailable.code()
            || c == E::NotCoordinator.code() =>
        {
            "retriable"
        }
        _ => "error",
    };
    let coordinator = if remote { "remote" } else { "local" };
    ctx.apis
        .txns
        .metrics()
        .verifications
        .with_label_values(&[coordinator, result])
        .inc();
}

/// The message that goes with a refusal (Produce v8+).
pub(super) fn refusal_message(code: i16, tp: &TopicPartition) -> String {
    if code == E::InvalidTxnState.code() || code == E::TransactionAbortable.code() {
        format!("partition {tp} was not added to the transaction")
    } else {
        format!(
            "unable to verify that partition {tp} was added to the transaction (error code {code})"
        )
    }
}

type Tail = Shared<oneshot::Receiver<()>>;
/// Per partition and producer: the waiting batch's ticket id and its completion.
type Tails = Arc<Mutex<HashMap<(TopicPartition, i64), (u64, Tail)>>>;

/// Per partition and producer, the last batch waiting for its verification: the next one of
/// that producer on that partition waits until it is appended or refused. Entries exist only
/// while a batch waits, so the map is bounded by the requests in flight.
#[derive(Debug, Clone, Default)]
pub struct PendingVerifications {
    // Short sections only (look up, insert or remove a tail); never held across `.await`.
    tails: Tails,
}

static LAST_TICKET: AtomicU64 = AtomicU64::new(0);

/// A waiting batch's place: dropped once it is appended or refused, which lets the next batch
/// of its producer on its partition go.
pub(super) struct Ticket {
    tails: Tails,
    key: (TopicPartition, i64),
    id: u64,
    _done: oneshot::Sender<()>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut tails) = self.tails.lock() {
            if tails.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
                tails.remove(&self.key);
            }
        }
    }
}

impl PendingVerifications {
    /// Whether a batch of `producer_id` on `tp` is waiting.
    fn waiting(&self, tp: &TopicPartition, producer_id: i64) -> bool {
        self.tails
            .lock()
            .is_ok_and(|t| t.contains_key(&(tp.clone(), producer_id)))
    }

    /// Queues a batch: the batch to wait for, if any, and this one's ticket.
    fn push(&self, tp: &TopicPartition, producer_id: i64) -> (Option<Tail>, Ticket) {
        let (tx, rx) = oneshot::channel();
        let id = LAST_TICKET.fetch_add(1, Ordering::Relaxed) + 1;
        let key = (tp.clone(), producer_id);
        let prev = match self.tails.lock() {
            Ok(mut tails) => tails.insert(key.clone(), (id, rx.shared())).map(|(_, t)| t),
            Err(_) => None,
        };
        let ticket = Ticket {
            tails: self.tails.clone(),
            key,
            id,
            _done: tx,
        };
        (prev, ticket)
    }
}

/// How a partition's records proceed.
pub(super) enum Start {
    /// Append now, with this verification argument for the log.
    Append(Option<VerificationGuard>),
    /// Ask the coordinator first (after the producer's batches waiting before it).
    Verify(Deferred),
}

/// A batch that waits for its verification.
pub(super) struct Deferred {
    txn: ProducerTxn,
    prev: Option<Tail>,
    ticket: Ticket,
}

/// Decides, in the request's ordered part, whether `partition`'s records can be appended now.
pub(super) fn start(
    pending: &PendingVerifications,
    enabled: bool,
    partition: &Partition,
    txn: Option<ProducerTxn>,
) -> Start {
    let Some(txn) = txn.filter(|t| (enabled || t.add) && partition.is_leader()) else {
        return Start::Append(None);
    };
    if !pending.waiting(&partition.tp, txn.producer_id) {
        let (pid, epoch) = (
            ProducerId(txn.producer_id),
            ProducerEpoch(txn.producer_epoch),
        );
        if partition
            .log()
            .start_transaction_verification(pid, epoch)
            .is_none()
        {
            // The transaction is open here: the log still checks that at the append.
            return Start::Append(Some(VerificationGuard::SENTINEL));
        }
    }
    let (prev, ticket) = pending.push(&partition.tp, txn.producer_id);
    Start::Verify(Deferred { txn, prev, ticket })
}

impl Deferred {
    /// Waits for the batches before it, then for the coordinator's answer: the guard to append
    /// with, or the code to refuse with. The ticket must be held until the append is done.
    pub(super) async fn verify(
        self,
        ctx: &RequestContext,
        partition: &Partition,
    ) -> (Result<VerificationGuard, i16>, Ticket) {
        if let Some(prev) = self.prev {
            let _ = prev.await;
        }
        let (pid, epoch) = (
            ProducerId(self.txn.producer_id),
            ProducerEpoch(self.txn.producer_epoch),
        );
        // A batch before it may have opened the transaction meanwhile.
        let Some(guard) = partition.log().start_transaction_verification(pid, epoch) else {
            return (Ok(VerificationGuard::SENTINEL), self.ticket);
        };
        let (code, remote) = ask(ctx, &self.txn, &partition.tp).await;
        let code = produce_error(code, ctx.version());
        count(ctx, remote, code);
        if code != 0 {
            tracing::debug!(partition = %partition.tp, transactional_id = %self.txn.transactional_id, code, "transactional batch refused by its verification");
        }
        (if code == 0 { Ok(guard) } else { Err(code) }, self.ticket)
    }
}

/// The coordinator's code for `tp` in `txn` (0: in the ongoing transaction), and whether the
/// coordinator is another broker; the wait is timed in `strata_txn_verification_seconds`.
async fn ask(ctx: &RequestContext, txn: &ProducerTxn, tp: &TopicPartition) -> (i16, bool) {
    let started = std::time::Instant::now();
    let (code, remote) = ask_coordinator(ctx, txn, tp).await;
    let coordinator = if remote { "remote" } else { "local" };
    ctx.apis
        .txns
        .metrics()
        .verification_seconds
        .with_label_values(&[coordinator])
        .observe(started.elapsed().as_secs_f64());
    (code, remote)
}

async fn ask_coordinator(
    ctx: &RequestContext,
    txn: &ProducerTxn,
    tp: &TopicPartition,
) -> (i16, bool) {
    let request = TxnRequest::AddPartitions {
        transactional_id: txn.transactional_id.clone(),
        producer_id: txn.producer_id,
        producer_epoch: txn.producer_epoch,
        partitions: vec![tp.clone()],
        verify_only: !txn.add,
        client_version: if txn.add { crate::txn::TV2 } else { 0 },
    };
    let txns = &ctx.apis.txns;
    let local = match txns.call(&txn.transactional_id, request) {
        Ok(rx) => match rx.await {
            Ok(Ok(TxnResponse::Verify(Ok(inside)))) => {
                if inside.iter().all(|(_, ok)| *ok) {
                    0
                } else {
                    E::TransactionAbortable.code()
                }
            }
            Ok(Ok(TxnResponse::Verify(Err(e)) | TxnResponse::AddPartitions(Err(e)))) => {
                txn_error_code(&e, true)
            }
            Ok(Ok(TxnResponse::AddPartitions(Ok(())))) => 0,
            Ok(Ok(_)) => E::UnknownServerError.code(),
            Ok(Err(e)) => txn_write_error_code(&e),
            Err(_) => E::NotCoordinator.code(),
        },
        Err(CoordinatorError::NotCoordinator) => return (remote(ctx, txn, tp).await, true),
        Err(e) => coordinator_error_code(&e),
    };
    (local, false)
}

/// [`ask`] when the coordinator is not here: through `txn::verification`.
async fn remote(ctx: &RequestContext, txn: &ProducerTxn, tp: &TopicPartition) -> i16 {
    let txns = &ctx.apis.txns;
    match txns.coordinator_of(&txn.transactional_id) {
        Ok(coordinator) => {
            let question = TxnToVerify {
                transactional_id: txn.transactional_id.clone(),
                producer_id: txn.producer_id,
                producer_epoch: txn.producer_epoch,
                partitions: vec![tp.clone()],
                verify_only: !txn.add,
            };
            let answer = txns
                .verifier()
                .verify(coordinator.broker_id, question)
                .await;
            answer
                .into_iter()
                .find(|(p, _)| p == tp)
                .map_or(E::NetworkException.code(), |(_, c)| c)
        }
        Err(e) => coordinator_error_code(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_answers_become_kafkas_produce_errors() {
        let abortable = E::TransactionAbortable.code();
        assert_eq!(produce_error(0, 11), 0);
        // Outside the transaction: v11+ is told it can abort, older producers INVALID_TXN_STATE.
        assert_eq!(produce_error(abortable, 11), abortable);
        assert_eq!(produce_error(abortable, 10), E::InvalidTxnState.code());
        assert_eq!(
            produce_error(E::InvalidTxnState.code(), 9),
            E::InvalidTxnState.code()
        );
        assert_eq!(
            produce_error(E::ProducerFenced.code(), 9),
            E::InvalidProducerEpoch.code()
        );
        assert_eq!(
            produce_error(E::ClusterAuthorizationFailed.code(), 9),
            E::InvalidTxnState.code()
        );
        for retriable in [
            E::ConcurrentTransactions,
            E::NetworkException,
            E::CoordinatorLoadInProgress,
            E::CoordinatorNotAvailable,
            E::NotCoordinator,
        ] {
            assert_eq!(
                produce_error(retriable.code(), 9),
                E::NotEnoughReplicas.code(),
                "{retriable:?}"
            );
        }
        assert_eq!(
            produce_error(E::InvalidProducerIdMapping.code(), 9),
            E::InvalidProducerIdMapping.code()
        );
    }

    #[test]
    fn coordinator_answers_become_kafkas_txn_offset_commit_errors() {
        let abortable = E::TransactionAbortable.code();
        assert_eq!(offset_commit_error(0, 3), 0);
        assert_eq!(offset_commit_error(abortable, 4), abortable);
        assert_eq!(offset_commit_error(abortable, 3), E::InvalidTxnState.code());
        assert_eq!(
            offset_commit_error(E::ProducerFenced.code(), 3),
            E::InvalidProducerEpoch.code()
        );
        assert_eq!(
            offset_commit_error(E::NetworkException.code(), 3),
            E::CoordinatorLoadInProgress.code()
        );
        // Unlike produce, the coordinator's retriable errors reach the client as they are.
        assert_eq!(
            offset_commit_error(E::ConcurrentTransactions.code(), 3),
            E::ConcurrentTransactions.code()
        );
    }

    #[tokio::test]
    async fn a_producers_batches_wait_in_arrival_order_and_the_map_empties() {
        let pending = PendingVerifications::default();
        let tp = TopicPartition::new("t", 0);
        assert!(!pending.waiting(&tp, 7));
        let (prev1, t1) = pending.push(&tp, 7);
        assert!(prev1.is_none());
        let (prev2, t2) = pending.push(&tp, 7);
        let prev2 = prev2.expect("the second waits for the first");
        // Another producer on the same partition does not wait.
        let (other, t3) = pending.push(&tp, 8);
        assert!(other.is_none());
        assert!(prev2.clone().now_or_never().is_none());
        drop(t1);
        assert!(prev2.now_or_never().is_some());
        // The second is still the tail: the entry stays until it is done.
        assert!(pending.waiting(&tp, 7));
        drop(t2);
        drop(t3);
        assert!(!pending.waiting(&tp, 7));
        assert!(!pending.waiting(&tp, 8));
    }
}
