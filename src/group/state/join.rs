//! JoinGroup, in the steps Kafka's `ClassicGroup` coordinator takes: validate the request, find
//! (or create) the group and check that it can take the member, then either give a member
//! without an id one (a new dynamic member, or a static member taking over its instance), or
//! rejoin a member that has an id. Joining starts or feeds a join phase (see `rebalance.rs`).

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{
    code, join_error, sync_error, Decision, Group, GroupConfig, GroupResponse, GroupShard,
    GroupState, Member, Waiter,
};
use crate::protocol::str_bytes;

/// A JoinGroup request as the steps below read it.
pub(super) struct JoinParams {
    pub(super) waiter: Waiter,
    pub(super) version: i16,
    pub(super) group_id: String,
    /// As the request sent it: empty for a member that has no id yet.
    pub(super) member_id: String,
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) session_timeout_ms: i32,
    pub(super) rebalance_timeout_ms: i32,
    pub(super) protocol_type: String,
    /// (protocol name, metadata), in the member's order of preference.
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) now_ms: i64,
}

impl JoinParams {
    fn read(
        waiter: Waiter,
        version: i16,
        client_id: String,
        client_host: String,
        req: &JoinGroupRequest,
        now_ms: i64,
    ) -> JoinParams {
        JoinParams {
            waiter,
            version,
            group_id: req.group_id.0.to_string(),
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id,
            client_host,
            session_timeout_ms: req.session_timeout_ms,
            // Before v4 the rebalance timeout was the session timeout.
            rebalance_timeout_ms: if req.rebalance_timeout_ms > 0 {
                req.rebalance_timeout_ms
            } else {
                req.session_timeout_ms
            },
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            now_ms,
        }
    }

    /// Answers the join with `e`, under the member id the request sent.
    pub(super) fn fail(&self, d: &mut Decision, e: E) {
        d.reply(
            self.waiter,
            GroupResponse::Join(join_error(e.code(), self.member_id.clone())),
        );
    }

    /// The member this request describes, under `member_id`, waiting for the join phase to end.
    fn new_member(&self, member_id: String, join_seq: u64) -> Member {
        Member {
            member_id,
            group_instance_id: self.instance_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            session_timeout_ms: self.session_timeout_ms,
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            protocol_type: self.protocol_type.clone(),
            protocols: self.protocols.clone(),
            assignment: Bytes::new(),
            awaiting_join: Some((self.waiter, self.version)),
            awaiting_sync: None,
            last_heartbeat_ms: self.now_ms,
            join_seq,
        }
    }

    /// A fresh member id: the client id (or "member") and a UUID, as Kafka makes them.
    pub(super) fn generate_member_id(&self) -> String {
        let prefix = if self.client_id.is_empty() {
            "member"
        } else {
            &self.client_id
        };
        format!("{prefix}-{}", uuid::Uuid::new_v4())
    }
}

impl GroupShard {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn join(
        &mut self,
        d: &mut Decision,
        waiter: Waiter,
        version: i16,
        client_id: String,
        client_host: String,
        req: JoinGroupRequest,
        now_ms: i64,
    ) {
        let j = JoinParams::read(waiter, version, client_id, client_host, &req, now_ms);
        if let Err(e) = validate(&self.config, &j) {
            return j.fail(d, e);
        }
        if self
            .consumer_groups
            .get(&j.group_id)
            .is_some_and(|g| !g.members.is_empty())
        {
            return self.join_consumer_group(d, &j);
        }
        if let Err(e) = self.downgrade_for_join(d, &j.group_id) {
            return j.fail(d, e);
        }
        if !self.groups.contains_key(&j.group_id) {
            // Only a member without an id can be the first of a group.
            if !j.member_id.is_empty() {
                return j.fail(d, E::UnknownMemberId);
            }
            self.groups
                .insert(j.group_id.clone(), Group::new(&j.group_id, now_ms));
        }
        self.join_seq += 1;
        let seq = self.join_seq;
        let config = &self.config;
        let Some(group) = self.groups.get_mut(&j.group_id) else {
            return;
        };
        if let Err(e) = admit(group, &j) {
            return j.fail(d, e);
        }
        if j.member_id.is_empty() {
            join_unknown_member(d, group, &j, config, seq);
        } else {
            join_known_member(d, group, &j, config, seq);
        }
    }
}

/// Step 1: the request on its own (group id, session timeout within the broker's bounds).
fn validate(config: &GroupConfig, j: &JoinParams) -> Result<(), E> {
    if j.group_id.is_empty() {
        return Err(E::InvalidGroupId);
    }
    if j.session_timeout_ms < config.min_session_timeout_ms
        || j.session_timeout_ms > config.max_session_timeout_ms
    {
        return Err(E::InvalidSessionTimeout);
    }
    Ok(())
}

