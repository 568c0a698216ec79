//! DeleteRecords: moves a partition's log start offset forward, in the remote manifest of a
//! tiered partition too.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::TOPIC_AUTHORIZATION_FAILED;
use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use super::KafkaApis;
use crate::model::{LeaderEpoch, Offset, TopicPartition};
use crate::handlers::errors::{partition_error_code, partition_log_error_code, unknown_topic_or_partition};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// An offset of -1 means "up to the high watermark".
const TO_HIGH_WATERMARK: i64 = -1;

pub fn handle(ctx: RequestContext, req: DeleteRecordsRequest) -> Reply {
    Reply::later(async move {
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let mut partitions = Vec::with_capacity(t.partitions.len());
            // Authorization: DELETE on the topic.
            let allowed = ctx.authorize(AclOperation::Delete, &Resource::topic(t.name.0.as_str()));
            for p in t.partitions {
                let r = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index).with_low_watermark(-1);
                let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                if !allowed {
                    partitions.push(r.with_error_code(TOPIC_AUTHORIZATION_FAILED));
                    continue;
                }
                partitions.push(match delete(&ctx.apis, &tp, p.offset).await {
                    Ok(low) => r.with_low_watermark(low.0),
                    Err(code) => r.with_error_code(code),
                });
            }
            topics.push(DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions));
        }
        ResponseKind::DeleteRecords(DeleteRecordsResponse::default().with_topics(topics))
    })
}

/// Moves the log start offset of one partition; returns the new low watermark (the start of the
/// whole log, remote part included) or a wire error code.
async fn delete(apis: &KafkaApis, tp: &TopicPartition, offset: i64) -> Result<Offset, i16> {
    let Some(partition) = apis.replicas.get(tp) else {
        return Err(unknown_topic_or_partition());
    };
    partition.check_leader(LeaderEpoch::UNKNOWN).map_err(|e| partition_error_code(&e))?;
    let hw = partition.high_watermark();
    let target = if offset == TO_HIGH_WATERMARK { hw } else { Offset(offset) };
    if target.0 < 0 || target > hw {
        return Err(ResponseError::OffsetOutOfRange.code());
    }
    partition.log_view().delete_records(target).await.map_err(|e| partition_log_error_code(&e))
}
