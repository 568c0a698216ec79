//! The consumer groups (KIP-848) of a shard, beside its classic groups: ConsumerGroupHeartbeat
//! and ConsumerGroupDescribe, the conversions between the two group types, and what the
//! classic requests (commits, fetches, listing, deletion) do when they meet a consumer group.
//!
//! A consumer group's committed offsets live where a classic group's do, in its [`Group`]
//! entry (which then has no members and no generation); its membership lives in the
//! [`ConsumerGroup`] of the same id. A group id is a consumer group exactly when it has one.
//!
//! Conversions (`group.consumer.migration.policy`): a classic group becomes a consumer group
//! when a consumer-protocol member joins, keeping its offsets and (see `mixed`) its members;
//! an empty consumer group becomes classic again when a JoinGroup arrives, and one left with
//! only classic members when its last consumer-protocol member goes.

use std::sync::Arc;

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup as ConsumerDescribed;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId,
};

use super::{Decision, Group, GroupResponse, GroupShard, GroupState, Waiter};
use crate::group::consumer::heartbeat::{validate, HeartbeatError, HeartbeatInput};
use crate::group::consumer::records::ConsumerRecord;
use crate::group::consumer::{ConsumerGroup, TopicsImage};
use crate::group::records::OffsetsRecord;
use crate::protocol::str_bytes;

/// A ConsumerGroupHeartbeat as the shard receives it.
#[derive(Debug, Clone)]
pub struct ConsumerHeartbeat {
    pub version: i16,
    pub client_id: String,
    pub client_host: String,
    /// A fresh member id, used if a v0 member joins without one.
    pub new_member_id: String,
    pub image: Arc<TopicsImage>,
    pub req: ConsumerGroupHeartbeatRequest,
}

fn heartbeat_error(e: HeartbeatError) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(e.code)
        .with_error_message(Some(str_bytes(e.message)))
}

impl GroupShard {
    pub(super) fn consumer_heartbeat(
        &mut self,
        d: &mut Decision,
        waiter: Waiter,
        hb: ConsumerHeartbeat,
        now_ms: i64,
    ) {
        let result = self.consumer_heartbeat_inner(d, &hb, now_ms);
        self.last_image = Some(hb.image);
        if hb.req.member_epoch < 0 && result.is_ok() {
            self.maybe_downgrade(d, &hb.req.group_id.0, now_ms);
        }
        let resp = result.unwrap_or_else(heartbeat_error);
        d.reply(waiter, GroupResponse::ConsumerHeartbeat(resp));
    }

    fn consumer_heartbeat_inner(
        &mut self,
        d: &mut Decision,
        hb: &ConsumerHeartbeat,
        now_ms: i64,
    ) -> Result<ConsumerGroupHeartbeatResponse, HeartbeatError> {
        let config = self.config.consumer.clone();
        validate(&hb.req, hb.version, &config)?;
        let group_id = hb.req.group_id.0.to_string();
        if !self.consumer_groups.contains_key(&group_id) {
            if hb.req.member_epoch != 0 {
                return Err(HeartbeatError {
                    code: E::GroupIdNotFound.code(),
                    message: format!("Consumer group {group_id} not found."),
                });
            }
            self.upgrade(d, &group_id, &hb.image, now_ms)?;
        }
        let Some(group) = self.consumer_groups.get_mut(&group_id) else {
            return Err(HeartbeatError {
                code: E::GroupIdNotFound.code(),
                message: format!("Consumer group {group_id} not found."),
            });
        };
        let input = HeartbeatInput {
            version: hb.version,
            client_id: hb.client_id.clone(),
            client_host: hb.client_host.clone(),
            new_member_id: hb.new_member_id.clone(),
            image: &hb.image,
            now_ms,
        };
        let mut records = Vec::new();
        let resp = group.heartbeat(&hb.req, &input, &config, &mut records);
        d.records
            .extend(records.into_iter().map(OffsetsRecord::Consumer));
        resp
    }