/// Step 2: whether the group can take this member: it is not being deleted, and it shares a
/// protocol with the members it has.
fn admit(group: &Group, j: &JoinParams) -> Result<(), E> {
    if group.state == GroupState::Dead {
        return Err(E::CoordinatorNotAvailable);
    }
    if !group.supports_protocols(&j.protocol_type, &j.protocols) {
        // A rejoining sole member may change its protocols freely.
        let sole = group.members.len() == 1 && group.members.contains_key(&j.member_id);
        if !sole {
            return Err(E::InconsistentGroupProtocol);
        }
    }
    Ok(())
}

/// Step 3a: a member without an id. A static member takes over its instance; a dynamic one
/// gets an id, from v4 first in a MEMBER_ID_REQUIRED reply (KIP-394), so that a client that
/// never returns leaves no member behind.
fn join_unknown_member(
    d: &mut Decision,
    group: &mut Group,
    j: &JoinParams,
    config: &GroupConfig,
    seq: u64,
) {
    let generated = j.generate_member_id();
    if let Some(instance) = &j.instance_id {
        return join_static_member(d, group, j, config, seq, instance, generated);
    }
    if group.members.len() + group.pending_members.len() >= config.max_group_size {
        return j.fail(d, E::GroupMaxSizeReached);
    }
    if j.version >= 4 {
        group
            .pending_members
            .insert(generated.clone(), j.now_ms + j.session_timeout_ms as i64);
        d.reply(
            j.waiter,
            GroupResponse::Join(join_error(code(E::MemberIdRequired), generated)),
        );
        return;
    }
    let member = j.new_member(generated, seq);
    add_member(
        d,
        group,
        member,
        j.now_ms,
        config.initial_rebalance_delay_ms,
    );
}

/// Step 3b: a static member (group.instance.id) without a member id: a restart when its
/// instance has a member, else a new member.
fn join_static_member(
    d: &mut Decision,
    group: &mut Group,
    j: &JoinParams,
    config: &GroupConfig,
    seq: u64,
    instance: &str,
    generated: String,
) {
    let initial_delay_ms = config.initial_rebalance_delay_ms;
    if let Some(old_id) = group.static_members.get(instance).cloned() {
        match group.members.remove(&old_id) {
            Some(old) => restart_static_member(
                d,
                group,
                j,
                initial_delay_ms,
                instance,
                old_id,
                old,
                generated,
            ),
            None => {
                group.static_members.remove(instance);
                let member = j.new_member(generated, seq);
                add_member(d, group, member, j.now_ms, initial_delay_ms);
            }
        }
        return;
    }
    if group.members.len() >= config.max_group_size {
        return j.fail(d, E::GroupMaxSizeReached);
    }
    let member = j.new_member(generated, seq);
    add_member(d, group, member, j.now_ms, initial_delay_ms);
}

/// A static member restarting: it takes over its old identity (assignment, place in the join
/// order, leadership) under a new id, fencing whoever still uses the old one. With the same
/// protocols in a stable group it gets the current generation back without a rebalance.
#[allow(clippy::too_many_arguments)]
fn restart_static_member(
    d: &mut Decision,
    group: &mut Group,
    j: &JoinParams,
    initial_delay_ms: i32,
    instance: &str,
    old_id: String,
    mut member: Member,
    generated: String,
) {
    if let Some((w, _)) = member.awaiting_join.take() {
        d.reply(
            w,
            GroupResponse::Join(join_error(code(E::FencedInstanceId), old_id.clone())),
        );
    }
    if let Some(w) = member.awaiting_sync.take() {
        d.reply(
            w,
            GroupResponse::Sync(sync_error(code(E::FencedInstanceId))),
        );
    }
    let unchanged = member.same_protocols(&j.protocols);
    member.member_id = generated.clone();
    member.client_id = j.client_id.clone();
    member.client_host = j.client_host.clone();
    member.session_timeout_ms = j.session_timeout_ms;
    member.rebalance_timeout_ms = j.rebalance_timeout_ms;
    member.protocols = j.protocols.clone();
    member.last_heartbeat_ms = j.now_ms;
    group
        .static_members
        .insert(instance.to_string(), generated.clone());
    if group.leader.as_deref() == Some(old_id.as_str()) {
        group.leader = Some(generated.clone());
    }
    group.members.insert(generated.clone(), member);
    if group.state == GroupState::Stable && unchanged {
        let is_leader = group.leader.as_deref() == Some(generated.as_str());
        let resp = group.join_response(&generated, is_leader, j.version);
        d.reply(
            j.waiter,
            GroupResponse::Join(resp.with_skip_assignment(is_leader && j.version >= 9)),
        );
        d.records.push(group.metadata_record());
        return;
    }
    if let Some(m) = group.members.get_mut(&generated) {
        m.awaiting_join = Some((j.waiter, j.version));
    }
    group.prepare_rebalance(d, j.now_ms, initial_delay_ms);
    group.maybe_complete_join(d, j.now_ms);
}

