//! ListOffsets: earliest, latest, max-timestamp and by-time lookups per partition.

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, ResponseKind};
use kafka_protocol::error::ResponseError;
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::log::{EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, MAX_TIMESTAMP};
use crate::model::{LeaderEpoch, TopicPartition};
use crate::broker::Broker;
use crate::protocol::errors::{partition_error_code, remote_log_error_code, unknown_topic_or_partition};
use crate::replication::{Partition, PartitionError};

/// v8 adds "earliest local" (-4): the local log start of a tiered partition, where "earliest"
/// (-2) is the start of the whole log, remote part included. v9 adds "latest tiered" (-5): the
/// last offset held in remote storage (KIP-1005). v10 adds the request's `timeout_ms` for
/// lookups that read remote storage (KIP-1075); older versions wait
/// `remote.list.offsets.request.timeout.ms`.
pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 10 };

const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
const LATEST_TIERED_TIMESTAMP: i64 = -5;

pub fn handle(ctx: RequestContext, req: ListOffsetsRequest) -> Reply {
    let version = ctx.version();
    let timeout_ms = if version >= 10 {
        i64::from(req.timeout_ms)
    } else {
        ctx.broker.node_config().get_i64("remote.list.offsets.request.timeout.ms")
    };
    // One deadline for the whole request, as Kafka's delayed remote lookup has: partitions
    // still unanswered when it passes are REQUEST_TIMED_OUT.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(timeout_ms.max(0) as u64);
    Reply::later(async move {
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in t.partitions {
                let r = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                let Some(partition) = ctx.broker.replicas.get(&tp) else {
                    partitions.push(r.with_error_code(unknown_topic_or_partition()).with_timestamp(-1).with_offset(-1));
                    continue;
                };
                let looked_up = tokio::time::timeout_at(deadline, lookup(&ctx.broker, &partition, LeaderEpoch(p.current_leader_epoch), p.timestamp))
                    .await
                    .unwrap_or(Err(ResponseError::RequestTimedOut.code()));
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
/// wire error codes.
async fn lookup(broker: &Broker, partition: &Partition, epoch: LeaderEpoch, timestamp: i64) -> Result<(i64, i64, i32), i16> {
    let state = partition.check_leader(epoch).map_err(|e| partition_error_code(&e))?;
    let log = partition.log();
    let local = |e: crate::log::LogError| partition_error_code(&PartitionError::Log(e));
    let remote = &broker.remote;
    match timestamp {
        LATEST_TIMESTAMP => Ok((-1, partition.high_watermark().0, state.leader_epoch.0)),
        LATEST_TIERED_TIMESTAMP => {
            if !log.config().remote_storage_enable {
                return Ok((-1, -1, -1));
            }
            let highest = remote.remote_end_offset(partition).await.map_err(|e| remote_log_error_code(&e))?;
            Ok(match highest {
                Some(offset) => (-1, offset.0, log.leader_epoch_for_offset(offset).map(|e| e.0).unwrap_or(-1)),
                None => (-1, -1, -1),
            })
        }
        EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => {
            let local_start = log.log_start_offset();
            let start = if timestamp == EARLIEST_TIMESTAMP {
                remote.log_start_offset_loaded(partition).await.map_err(|e| remote_log_error_code(&e))?
            } else {
                local_start
            };
            let epoch = if start == local_start {
                log.fetch_offset_by_timestamp(EARLIEST_TIMESTAMP).map_err(local)?.and_then(|t| t.leader_epoch).map(|e| e.0).unwrap_or(-1)
            } else {
                -1
            };
            Ok((-1, start.0, epoch))
        }
        _ => {
            let ts = if timestamp == MAX_TIMESTAMP { MAX_TIMESTAMP } else { timestamp.max(0) };
            let mut found = None;
            if ts >= 0 {
                // The remote part holds the oldest records: look there first.
                found = remote.offset_for_timestamp(partition, ts).await.map_err(|e| remote_log_error_code(&e))?;
            }
            if found.is_none() {
                found = log.fetch_offset_by_timestamp(ts).map_err(local)?;
            }
            if ts == MAX_TIMESTAMP {
                // The greatest timestamp may be in the remote part; on a tie the earlier
                // (remote) record wins.
                let in_remote = remote.max_timestamp(partition).await.map_err(|e| remote_log_error_code(&e))?;
                if let Some(r) = in_remote {
                    if found.as_ref().is_none_or(|l| r.timestamp_ms >= l.timestamp_ms) {
                        found = Some(r);
                    }
                }
            }
            match found {
                // Only committed records are visible to consumers.
                Some(found) if found.offset < partition.high_watermark() => {
                    Ok((found.timestamp_ms, found.offset.0, found.leader_epoch.map(|e| e.0).unwrap_or(-1)))
                }
                _ => Ok((-1, -1, -1)),
            }
        }
    }
}