    /// Makes `group_id` a consumer group: new, or converted from a classic group (its offsets
    /// stay, its classic metadata gets a tombstone, its members stay as classic members).
    fn upgrade(
        &mut self,
        d: &mut Decision,
        group_id: &str,
        image: &TopicsImage,
        now_ms: i64,
    ) -> Result<(), HeartbeatError> {
        match self.groups.get_mut(group_id) {
            Some(g) if !g.members.is_empty() && self.config.consumer.migration.upgrade() => {
                return self.upgrade_with_members(d, group_id, image, now_ms);
            }
            Some(g) if !g.members.is_empty() || g.state == GroupState::Dead => {
                return Err(HeartbeatError {
                    code: E::GroupIdNotFound.code(),
                    message: format!(
                        "Group {group_id} is a classic group with members (group.consumer.migration.policy)."
                    ),
                });
            }
            Some(g) => {
                if !self.config.consumer.migration.upgrade() && g.protocol_type.is_some() {
                    return Err(HeartbeatError {
                        code: E::GroupIdNotFound.code(),
                        message: format!("Group {group_id} is not a consumer group (group.consumer.migration.policy)."),
                    });
                }
                if g.protocol_type.is_some() || g.generation > 0 {
                    d.records.push(OffsetsRecord::GroupMetadata {
                        group: group_id.to_string(),
                        value: None,
                    });
                    tracing::info!(
                        group = group_id,
                        "converting an empty classic group to a consumer group"
                    );
                }
                let offsets = std::mem::take(&mut g.offsets);
                *g = Group::new(group_id, now_ms);
                g.offsets = offsets;
            }
            None => {
                self.groups
                    .insert(group_id.to_string(), Group::new(group_id, now_ms));
            }
        }
        self.consumer_groups
            .insert(group_id.to_string(), ConsumerGroup::new(group_id));
        Ok(())
    }

    /// Before a JoinGroup: a consumer group without members turns classic (policy allowing);
    /// one with members refuses classic members.
    pub(super) fn downgrade_for_join(&mut self, d: &mut Decision, group_id: &str) -> Result<(), E> {
        let Some(cg) = self.consumer_groups.get(group_id) else {
            return Ok(());
        };
        if !cg.members.is_empty() || !self.config.consumer.migration.downgrade() {
            return Err(E::InconsistentGroupProtocol);
        }
        tracing::info!(
            group = group_id,
            "converting an empty consumer group to a classic group"
        );
        d.records
            .extend(cg.tombstones().into_iter().map(OffsetsRecord::Consumer));
        self.consumer_groups.remove(group_id);
        Ok(())
    }

    pub(super) fn consumer_describe(
        &self,
        group_ids: &[String],
        image: &TopicsImage,
    ) -> Vec<ConsumerDescribed> {
        group_ids
            .iter()
            .map(|id| match self.consumer_groups.get(id) {
                Some(g) => g.describe(image),
                None => {
                    let (c, msg) = if self.groups.contains_key(id) {
                        (
                            E::GroupIdNotFound,
                            format!("Group {id} is not a consumer group."),
                        )
                    } else {
                        (E::GroupIdNotFound, format!("Group {id} not found."))
                    };
                    ConsumerDescribed::default()
                        .with_group_id(GroupId(str_bytes(id.clone())))
                        .with_group_state(str_bytes("Dead"))
                        .with_error_code(c.code())
                        .with_error_message(Some(str_bytes(msg)))
                }
            })
            .collect()
    }

