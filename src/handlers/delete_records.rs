//! DeleteRecords: moves a partition's log start offset forward.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::model::{LeaderEpoch, Offset, TopicPartition};
use crate::protocol::errors::{partition_error_code, unknown_topic_or_partition};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// An offset of -1 means "up to the high watermark".
const TO_HIGH_WATERMARK: i64 = -1;

pub fn handle(ctx: RequestContext, req: DeleteRecordsRequest) -> Reply {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let r = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index).with_low_watermark(-1);
                    let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                    let Some(partition) = ctx.broker.replicas.get(&tp) else {
                        return r.with_error_code(unknown_topic_or_partition());
                    };
                    if let Err(e) = partition.check_leader(LeaderEpoch::UNKNOWN) {
                        return r.with_error_code(partition_error_code(&e));
                    }
                    let hw = partition.high_watermark();
                    let target = if p.offset == TO_HIGH_WATERMARK { hw } else { Offset(p.offset) };
                    if target.0 < 0 || target > hw {
                        return r.with_error_code(ResponseError::OffsetOutOfRange.code());
                    }
                    match partition.log().delete_records(target) {
                        Ok(low) => r.with_low_watermark(low.0),
                        Err(e) => r.with_error_code(crate::protocol::errors::log_error_code(&e)),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    Reply::Now(ResponseKind::DeleteRecords(DeleteRecordsResponse::default().with_topics(topics)))
}
