//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete, and their expiry after
//! `offsets.retention.minutes`.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
};

use super::{code, Decision, FetchedOffsets, Group, GroupResponse, GroupShard, GroupState, Waiter};
use crate::group::records::{OffsetAndMetadata, OffsetsRecord};
use crate::protocol::topic_name;

impl GroupShard {
    /// OffsetCommit: from a member of the current generation, or from outside any group (a
    /// "simple" commit: no member id, no generation). Memory changes now, the records follow.
    pub(super) fn commit(
        &mut self,
        d: &mut Decision,
        waiter: Waiter,
        version: i16,
        req: OffsetCommitRequest,
        now_ms: i64,
    ) {
        let admitted = match self.admit_consumer_commit(
            req.group_id.0.as_str(),
            req.member_id.as_str(),
            req.generation_id_or_member_epoch,
            version,
            now_ms,
        ) {
            Some(r) => r,
            None => self.admit_commit(&req, now_ms),
        };
        if let Err(c) = admitted {
            let resp = commit_error(&req, c);
            return d.reply(waiter, GroupResponse::Commit(resp));
        }
        let group_id = req.group_id.0.to_string();
        let max_metadata = self.config.offset_metadata_max_bytes;
        let Some(group) = self.groups.get_mut(&group_id) else {
            return;
        };
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in &req.topics {
            let topic = t.name.0.to_string();
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let metadata = p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default();
                let c = if metadata.len() > max_metadata {
                    code(E::OffsetMetadataTooLarge)
                } else {
                    let value = OffsetAndMetadata {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata,
                        commit_timestamp_ms: now_ms,
                        expire_timestamp_ms: None,
                    };
                    group
                        .offsets
                        .insert((topic.clone(), p.partition_index), value.clone());
                    d.records.push(OffsetsRecord::OffsetCommit {
                        group: group_id.clone(),
                        topic: topic.clone(),
                        partition: p.partition_index,
                        value: Some(value),
                    });
                    0
                };
                partitions.push(
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(c),
                );
            }
            topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions),
            );
        }
        d.reply(
            waiter,
            GroupResponse::Commit(OffsetCommitResponse::default().with_topics(topics)),
        );
    }

    /// Whether the committer may commit to its group: the error code for every partition if
    /// not. A simple commit to a group that does not exist creates it; a member's commit counts
    /// as a heartbeat.
    fn admit_commit(&mut self, req: &OffsetCommitRequest, now_ms: i64) -> Result<(), i16> {
        let group_id = req.group_id.0.to_string();
        let member_id = req.member_id.to_string();
        if group_id.is_empty() {
            return Err(code(E::InvalidGroupId));
        }
        let simple = req.generation_id_or_member_epoch < 0
            && member_id.is_empty()
            && req.group_instance_id.is_none();
        let Some(group) = self.groups.get_mut(&group_id) else {
            if !simple {
                return Err(code(E::IllegalGeneration));
            }
            self.groups
                .insert(group_id.clone(), Group::new(&group_id, now_ms));
            return Ok(());
        };
        if group.state == GroupState::Dead {
            return Err(code(E::CoordinatorNotAvailable));
        }
        if simple {
            if group.state != GroupState::Empty {
                // Kafka: a commit from outside a group that has members is refused.
                return Err(code(E::IllegalGeneration));
            }
            return Ok(());
        }
        if let Some(instance) = &req.group_instance_id {
            if group
                .static_members
                .get(instance.as_str())
                .is_some_and(|m| *m != member_id)
            {
                return Err(code(E::FencedInstanceId));
            }
        }
        let Some(member) = group.members.get_mut(&member_id) else {
            return Err(code(E::UnknownMemberId));
        };
        if req.generation_id_or_member_epoch != group.generation {
            return Err(code(E::IllegalGeneration));
        }
        if group.state == GroupState::CompletingRebalance {
            return Err(code(E::RebalanceInProgress));
        }
        member.last_heartbeat_ms = now_ms;
        Ok(())
    }

    /// OffsetFetch: the committed offsets of the partitions asked for, or of every partition.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> FetchedOffsets {
        let group = self.groups.get(group_id);
        let topics = match topics {
            Some(ts) => ts
                .into_iter()
                .map(|(t, ps)| {
                    let parts = ps
                        .into_iter()
                        .map(|p| {
                            (
                                p,
                                group.and_then(|g| g.offsets.get(&(t.clone(), p)).cloned()),
                            )
                        })
                        .collect();
                    (t, parts)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<OffsetAndMetadata>)>> =
                    BTreeMap::new();
                if let Some(g) = group {
                    for ((t, p), o) in &g.offsets {
                        by_topic
                            .entry(t.clone())
                            .or_default()
                            .push((*p, Some(o.clone())));
                    }
                }
                by_topic.into_iter().collect()
            }
        };
        FetchedOffsets {
            error_code: 0,
            topics,
            unstable: Vec::new(),
        }
    }

    /// OffsetDelete: removes committed offsets of topics no member is subscribed to.
    pub(super) fn delete_offsets(
        &mut self,
        d: &mut Decision,
        waiter: Waiter,
        req: OffsetDeleteRequest,
    ) {
        let group_id = req.group_id.0.to_string();
        let consumer_subscribed = self.consumer_subscribed(&group_id, &req);
        let Some(group) = self.groups.get_mut(&group_id) else {
            d.reply(
                waiter,
                GroupResponse::DeleteOffsets(
                    OffsetDeleteResponse::default().with_error_code(code(E::GroupIdNotFound)),
                ),
            );
            return;
        };
        let subscribed: Vec<String> = if let Some(t) = consumer_subscribed {
            t
        } else if group.state == GroupState::Empty {
            Vec::new()
        } else {
            match group.subscribed_topics() {
                Some(t) => t,
                None => {
                    // Members whose subscriptions are not readable: refuse, as Kafka does for
                    // non-consumer groups with members.
                    d.reply(
                        waiter,
                        GroupResponse::DeleteOffsets(
                            OffsetDeleteResponse::default().with_error_code(code(E::NonEmptyGroup)),
                        ),
                    );
                    return;
                }
            }
        };
        let mut topics = Vec::new();
        for t in &req.topics {
            let name = t.name.0.to_string();
            let busy = subscribed.contains(&name);
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let c = if busy {
                        code(E::GroupSubscribedToTopic)
                    } else {
                        if group
                            .offsets
                            .remove(&(name.clone(), p.partition_index))
                            .is_some()
                        {
                            d.records.push(OffsetsRecord::OffsetCommit {
                                group: group_id.clone(),
                                topic: name.clone(),
                                partition: p.partition_index,
                                value: None,
                            });
                        }
                        0
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(c)
                })
                .collect();
            topics.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(topic_name(name))
                    .with_partitions(parts),
            );
        }
        d.reply(
            waiter,
            GroupResponse::DeleteOffsets(OffsetDeleteResponse::default().with_topics(topics)),
        );
    }

    /// Expires offsets past `offsets.retention.minutes` (Kafka's KIP-211 rules: for a group
    /// with members nothing expires; for an empty consumer group, counted from when it became
    /// empty; for offsets committed outside any group, from the commit) and removes empty groups
    /// left without offsets. Tombstones go to the log.
    pub fn expire_offsets(&mut self, now_ms: i64) -> Decision {
        let mut d = Decision::default();
        let retention = self.config.offsets_retention_ms;
        let mut dead = Vec::new();
        let consumer_groups = &mut self.consumer_groups;
        for group in self.groups.values_mut() {
            if group.state != GroupState::Empty
                || consumer_groups
                    .get(&group.group_id)
                    .is_some_and(|c| !c.members.is_empty())
            {
                continue;
            }
            let consumer_group = group.protocol_type.is_some();
            let expired: Vec<(String, i32)> = group
                .offsets
                .iter()
                .filter(|(_, o)| match o.expire_timestamp_ms {
                    Some(t) => t <= now_ms,
                    None => {
                        let base = if consumer_group {
                            group.state_timestamp_ms
                        } else {
                            o.commit_timestamp_ms
                        };
                        base + retention <= now_ms
                    }
                })
                .map(|(k, _)| k.clone())
                .collect();
            for (t, p) in expired {
                group.offsets.remove(&(t.clone(), p));
                d.records.push(OffsetsRecord::OffsetCommit {
                    group: group.group_id.clone(),
                    topic: t,
                    partition: p,
                    value: None,
                });
            }
            if group.offsets.is_empty()
                && group.members.is_empty()
                && group.pending_members.is_empty()
            {
                dead.push(group.group_id.clone());
                match consumer_groups.remove(&group.group_id) {
                    Some(c) => d
                        .records
                        .extend(c.tombstones().into_iter().map(OffsetsRecord::Consumer)),
                    None => d.records.push(OffsetsRecord::GroupMetadata {
                        group: group.group_id.clone(),
                        value: None,
                    }),
                }
            }
        }
        for g in dead {
            self.groups.remove(&g);
        }
        d
    }
}

