//! The classic group protocol as a pure state machine: (shard, request or tick, now) →
//! (shard, records to write, replies). No sockets, files or clocks here; the shard task in
//! [`super::shard`] executes the decisions (append the records with acks=all, then send the
//! replies) and drives the timers from [`GroupShard::next_deadline_ms`].
//!
//! One [`GroupShard`] holds every group of one `__consumer_offsets` partition: members, the
//! rebalance state, and the latest committed offsets, rebuilt at load by [`GroupShard::replay`].
//!
//! States, as in Kafka's `ClassicGroupState`:
//! - `Empty`: no members; may hold committed offsets (also of consumers that never joined).
//! - `PreparingRebalance`: waiting for every member to (re)join, until the rebalance timeout.
//! - `CompletingRebalance`: joined; waiting for the leader's SyncGroup with the assignment.
//! - `Stable`: assignment handed out; members heartbeat.
//! - `Dead`: removed; only seen by requests racing a deletion.
//!
//! In-memory offsets change when a commit is decided, before the write is acknowledged; if the
//! write fails the shard unloads and reloads from the log, so memory never stays ahead of it.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetDeleteRequest, OffsetDeleteResponse, SyncGroupRequest, SyncGroupResponse,
};

use super::records::{GroupMetadataValue, MemberMetadata, OffsetAndMetadata, OffsetsRecord};
use crate::model::{Offset, TopicPartition};
use crate::protocol::{str_bytes, topic_name};

/// Identifies a request waiting for its reply; the shard task maps it to a channel.
pub type Waiter = u64;

/// The coordinator settings a shard decides with (node config keys in brackets).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`
    pub max_group_size: usize,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_group_size: i32::MAX as usize,
            offset_metadata_max_bytes: 4096,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub const ALL: [GroupState; 5] = [
        GroupState::Empty,
        GroupState::PreparingRebalance,
        GroupState::CompletingRebalance,
        GroupState::Stable,
        GroupState::Dead,
    ];

    /// The name Kafka puts on the wire (ListGroups, DescribeGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (protocol name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// A JoinGroup waiting for the rebalance to complete: waiter and request version.
    pub awaiting_join: Option<(Waiter, i16)>,
    pub awaiting_sync: Option<Waiter>,
    pub last_heartbeat_ms: i64,
    /// Order of joining; the first member is leader when a leader must be chosen.
    join_seq: u64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }
}

/// The initial rebalance delay of a group that had no members (Kafka's `InitialDelayedJoin`):
/// wait `group.initial.rebalance.delay.ms`, extended while new members keep arriving, up to the
/// rebalance timeout.
#[derive(Debug, Clone)]
struct InitialDelay {
    remaining_ms: i64,
    new_member_added: bool,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub group_id: String,
    pub state: GroupState,
    pub state_timestamp_ms: i64,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id → member id, for static members.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the time they expire.
    pending_members: HashMap<String, i64>,
    /// When the current join phase ends (PreparingRebalance only).
    join_deadline_ms: Option<i64>,
    initial_delay: Option<InitialDelay>,
    pub offsets: BTreeMap<(String, i32), OffsetAndMetadata>,
}

impl Group {
    fn new(group_id: &str, now_ms: i64) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            join_deadline_ms: None,
            initial_delay: None,
            offsets: BTreeMap::new(),
        }
    }

    fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms as i64)
            .max()
            .unwrap_or(0)
    }

    /// The protocols every member supports.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut candidates: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            candidates.retain(|c| m.protocols.iter().any(|(n, _)| n == c));
        }
        candidates
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && self
                .candidate_protocols()
                .iter()
                .any(|c| protocols.iter().any(|(n, _)| n == c))
    }

    /// Each member votes for its most preferred protocol that all support; most votes wins,
    /// ties going to the earlier candidate.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                if let Some(v) = votes.iter_mut().find(|(c, _)| c == name) {
                    v.1 += 1;
                }
            }
        }
        let mut best: Option<(String, usize)> = None;
        for (c, n) in votes {
            if best.as_ref().is_none_or(|(_, b)| n > *b) {
                best = Some((c, n));
            }
        }
        best.map(|(c, _)| c)
    }

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    fn metadata_value(&self) -> GroupMetadataValue {
        let protocol = self.protocol.clone();
        GroupMetadataValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| MemberMetadata {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: protocol
                        .as_deref()
                        .map(|p| m.metadata_for(p))
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    fn metadata_record(&self) -> OffsetsRecord {
        OffsetsRecord::GroupMetadata {
            group: self.group_id.clone(),
            value: Some(self.metadata_value()),
        }
    }

    /// Topics the members subscribe to, when the group speaks the consumer protocol.
    fn subscribed_topics(&self) -> Option<Vec<String>> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = Vec::new();
        for m in self.members.values() {
            let mut bytes = m.metadata_for(protocol);
            if bytes.len() < 2 {
                return None;
            }
            let version = i16::from_be_bytes([bytes[0], bytes[1]]);
            let _ = bytes::Buf::get_i16(&mut bytes);
            let sub = ConsumerProtocolSubscription::decode(&mut bytes, version.clamp(0, 3)).ok()?;
            topics.extend(sub.topics.iter().map(|t| t.to_string()));
        }
        Some(topics)
    }
}

