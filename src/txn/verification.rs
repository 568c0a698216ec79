//! Asking another broker's transaction coordinator whether partitions are in a producer's
//! ongoing transaction (KIP-890, Kafka's `AddPartitionsToTxnManager`): the partition leaders'
//! side of AddPartitionsToTxn v4+ with `verify_only`, or without it to add the partitions for a
//! transaction version 2 producer.
//!
//! Questions are batched per coordinator broker: while one request to a broker is in flight,
//! the questions that arrive meanwhile wait, and the next request carries them all (questions
//! of one producer's transaction from several produce requests are merged into one entry).
//! A question whose transactional id is already in the batch with another producer id or epoch
//! waits for the request after. The queue per broker is bounded ([`MAX_QUEUED`]); a full one
//! answers COORDINATOR_NOT_AVAILABLE, which the produce path turns into a retriable error.
//!
//! A coordinator on this broker is asked in process by the produce handler; this module only
//! talks to the others. The answers are the coordinator's wire codes per partition (0: in the
//! transaction); the produce handler maps them to what the producer is told.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, ProducerId, TopicName, TransactionalId};
use tokio::sync::oneshot;

use crate::client::{InterBrokerNet, KafkaClient};
use crate::model::{BrokerId, TopicPartition};
use crate::protocol::str_bytes;
use crate::replication::MetadataClient;

/// AddPartitionsToTxn v5: the version whose verification answers TRANSACTION_ABORTABLE for a
/// partition outside the transaction (v4 answers INVALID_TXN_STATE).
const VERIFY_VERSION: i16 = 5;
/// Questions waiting for one coordinator broker at most.
pub const MAX_QUEUED: usize = 10_000;
/// Transactions in one request at most.
const MAX_BATCH: usize = 1_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One producer's question: are these partitions in its ongoing transaction? Or, for a
/// transaction version 2 producer (`verify_only` false), add them to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnToVerify {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<TopicPartition>,
    pub verify_only: bool,
}

/// The coordinator's code per asked partition (0: in the transaction).
pub type Verified = Vec<(TopicPartition, i16)>;

struct Waiting {
    txn: TxnToVerify,
    reply: oneshot::Sender<Verified>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// A task is sending this broker's requests; it takes what is queued when it is done.
    sending: bool,
    /// The connection to the broker between two bursts of questions (one per coordinator
    /// broker, so the map stays as small as the cluster).
    idle: Option<KafkaClient>,
}

/// See the module documentation.
pub struct TxnVerifier {
    metadata: MetadataClient,
    brokers: InterBrokerNet,
    // Short sections only (queue or take questions); never held across `.await`.
    queues: Mutex<BTreeMap<BrokerId, Queue>>,
}

impl std::fmt::Debug for TxnVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnVerifier").finish_non_exhaustive()
    }
}

/// Every asked partition with `code`.
fn all(txn: &TxnToVerify, code: i16) -> Verified {
    txn.partitions.iter().map(|tp| (tp.clone(), code)).collect()
}

/// The transactions of one request: questions of the same producer's transaction merged, and
/// those whose transactional id is already taken by another producer id or epoch left for the
/// next request. Returns the entries and, per entry, the waiters it answers.
fn batch(waiting: Vec<Waiting>) -> (Vec<(TxnToVerify, Vec<Waiting>)>, Vec<Waiting>) {
    let mut entries: Vec<(TxnToVerify, Vec<Waiting>)> = Vec::new();
    let mut later = Vec::new();
    for w in waiting {
        let full = entries.len() >= MAX_BATCH;
        let same_id = entries
            .iter_mut()
            .find(|(t, _)| t.transactional_id == w.txn.transactional_id);
        match same_id {
            Some((t, ws))
                if t.producer_id == w.txn.producer_id
                    && t.producer_epoch == w.txn.producer_epoch
                    && t.verify_only == w.txn.verify_only =>
            {
                for tp in &w.txn.partitions {
                    if !t.partitions.contains(tp) {
                        t.partitions.push(tp.clone());
                    }
                }
                ws.push(w);
            }
            Some(_) => later.push(w),
            None if full => later.push(w),
            None => entries.push((w.txn.clone(), vec![w])),
        }
    }
    (entries, later)
}

impl TxnVerifier {
    pub fn new(metadata: MetadataClient, brokers: InterBrokerNet) -> TxnVerifier {
        TxnVerifier {
            metadata,
            brokers,
            queues: Mutex::new(BTreeMap::new()),
        }
    }

