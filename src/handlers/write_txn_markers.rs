//! WriteTxnMarkers: the transaction coordinator asks each partition leader to append the
//! marker that commits or aborts a producer's transaction. Needs CLUSTER_ACTION on the
//! cluster. Each marker is appended on each named partition this broker leads and the
//! partition is answered once the marker is committed (acks=all, as Kafka writes markers);
//! a partition led elsewhere is NOT_LEADER_OR_FOLLOWER, one unknown here
//! UNKNOWN_TOPIC_OR_PARTITION.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{ResponseKind, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::protocol::VersionRange;

use super::authz::CLUSTER_AUTHORIZATION_FAILED;
use super::errors::{partition_error_code, unknown_topic_or_partition, NONE};
use super::{Reply, RequestContext};
use crate::log::LogAppendInfo;
use crate::model::{LeaderEpoch, ProducerEpoch, ProducerId, TopicPartition};
use crate::protocol::control::{EndTransactionMarker, TransactionResult};
use crate::replication::{Partition, PartitionError};
use crate::security::acl::{AclOperation, Resource};

/// Kafka 4.1's range (v0 was removed in 4.0, KIP-896).
pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 1 };

/// How long a marker waits for its replication; Kafka's `request.timeout.ms` default, which
/// Kafka uses for markers too.
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);

type Appended = Result<(Arc<Partition>, LogAppendInfo, LeaderEpoch), i16>;
/// One marker's appends: the producer id and, per topic, each partition's outcome.
type MarkerAppends = (i64, Vec<(kafka_protocol::messages::TopicName, Vec<(i32, Appended)>)>);

pub fn handle(ctx: RequestContext, req: WriteTxnMarkersRequest) -> Reply {
    let allowed = ctx.authorize(AclOperation::ClusterAction, &Resource::cluster());
    // Appended now, in request order; the replication waits run together afterwards.
    let mut appended: Vec<MarkerAppends> = Vec::new();
    for m in req.markers {
        let marker = EndTransactionMarker {
            result: if m.transaction_result { TransactionResult::Commit } else { TransactionResult::Abort },
            coordinator_epoch: m.coordinator_epoch,
        };
        let topics = m
            .topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partition_indexes
                    .iter()
                    .map(|&index| {
                        if !allowed {
                            return (index, Err(CLUSTER_AUTHORIZATION_FAILED));
                        }
                        let tp = TopicPartition::new(t.name.0.to_string(), index);
                        let Some(partition) = ctx.apis.replicas.get(&tp) else {
                            return (index, Err(unknown_topic_or_partition()));
                        };
                        let result = partition
                            .append_txn_marker(ProducerId(m.producer_id.0), ProducerEpoch(m.producer_epoch), marker)
                            .inspect(|(info, epoch)| {
                                let result = if m.transaction_result { "commit" } else { "abort" };
                                ctx.apis.metrics.topics.txn_markers.with_label_values(&[tp.topic.as_str(), result]).inc();
                                if tp.topic == crate::group::OFFSETS_TOPIC {
                                    complete_offsets(&ctx, &partition, info, *epoch, m.producer_id.0, m.transaction_result);
                                }
                            })
                            .map(|(info, epoch)| (partition.clone(), info, epoch))
                            .map_err(|e| {
                                tracing::debug!(partition = %tp, error = %e, "transaction marker refused");
                                partition_error_code(&e)
                            });
                        (index, result)
                    })
                    .collect();
                (t.name, partitions)
            })
            .collect();
        appended.push((m.producer_id.0, topics));
    }
    // Every partition waits for its replication at once, not in turn.
    let waits: Vec<_> = appended
        .into_iter()
        .map(|(producer_id, topics)| {
            let topics: Vec<_> = topics
                .into_iter()
                .map(|(name, partitions)| {
                    let partitions: Vec<_> = partitions
                        .into_iter()
                        .map(|(index, r)| {
                            let wait = r.map(|(partition, info, epoch)| {
                                tokio::spawn(async move {
                                    let end = info.last_offset.next();
                                    match tokio::time::timeout(REPLICATION_TIMEOUT, partition.wait_committed(end, -1, epoch)).await {
                                        Ok(Ok(())) => NONE,
                                        Ok(Err(e)) => partition_error_code(&e),
                                        Err(_) => E::RequestTimedOut.code(),
                                    }
                                })
                            });
                            (index, wait)
                        })
                        .collect();
                    (name, partitions)
                })
                .collect();
            (producer_id, topics)
        })
        .collect();
    Reply::later(async move {
        let mut markers = Vec::with_capacity(waits.len());
        for (producer_id, topics) in waits {
            let mut topic_results = Vec::with_capacity(topics.len());
            for (name, partitions) in topics {
                let mut results = Vec::with_capacity(partitions.len());
                for (index, wait) in partitions {
                    let code = match wait {
                        Err(code) => code,
                        // A wait task that died is a bug, reported as an unknown server error.
                        Ok(handle) => handle.await.unwrap_or(E::UnknownServerError.code()),
                    };
                    results.push(WritableTxnMarkerPartitionResult::default().with_partition_index(index).with_error_code(code));
                }
                topic_results.push(WritableTxnMarkerTopicResult::default().with_name(name).with_partitions(results));
            }
            markers.push(
                WritableTxnMarkerResult::default()
                    .with_producer_id(kafka_protocol::messages::ProducerId(producer_id))
                    .with_topics(topic_results),
            );
        }
        ResponseKind::WriteTxnMarkers(WriteTxnMarkersResponse::default().with_markers(markers))
    })
}

/// A marker on an offsets partition ends the producer's pending transactional offsets there
/// (TxnOffsetCommit), once the marker is committed: the group coordinator is told then,
/// however long replication takes, for as long as this broker leads the partition at `epoch`
/// (a new leader's coordinator loads the marker from the log instead).
fn complete_offsets(ctx: &RequestContext, partition: &Arc<Partition>, info: &LogAppendInfo, epoch: LeaderEpoch, producer_id: i64, commit: bool) {
    let groups = ctx.apis.groups.clone();
    let partition = partition.clone();
    let (end, marker_offset) = (info.last_offset.next(), info.first_offset.0);
    tokio::spawn(async move {
        loop {
            match tokio::time::timeout(REPLICATION_TIMEOUT, partition.wait_committed(end, -1, epoch)).await {
                // Below the high watermark, whatever the ISR's size now.
                Ok(Ok(()) | Err(PartitionError::NotEnoughReplicasAfterAppend { .. })) => break,
                Ok(Err(_)) => return,
                Err(_) => continue,
            }
        }
        groups.complete_transaction(partition.tp.partition.0, producer_id, commit, marker_offset);
    });
}