    /// The consumer groups for ListGroups.
    pub(super) fn list_consumer_groups(&self) -> Vec<ListedGroup> {
        self.consumer_groups
            .values()
            .map(|g| {
                ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(g.group_id.clone())))
                    .with_protocol_type(str_bytes("consumer"))
                    .with_group_state(str_bytes(g.state_name()))
                    .with_group_type(str_bytes("consumer"))
            })
            .collect()
    }

    /// DeleteGroups of a consumer group: only without members; tombstones for its records and
    /// its offsets.
    pub(super) fn delete_consumer_group(&mut self, d: &mut Decision, group_id: &str) -> i16 {
        let Some(cg) = self.consumer_groups.get(group_id) else {
            return E::GroupIdNotFound.code();
        };
        if !cg.members.is_empty() {
            return E::NonEmptyGroup.code();
        }
        if let Some(g) = self.groups.remove(group_id) {
            for (t, p) in g.offsets.keys() {
                d.records.push(OffsetsRecord::OffsetCommit {
                    group: group_id.to_string(),
                    topic: t.clone(),
                    partition: *p,
                    value: None,
                });
            }
        }
        d.records
            .extend(cg.tombstones().into_iter().map(OffsetsRecord::Consumer));
        self.consumer_groups.remove(group_id);
        0
    }

    /// OffsetCommit to a consumer group (Kafka's `ConsumerGroup.validateOffsetCommit`): from
    /// outside the group only while it has no members; from a member only with OffsetCommit v9+
    /// and its current member epoch. Counts as a sign of life.
    pub(super) fn admit_consumer_commit(
        &mut self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
        version: i16,
        now_ms: i64,
    ) -> Option<Result<(), i16>> {
        let cg = self.consumer_groups.get_mut(group_id)?;
        let session_ms = self.config.consumer.session_timeout_ms as i64;
        if epoch < 0 && member_id.is_empty() {
            return Some(if cg.members.is_empty() {
                Ok(())
            } else {
                Err(E::UnknownMemberId.code())
            });
        }
        let Some(m) = cg.members.get_mut(member_id) else {
            return Some(Err(E::UnknownMemberId.code()));
        };
        if let Some(classic) = &m.meta.classic {
            // A classic member commits with its generation, which is its member epoch.
            if epoch != m.member_epoch {
                return Some(Err(E::IllegalGeneration.code()));
            }
            let session_ms = classic.session_timeout_ms as i64;
            m.session_deadline_ms = m.session_deadline_ms.max(now_ms + session_ms);
            return Some(Ok(()));
        }
        if version < 9 {
            return Some(Err(E::UnsupportedVersion.code()));
        }
        if epoch != m.member_epoch {
            return Some(Err(E::StaleMemberEpoch.code()));
        }
        m.session_deadline_ms = m.session_deadline_ms.max(now_ms + session_ms);
        Some(Ok(()))
    }

    /// OffsetFetch by a member of a consumer group (v9+ with a member id): the member must be
    /// known and at its current epoch. `None` when there is nothing to check.
    pub(super) fn check_consumer_fetch(
        &self,
        group_id: &str,
        member: Option<&(String, i32)>,
    ) -> Option<i16> {
        let (member_id, epoch) = member?;
        let cg = self.consumer_groups.get(group_id)?;
        match cg.members.get(member_id) {
            None => Some(E::UnknownMemberId.code()),
            Some(m) if m.member_epoch != *epoch => Some(E::StaleMemberEpoch.code()),
            Some(_) => None,
        }
    }

    /// OffsetDelete of a consumer group: the topics of the request its members subscribe to,
    /// by name or regex, whose offsets must stay. `None` for a classic group.
    pub(super) fn consumer_subscribed(
        &self,
        group_id: &str,
        req: &kafka_protocol::messages::OffsetDeleteRequest,
    ) -> Option<Vec<String>> {
        let cg = self.consumer_groups.get(group_id)?;
        Some(
            req.topics
                .iter()
                .map(|t| t.name.0.to_string())
                .filter(|name| {
                    cg.members.values().any(|m| {
                        m.meta.subscribed_topic_names.contains(name)
                            || m.regex
                                .as_ref()
                                .is_some_and(|r| !name.starts_with("__") && r.is_match(name))
                    })
                })
                .collect(),
        )
    }

    /// Rebuilds consumer groups at load.
    pub(super) fn replay_consumer(&mut self, record: ConsumerRecord, now_ms: i64) {
        let group_id = record.group().to_string();
        if let ConsumerRecord::GroupMetadata { epoch: None, .. } = record {
            self.consumer_groups.remove(&group_id);
            if self.groups.get(&group_id).is_some_and(|g| {
                g.offsets.is_empty() && g.members.is_empty() && g.protocol_type.is_none()
            }) {
                self.groups.remove(&group_id);
            }
            return;
        }
        let session_ms = self.config.consumer.session_timeout_ms;
        self.groups
            .entry(group_id.clone())
            .or_insert_with(|| Group::new(&group_id, now_ms));
        self.consumer_groups
            .entry(group_id.clone())
            .or_insert_with(|| ConsumerGroup::new(&group_id))
            .replay(record, now_ms, session_ms);
    }

    /// Session and revocation timers of the consumer groups.
    pub(super) fn tick_consumer(&mut self, d: &mut Decision, now_ms: i64) {
        let config = self.config.consumer.clone();
        let image = self.last_image.clone();
        let mut shrunk = Vec::new();
        for g in self.consumer_groups.values_mut() {
            if g.next_deadline_ms().is_some_and(|t| t <= now_ms) {
                let mut records = Vec::new();
                if g.expire(now_ms, &config, image.as_deref(), &mut records) {
                    shrunk.push(g.group_id.clone());
                }
                d.records
                    .extend(records.into_iter().map(OffsetsRecord::Consumer));
            }
        }
        for group_id in shrunk {
            self.maybe_downgrade(d, &group_id, now_ms);
        }
    }

    pub(super) fn next_consumer_deadline_ms(&self) -> Option<i64> {
        self.consumer_groups
            .values()
            .filter_map(|g| g.next_deadline_ms())
            .min()
    }
}
