//! OffsetCommit: store a group's consumed positions (also from consumers outside any group,
//! generation -1), written to `__consumer_offsets` with acks=all before the response.

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::group_call::call;
use super::{Reply, RequestContext};
use crate::group::{GroupRequest, GroupResponse};

pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 9 };

pub fn handle(ctx: RequestContext, req: OffsetCommitRequest) -> Reply {
    let group = req.group_id.0.to_string();
    let shape: Vec<(kafka_protocol::messages::TopicName, Vec<i32>)> =
        req.topics.iter().map(|t| (t.name.clone(), t.partitions.iter().map(|p| p.partition_index).collect())).collect();
    call(&ctx, &group, GroupRequest::Commit { req }, move |r, code| {
        ResponseKind::OffsetCommit(match r {
            Some(GroupResponse::Commit(resp)) => resp,
            _ => OffsetCommitResponse::default().with_topics(
                shape
                    .iter()
                    .map(|(name, parts)| {
                        OffsetCommitResponseTopic::default().with_name(name.clone()).with_partitions(
                            parts.iter().map(|p| OffsetCommitResponsePartition::default().with_partition_index(*p).with_error_code(code)).collect(),
                        )
                    })
                    .collect(),
            ),
        })
    })
}