/// What the metrics read of a group: its state, its members and its committed offsets. The
/// shard task publishes these every few seconds, so scrapes never wait on the shard.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: GroupState,
    pub members: usize,
    pub offsets: Vec<(TopicPartition, Offset)>,
}

/// What a request asks of its group's shard.
#[derive(Debug, Clone)]
pub enum GroupRequest {
    Join {
        version: i16,
        client_id: String,
        client_host: String,
        req: JoinGroupRequest,
    },
    Sync {
        req: SyncGroupRequest,
    },
    Heartbeat {
        req: HeartbeatRequest,
    },
    Leave {
        version: i16,
        req: LeaveGroupRequest,
    },
    Commit {
        req: OffsetCommitRequest,
    },
    /// `topics: None` asks for every committed offset of the group.
    FetchOffsets {
        group_id: String,
        topics: Option<Vec<(String, Vec<i32>)>>,
    },
    Describe {
        group_id: String,
    },
    List,
    Delete {
        group_id: String,
    },
    DeleteOffsets {
        req: OffsetDeleteRequest,
    },
}

/// Committed offsets as OffsetFetch reports them, version-independent.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedOffsets {
    pub error_code: i16,
    /// topic → (partition, committed offset or None)
    pub topics: Vec<(String, Vec<(i32, Option<OffsetAndMetadata>)>)>,
}

#[derive(Debug, Clone)]
pub enum GroupResponse {
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
    Heartbeat(HeartbeatResponse),
    Leave(LeaveGroupResponse),
    Commit(OffsetCommitResponse),
    FetchOffsets(FetchedOffsets),
    Describe(DescribedGroup),
    List(Vec<ListedGroup>),
    Delete(i16),
    DeleteOffsets(OffsetDeleteResponse),
}

impl GroupResponse {
    /// The same reply with every error code replaced by `code` (a failed write).
    pub fn into_error(self, code: i16) -> GroupResponse {
        match self {
            GroupResponse::Join(r) => {
                GroupResponse::Join(join_error(code, r.member_id.to_string()))
            }
            GroupResponse::Sync(_) => GroupResponse::Sync(sync_error(code)),
            GroupResponse::Heartbeat(_) => {
                GroupResponse::Heartbeat(HeartbeatResponse::default().with_error_code(code))
            }
            GroupResponse::Leave(r) => GroupResponse::Leave(r.with_error_code(code)),
            GroupResponse::Commit(mut r) => {
                for t in &mut r.topics {
                    for p in &mut t.partitions {
                        p.error_code = code;
                    }
                }
                GroupResponse::Commit(r)
            }
            GroupResponse::FetchOffsets(r) => GroupResponse::FetchOffsets(FetchedOffsets {
                error_code: code,
                topics: r.topics,
            }),
            GroupResponse::Describe(r) => GroupResponse::Describe(r.with_error_code(code)),
            GroupResponse::List(l) => GroupResponse::List(l),
            GroupResponse::Delete(_) => GroupResponse::Delete(code),
            GroupResponse::DeleteOffsets(r) => {
                GroupResponse::DeleteOffsets(r.with_error_code(code))
            }
        }
    }
}

/// What a decision asks the shard task to do: append `records` (acks=all), then send `replies`.
/// With no records the replies go at once.
#[derive(Debug, Default)]
pub struct Decision {
    pub records: Vec<OffsetsRecord>,
    pub replies: Vec<(Waiter, GroupResponse)>,
    /// Join phases this decision completed (each bumps a group's generation), for
    /// `strata_group_rebalances_total`.
    pub rebalances: u64,
}

impl Decision {
    fn reply(&mut self, waiter: Waiter, response: GroupResponse) {
        self.replies.push((waiter, response));
    }
}

fn join_error(code: i16, member_id: String) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(code)
        .with_generation_id(-1)
        .with_member_id(str_bytes(member_id))
        .with_protocol_name(None)
        .with_leader(str_bytes(""))
}

fn sync_error(code: i16) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(code)
}

fn code(e: E) -> i16 {
    e.code()
}

/// All groups of one `__consumer_offsets` partition.
#[derive(Debug, Default)]
pub struct GroupShard {
    pub config: GroupConfig,
    pub groups: HashMap<String, Group>,
    join_seq: u64,
}

impl GroupShard {
    pub fn new(config: GroupConfig) -> GroupShard {
        GroupShard {
            config,
            groups: HashMap::new(),
            join_seq: 0,
        }
    }

    /// A summary of every group, for the metrics.
    pub fn summary(&self) -> Vec<GroupSummary> {
        self.groups
            .values()
            .map(|g| GroupSummary {
                group_id: g.group_id.clone(),
                state: g.state,
                members: g.members.len(),
                offsets: g
                    .offsets
                    .iter()
                    .map(|((t, p), o)| (TopicPartition::new(t.clone(), *p), Offset(o.offset)))
                    .collect(),
            })
            .collect()
    }