/// An OffsetCommit response that gives every partition of the request the same error.
fn commit_error(req: &OffsetCommitRequest, c: i16) -> OffsetCommitResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(c)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::GroupId;

    use super::*;
    use crate::group::state::{GroupConfig, GroupRequest};
    use crate::protocol::str_bytes;

    const NOW_MS: i64 = 1_000_000;

    fn commit(group: &str, member_id: &str, generation: i32) -> GroupRequest {
        GroupRequest::Commit {
            version: 9,
            req: OffsetCommitRequest::default()
                .with_group_id(GroupId(str_bytes(group)))
                .with_member_id(str_bytes(member_id))
                .with_generation_id_or_member_epoch(generation)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic_name("t".to_string()))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(42)])]),
        }
    }

    fn error_code(d: &Decision) -> i16 {
        match &d.replies[..] {
            [(_, GroupResponse::Commit(r))] => r.topics[0].partitions[0].error_code,
            other => panic!("not one OffsetCommit reply: {other:?}"),
        }
    }

    #[test]
    fn a_simple_commit_creates_the_group_and_writes_the_offset() {
        let mut s = GroupShard::new(GroupConfig::default());
        let d = s.handle(1, commit("g", "", -1), NOW_MS);
        assert_eq!(error_code(&d), 0);
        assert_eq!(d.records.len(), 1);
        assert_eq!(s.groups["g"].offsets[&("t".to_string(), 0)].offset, 42);
        let fetched = s.fetch_offsets("g", None);
        assert_eq!(fetched.topics.len(), 1);
    }

    #[test]
    fn a_member_commit_to_an_unknown_group_is_refused_and_writes_nothing() {
        let mut s = GroupShard::new(GroupConfig::default());
        let d = s.handle(1, commit("g", "m", 1), NOW_MS);
        assert_eq!(error_code(&d), E::IllegalGeneration.code());
        assert!(d.records.is_empty());
        assert!(s.groups.is_empty());

        let d = s.handle(2, commit("", "", -1), NOW_MS);
        assert_eq!(error_code(&d), E::InvalidGroupId.code());
    }

    #[test]
    fn oversized_metadata_fails_only_its_partition() {
        let mut s = GroupShard::new(GroupConfig {
            offset_metadata_max_bytes: 2,
            ..GroupConfig::default()
        });
        let GroupRequest::Commit { req, .. } = commit("g", "", -1) else {
            unreachable!()
        };
        let mut req = req;
        req.topics[0].partitions[0].committed_metadata = Some(str_bytes("too long"));
        let d = s.handle(1, GroupRequest::Commit { version: 9, req }, NOW_MS);
        assert_eq!(error_code(&d), E::OffsetMetadataTooLarge.code());
        assert!(d.records.is_empty());
    }
}
