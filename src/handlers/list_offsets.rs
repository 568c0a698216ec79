//! ListOffsets: earliest, latest, max-timestamp and by-time lookups per partition.

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::log::{EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, MAX_TIMESTAMP};
use crate::model::{LeaderEpoch, TopicPartition};
use crate::protocol::errors::{partition_error_code, unknown_topic_or_partition};
use crate::replication::{Partition, PartitionError};

/// v8 adds "earliest local" (-4); the log here is all local until tiered storage.
pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 8 };

const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;

pub fn handle(ctx: RequestContext, req: ListOffsetsRequest) -> Reply {
    let version = ctx.version();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let r = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                    let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                    let Some(partition) = ctx.broker.replicas.get(&tp) else {
                        return r.with_error_code(unknown_topic_or_partition()).with_timestamp(-1).with_offset(-1);
                    };
                    match lookup(&partition, LeaderEpoch(p.current_leader_epoch), p.timestamp) {
                        Ok((timestamp, offset, epoch)) => {
                            let r = r.with_timestamp(timestamp).with_offset(offset);
                            if version >= 4 { r.with_leader_epoch(epoch) } else { r }
                        }
                        Err(e) => r.with_error_code(partition_error_code(&e)).with_timestamp(-1).with_offset(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    Reply::Now(ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics)))
}

/// (timestamp, offset, leader epoch) for one partition; -1s when nothing matches.
fn lookup(partition: &Partition, epoch: LeaderEpoch, timestamp: i64) -> Result<(i64, i64, i32), PartitionError> {
    let state = partition.check_leader(epoch)?;
    let log = partition.log();
    match timestamp {
        LATEST_TIMESTAMP => Ok((-1, partition.high_watermark().0, state.leader_epoch.0)),
        EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => {
            let start = log.log_start_offset();
            let epoch = log.fetch_offset_by_timestamp(EARLIEST_TIMESTAMP)?.and_then(|t| t.leader_epoch).map(|e| e.0).unwrap_or(-1);
            Ok((-1, start.0, epoch))
        }
        _ => {
            let ts = if timestamp == MAX_TIMESTAMP { MAX_TIMESTAMP } else { timestamp.max(0) };
            match log.fetch_offset_by_timestamp(ts)? {
                // Only committed records are visible to consumers.
                Some(found) if found.offset < partition.high_watermark() => {
                    Ok((found.timestamp_ms, found.offset.0, found.leader_epoch.map(|e| e.0).unwrap_or(-1)))
                }
                _ => Ok((-1, -1, -1)),
            }
        }
    }
}
