//! Writing a prepared transaction's markers on its partitions (Kafka's
//! `TransactionMarkerChannelManager`): a WriteTxnMarkers request to each partition's leader, as
//! the metadata image names it at each attempt, retried with backoff until every partition has
//! its marker; then the shard is told, and writes CompleteCommit or CompleteAbort.
//!
//! A partition whose topic was deleted needs no marker. A leader that answers the coordinator
//! is fenced (a newer coordinator epoch, or a newer producer epoch on the partition) means
//! another coordinator owns the transaction now: the job stops without completing, and that
//! coordinator resends the markers after its load.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use tokio_util::sync::CancellationToken;

use super::state::MarkerJob;
use crate::client::{InterBrokerNet, KafkaClient};
use crate::group::{GroupCoordinator, OFFSETS_TOPIC};
use crate::log::LogError;
use crate::model::{BrokerId, PartitionIndex, TopicPartition};
use crate::model::{ProducerEpoch, ProducerId as LogProducerId};
use crate::protocol::control::{EndTransactionMarker, TransactionResult};
use crate::protocol::str_bytes;
use crate::replication::{MetadataClient, PartitionError, ReplicaManager};

/// The one WriteTxnMarkers version Kafka 4.1 serves.
const WRITE_TXN_MARKERS_VERSION: i16 = 1;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What a marker job can reach: the image (partition leaders and their addresses), the
/// inter-broker network (TLS when the inter-broker listener uses it, as replica fetchers), and,
/// for partitions led here, the partitions themselves and the group coordinator (a marker on
/// an offsets partition ends the producer's pending transactional offsets there).
#[derive(Clone)]
pub struct MarkerChannel {
    pub metadata: MetadataClient,
    /// The other brokers, on the inter-broker listener (also for the partition leaders'
    /// verification questions).
    pub brokers: InterBrokerNet,
    pub replicas: Arc<ReplicaManager>,
    pub groups: Arc<GroupCoordinator>,
    pub clients: Arc<MarkerClients>,
}

/// One connection per partition leader, shared by every marker job of this broker (as Kafka's
/// marker channel keeps one per broker), so a busy coordinator does not open a connection per
/// transaction. Requests to one broker go one at a time; a failed one drops the connection.
#[derive(Default)]
pub struct MarkerClients {
    // Short sections only (look up or insert a slot); the slot's own lock is the async one
    // held across a request.
    slots: std::sync::Mutex<BTreeMap<BrokerId, Arc<tokio::sync::Mutex<Option<KafkaClient>>>>>,
}

impl MarkerClients {
    fn slot(&self, leader: BrokerId) -> Arc<tokio::sync::Mutex<Option<KafkaClient>>> {
        match self.slots.lock() {
            Ok(mut slots) => slots.entry(leader).or_default().clone(),
            // Poisoned: a slot of its own, used once.
            Err(_) => Arc::default(),
        }
    }
}

impl std::fmt::Debug for MarkerChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarkerChannel").finish_non_exhaustive()
    }
}

/// How a marker job ended.
#[derive(Debug, PartialEq, Eq)]
pub enum MarkerOutcome {
    /// Every partition has its marker (or is gone); `written` markers were written.
    Written { written: usize },
    /// Another coordinator or producer epoch owns the transaction now.
    Fenced,
    /// The shard stopped (leadership moved or shutdown).
    Cancelled,
}

/// What a leader's answer for one partition means for the job.
#[derive(Debug, PartialEq, Eq)]
enum PartitionOutcome {
    Done,
    Retry,
    Fenced,
}

fn outcome(error_code: i16) -> PartitionOutcome {
    if error_code == 0 {
        return PartitionOutcome::Done;
    }
    if error_code == E::InvalidProducerEpoch.code()
        || error_code == E::TransactionCoordinatorFenced.code()
        || error_code == E::ProducerFenced.code()
    {
        return PartitionOutcome::Fenced;
    }
    // Everything else (not the leader, the topic unknown to that broker yet, not enough
    // replicas, a storage error) may pass: retry against the leader the image names then.
    PartitionOutcome::Retry
}