/// Step 3c: a member with an id: one handed out with MEMBER_ID_REQUIRED joins for real; a
/// member of the group rejoins.
fn join_known_member(
    d: &mut Decision,
    group: &mut Group,
    j: &JoinParams,
    config: &GroupConfig,
    seq: u64,
) {
    let initial_delay_ms = config.initial_rebalance_delay_ms;
    if group.pending_members.remove(&j.member_id).is_some() {
        let member = j.new_member(j.member_id.clone(), seq);
        return add_member(d, group, member, j.now_ms, initial_delay_ms);
    }
    if let Some(instance) = &j.instance_id {
        if let Some(current) = group.static_members.get(instance) {
            if *current != j.member_id {
                return j.fail(d, E::FencedInstanceId);
            }
        }
    }
    let Some(member) = group.members.get_mut(&j.member_id) else {
        return j.fail(d, E::UnknownMemberId);
    };
    if let Some((old, _)) = member.awaiting_join.take() {
        // A retried join replaces the one still waiting.
        d.reply(
            old,
            GroupResponse::Join(join_error(
                code(E::RebalanceInProgress),
                j.member_id.clone(),
            )),
        );
    }
    member.last_heartbeat_ms = j.now_ms;
    member.client_id = j.client_id.clone();
    member.client_host = j.client_host.clone();
    member.session_timeout_ms = j.session_timeout_ms;
    member.rebalance_timeout_ms = j.rebalance_timeout_ms;
    let unchanged = member.same_protocols(&j.protocols);
    member.protocols = j.protocols.clone();
    rejoin(d, group, j, unchanged, initial_delay_ms);
}

/// Step 4 for a known member: what a rejoin does depends on the group's phase. During a join
/// phase it counts as joined; after one, a duplicate (the response was lost) gets the current
/// generation back, anything else (new protocols, the leader of a stable group) starts a
/// rebalance.
fn rejoin(
    d: &mut Decision,
    group: &mut Group,
    j: &JoinParams,
    unchanged: bool,
    initial_delay_ms: i32,
) {
    let member_id = j.member_id.as_str();
    let is_leader = group.leader.as_deref() == Some(member_id);
    match group.state {
        GroupState::PreparingRebalance => {
            if let Some(m) = group.members.get_mut(member_id) {
                m.awaiting_join = Some((j.waiter, j.version));
            }
            group.maybe_complete_join(d, j.now_ms);
        }
        GroupState::CompletingRebalance | GroupState::Stable
            if unchanged && !(group.state == GroupState::Stable && is_leader) =>
        {
            let resp = group.join_response(member_id, is_leader, j.version);
            d.reply(j.waiter, GroupResponse::Join(resp));
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            if let Some(m) = group.members.get_mut(member_id) {
                m.awaiting_join = Some((j.waiter, j.version));
            }
            group.prepare_rebalance(d, j.now_ms, initial_delay_ms);
            group.maybe_complete_join(d, j.now_ms);
        }
        GroupState::Empty | GroupState::Dead => j.fail(d, E::UnknownMemberId),
    }
}

/// Adds a new member to the group: the first member sets the protocol type and leads, and a
/// join phase starts (or, already under way, may now be complete).
fn add_member(
    d: &mut Decision,
    group: &mut Group,
    member: Member,
    now_ms: i64,
    initial_delay_ms: i32,
) {
    if group.members.is_empty() {
        group.protocol_type = None;
    }
    if let Some(instance) = &member.group_instance_id {
        group
            .static_members
            .insert(instance.clone(), member.member_id.clone());
    }
    if group.protocol_type.is_none() {
        group.protocol_type = Some(member.protocol_type.clone());
    }
    if group.leader.is_none() {
        group.leader = Some(member.member_id.clone());
    }
    group.members.insert(member.member_id.clone(), member);
    if let Some(delay) = &mut group.initial_delay {
        delay.new_member_added = true;
    }
    match group.state {
        GroupState::PreparingRebalance => group.maybe_complete_join(d, now_ms),
        _ => {
            group.prepare_rebalance(d, now_ms, initial_delay_ms);
            group.maybe_complete_join(d, now_ms);
        }
    }
}

impl Group {
    /// The JoinGroup response of a member for the current generation; the leader's carries
    /// every member with its metadata for the chosen protocol, in the order they joined.
    pub(super) fn join_response(
        &self,
        member_id: &str,
        is_leader: bool,
        version: i16,
    ) -> JoinGroupResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if is_leader {
            let mut ms: Vec<&Member> = self.members.values().collect();
            ms.sort_by_key(|m| m.join_seq);
            ms.into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(m.member_id.clone()))
                        .with_group_instance_id(if version >= 5 {
                            m.group_instance_id.clone().map(str_bytes)
                        } else {
                            None
                        })
                        .with_metadata(m.metadata_for(&protocol))
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinGroupResponse::default()
            .with_error_code(0)
            .with_generation_id(self.generation)
            .with_protocol_type(self.protocol_type.clone().map(str_bytes))
            .with_protocol_name(Some(str_bytes(protocol)))
            .with_leader(str_bytes(self.leader.clone().unwrap_or_default()))
            .with_member_id(str_bytes(member_id.to_string()))
            .with_members(members)
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::GroupId;

