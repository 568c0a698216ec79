//! OffsetFetch: a group's committed offsets (one group before v8, several from v8).

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;
use tokio::sync::oneshot;

use super::authz::{GROUP_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED};
use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use crate::group::state::FetchedOffsets;
use crate::group::{GroupRequest, GroupResponse};
use crate::handlers::errors::coordinator_error_code;
use crate::protocol::{str_bytes, topic_name};

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 9 };

/// A group's pending answer, and the topics it named that the principal may not DESCRIBE.
type Pending = (String, Result<oneshot::Receiver<GroupResponse>, i16>, Vec<(String, Vec<i32>)>);

pub fn handle(ctx: RequestContext, req: OffsetFetchRequest) -> Reply {
    let version = ctx.version();
    type Ask = (String, Option<Vec<(String, Vec<i32>)>>, Option<(String, i32)>);
    let asks: Vec<Ask> = if version >= 8 {
        req.groups
            .iter()
            .map(|g| {
                let topics = g.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.0.to_string(), t.partition_indexes.clone())).collect());
                // v9+: a consumer-group member names itself, and its epoch is checked.
                let member = g.member_id.as_ref().filter(|m| !m.is_empty()).map(|m| (m.to_string(), g.member_epoch));
                (g.group_id.0.to_string(), topics, member)
            })
            .collect()
    } else {
        let topics = req.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.0.to_string(), t.partition_indexes.clone())).collect());
        vec![(req.group_id.0.to_string(), topics, None)]
    };
    // KIP-447 (v7+): a read_committed consumer asks for offsets no transaction is changing.
    let require_stable = version >= 7 && req.require_stable;
    let pending: Vec<Pending> = asks
        .into_iter()
        .map(|(group_id, mut topics, member)| {
            // Authorization: DESCRIBE on the group; a topic named without DESCRIBE on it is
            // answered TOPIC_AUTHORIZATION_FAILED per partition (an all-topics fetch leaves such
            // topics out, below).
            if !ctx.authorize(AclOperation::Describe, &Resource::group(&group_id)) {
                return (group_id, Err(GROUP_AUTHORIZATION_FAILED), vec![]);
            }
            let mut refused = Vec::new();
            if let Some(named) = &mut topics {
                let (allowed, denied): (Vec<_>, Vec<_>) =
                    named.drain(..).partition(|(t, _)| ctx.authorize(AclOperation::Describe, &Resource::topic(t)));
                *named = allowed;
                refused = denied;
            }
            let rx = ctx
                .apis
                .groups
                .call(&group_id, GroupRequest::FetchOffsets { group_id: group_id.clone(), topics, member, require_stable })
                .map_err(|e| coordinator_error_code(&e));
            (group_id, rx, refused)
        })
        .collect();
    Reply::later(async move {
        let mut results = Vec::with_capacity(pending.len());
        for (group_id, rx, refused) in pending {
            let fetched = match rx {
                Err(code) => FetchedOffsets { error_code: code, topics: vec![], unstable: vec![] },
                Ok(rx) => match rx.await {
                    Ok(GroupResponse::FetchOffsets(f)) => f,
                    _ => FetchedOffsets { error_code: E::NotCoordinator.code(), topics: vec![], unstable: vec![] },
                },
            };
            // Offsets of topics the principal may not DESCRIBE are left out of an all-topics fetch.
            let image = ctx.apis.image();
            let mut fetched = fetched;
            fetched.topics.retain(|(t, _)| ctx.may_list(&image, AclOperation::Describe, &Resource::topic(t)));
            results.push((group_id, fetched, refused));
        }
        ResponseKind::OffsetFetch(build(version, results))
    })
}

fn build(version: i16, results: Vec<(String, FetchedOffsets, Vec<(String, Vec<i32>)>)>) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = results
            .into_iter()
            .map(|(group_id, f, refused)| {
                let unstable = f.unstable;
                let mut topics: Vec<OffsetFetchResponseTopics> = f
                    .topics
                    .into_iter()
                    .map(|(t, parts)| {
                        let name = t.clone();
                        OffsetFetchResponseTopics::default().with_name(topic_name(t)).with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, o)| {
                                    let pending = unstable.iter().any(|(ut, up)| *ut == name && *up == p);
                                    let o = if pending { None } else { o };
                                    let (offset, epoch, meta) = o.map(|o| (o.offset, o.leader_epoch, o.metadata)).unwrap_or((-1, -1, String::new()));
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(str_bytes(meta)))
                                        .with_error_code(if pending { E::UnstableOffsetCommit.code() } else { 0 })
                                })
                                .collect(),
                        )
                    })
                    .collect();
                topics.extend(refused.into_iter().map(|(t, parts)| {
                    let refuse = |p| {
                        OffsetFetchResponsePartitions::default()
                            .with_partition_index(p)
                            .with_committed_offset(-1)
                            .with_committed_leader_epoch(-1)
                            .with_metadata(Some(str_bytes("")))
                            .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                    };
                    OffsetFetchResponseTopics::default().with_name(topic_name(t)).with_partitions(parts.into_iter().map(refuse).collect())
                }));
                OffsetFetchResponseGroup::default().with_group_id(GroupId(str_bytes(group_id))).with_error_code(f.error_code).with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let Some((_, f, refused)) = results.into_iter().next() else {
        return OffsetFetchResponse::default();
    };
    let code = f.error_code;
    let unstable = f.unstable;
    let mut topics: Vec<OffsetFetchResponseTopic> = f
        .topics
        .into_iter()
        .map(|(t, parts)| {
            let name = t.clone();
            OffsetFetchResponseTopic::default().with_name(topic_name(t)).with_partitions(
                parts
                    .into_iter()
                    .map(|(p, o)| {
                        let pending = unstable.iter().any(|(ut, up)| *ut == name && *up == p);
                        let o = if pending { None } else { o };
                        let (offset, epoch, meta) = o.map(|o| (o.offset, o.leader_epoch, o.metadata)).unwrap_or((-1, -1, String::new()));
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(epoch)
                            .with_metadata(Some(str_bytes(meta)))
                            // Before v2 there is no top-level error; it goes on each partition.
                            .with_error_code(if pending { E::UnstableOffsetCommit.code() } else if version < 2 { code } else { 0 })
                    })
                    .collect(),
            )
        })
        .collect();
    topics.extend(refused.into_iter().map(|(t, parts)| {
        let refuse = |p| {
            OffsetFetchResponsePartition::default()
                .with_partition_index(p)
                .with_committed_offset(-1)
                .with_committed_leader_epoch(-1)
                .with_metadata(Some(str_bytes("")))
                .with_error_code(TOPIC_AUTHORIZATION_FAILED)
        };
        OffsetFetchResponseTopic::default().with_name(topic_name(t)).with_partitions(parts.into_iter().map(refuse).collect())
    }));
    let resp = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        resp.with_error_code(code)
    } else {
        resp
    }
}
