//! ListOffsets: earliest, latest, max-timestamp and by-time lookups per partition.

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, ResponseKind};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::protocol::VersionRange;
use tokio::sync::Semaphore;

use super::authz::TOPIC_AUTHORIZATION_FAILED;
use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use crate::log::LATEST_TIMESTAMP;
use crate::model::{LeaderEpoch, TopicPartition};
use crate::handlers::errors::{partition_error_code, partition_log_error_code, unknown_topic_or_partition};
use crate::replication::Partition;

/// v8 adds "earliest local" (-4): the local log start of a tiered partition, where "earliest"
/// (-2) is the start of the whole log, remote part included. v9 adds "latest tiered" (-5): the
/// last offset held in remote storage (KIP-1005). v10 adds the request's `timeout_ms` for
/// lookups that read remote storage (KIP-1075); older versions wait
/// `remote.list.offsets.request.timeout.ms`.
pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 10 };

/// Lookups of one request in flight at once.
const CONCURRENT_LOOKUPS: usize = 16;

pub fn handle(ctx: RequestContext, req: ListOffsetsRequest) -> Reply {
    let version = ctx.version();
    let timeout_ms = if version >= 10 {
        i64::from(req.timeout_ms)
    } else {
        ctx.apis.node_config().get_i64("remote.list.offsets.request.timeout.ms")
    };
    // One deadline for the whole request, as Kafka's delayed remote lookup has: partitions
    // still unanswered when it passes are REQUEST_TIMED_OUT.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(timeout_ms.max(0) as u64);
    // Authorization: DESCRIBE on each topic.
    let image = ctx.apis.image();
    // READ_COMMITTED (1) sees up to the last stable offset, as its fetches do.
    let read_committed = req.isolation_level == 1;
    let allowed: Vec<bool> = req.topics.iter().map(|t| ctx.authorize_in(&image, AclOperation::Describe, &Resource::topic(t.name.0.as_str()))).collect();
    Reply::later(async move {
        // The lookups run at once (a remote one may read a manifest or an index from the
        // store), at most `CONCURRENT_LOOKUPS` of this request at a time; answers keep the
        // request's order.
        let permits = Arc::new(Semaphore::new(CONCURRENT_LOOKUPS));
        let lookups: Vec<Vec<_>> = req
            .topics
            .iter()
            .zip(&allowed)
            .map(|(t, allowed)| {
                t.partitions
                    .iter()
                    .map(|p| {
                        let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                        let partition = ctx.apis.replicas.get(&tp).filter(|_| *allowed)?;
                        let (permits, epoch, timestamp) = (permits.clone(), LeaderEpoch(p.current_leader_epoch), p.timestamp);
                        Some(tokio::spawn(async move {
                            tokio::time::timeout_at(deadline, async {
                                let _permit = permits.acquire_owned().await;
                                lookup(&partition, epoch, timestamp, read_committed).await
                            })
                            .await
                            .unwrap_or(Err(ResponseError::RequestTimedOut.code()))
                        }))
                    })
                    .collect()
            })
            .collect();
        let mut topics = Vec::with_capacity(req.topics.len());
        for ((t, handles), allowed) in req.topics.into_iter().zip(lookups).zip(allowed) {
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for (p, handle) in t.partitions.into_iter().zip(handles) {
                let r = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                if !allowed {
                    partitions.push(r.with_error_code(TOPIC_AUTHORIZATION_FAILED).with_timestamp(-1).with_offset(-1));
                    continue;
                }
                let Some(handle) = handle else {
                    partitions.push(r.with_error_code(unknown_topic_or_partition()).with_timestamp(-1).with_offset(-1));
                    continue;
                };
                let looked_up = handle.await.unwrap_or(Err(ResponseError::UnknownServerError.code()));
                partitions.push(match looked_up {
                    Ok((timestamp, offset, epoch)) => {
                        let r = r.with_timestamp(timestamp).with_offset(offset);
                        if version >= 4 { r.with_leader_epoch(epoch) } else { r }
                    }
                    Err(e) => r.with_error_code(e).with_timestamp(-1).with_offset(-1),
                });
            }
            topics.push(ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions));
        }
        ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics))
    })
}

/// (timestamp, offset, leader epoch) for one partition; -1s when nothing matches. Errors are
/// wire error codes. "Latest" is the high watermark (read_committed: the last stable offset)
/// at the current leader epoch; every other lookup is the partition log's, bounded by the
/// same offset (only committed records are visible to consumers).
async fn lookup(partition: &Partition, epoch: LeaderEpoch, timestamp: i64, read_committed: bool) -> Result<(i64, i64, i32), i16> {
    let state = partition.check_leader(epoch).map_err(|e| partition_error_code(&e))?;
    let visible_end = if read_committed { partition.last_stable_offset() } else { partition.high_watermark() };
    if timestamp == LATEST_TIMESTAMP {
        return Ok((-1, visible_end.0, state.leader_epoch.0));
    }
    let found = partition
        .log_view()
        .fetch_offset_by_timestamp(timestamp, visible_end)
        .await
        .map_err(|e| partition_log_error_code(&e))?;
    Ok(match found {
        Some(found) => (found.timestamp_ms, found.offset.0, found.leader_epoch.map(|e| e.0).unwrap_or(-1)),
        None => (-1, -1, -1),
    })
}