/// Writes the markers of `job` with `coordinator_epoch`, retrying until done or cancelled.
pub async fn write_markers(
    channel: &MarkerChannel,
    job: &MarkerJob,
    coordinator_epoch: i32,
    cancel: &CancellationToken,
) -> MarkerOutcome {
    let mut pending: BTreeSet<TopicPartition> = job.partitions.iter().cloned().collect();
    let mut written = 0usize;
    let mut backoff = BACKOFF_MIN;
    let mut warned: BTreeSet<TopicPartition> = BTreeSet::new();
    loop {
        if cancel.is_cancelled() {
            return MarkerOutcome::Cancelled;
        }
        let image = channel.metadata.image();
        let mut by_leader: BTreeMap<BrokerId, (String, Vec<TopicPartition>)> = BTreeMap::new();
        pending.retain(|tp| {
            let Some(topic) = image.topic_by_name(&tp.topic) else {
                return false;
            };
            let Some(reg) = topic.partitions.get(&PartitionIndex(tp.partition.0)) else {
                return false;
            };
            if let Some(b) = image.brokers.get(&reg.leader).filter(|b| !b.fenced) {
                by_leader
                    .entry(b.broker_id)
                    .or_insert_with(|| (format!("{}:{}", b.host, b.port), Vec::new()))
                    .1
                    .push(tp.clone());
            }
            true
        });
        if pending.is_empty() {
            return MarkerOutcome::Written { written };
        }
        // Partitions led here are written in process; the others by their leader.
        let local: Vec<TopicPartition> = pending
            .iter()
            .filter(|tp| channel.replicas.get(tp).is_some_and(|p| p.is_leader()))
            .cloned()
            .collect();
        // All at once: each waits for its own append to be replicated and synced, so written
        // one after another the markers of a transaction would cost one wait per partition.
        let results = futures::future::join_all(
            local
                .iter()
                .map(|tp| write_local(channel, job, coordinator_epoch, tp)),
        )
        .await;
        for (tp, (outcome, error)) in local.into_iter().zip(results) {
            if let Some(error) = error {
                warn_retry(&mut warned, job, &tp, &error);
            }
            match outcome {
                PartitionOutcome::Done => {
                    pending.remove(&tp);
                    written += 1;
                }
                PartitionOutcome::Fenced => {
                    tracing::info!(transactional_id = %job.transactional_id, partition = %tp, "transaction marker fenced; another coordinator or producer epoch owns the transaction");
                    return MarkerOutcome::Fenced;
                }
                PartitionOutcome::Retry => {}
            }
        }
        for (leader, (addr, partitions)) in by_leader {
            let partitions: Vec<TopicPartition> = partitions
                .into_iter()
                .filter(|tp| pending.contains(tp))
                .collect();
            if partitions.is_empty() {
                continue;
            }
            let done = match send(channel, leader, &addr, job, coordinator_epoch, &partitions).await
            {
                Ok(results) => results,
                Err(e) => {
                    for tp in &partitions {
                        warn_retry(&mut warned, job, tp, &e);
                    }
                    continue;
                }
            };
            for (tp, code) in done {
                match outcome(code) {
                    PartitionOutcome::Done => {
                        if pending.remove(&tp) {
                            written += 1;
                        }
                    }
                    PartitionOutcome::Fenced => {
                        tracing::info!(transactional_id = %job.transactional_id, partition = %tp, code, "transaction markers fenced; another coordinator owns the transaction");
                        return MarkerOutcome::Fenced;
                    }
                    PartitionOutcome::Retry => {
                        let error = format!("error code {code} from broker {leader}");
                        warn_retry(&mut warned, job, &tp, &error);
                    }
                }
            }
        }
        if pending.is_empty() {
            return MarkerOutcome::Written { written };
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = cancel.cancelled() => return MarkerOutcome::Cancelled,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Logs a marker write that will be retried: at warn the first time for a partition of this
/// transaction (a transaction stuck on one partition is what an operator must see), at debug
/// for the retries after it, so a long outage does not flood the log.
fn warn_retry(
    warned: &mut BTreeSet<TopicPartition>,
    job: &MarkerJob,
    tp: &TopicPartition,
    error: &dyn std::fmt::Display,
) {
    if warned.insert(tp.clone()) {
        tracing::warn!(transactional_id = %job.transactional_id, partition = %tp, error = %error, "transaction marker not written; retrying");
    } else {
        tracing::debug!(transactional_id = %job.transactional_id, partition = %tp, error = %error, "transaction marker not written yet; retrying");
    }
}

/// Writes the marker on a partition this broker leads, answered once replicated; with the error
/// to log when it must be retried.
async fn write_local(
    channel: &MarkerChannel,
    job: &MarkerJob,
    coordinator_epoch: i32,
    tp: &TopicPartition,
) -> (PartitionOutcome, Option<String>) {
    let Some(partition) = channel.replicas.get(tp) else {
        return (PartitionOutcome::Retry, None);
    };
    let marker = EndTransactionMarker {
        result: if job.commit {
            TransactionResult::Commit
        } else {
            TransactionResult::Abort
        },
        coordinator_epoch,
    };
    let written = tokio::time::timeout(
        REQUEST_TIMEOUT,
        partition.write_txn_marker(
            LogProducerId(job.producer_id),
            ProducerEpoch(job.producer_epoch),
            marker,
        ),
    )
    .await;
    match written {
        Ok(Ok(info)) => {
            if tp.topic == OFFSETS_TOPIC {
                let marker_offset = info.first_offset.0;
                channel.groups.complete_transaction(
                    tp.partition.0,
                    job.producer_id,
                    job.commit,
                    marker_offset,
                );
            }
            (PartitionOutcome::Done, None)
        }
        Ok(Err(PartitionError::Log(LogError::ProducerFenced { .. }))) => {
            (PartitionOutcome::Fenced, None)
        }
        Ok(Err(e)) => (PartitionOutcome::Retry, Some(e.to_string())),
        Err(_) => (
            PartitionOutcome::Retry,
            Some("no answer within the request timeout".to_string()),
        ),
    }
}

async fn send(
    channel: &MarkerChannel,
    leader: BrokerId,
    addr: &str,
    job: &MarkerJob,
    coordinator_epoch: i32,
    partitions: &[TopicPartition],
) -> Result<Vec<(TopicPartition, i16)>, crate::client::ClientError> {
    let slot = channel.clients.slot(leader);
    let mut held = slot.lock().await;
    if held.as_ref().is_none_or(|c| c.addr() != addr) {
        *held = None;
        let c = channel
            .brokers
            .connect(addr, "strata-txn-markers", CONNECT_TIMEOUT)
            .await?;
        *held = Some(c);
    }
    let Some(client) = held.as_mut() else {
        return Ok(Vec::new());
    };
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        topics.entry(&tp.topic).or_default().push(tp.partition.0);
    }
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(job.producer_id))
        .with_producer_epoch(job.producer_epoch)
        .with_transaction_result(job.commit)
        .with_coordinator_epoch(coordinator_epoch)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(str_bytes(t.to_string())))
                        .with_partition_indexes(ps)
                })
                .collect(),
        )]);
    let sent = tokio::time::timeout(
        REQUEST_TIMEOUT,
        client.send(&req, WRITE_TXN_MARKERS_VERSION),
    )
    .await
    .map_err(|_| crate::client::ClientError::Timeout {
        addr: addr.to_string(),
    })
    .and_then(|r| r);
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            // The connection is in an unknown state (a response may still come): start over.
            *held = None;
            return Err(e);
        }
    };
    Ok(resp
        .markers
        .into_iter()
        .filter(|m| m.producer_id.0 == job.producer_id)
        .flat_map(|m| m.topics)
        .flat_map(|t| {
            let topic = t.name.0.to_string();
            t.partitions.into_iter().map(move |p| {
                (
                    TopicPartition::new(topic.clone(), p.partition_index),
                    p.error_code,
                )
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_answers_map_to_retry_done_or_fenced() {
        assert_eq!(outcome(0), PartitionOutcome::Done);
        assert_eq!(
            outcome(E::NotLeaderOrFollower.code()),
            PartitionOutcome::Retry
        );
        assert_eq!(
            outcome(E::UnknownTopicOrPartition.code()),
            PartitionOutcome::Retry
        );
        assert_eq!(
            outcome(E::NotEnoughReplicas.code()),
            PartitionOutcome::Retry
        );
        assert_eq!(
            outcome(E::TransactionCoordinatorFenced.code()),
            PartitionOutcome::Fenced
        );
        assert_eq!(
            outcome(E::InvalidProducerEpoch.code()),
            PartitionOutcome::Fenced
        );
    }
}