    use super::*;
    use crate::group::state::GroupRequest;

    const NOW_MS: i64 = 1_000_000;

    fn request(group: &str, member_id: &str, version: i16) -> GroupRequest {
        GroupRequest::Join {
            version,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            image: None,
            req: JoinGroupRequest::default()
                .with_group_id(GroupId(str_bytes(group)))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(30_000)
                .with_member_id(str_bytes(member_id))
                .with_protocol_type(str_bytes("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(str_bytes("range"))
                    .with_metadata(Bytes::from_static(b"m"))]),
        }
    }

    fn reply(d: &Decision, waiter: Waiter) -> JoinGroupResponse {
        match d.replies.iter().find(|(w, _)| *w == waiter) {
            Some((_, GroupResponse::Join(r))) => r.clone(),
            other => panic!("no JoinGroup reply for {waiter}: {other:?}"),
        }
    }

    fn shard() -> GroupShard {
        GroupShard::new(GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        })
    }

    #[test]
    fn validation_rejects_before_any_group_exists() {
        let mut s = shard();
        let d = s.handle(1, request("", "", 7), NOW_MS);
        assert_eq!(reply(&d, 1).error_code, E::InvalidGroupId.code());

        let GroupRequest::Join { req, .. } = request("g", "", 7) else {
            unreachable!()
        };
        let short = GroupRequest::Join {
            version: 7,
            client_id: String::new(),
            client_host: String::new(),
            image: None,
            req: req.with_session_timeout_ms(1),
        };
        let d = s.handle(2, short, NOW_MS);
        assert_eq!(reply(&d, 2).error_code, E::InvalidSessionTimeout.code());

        // A member id the coordinator never handed out cannot create a group.
        let d = s.handle(3, request("g", "stranger", 7), NOW_MS);
        assert_eq!(reply(&d, 3).error_code, E::UnknownMemberId.code());
        assert!(s.groups.is_empty());
    }

    #[test]
    fn from_v4_a_new_member_first_gets_its_id() {
        let mut s = shard();
        let d = s.handle(1, request("g", "", 4), NOW_MS);
        let r = reply(&d, 1);
        assert_eq!(r.error_code, E::MemberIdRequired.code());
        let id = r.member_id.to_string();
        assert!(id.starts_with("client-"));
        assert!(s.groups["g"].members.is_empty());
        assert!(s.groups["g"].pending_members.contains_key(&id));

        // Joining with the handed-out id enters the group; alone, it completes the join phase.
        let d = s.handle(2, request("g", &id, 4), NOW_MS);
        let r = reply(&d, 2);
        assert_eq!(r.error_code, 0);
        assert_eq!(r.generation_id, 1);
        assert_eq!(r.leader.as_str(), id);
        assert_eq!(s.groups["g"].state, GroupState::CompletingRebalance);
    }

    #[test]
    fn before_v4_a_new_member_joins_at_once() {
        let mut s = shard();
        let d = s.handle(1, request("g", "", 3), NOW_MS);
        let r = reply(&d, 1);
        assert_eq!(r.error_code, 0);
        assert_eq!(s.groups["g"].members.len(), 1);
    }

    #[test]
    fn handed_out_ids_count_against_the_group_size() {
        let mut s = GroupShard::new(GroupConfig {
            max_group_size: 1,
            ..GroupConfig::default()
        });
        let d = s.handle(1, request("g", "", 4), NOW_MS);
        assert_eq!(reply(&d, 1).error_code, E::MemberIdRequired.code());
        let d = s.handle(2, request("g", "", 4), NOW_MS);
        assert_eq!(reply(&d, 2).error_code, E::GroupMaxSizeReached.code());
    }

    #[test]
    fn a_different_protocol_type_is_inconsistent() {
        let mut s = shard();
        s.handle(1, request("g", "", 3), NOW_MS);
        let GroupRequest::Join { req, .. } = request("g", "", 3) else {
            unreachable!()
        };
        let other = GroupRequest::Join {
            version: 3,
            client_id: String::new(),
            client_host: String::new(),
            image: None,
            req: req.with_protocol_type(str_bytes("connect")),
        };
        let d = s.handle(2, other, NOW_MS);
        assert_eq!(reply(&d, 2).error_code, E::InconsistentGroupProtocol.code());
    }
}
