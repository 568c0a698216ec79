//! Classic members inside a consumer group (KIP-848's online migration): a consumer that
//! speaks JoinGroup/SyncGroup/Heartbeat keeps working while the group around it is a consumer
//! group, as in Kafka's `GroupMetadataManager` (`classicGroupJoinToConsumerGroup` and its
//! siblings).
//!
//! The server-side assignor decides for everyone. A classic member is a [`ConsumerMember`]
//! whose metadata carries [`ClassicMemberMetadata`] (its session timeout and the protocols of
//! its JoinGroup), and it reconciles through the classic requests:
//! - JoinGroup: its ConsumerProtocol subscription gives the topics and the partitions it still
//!   owns; the member is reconciled with those and the reply's generation is its member epoch;
//! - SyncGroup: returns its current assignment (never its target: partitions still held by
//!   others are not in it), encoded as a ConsumerProtocol assignment;
//! - Heartbeat: REBALANCE_IN_PROGRESS when it must rejoin: the group epoch moved past it, it
//!   has partitions to give up, or partitions it waited for are free now.
//!
//! Revocation first holds as for consumer-protocol members: a partition a classic member must
//! give up stays in its `pending_revocation` (so nobody else gets it) until it rejoins without
//! it; an eager client revokes everything before it rejoins, a cooperative one lists what it
//! still owns.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::records::{Assignment, ClassicMemberMetadata, ConsumerRecord, MemberMetadataValue};
use super::{
    compile, ConsumerGroup, ConsumerGroupConfig, ConsumerMember, MemberState, TopicsImage,
};
use crate::protocol::str_bytes;

/// The protocol type of consumers, the only one a consumer group takes.
pub const PROTOCOL_TYPE: &str = "consumer";

/// A ConsumerProtocol subscription as a consumer group reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub version: i16,
    pub topics: Vec<String>,
    /// Partitions the member still owns (v1+; empty before, as eager members own nothing when
    /// they join).
    pub owned: Vec<(String, Vec<i32>)>,
    pub rack_id: Option<String>,
}

/// Why embedded ConsumerProtocol bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed ConsumerProtocol {what}")]
pub struct MalformedProtocol {
    pub what: &'static str,
}

fn version_of<'a>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<(i16, &'a [u8]), MalformedProtocol> {
    if bytes.len() < 2 {
        return Err(MalformedProtocol { what });
    }
    Ok((i16::from_be_bytes([bytes[0], bytes[1]]), &bytes[2..]))
}

/// Decodes a subscription; a newer version than 3 is read as 3 (its extra fields come last).
pub fn decode_subscription(bytes: &[u8]) -> Result<Subscription, MalformedProtocol> {
    let what = "subscription";
    let (version, mut body) = version_of(bytes, what)?;
    if version < 0 {
        return Err(MalformedProtocol { what });
    }
    let sub = ConsumerProtocolSubscription::decode(&mut body, version.min(3))
        .map_err(|_| MalformedProtocol { what })?;
    Ok(Subscription {
        version,
        topics: sub.topics.iter().map(|t| t.to_string()).collect(),
        owned: sub
            .owned_partitions
            .iter()
            .map(|tp| (tp.topic.0.to_string(), tp.partitions.clone()))
            .collect(),
        rack_id: sub.rack_id.map(|r| r.to_string()),
    })
}

/// Decodes an assignment into (topic, partitions); empty bytes are an empty assignment (what a
/// member holds between a join and its sync).
pub fn decode_assignment(bytes: &[u8]) -> Result<Vec<(String, Vec<i32>)>, MalformedProtocol> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let what = "assignment";
    let (version, mut body) = version_of(bytes, what)?;
    if version < 0 {
        return Err(MalformedProtocol { what });
    }
    let a = ConsumerProtocolAssignment::decode(&mut body, version.min(3))
        .map_err(|_| MalformedProtocol { what })?;
    Ok(a.assigned_partitions
        .iter()
        .map(|tp| (tp.topic.0.to_string(), tp.partitions.clone()))
        .collect())
}