    /// Asks `coordinator` (another broker) about `txn`'s partitions.
    pub async fn verify(self: &Arc<Self>, coordinator: BrokerId, txn: TxnToVerify) -> Verified {
        let (tx, rx) = oneshot::channel();
        let start = {
            let Ok(mut queues) = self.queues.lock() else {
                return all(&txn, E::CoordinatorNotAvailable.code());
            };
            let queue = queues.entry(coordinator).or_default();
            if queue.waiting.len() >= MAX_QUEUED {
                tracing::warn!(
                    broker = coordinator.0,
                    "too many transaction verifications queued for one coordinator; refusing"
                );
                return all(&txn, E::CoordinatorNotAvailable.code());
            }
            let asked = txn.clone();
            queue.waiting.push(Waiting {
                txn: asked,
                reply: tx,
            });
            !std::mem::replace(&mut queue.sending, true)
        };
        if start {
            let verifier = self.clone();
            tokio::spawn(async move { verifier.send_all(coordinator).await });
        }
        // The sender answers every question it took; a dropped one is a network failure.
        rx.await
            .unwrap_or_else(|_| all(&txn, E::NetworkException.code()))
    }

    /// Sends `coordinator`'s queued questions, a request at a time, until none is left.
    async fn send_all(&self, coordinator: BrokerId) {
        let mut client: Option<KafkaClient> = match self.queues.lock() {
            Ok(mut queues) => queues.get_mut(&coordinator).and_then(|q| q.idle.take()),
            Err(_) => None,
        };
        loop {
            let waiting = {
                let Ok(mut queues) = self.queues.lock() else {
                    return;
                };
                let Some(queue) = queues.get_mut(&coordinator) else {
                    return;
                };
                if queue.waiting.is_empty() {
                    queue.sending = false;
                    queue.idle = client;
                    return;
                }
                std::mem::take(&mut queue.waiting)
            };
            let (entries, later) = batch(waiting);
            if !later.is_empty() {
                if let Ok(mut queues) = self.queues.lock() {
                    let queue = queues.entry(coordinator).or_default();
                    let newer = std::mem::replace(&mut queue.waiting, later);
                    queue.waiting.extend(newer);
                }
            }
            let answers = self.send(coordinator, &mut client, &entries).await;
            for ((_, waiters), answer) in entries.into_iter().zip(answers) {
                for w in waiters {
                    let verified = w
                        .txn
                        .partitions
                        .iter()
                        .map(|tp| {
                            let code = match &answer {
                                Err(code) => *code,
                                // A partition not answered for was not looked at.
                                Ok(codes) => codes
                                    .iter()
                                    .find(|(p, _)| p == tp)
                                    .map_or(E::NetworkException.code(), |(_, c)| *c),
                            };
                            (tp.clone(), code)
                        })
                        .collect();
                    let _ = w.reply.send(verified);
                }
            }
        }
    }

    /// One request with `entries`; per entry, the codes per partition or one code for all.
    async fn send(
        &self,
        coordinator: BrokerId,
        client: &mut Option<KafkaClient>,
        entries: &[(TxnToVerify, Vec<Waiting>)],
    ) -> Vec<Result<Verified, i16>> {
        let fail = |code: i16| entries.iter().map(|_| Err(code)).collect();
        let image = self.metadata.image();
        let Some(broker) = image.brokers.get(&coordinator).filter(|b| !b.fenced) else {
            return fail(E::CoordinatorNotAvailable.code());
        };
        let addr = format!("{}:{}", broker.host, broker.port);
        let req = AddPartitionsToTxnRequest::default()
            .with_transactions(entries.iter().map(|(t, _)| request_entry(t)).collect());
        // A connection kept from an earlier burst may have been closed by a coordinator that
        // restarted since: its first failure is retried once on a new one (asking again, or
        // adding a partition again, changes nothing).
        let mut kept = client.as_ref().is_some_and(|c| c.addr() == addr);
        let resp = loop {
            if client.as_ref().is_none_or(|c| c.addr() != addr) {
                *client = None;
                match self
                    .brokers
                    .connect(&addr, "strata-txn-verify", CONNECT_TIMEOUT)
                    .await
                {
                    Ok(c) => *client = Some(c),
                    Err(e) => {
                        tracing::debug!(broker = coordinator.0, error = %e, "cannot reach the transaction coordinator to verify");
                        return fail(E::NetworkException.code());
                    }
                }
            }
            let Some(c) = client.as_mut() else {
                return fail(E::NetworkException.code());
            };
            match tokio::time::timeout(REQUEST_TIMEOUT, c.send(&req, VERIFY_VERSION)).await {
                Ok(Ok(r)) => break r,
                Ok(Err(e)) => {
                    *client = None;
                    if std::mem::take(&mut kept) {
                        continue;
                    }
                    tracing::debug!(broker = coordinator.0, error = %e, "transaction verification failed");
                    return fail(E::NetworkException.code());
                }
                Err(_) => {
                    // A response may still come on this connection: start over.
                    *client = None;
                    return fail(E::NetworkException.code());
                }
            }
        };
        if resp.error_code != 0 {
            return fail(resp.error_code);
        }
        entries
            .iter()
            .map(|(t, _)| {
                let result = resp
                    .results_by_transaction
                    .iter()
                    .find(|r| r.transactional_id.0.as_str() == t.transactional_id)
                    .ok_or(E::NetworkException.code())?;
                Ok(result
                    .topic_results
                    .iter()
                    .flat_map(|topic| {
                        topic.results_by_partition.iter().map(|p| {
                            let tp =
                                TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                            (tp, p.partition_error_code)
                        })
                    })
                    .collect())
            })
            .collect()
    }
}

