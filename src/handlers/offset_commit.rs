//! OffsetCommit: store a group's consumed positions (also from consumers outside any group,
//! generation -1), written to `__consumer_offsets` with acks=all before the response.
//! Partitions the metadata image does not know get UNKNOWN_TOPIC_OR_PARTITION, as in Kafka.

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, ResponseKind, TopicName};
use kafka_protocol::protocol::VersionRange;

use super::group_call::call;
use super::{Reply, RequestContext};
use super::authz::TOPIC_AUTHORIZATION_FAILED;
use crate::security::acl::{AclOperation, Resource};
use crate::group::{GroupRequest, GroupResponse};
use crate::model::PartitionIndex;
use crate::handlers::errors::unknown_topic_or_partition;

pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 9 };

pub fn handle(ctx: RequestContext, mut req: OffsetCommitRequest) -> Reply {
    let group = req.group_id.0.to_string();
    let image = ctx.apis.image();
    // Authorization: READ on the group (in `call`) and on each topic.
    let group_allowed = ctx.may_list(&image, AclOperation::Read, &Resource::group(&group));
    // (topic, partition, error) in request order; error 0 = forwarded to the coordinator.
    let mut shape: Vec<(TopicName, Vec<(i32, i16)>)> = Vec::with_capacity(req.topics.len());
    for t in &mut req.topics {
        let readable = !group_allowed || ctx.authorize_in(&image, AclOperation::Read, &Resource::topic(t.name.0.as_str()));
        let known = image.topic_by_name(t.name.0.as_str()).filter(|_| readable);
        let parts = t
            .partitions
            .iter()
            .map(|p| {
                let exists = known.is_some_and(|k| k.partitions.contains_key(&PartitionIndex(p.partition_index)));
                // A refused group answers GROUP_AUTHORIZATION_FAILED for every partition (`call`).
                let code = if !group_allowed {
                    0
                } else if !readable {
                    TOPIC_AUTHORIZATION_FAILED
                } else if exists {
                    0
                } else {
                    unknown_topic_or_partition()
                };
                (p.partition_index, code)
            })
            .collect();
        t.partitions.retain(|p| known.is_some_and(|k| k.partitions.contains_key(&PartitionIndex(p.partition_index))));
        shape.push((t.name.clone(), parts));
    }
    req.topics.retain(|t| !t.partitions.is_empty());
    let version = ctx.version();
    call(&ctx, &group, AclOperation::Read, GroupRequest::Commit { version, req }, move |r, code| {
        let answered: Vec<(String, i32, i16)> = match r {
            Some(GroupResponse::Commit(resp)) => resp
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), p.partition_index, p.error_code)))
                .collect(),
            _ => Vec::new(),
        };
        let topics = shape
            .iter()
            .map(|(name, parts)| {
                OffsetCommitResponseTopic::default().with_name(name.clone()).with_partitions(
                    parts
                        .iter()
                        .map(|(p, local)| {
                            let c = if *local != 0 {
                                *local
                            } else {
                                answered.iter().find(|(t, q, _)| t == name.0.as_str() && q == p).map(|(_, _, c)| *c).unwrap_or(code)
                            };
                            OffsetCommitResponsePartition::default().with_partition_index(*p).with_error_code(c)
                        })
                        .collect(),
                )
            })
            .collect();
        ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(topics))
    })
}