    /// Folds one record read back from the log into memory (load after gaining leadership).
    /// Members of a loaded group are considered alive from `now_ms`.
    pub fn replay(&mut self, record: OffsetsRecord, now_ms: i64) {
        match record {
            OffsetsRecord::OffsetCommit {
                group,
                topic,
                partition,
                value,
            } => match value {
                Some(v) => {
                    let g = self
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, now_ms));
                    g.offsets.insert((topic, partition), v);
                }
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.offsets.remove(&(topic, partition));
                        if g.offsets.is_empty()
                            && g.protocol_type.is_none()
                            && g.members.is_empty()
                            && g.generation == 0
                        {
                            self.groups.remove(&group);
                        }
                    }
                }
            },
            OffsetsRecord::GroupMetadata { group, value } => match value {
                Some(v) => {
                    let g = self
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, now_ms));
                    g.protocol_type = Some(v.protocol_type).filter(|p| !p.is_empty());
                    g.generation = v.generation;
                    g.protocol = v.protocol;
                    g.leader = v.leader;
                    g.state_timestamp_ms = if v.current_state_timestamp_ms >= 0 {
                        v.current_state_timestamp_ms
                    } else {
                        now_ms
                    };
                    g.members.clear();
                    g.static_members.clear();
                    for m in v.members {
                        self.join_seq += 1;
                        if let Some(i) = &m.group_instance_id {
                            g.static_members.insert(i.clone(), m.member_id.clone());
                        }
                        let protocols = g
                            .protocol
                            .clone()
                            .map(|p| vec![(p, m.subscription.clone())])
                            .unwrap_or_default();
                        g.members.insert(
                            m.member_id.clone(),
                            Member {
                                member_id: m.member_id,
                                group_instance_id: m.group_instance_id,
                                client_id: m.client_id,
                                client_host: m.client_host,
                                session_timeout_ms: m.session_timeout_ms,
                                rebalance_timeout_ms: m.rebalance_timeout_ms,
                                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                                protocols,
                                assignment: m.assignment,
                                awaiting_join: None,
                                awaiting_sync: None,
                                last_heartbeat_ms: now_ms,
                                join_seq: self.join_seq,
                            },
                        );
                    }
                    g.state = if g.members.is_empty() {
                        GroupState::Empty
                    } else {
                        GroupState::Stable
                    };
                }
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        if g.offsets.is_empty() {
                            self.groups.remove(&group);
                        } else {
                            let offsets = std::mem::take(&mut g.offsets);
                            let mut fresh = Group::new(&group, now_ms);
                            fresh.offsets = offsets;
                            *g = fresh;
                        }
                    }
                }
            },
        }
    }

    pub fn handle(&mut self, waiter: Waiter, request: GroupRequest, now_ms: i64) -> Decision {
        let mut d = Decision::default();
        match request {
            GroupRequest::Join {
                version,
                client_id,
                client_host,
                req,
            } => self.join(&mut d, waiter, version, client_id, client_host, req, now_ms),
            GroupRequest::Sync { req } => self.sync(&mut d, waiter, req, now_ms),
            GroupRequest::Heartbeat { req } => {
                let c = self.heartbeat(&req, now_ms);
                d.reply(
                    waiter,
                    GroupResponse::Heartbeat(HeartbeatResponse::default().with_error_code(c)),
                );
            }
            GroupRequest::Leave { version, req } => {
                self.leave(&mut d, waiter, version, req, now_ms)
            }
            GroupRequest::Commit { req } => self.commit(&mut d, waiter, req, now_ms),
            GroupRequest::FetchOffsets { group_id, topics } => {
                let r = self.fetch_offsets(&group_id, topics);
                d.reply(waiter, GroupResponse::FetchOffsets(r));
            }
            GroupRequest::Describe { group_id } => {
                let r = self.describe(&group_id);
                d.reply(waiter, GroupResponse::Describe(r));
            }
            GroupRequest::List => {
                let mut groups: Vec<ListedGroup> = self
                    .groups
                    .values()
                    .filter(|g| g.state != GroupState::Dead)
                    .map(|g| {
                        ListedGroup::default()
                            .with_group_id(GroupId(str_bytes(g.group_id.clone())))
                            .with_protocol_type(str_bytes(
                                g.protocol_type.clone().unwrap_or_default(),
                            ))
                            .with_group_state(str_bytes(g.state.name()))
                            .with_group_type(str_bytes("classic"))
                    })
                    .collect();
                groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
                d.reply(waiter, GroupResponse::List(groups));
            }
            GroupRequest::Delete { group_id } => self.delete_group(&mut d, waiter, &group_id),
            GroupRequest::DeleteOffsets { req } => self.delete_offsets(&mut d, waiter, req),
        }
        d
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        d: &mut Decision,
        waiter: Waiter,
        version: i16,
        client_id: String,
        client_host: String,
        req: JoinGroupRequest,
        now_ms: i64,
    ) {
        let group_id = req.group_id.0.to_string();
        let member_id = req.member_id.to_string();
        let instance_id = req.group_instance_id.as_ref().map(|s| s.to_string());
        let fail = |d: &mut Decision, c: E| {
            d.reply(
                waiter,
                GroupResponse::Join(join_error(c.code(), member_id.clone())),
            )
        };
        if group_id.is_empty() {
            return fail(d, E::InvalidGroupId);
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return fail(d, E::InvalidSessionTimeout);
        }
        let protocol_type = req.protocol_type.to_string();
        let protocols: Vec<(String, Bytes)> = req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect();
        // Before v4 the rebalance timeout was the session timeout.
        let rebalance_timeout_ms = if req.rebalance_timeout_ms > 0 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        };

        if !self.groups.contains_key(&group_id) {
            if !member_id.is_empty() {
                return fail(d, E::UnknownMemberId);
            }
            self.groups
                .insert(group_id.clone(), Group::new(&group_id, now_ms));
        }
        let max_size = self.config.max_group_size;
        let initial_delay_ms = self.config.initial_rebalance_delay_ms;
        self.join_seq += 1;
        let seq = self.join_seq;
        let Some(group) = self.groups.get_mut(&group_id) else {
            return;
        };
        if group.state == GroupState::Dead {
            return fail(d, E::CoordinatorNotAvailable);
        }
        if !group.supports_protocols(&protocol_type, &protocols) {
            // A rejoining sole member may change its protocols freely.
            let sole = group.members.len() == 1 && group.members.contains_key(&member_id);
            if !sole {
                return fail(d, E::InconsistentGroupProtocol);
            }
        }

        let new_member = |id: String| Member {
            member_id: id,
            group_instance_id: instance_id.clone(),
            client_id: client_id.clone(),
            client_host: client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms,
            protocol_type: protocol_type.clone(),
            protocols: protocols.clone(),
            assignment: Bytes::new(),
            awaiting_join: Some((waiter, version)),
            awaiting_sync: None,
            last_heartbeat_ms: now_ms,
            join_seq: seq,
        };

        if member_id.is_empty() {
            let generated = format!(
                "{}-{}",
                if client_id.is_empty() {
                    "member"
                } else {
                    &client_id
                },
                uuid::Uuid::new_v4()
            );
            if let Some(instance) = &instance_id {
                if let Some(old_id) = group.static_members.get(instance).cloned() {
                    // A static member restarting: it takes over its old identity under a new id,
                    // fencing whoever still uses the old one.
                    let Some(mut member) = group.members.remove(&old_id) else {
                        group.static_members.remove(instance);
                        return self.join_new(
                            d,
                            &group_id,
                            new_member(generated),
                            now_ms,
                            initial_delay_ms,
                        );
                    };
                    if let Some((w, _)) = member.awaiting_join.take() {
                        d.reply(
                            w,
                            GroupResponse::Join(join_error(
                                code(E::FencedInstanceId),
                                old_id.clone(),
                            )),
                        );
                    }
                    if let Some(w) = member.awaiting_sync.take() {
                        d.reply(
                            w,
                            GroupResponse::Sync(sync_error(code(E::FencedInstanceId))),
                        );
                    }
                    let unchanged = member.same_protocols(&protocols);
                    member.member_id = generated.clone();
                    member.client_id = client_id.clone();
                    member.client_host = client_host.clone();
                    member.session_timeout_ms = req.session_timeout_ms;
                    member.rebalance_timeout_ms = rebalance_timeout_ms;
                    member.protocols = protocols.clone();
                    member.last_heartbeat_ms = now_ms;
                    group
                        .static_members
                        .insert(instance.clone(), generated.clone());
                    if group.leader.as_deref() == Some(old_id.as_str()) {
                        group.leader = Some(generated.clone());
                    }
                    group.members.insert(generated.clone(), member);
                    if group.state == GroupState::Stable && unchanged {
                        let is_leader = group.leader.as_deref() == Some(generated.as_str());
                        let resp = Self::join_response(group, &generated, is_leader, version);
                        d.reply(
                            waiter,
                            GroupResponse::Join(
                                resp.with_skip_assignment(is_leader && version >= 9),
                            ),
                        );
                        d.records.push(group.metadata_record());
                        return;
                    }
                    if let Some(m) = group.members.get_mut(&generated) {
                        m.awaiting_join = Some((waiter, version));
                    }
                    Self::prepare_rebalance(d, group, now_ms, initial_delay_ms);
                    Self::maybe_complete_join(d, group, now_ms);
                    return;
                }
                if group.members.len() >= max_size {
                    return fail(d, E::GroupMaxSizeReached);
                }
                return self.join_new(
                    d,
                    &group_id,
                    new_member(generated),
                    now_ms,
                    initial_delay_ms,
                );
            }
            if group.members.len() + group.pending_members.len() >= max_size {
                return fail(d, E::GroupMaxSizeReached);
            }
            if version >= 4 {
                // KIP-394: hand out the id first, so a client that never returns leaves no member.
                group
                    .pending_members
                    .insert(generated.clone(), now_ms + req.session_timeout_ms as i64);
                d.reply(
                    waiter,
                    GroupResponse::Join(join_error(code(E::MemberIdRequired), generated)),
                );
                return;
            }
            return self.join_new(
                d,
                &group_id,
                new_member(generated),
                now_ms,
                initial_delay_ms,
            );
        }

        // A known member id.
        if group.pending_members.remove(&member_id).is_some() {
            return self.join_new(
                d,
                &group_id,
                new_member(member_id),
                now_ms,
                initial_delay_ms,
            );
        }
        if let Some(instance) = &instance_id {
            if let Some(current) = group.static_members.get(instance) {
                if *current != member_id {
                    return fail(d, E::FencedInstanceId);
                }
            }
        }
        let Some(member) = group.members.get_mut(&member_id) else {
            return fail(d, E::UnknownMemberId);
        };
        if let Some((old, _)) = member.awaiting_join.take() {
            // A retried join replaces the one still waiting.
            d.reply(
                old,
                GroupResponse::Join(join_error(code(E::RebalanceInProgress), member_id.clone())),
            );
        }
        member.last_heartbeat_ms = now_ms;
        member.client_id = client_id;
        member.client_host = client_host;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = rebalance_timeout_ms;
        let unchanged = member.same_protocols(&protocols);
        member.protocols = protocols;
        let is_leader = group.leader.as_deref() == Some(member_id.as_str());
        match group.state {
            GroupState::PreparingRebalance => {
                if let Some(m) = group.members.get_mut(&member_id) {
                    m.awaiting_join = Some((waiter, version));
                }
                Self::maybe_complete_join(d, group, now_ms);
            }
            GroupState::CompletingRebalance | GroupState::Stable
                if unchanged && !(group.state == GroupState::Stable && is_leader) =>
            {
                // A duplicate join (the response was lost): answer with the current generation.
                let resp = Self::join_response(group, &member_id, is_leader, version);
                d.reply(waiter, GroupResponse::Join(resp));
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                if let Some(m) = group.members.get_mut(&member_id) {
                    m.awaiting_join = Some((waiter, version));
                }
                Self::prepare_rebalance(d, group, now_ms, initial_delay_ms);
                Self::maybe_complete_join(d, group, now_ms);
            }
            GroupState::Empty | GroupState::Dead => fail(d, E::UnknownMemberId),
        }
    }

    fn join_new(
        &mut self,
        d: &mut Decision,
        group_id: &str,
        member: Member,
        now_ms: i64,
        initial_delay_ms: i32,
    ) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
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
            GroupState::PreparingRebalance => Self::maybe_complete_join(d, group, now_ms),
            _ => {
                Self::prepare_rebalance(d, group, now_ms, initial_delay_ms);
                Self::maybe_complete_join(d, group, now_ms);
            }
        }
    }

    fn join_response(
        group: &Group,
        member_id: &str,
        is_leader: bool,
        version: i16,
    ) -> JoinGroupResponse {
        let protocol = group.protocol.clone().unwrap_or_default();
        let members = if is_leader {
            let mut ms: Vec<&Member> = group.members.values().collect();
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
            .with_generation_id(group.generation)
            .with_protocol_type(group.protocol_type.clone().map(str_bytes))
            .with_protocol_name(Some(str_bytes(protocol)))
            .with_leader(str_bytes(group.leader.clone().unwrap_or_default()))
            .with_member_id(str_bytes(member_id.to_string()))
            .with_members(members)
    }

    fn prepare_rebalance(d: &mut Decision, group: &mut Group, now_ms: i64, initial_delay_ms: i32) {
        if group.state == GroupState::CompletingRebalance {
            for m in group.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.awaiting_sync.take() {
                    d.reply(
                        w,
                        GroupResponse::Sync(sync_error(code(E::RebalanceInProgress))),
                    );
                }
            }
        }
        let was_empty = group.state == GroupState::Empty;
        group.transition(GroupState::PreparingRebalance, now_ms);
        let rebalance_timeout = group.rebalance_timeout_ms();
        if was_empty && initial_delay_ms > 0 {
            let delay = (initial_delay_ms as i64).min(rebalance_timeout.max(0));
            group.initial_delay = Some(InitialDelay {
                remaining_ms: (rebalance_timeout - initial_delay_ms as i64).max(0),
                new_member_added: false,
            });
            group.join_deadline_ms = Some(now_ms + delay);
        } else {
            group.initial_delay = None;
            group.join_deadline_ms = Some(now_ms + rebalance_timeout);
        }
    }

    fn maybe_complete_join(d: &mut Decision, group: &mut Group, now_ms: i64) {
        if group.state == GroupState::PreparingRebalance
            && group.initial_delay.is_none()
            && group.all_members_joined()
        {
            Self::complete_join(d, group, now_ms);
        }
    }

    /// Ends the join phase: members that did not rejoin are dropped, the generation advances,
    /// and every joined member gets its JoinGroup response (the leader with the member list).
    fn complete_join(d: &mut Decision, group: &mut Group, now_ms: i64) {
        let gone: Vec<String> = group
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            Self::remove_member(d, group, &id);
        }
        group.pending_members.clear();
        group.join_deadline_ms = None;
        group.initial_delay = None;
        group.generation += 1;
        d.rebalances += 1;
        if group.members.is_empty() {
            group.protocol = None;
            group.leader = None;
            group.transition(GroupState::Empty, now_ms);
            d.records.push(group.metadata_record());
            return;
        }
        group.protocol = group.select_protocol();
        if group
            .leader
            .as_ref()
            .is_none_or(|l| !group.members.contains_key(l))
        {
            group.leader = group
                .members
                .values()
                .min_by_key(|m| m.join_seq)
                .map(|m| m.member_id.clone());
        }
        group.transition(GroupState::CompletingRebalance, now_ms);
        let leader = group.leader.clone().unwrap_or_default();
        let waiting: Vec<(String, Waiter, i16)> = group
            .members
            .values()
            .filter_map(|m| m.awaiting_join.map(|(w, v)| (m.member_id.clone(), w, v)))
            .collect();
        for (id, w, v) in waiting {
            let resp = Self::join_response(group, &id, id == leader, v);
            d.reply(w, GroupResponse::Join(resp));
            if let Some(m) = group.members.get_mut(&id) {
                m.awaiting_join = None;
                m.assignment = Bytes::new();
                m.last_heartbeat_ms = now_ms;
            }
        }
    }

    /// Removes a member, answering its waiting requests with UNKNOWN_MEMBER_ID.
    fn remove_member(d: &mut Decision, group: &mut Group, member_id: &str) {
        let Some(mut m) = group.members.remove(member_id) else {
            return;
        };
        if let Some((w, _)) = m.awaiting_join.take() {
            d.reply(
                w,
                GroupResponse::Join(join_error(code(E::UnknownMemberId), member_id.to_string())),
            );
        }
        if let Some(w) = m.awaiting_sync.take() {
            d.reply(w, GroupResponse::Sync(sync_error(code(E::UnknownMemberId))));
        }
        if let Some(i) = &m.group_instance_id {
            if group.static_members.get(i).map(String::as_str) == Some(member_id) {
                group.static_members.remove(i);
            }
        }
        if group.leader.as_deref() == Some(member_id) {
            group.leader = group
                .members
                .values()
                .min_by_key(|m| m.join_seq)
                .map(|m| m.member_id.clone());
        }
    }

    /// After members left: rebalance what was settled, or finish a join that waited on them.
    fn after_removal(d: &mut Decision, group: &mut Group, now_ms: i64, initial_delay_ms: i32) {
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if group.members.is_empty() {
                    // Nobody left to rebalance: the group is empty right away.
                    Self::prepare_rebalance(d, group, now_ms, 0);
                    Self::complete_join(d, group, now_ms);
                } else {
                    Self::prepare_rebalance(d, group, now_ms, initial_delay_ms);
                    Self::maybe_complete_join(d, group, now_ms);
                }
            }
            GroupState::PreparingRebalance => {
                if group.members.is_empty() {
                    Self::complete_join(d, group, now_ms);
                } else {
                    Self::maybe_complete_join(d, group, now_ms);
                }
            }
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    fn sync(&mut self, d: &mut Decision, waiter: Waiter, req: SyncGroupRequest, now_ms: i64) {
        let member_id = req.member_id.to_string();
        let fail =
            |d: &mut Decision, c: E| d.reply(waiter, GroupResponse::Sync(sync_error(c.code())));
        let Some(group) = self.groups.get_mut(req.group_id.0.as_str()) else {
            return fail(d, E::UnknownMemberId);
        };
        if group.state == GroupState::Dead {
            return fail(d, E::CoordinatorNotAvailable);
        }
        if let Some(instance) = &req.group_instance_id {
            if group
                .static_members
                .get(instance.as_str())
                .is_some_and(|m| *m != member_id)
            {
                return fail(d, E::FencedInstanceId);
            }
        }
        if !group.members.contains_key(&member_id) {
            return fail(d, E::UnknownMemberId);
        }
        if req.generation_id != group.generation {
            return fail(d, E::IllegalGeneration);
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t.as_str()) != group.protocol_type.as_deref())
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|p| Some(p.as_str()) != group.protocol.as_deref())
        {
            return fail(d, E::InconsistentGroupProtocol);
        }
        let ok = |group: &Group, assignment: Bytes| {
            GroupResponse::Sync(
                SyncGroupResponse::default()
                    .with_protocol_type(group.protocol_type.clone().map(str_bytes))
                    .with_protocol_name(group.protocol.clone().map(str_bytes))
                    .with_assignment(assignment),
            )
        };
        match group.state {
            GroupState::Empty | GroupState::Dead => fail(d, E::UnknownMemberId),
            GroupState::PreparingRebalance => fail(d, E::RebalanceInProgress),
            GroupState::Stable => {
                if let Some(m) = group.members.get_mut(&member_id) {
                    m.last_heartbeat_ms = now_ms;
                }
                let a = group
                    .members
                    .get(&member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                d.reply(waiter, ok(group, a));
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = group.members.get_mut(&member_id) {
                    m.last_heartbeat_ms = now_ms;
                    if let Some(old) = m.awaiting_sync.replace(waiter) {
                        d.reply(
                            old,
                            GroupResponse::Sync(sync_error(code(E::RebalanceInProgress))),
                        );
                    }
                }
                if group.leader.as_deref() != Some(member_id.as_str()) {
                    return;
                }
                let assignments: HashMap<String, Bytes> = req
                    .assignments
                    .into_iter()
                    .map(|a| (a.member_id.to_string(), a.assignment))
                    .collect();
                for m in group.members.values_mut() {
                    m.assignment = assignments.get(&m.member_id).cloned().unwrap_or_default();
                }
                group.transition(GroupState::Stable, now_ms);
                d.records.push(group.metadata_record());
                let waiting: Vec<(Waiter, Bytes)> = group
                    .members
                    .values_mut()
                    .filter_map(|m| m.awaiting_sync.take().map(|w| (w, m.assignment.clone())))
                    .collect();
                for (w, a) in waiting {
                    d.reply(w, ok(group, a));
                }
            }
        }
    }

    fn heartbeat(&mut self, req: &HeartbeatRequest, now_ms: i64) -> i16 {
        let member_id = req.member_id.as_str();
        let Some(group) = self.groups.get_mut(req.group_id.0.as_str()) else {
            return code(E::UnknownMemberId);
        };
        if group.state == GroupState::Dead {
            return code(E::CoordinatorNotAvailable);
        }
        if let Some(instance) = &req.group_instance_id {
            if group
                .static_members
                .get(instance.as_str())
                .is_some_and(|m| m != member_id)
            {
                return code(E::FencedInstanceId);
            }
        }
        let generation = group.generation;
        let state = group.state;
        let Some(member) = group.members.get_mut(member_id) else {
            return code(E::UnknownMemberId);
        };
        if req.generation_id != generation {
            return code(E::IllegalGeneration);
        }
        member.last_heartbeat_ms = now_ms;
        match state {
            GroupState::PreparingRebalance => code(E::RebalanceInProgress),
            GroupState::Empty | GroupState::Dead => code(E::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => 0,
        }
    }

    fn leave(
        &mut self,
        d: &mut Decision,
        waiter: Waiter,
        version: i16,
        req: LeaveGroupRequest,
        now_ms: i64,
    ) {
        use kafka_protocol::messages::leave_group_request::MemberIdentity;
        let initial_delay_ms = self.config.initial_rebalance_delay_ms;
        let identities: Vec<MemberIdentity> = if version >= 3 {
            req.members
        } else {
            vec![MemberIdentity::default().with_member_id(req.member_id.clone())]
        };
        let Some(group) = self.groups.get_mut(req.group_id.0.as_str()) else {
            let c = code(E::UnknownMemberId);
            let members = if version >= 3 {
                identities
                    .iter()
                    .map(|i| {
                        MemberResponse::default()
                            .with_member_id(i.member_id.clone())
                            .with_group_instance_id(i.group_instance_id.clone())
                            .with_error_code(c)
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let top = if version >= 3 { 0 } else { c };
            d.reply(
                waiter,
                GroupResponse::Leave(
                    LeaveGroupResponse::default()
                        .with_error_code(top)
                        .with_members(members),
                ),
            );
            return;
        };
        let mut results = Vec::new();
        let mut removed = false;
        for ident in &identities {
            let mut member_id = ident.member_id.to_string();
            let mut c = 0;
            if let Some(instance) = &ident.group_instance_id {
                match group.static_members.get(instance.as_str()) {
                    Some(current) if member_id.is_empty() || *current == member_id => {
                        member_id = current.clone()
                    }
                    Some(_) => c = code(E::FencedInstanceId),
                    None => c = code(E::UnknownMemberId),
                }
            }
            if c == 0 {
                if group.pending_members.remove(&member_id).is_some() {
                    removed = true;
                } else if group.members.contains_key(&member_id) {
                    Self::remove_member(d, group, &member_id);
                    removed = true;
                } else {
                    c = code(E::UnknownMemberId);
                }
            }
            results.push(
                MemberResponse::default()
                    .with_member_id(ident.member_id.clone())
                    .with_group_instance_id(ident.group_instance_id.clone())
                    .with_error_code(c),
            );
        }
        if removed {
            Self::after_removal(d, group, now_ms, initial_delay_ms);
        }
        let resp = if version >= 3 {
            LeaveGroupResponse::default().with_members(results)
        } else {
            LeaveGroupResponse::default()
                .with_error_code(results.first().map(|r| r.error_code).unwrap_or(0))
        };
        d.reply(waiter, GroupResponse::Leave(resp));
    }

    fn commit(&mut self, d: &mut Decision, waiter: Waiter, req: OffsetCommitRequest, now_ms: i64) {
        let group_id = req.group_id.0.to_string();
        let member_id = req.member_id.to_string();
        let respond_all = |d: &mut Decision, c: i16| {
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
            d.reply(
                waiter,
                GroupResponse::Commit(OffsetCommitResponse::default().with_topics(topics)),
            );
        };
        if group_id.is_empty() {
            return respond_all(d, code(E::InvalidGroupId));
        }
        let simple = req.generation_id_or_member_epoch < 0
            && member_id.is_empty()
            && req.group_instance_id.is_none();
        match self.groups.get_mut(&group_id) {
            None if simple => {
                self.groups
                    .insert(group_id.clone(), Group::new(&group_id, now_ms));
            }
            None => return respond_all(d, code(E::IllegalGeneration)),
            Some(group) => {
                if group.state == GroupState::Dead {
                    return respond_all(d, code(E::CoordinatorNotAvailable));
                }
                if simple {
                    if group.state != GroupState::Empty {
                        // Kafka: a commit from outside a group that has members is refused.
                        return respond_all(d, code(E::IllegalGeneration));
                    }
                } else {
                    if let Some(instance) = &req.group_instance_id {
                        if group
                            .static_members
                            .get(instance.as_str())
                            .is_some_and(|m| *m != member_id)
                        {
                            return respond_all(d, code(E::FencedInstanceId));
                        }
                    }
                    let Some(member) = group.members.get_mut(&member_id) else {
                        return respond_all(d, code(E::UnknownMemberId));
                    };
                    if req.generation_id_or_member_epoch != group.generation {
                        return respond_all(d, code(E::IllegalGeneration));
                    }
                    if group.state == GroupState::CompletingRebalance {
                        return respond_all(d, code(E::RebalanceInProgress));
                    }
                    member.last_heartbeat_ms = now_ms;
                }
            }
        }
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
        }
    }

    pub fn describe(&self, group_id: &str) -> DescribedGroup {
        let base =
            DescribedGroup::default().with_group_id(GroupId(str_bytes(group_id.to_string())));
        let Some(g) = self.groups.get(group_id) else {
            return base
                .with_group_state(str_bytes(GroupState::Dead.name()))
                .with_error_code(code(E::GroupIdNotFound));
        };
        let stable = g.state == GroupState::Stable;
        let protocol = if stable {
            g.protocol.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let mut members: Vec<&Member> = g.members.values().collect();
        members.sort_by_key(|m| m.join_seq);
        base.with_group_state(str_bytes(g.state.name()))
            .with_protocol_type(str_bytes(g.protocol_type.clone().unwrap_or_default()))
            .with_protocol_data(str_bytes(protocol.clone()))
            .with_members(
                members
                    .into_iter()
                    .map(|m| {
                        let member = DescribedGroupMember::default()
                            .with_member_id(str_bytes(m.member_id.clone()))
                            .with_group_instance_id(m.group_instance_id.clone().map(str_bytes))
                            .with_client_id(str_bytes(m.client_id.clone()))
                            .with_client_host(str_bytes(m.client_host.clone()));
                        if stable {
                            member
                                .with_member_metadata(m.metadata_for(&protocol))
                                .with_member_assignment(m.assignment.clone())
                        } else {
                            member
                        }
                    })
                    .collect(),
            )
    }

    fn delete_group(&mut self, d: &mut Decision, waiter: Waiter, group_id: &str) {
        let c = match self.groups.get(group_id) {
            None => code(E::GroupIdNotFound),
            Some(g) if g.state == GroupState::Dead => code(E::GroupIdNotFound),
            Some(g) if g.state != GroupState::Empty => code(E::NonEmptyGroup),
            Some(_) => {
                if let Some(g) = self.groups.remove(group_id) {
                    for (t, p) in g.offsets.keys() {
                        d.records.push(OffsetsRecord::OffsetCommit {
                            group: group_id.to_string(),
                            topic: t.clone(),
                            partition: *p,
                            value: None,
                        });
                    }
                    d.records.push(OffsetsRecord::GroupMetadata {
                        group: group_id.to_string(),
                        value: None,
                    });
                }
                0
            }
        };
        d.reply(waiter, GroupResponse::Delete(c));
    }

    fn delete_offsets(&mut self, d: &mut Decision, waiter: Waiter, req: OffsetDeleteRequest) {
        let group_id = req.group_id.0.to_string();
        let Some(group) = self.groups.get_mut(&group_id) else {
            d.reply(
                waiter,
                GroupResponse::DeleteOffsets(
                    OffsetDeleteResponse::default().with_error_code(code(E::GroupIdNotFound)),
                ),
            );
            return;
        };
        let subscribed: Vec<String> = if group.state == GroupState::Empty {
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

    /// The earliest time something must happen without a request: a join phase ending, a
    /// session or a handed-out member id expiring.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let mut next: Option<i64> = None;
        let mut consider = |t: i64| next = Some(next.map_or(t, |n| n.min(t)));
        for g in self.groups.values() {
            if let Some(t) = g.join_deadline_ms {
                consider(t);
            }
            for t in g.pending_members.values() {
                consider(*t);
            }
            for m in g.members.values() {
                if m.awaiting_join.is_none() && m.awaiting_sync.is_none() {
                    consider(m.last_heartbeat_ms + m.session_timeout_ms as i64);
                }
            }
        }
        next
    }

    /// Fires every timer due at `now_ms`.
    pub fn tick(&mut self, now_ms: i64) -> Decision {
        let mut d = Decision::default();
        let initial_delay_ms = self.config.initial_rebalance_delay_ms;
        for group in self.groups.values_mut() {
            // Session expiry: a member that neither heartbeats nor waits in a join or sync.
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| {
                    m.awaiting_join.is_none()
                        && m.awaiting_sync.is_none()
                        && m.last_heartbeat_ms + m.session_timeout_ms as i64 <= now_ms
                })
                .map(|m| m.member_id.clone())
                .collect();
            let pending_expired: Vec<String> = group
                .pending_members
                .iter()
                .filter(|(_, t)| **t <= now_ms)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &pending_expired {
                group.pending_members.remove(id);
            }
            if !expired.is_empty() {
                tracing::info!(group = %group.group_id, members = ?expired, "member session expired");
                for id in &expired {
                    Self::remove_member(&mut d, group, id);
                }
                Self::after_removal(&mut d, group, now_ms, initial_delay_ms);
            } else if !pending_expired.is_empty() {
                Self::maybe_complete_join(&mut d, group, now_ms);
            }
            if group.state == GroupState::PreparingRebalance
                && group.join_deadline_ms.is_some_and(|t| t <= now_ms)
            {
                match &mut group.initial_delay {
                    Some(delay) if delay.new_member_added && delay.remaining_ms > 0 => {
                        let extend = (initial_delay_ms as i64).min(delay.remaining_ms);
                        delay.remaining_ms -= extend;
                        delay.new_member_added = false;
                        group.join_deadline_ms = Some(now_ms + extend);
                    }
                    _ => Self::complete_join(&mut d, group, now_ms),
                }
            }
        }
        d
    }

    /// Expires offsets past `offsets.retention.minutes` (Kafka's KIP-211 rules: for a group
    /// with members nothing expires; for an empty consumer group, counted from when it became
    /// empty; for offsets committed outside any group, from the commit) and removes empty groups
    /// left without offsets. Tombstones go to the log.
    pub fn expire_offsets(&mut self, now_ms: i64) -> Decision {
        let mut d = Decision::default();
        let retention = self.config.offsets_retention_ms;
        let mut dead = Vec::new();
        for group in self.groups.values_mut() {
            if group.state != GroupState::Empty {
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
                d.records.push(OffsetsRecord::GroupMetadata {
                    group: group.group_id.clone(),
                    value: None,
                });
            }
        }
        for g in dead {
            self.groups.remove(&g);
        }
        d
    }
}