/// Encodes `assignment` as a ConsumerProtocol assignment at `version` (the member's
/// subscription version, capped at 3); topics the image no longer has are left out.
pub fn encode_assignment(assignment: &Assignment, image: &TopicsImage, version: i16) -> Bytes {
    let version = version.clamp(0, 3);
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        assignment
            .iter()
            .filter_map(|(id, ps)| {
                image.name_of(id).map(|name| {
                    AssignedTopic::default()
                        .with_topic(TopicName(str_bytes(name.to_string())))
                        .with_partitions(ps.iter().copied().collect())
                })
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    // Encoding a well-formed message into a growable buffer cannot fail.
    let _ = a.encode(&mut buf, version);
    buf.freeze()
}

/// Partitions by topic name into an [`Assignment`] by topic id; unknown topics are dropped.
pub fn to_ids(tps: &[(String, Vec<i32>)], image: &TopicsImage) -> Assignment {
    let mut out = Assignment::new();
    for (name, ps) in tps {
        if let Some(t) = image.by_name.get(name) {
            if !ps.is_empty() {
                out.entry(t.id).or_default().extend(ps.iter().copied());
            }
        }
    }
    out
}

/// The subscription version a classic member speaks: that of its first protocol's metadata.
fn subscription_version(m: &ConsumerMember) -> i16 {
    m.meta
        .classic
        .as_ref()
        .and_then(|c| c.protocols.first())
        .filter(|(_, b)| b.len() >= 2)
        .map(|(_, b)| (&b[..2]).get_i16())
        .unwrap_or(0)
}

/// A JoinGroup from a classic member, as a consumer group reads it.
#[derive(Debug, Clone)]
pub struct ClassicJoin<'a> {
    /// The member id to use: the request's, or a fresh one.
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub image: &'a TopicsImage,
    pub now_ms: i64,
}

/// A JoinGroup answered: the generation is the member epoch, the protocol the member's first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicJoined {
    pub member_id: String,
    pub generation: i32,
    pub protocol_name: String,
}

impl ConsumerMember {
    /// Whether the member speaks the classic protocol.
    pub fn uses_classic(&self) -> bool {
        self.meta.classic.is_some()
    }

    /// The session timeout the member lives by: its own for a classic member.
    pub fn session_timeout_ms(&self, config: &ConsumerGroupConfig) -> i32 {
        self.meta
            .classic
            .as_ref()
            .map_or(config.session_timeout_ms, |c| c.session_timeout_ms)
    }

    fn classic_protocol_name(&self) -> String {
        self.meta
            .classic
            .as_ref()
            .and_then(|c| c.protocols.first())
            .map(|(n, _)| n.clone())
            .unwrap_or_default()
    }
}

