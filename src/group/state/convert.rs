//! The online migration between the group types, as pure conversions (Kafka's
//! `ConsumerGroup.fromClassicGroup` and `ClassicGroup.fromConsumerGroup`).
//!
//! Upgrade: a classic group of consumers (`protocol_type` `consumer`) with members becomes a
//! consumer group keeping them. Its generation becomes the group, assignment and member epochs;
//! each member's subscription and assignment are read from the ConsumerProtocol bytes of its
//! metadata, its current assignment is also its target, and it stays a classic member (its
//! session timeout and protocols kept in `ClassicMemberMetadata`). The records are Kafka's
//! `createConsumerGroupRecords`: member metadata, group epoch, targets, target epoch, current
//! assignments.
//!
//! Downgrade: a consumer group whose members all speak the classic protocol becomes a classic
//! group at generation = their highest member epoch, each member's assignment being its target encoded as a
//! ConsumerProtocol assignment; the caller then starts a rebalance.
//!
//! Committed offsets are not part of either: they stay in the group's [`Group`] entry.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{Group, GroupState, Member};
use crate::group::consumer::classic::{
    decode_assignment, decode_subscription, encode_assignment, to_ids, MalformedProtocol,
    PROTOCOL_TYPE,
};
use crate::group::consumer::records::{ClassicMemberMetadata, ConsumerRecord, MemberMetadataValue};
use crate::group::consumer::{ConsumerGroup, ConsumerMember, MemberState, TopicsImage};

/// The consumer group a classic group becomes, with its members; `now_ms` starts their
/// sessions.
pub(super) fn consumer_group_from_classic(
    g: &Group,
    image: &TopicsImage,
    now_ms: i64,
) -> Result<ConsumerGroup, MalformedProtocol> {
    let mut cg = ConsumerGroup::new(&g.group_id);
    cg.epoch = g.generation;
    cg.assignment_epoch = g.generation;
    let protocol = g.protocol.clone().unwrap_or_default();
    for m in g.members.values() {
        let sub = decode_subscription(&m.metadata_for(&protocol))?;
        let assigned = to_ids(&decode_assignment(&m.assignment)?, image);
        let mut topics = sub.topics.clone();
        topics.sort();
        topics.dedup();
        let meta = MemberMetadataValue {
            instance_id: m.group_instance_id.clone(),
            rack_id: sub.rack_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            subscribed_topic_names: topics,
            subscribed_topic_regex: None,
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            server_assignor: None,
            classic: Some(ClassicMemberMetadata {
                session_timeout_ms: m.session_timeout_ms,
                protocols: m.protocols.clone(),
            }),
        };
        let mut cm = ConsumerMember::new(m.member_id.clone(), meta);
        cm.member_epoch = g.generation;
        cm.previous_member_epoch = g.generation;
        cm.state = MemberState::Stable;
        cm.assigned = assigned.clone();
        cm.session_deadline_ms = now_ms + m.session_timeout_ms as i64;
        if let Some(i) = &m.group_instance_id {
            cg.static_members.insert(i.clone(), m.member_id.clone());
        }
        cg.target.insert(m.member_id.clone(), assigned);
        cg.members.insert(m.member_id.clone(), cm);
    }
    Ok(cg)
}

/// The records that create `cg` from nothing, in Kafka's order.
pub(super) fn creation_records(cg: &ConsumerGroup) -> Vec<ConsumerRecord> {
    let group = || cg.group_id.clone();
    let mut out: Vec<ConsumerRecord> = cg
        .members
        .values()
        .map(|m| ConsumerRecord::MemberMetadata {
            group: group(),
            member: m.member_id.clone(),
            value: Some(m.meta.clone()),
        })
        .collect();
    out.push(ConsumerRecord::GroupMetadata {
        group: group(),
        epoch: Some(cg.epoch),
    });
    out.extend(
        cg.members
            .keys()
            .map(|id| ConsumerRecord::TargetAssignmentMember {
                group: group(),
                member: id.clone(),
                value: Some(cg.target.get(id).cloned().unwrap_or_default()),
            }),
    );
    out.push(ConsumerRecord::TargetAssignmentMetadata {
        group: group(),
        assignment_epoch: Some(cg.assignment_epoch),
    });
    out.extend(
        cg.members
            .values()
            .map(|m| ConsumerRecord::CurrentMemberAssignment {
                group: group(),
                member: m.member_id.clone(),
                value: Some(m.current_value()),
            }),
    );
    out
}

/// The classic group a consumer group of classic members becomes: Stable at the members'
/// generation, each member holding its target. `join_seq` orders the members (the first is leader
/// of the next rebalance). Consumer-protocol members, if any, are left out.
pub(super) fn classic_group_from_consumer(
    cg: &ConsumerGroup,
    image: &TopicsImage,
    now_ms: i64,
    join_seq: &mut u64,
) -> Group {
    let mut g = Group::new(&cg.group_id, now_ms);
    // The generation the members know: their member epoch. (The group epoch may be past it:
    // the leave that triggers a downgrade bumps it.) A member at that generation is told to
    // rejoin by its next heartbeat, not fenced with ILLEGAL_GENERATION.
    g.generation = cg
        .members
        .values()
        .filter(|m| m.uses_classic())
        .map(|m| m.member_epoch)
        .max()
        .unwrap_or(cg.epoch);
    g.protocol_type = Some(PROTOCOL_TYPE.to_string());
    g.state = GroupState::Stable;
    let mut members = BTreeMap::new();
    for m in cg.members.values() {
        let Some(classic) = &m.meta.classic else {
            continue;
        };
        *join_seq += 1;
        if let Some(i) = &m.meta.instance_id {
            g.static_members.insert(i.clone(), m.member_id.clone());
        }
        members.insert(
            m.member_id.clone(),
            Member {
                member_id: m.member_id.clone(),
                group_instance_id: m.meta.instance_id.clone(),
                client_id: m.meta.client_id.clone(),
                client_host: m.meta.client_host.clone(),
                session_timeout_ms: classic.session_timeout_ms,
                rebalance_timeout_ms: m.meta.rebalance_timeout_ms,
                protocol_type: PROTOCOL_TYPE.to_string(),
                protocols: classic.protocols.clone(),
                assignment: Bytes::new(),
                awaiting_join: None,
                awaiting_sync: None,
                last_heartbeat_ms: now_ms,
                join_seq: *join_seq,
            },
        );
    }
    g.members = members;
    g.protocol = g.select_protocol();
    let protocol = g.protocol.clone().unwrap_or_default();
    for m in g.members.values_mut() {
        let version = m
            .metadata_for(&protocol)
            .get(..2)
            .map_or(0, |b| i16::from_be_bytes([b[0], b[1]]));
        let target = cg.target.get(&m.member_id).cloned().unwrap_or_default();
        m.assignment = encode_assignment(&target, image, version);
    }
    g.leader = g
        .members
        .values()
        .min_by_key(|m| m.join_seq)
        .map(|m| m.member_id.clone());
    g
}