fn request_entry(t: &TxnToVerify) -> AddPartitionsToTxnTransaction {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in &t.partitions {
        topics.entry(&tp.topic).or_default().push(tp.partition.0);
    }
    AddPartitionsToTxnTransaction::default()
        .with_transactional_id(TransactionalId(str_bytes(t.transactional_id.clone())))
        .with_producer_id(ProducerId(t.producer_id))
        .with_producer_epoch(t.producer_epoch)
        .with_verify_only(t.verify_only)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(str_bytes(name.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(
        id: &str,
        pid: i64,
        epoch: i16,
        partitions: &[i32],
    ) -> (Waiting, oneshot::Receiver<Verified>) {
        let (tx, rx) = oneshot::channel();
        let txn = TxnToVerify {
            transactional_id: id.into(),
            producer_id: pid,
            producer_epoch: epoch,
            partitions: partitions
                .iter()
                .map(|p| TopicPartition::new("t", *p))
                .collect(),
            verify_only: true,
        };
        (Waiting { txn, reply: tx }, rx)
    }

    #[test]
    fn a_batch_merges_one_transaction_and_defers_another_producer_of_the_same_id() {
        let (a, _ra) = ask("x", 1, 0, &[0]);
        let (b, _rb) = ask("x", 1, 0, &[1, 0]);
        let (c, _rc) = ask("y", 2, 0, &[0]);
        let (d, _rd) = ask("x", 1, 1, &[2]);
        let (mut e, _re) = ask("x", 1, 0, &[3]);
        e.txn.verify_only = false;
        let (entries, later) = batch(vec![a, b, c, d, e]);
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0].0.partitions,
            vec![TopicPartition::new("t", 0), TopicPartition::new("t", 1)]
        );
        assert_eq!(entries[0].1.len(), 2);
        assert_eq!(entries[1].0.transactional_id, "y");
        // Another epoch, and an add beside a verification, go in the next request.
        assert_eq!(later.len(), 2);
        assert_eq!(later[0].txn.producer_epoch, 1);
        assert!(!later[1].txn.verify_only);
    }

    #[test]
    fn a_request_entry_groups_partitions_by_topic_and_only_verifies() {
        let t = TxnToVerify {
            transactional_id: "x".into(),
            producer_id: 5,
            producer_epoch: 2,
            partitions: vec![
                TopicPartition::new("b", 1),
                TopicPartition::new("a", 0),
                TopicPartition::new("b", 0),
            ],
            verify_only: true,
        };
        let e = request_entry(&t);
        assert!(e.verify_only);
        assert!(
            !request_entry(&TxnToVerify {
                verify_only: false,
                ..t.clone()
            })
            .verify_only
        );
        assert_eq!(e.producer_id.0, 5);
        let topics: Vec<(String, Vec<i32>)> = e
            .topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.partitions.clone()))
            .collect();
        assert_eq!(
            topics,
            vec![("a".to_string(), vec![0]), ("b".to_string(), vec![1, 0])]
        );
    }
}