impl ConsumerGroup {
    /// Kafka's `supportsClassicProtocols`: the type is `consumer` and one of the protocols is
    /// supported by every classic member (any, when there is none).
    pub fn supports_classic_protocols(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
        except: &str,
    ) -> bool {
        if protocol_type != PROTOCOL_TYPE || protocols.is_empty() {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .filter(|m| m.member_id != except)
                .filter_map(|m| m.meta.classic.as_ref())
                .all(|c| c.protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// Whether every member but `member_id` speaks the classic protocol, and there is one.
    pub fn only_classic_besides(&self, member_id: &str) -> bool {
        let mut others = self
            .members
            .values()
            .filter(|m| m.member_id != member_id)
            .peekable();
        others.peek().is_some() && others.all(ConsumerMember::uses_classic)
    }

    /// JoinGroup of a classic member: join or update the member, recompute the target if the
    /// group epoch moved, and reconcile it with what it reports owning.
    pub fn classic_join(
        &mut self,
        j: &ClassicJoin<'_>,
        config: &ConsumerGroupConfig,
        out: &mut Vec<ConsumerRecord>,
    ) -> Result<ClassicJoined, E> {
        if !self.supports_classic_protocols(PROTOCOL_TYPE, &j.protocols, &j.member_id) {
            return Err(E::InconsistentGroupProtocol);
        }
        let sub = j
            .protocols
            .first()
            .map(|(_, b)| decode_subscription(b))
            .transpose()
            .map_err(|_| E::InconsistentGroupProtocol)?
            .ok_or(E::InconsistentGroupProtocol)?;
        if let Some(m) = self.members.get(&j.member_id) {
            if !m.uses_classic() {
                return Err(E::UnknownMemberId);
            }
        }
        let joined = self
            .join(&j.member_id, j.instance_id.as_deref(), None, config, out)
            .map_err(|e| E::try_from_code(e.code).unwrap_or(E::UnknownServerError))?;
        let Some(m) = self.members.get_mut(&j.member_id) else {
            return Err(E::UnknownMemberId);
        };
        let mut topics = sub.topics.clone();
        topics.sort();
        topics.dedup();
        let meta = MemberMetadataValue {
            instance_id: j.instance_id.clone(),
            rack_id: sub.rack_id.clone(),
            client_id: j.client_id.clone(),
            client_host: j.client_host.clone(),
            subscribed_topic_names: topics,
            subscribed_topic_regex: None,
            rebalance_timeout_ms: j.rebalance_timeout_ms,
            server_assignor: None,
            classic: Some(ClassicMemberMetadata {
                session_timeout_ms: j.session_timeout_ms,
                protocols: j.protocols.clone(),
            }),
        };
        let subscription_changed = meta.subscribed_topic_names != m.meta.subscribed_topic_names
            || meta.subscribed_topic_regex != m.meta.subscribed_topic_regex
            || meta.server_assignor != m.meta.server_assignor;
        m.session_deadline_ms = j.now_ms + j.session_timeout_ms as i64;
        if joined || meta != m.meta {
            m.regex = compile(None);
            m.meta = meta.clone();
            out.push(ConsumerRecord::MemberMetadata {
                group: self.group_id.clone(),
                member: j.member_id.clone(),
                value: Some(meta),
            });
        }
        self.follow_metadata(j.image, config, joined || subscription_changed, out);
        if self.epoch > self.assignment_epoch {
            self.compute_target(config, j.image, out);
        }
        // What a JoinGroup reports owning is true when it is sent (an eager member revoked all
        // first), so a revocation it already made completes in the same join.
        let owned = to_ids(&sub.owned, j.image);
        let mut changed = self.reconcile(&j.member_id, Some(&owned), j.now_ms);
        if self
            .members
            .get(&j.member_id)
            .is_some_and(|m| m.state == MemberState::UnrevokedPartitions)
        {
            changed |= self.reconcile(&j.member_id, Some(&owned), j.now_ms);
        }
        let Some(m) = self.members.get(&j.member_id) else {
            return Err(E::UnknownMemberId);
        };
        if changed || joined {
            out.push(ConsumerRecord::CurrentMemberAssignment {
                group: self.group_id.clone(),
                member: j.member_id.clone(),
                value: Some(m.current_value()),
            });
        }
        Ok(ClassicJoined {
            member_id: j.member_id.clone(),
            generation: m.member_epoch,
            protocol_name: m.classic_protocol_name(),
        })
    }

    /// The classic member a request names, by instance id or member id (Kafka's
    /// `validateConsumerGroupMember` and `throwIfMemberDoesNotUseClassicProtocol`).
    pub fn classic_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<&ConsumerMember, E> {
        let m = match instance_id {
            Some(i) => {
                let id = self.static_members.get(i).ok_or(E::UnknownMemberId)?;
                if id != member_id {
                    return Err(E::FencedInstanceId);
                }
                self.members.get(id).ok_or(E::UnknownMemberId)?
            }
            None => self.members.get(member_id).ok_or(E::UnknownMemberId)?,
        };
        if !m.uses_classic() {
            return Err(E::UnknownMemberId);
        }
        Ok(m)
    }

    /// SyncGroup of a classic member: its current assignment, once it has caught up with the
    /// group epoch. Returns the protocol name and the assignment bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn classic_sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        image: &TopicsImage,
        config: &ConsumerGroupConfig,
        now_ms: i64,
    ) -> Result<(String, Bytes), E> {
        let m = self.classic_member(member_id, instance_id)?;
        if generation != m.member_epoch {
            return Err(E::IllegalGeneration);
        }
        let name = m.classic_protocol_name();
        if protocol_type.is_some_and(|t| t != PROTOCOL_TYPE)
            || protocol_name.is_some_and(|p| p != name)
        {
            return Err(E::InconsistentGroupProtocol);
        }
        // A member still revoking finishes that first; any other that fell behind rejoins.
        if self.epoch > m.member_epoch && m.state != MemberState::UnrevokedPartitions {
            return Err(E::RebalanceInProgress);
        }
        let bytes = encode_assignment(&m.assigned, image, subscription_version(m));
        let session_ms = m.session_timeout_ms(config) as i64;
        let id = m.member_id.clone();
        if let Some(m) = self.members.get_mut(&id) {
            m.session_deadline_ms = now_ms + session_ms;
        }
        Ok((name, bytes))
    }

    /// Heartbeat of a classic member: REBALANCE_IN_PROGRESS when it must rejoin (Kafka's
    /// `classicGroupHeartbeatToConsumerGroup`), else 0.
    pub fn classic_heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        config: &ConsumerGroupConfig,
        now_ms: i64,
    ) -> Result<(), E> {
        let m = self.classic_member(member_id, instance_id)?;
        if generation != m.member_epoch {
            return Err(E::IllegalGeneration);
        }
        let rejoin = m.member_epoch < self.epoch
            || m.state == MemberState::UnrevokedPartitions
            || (m.state == MemberState::UnreleasedPartitions && !self.waiting_on_unreleased(m));
        let session_ms = m.session_timeout_ms(config) as i64;
        let id = m.member_id.clone();
        if let Some(m) = self.members.get_mut(&id) {
            m.session_deadline_ms = now_ms + session_ms;
        }
        if rejoin {
            Err(E::RebalanceInProgress)
        } else {
            Ok(())
        }
    }

    /// Whether a partition of `m`'s target that it does not have yet is still held by another
    /// member.
    fn waiting_on_unreleased(&self, m: &ConsumerMember) -> bool {
        let Some(target) = self.target.get(&m.member_id) else {
            return false;
        };
        target.iter().any(|(t, ps)| {
            ps.iter().any(|p| {
                !m.assigned.get(t).is_some_and(|a| a.contains(p))
                    && self.members.values().any(|o| {
                        o.member_id != m.member_id
                            && [&o.assigned, &o.pending_revocation]
                                .iter()
                                .any(|a| a.get(t).is_some_and(|s| s.contains(p)))
                    })
            })
        })
    }

    /// LeaveGroup of classic members (already resolved to member ids): removes them, bumps the
    /// epoch and recomputes the target when the image is known (else the next heartbeat does).
    pub fn classic_leave(
        &mut self,
        member_ids: &[String],
        image: Option<&TopicsImage>,
        config: &ConsumerGroupConfig,
        out: &mut Vec<ConsumerRecord>,
    ) {
        if member_ids.is_empty() {
            return;
        }
        for id in member_ids {
            self.remove_member(id, out);
        }
        self.bump_epoch(out);
        if let Some(image) = image {
            self.metadata_seen = Some((image.version, self.subscription_hash(image)));
            self.compute_target(config, image, out);
        }
    }
}
