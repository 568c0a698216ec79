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
//!
//! Layout, by protocol phase (each file adds the `GroupShard` methods of its phase):
//! - `group`: one group in memory (`Group`, `Member`) and its protocol selection.
//! - `replay`: rebuilding the shard from the records of the log.
//! - `join`: JoinGroup, in named steps (validate, unknown member, static member, known member).
//! - `rebalance`: the join phase of a group: begin, complete, remove members.
//! - `sync`: SyncGroup, the leader handing out the assignment.
//! - `heartbeat`: Heartbeat, LeaveGroup, and the timers (session expiry, join deadlines).
//! - `offsets`: OffsetCommit, OffsetFetch, OffsetDelete and offset retention.
//! - `describe`: DescribeGroups, ListGroups and DeleteGroups.
//! - `consumer`: the consumer groups (KIP-848) of the shard, decided by `group::consumer`.
//! - `txn_offsets`: TxnOffsetCommit, offsets pending per producer until its transaction ends.
//! - `mixed`: classic members inside a consumer group, and the online upgrade and downgrade
//!   between the types (whose pure conversions are in `convert`).

mod consumer;
mod convert;
mod describe;
mod group;
mod heartbeat;
mod join;
mod mixed;
#[cfg(test)]
mod mixed_tests;
mod offsets;
mod rebalance;
mod replay;
mod sync;
mod txn_offsets;

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup as ConsumerDescribedGroup;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatResponse, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, SyncGroupRequest,
    SyncGroupResponse, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use super::consumer::{ConsumerGroup, ConsumerGroupConfig, TopicsImage};
use super::records::{OffsetAndMetadata, OffsetsRecord};
use crate::model::{Offset, TopicPartition};
use crate::protocol::str_bytes;
pub use consumer::ConsumerHeartbeat;
pub use group::{Group, Member};

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
    /// `group.consumer.*`
    pub consumer: ConsumerGroupConfig,
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
            consumer: ConsumerGroupConfig::default(),
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
        /// The topics of the metadata image, for a classic member joining a consumer group
        /// (`None`: the last image the shard saw).
        image: Option<Arc<TopicsImage>>,
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
        version: i16,
        req: OffsetCommitRequest,
    },
    /// `topics: None` asks for every committed offset of the group. `member`: the member id
    /// and epoch of a consumer-group member asking (OffsetFetch v9+).
    FetchOffsets {
        group_id: String,
        topics: Option<Vec<(String, Vec<i32>)>>,
        member: Option<(String, i32)>,
        /// OffsetFetch v7+ (KIP-447): partitions with transactional offsets still pending are
        /// answered UNSTABLE_OFFSET_COMMIT, and the client retries.
        require_stable: bool,
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
    ConsumerHeartbeat(Box<ConsumerHeartbeat>),
    ConsumerDescribe {
        group_ids: Vec<String>,
        image: Arc<TopicsImage>,
    },
    TxnCommit {
        req: TxnOffsetCommitRequest,
        /// The KIP-890 verification the batch is written with, when the broker verifies.
        verification: Option<crate::log::VerificationGuard>,
    },
    /// A transaction marker of `producer_id` was written on this shard's partition, at
    /// `marker_offset`.
    TxnCompleted {
        producer_id: i64,
        commit: bool,
        marker_offset: i64,
    },
}

/// Committed offsets as OffsetFetch reports them, version-independent.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedOffsets {
    pub error_code: i16,
    /// topic → (partition, committed offset or None)
    pub topics: Vec<(String, Vec<(i32, Option<OffsetAndMetadata>)>)>,
    /// Partitions answered UNSTABLE_OFFSET_COMMIT (`require_stable` with offsets pending).
    pub unstable: Vec<(String, i32)>,
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
    ConsumerHeartbeat(ConsumerGroupHeartbeatResponse),
    ConsumerDescribe(Vec<ConsumerDescribedGroup>),
    TxnCommit(TxnOffsetCommitResponse),
    TxnCompleted,
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
                unstable: Vec::new(),
            }),
            GroupResponse::Describe(r) => GroupResponse::Describe(r.with_error_code(code)),
            GroupResponse::List(l) => GroupResponse::List(l),
            GroupResponse::Delete(_) => GroupResponse::Delete(code),
            GroupResponse::DeleteOffsets(r) => {
                GroupResponse::DeleteOffsets(r.with_error_code(code))
            }
            GroupResponse::ConsumerHeartbeat(_) => GroupResponse::ConsumerHeartbeat(
                ConsumerGroupHeartbeatResponse::default().with_error_code(code),
            ),
            GroupResponse::ConsumerDescribe(gs) => GroupResponse::ConsumerDescribe(
                gs.into_iter().map(|g| g.with_error_code(code)).collect(),
            ),
            GroupResponse::TxnCommit(mut r) => {
                for t in &mut r.topics {
                    for p in &mut t.partitions {
                        p.error_code = code;
                    }
                }
                GroupResponse::TxnCommit(r)
            }
            GroupResponse::TxnCompleted => GroupResponse::TxnCompleted,
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
    /// Set for a TxnOffsetCommit: `records` go in a transactional batch of this producer id
    /// and epoch, so the transaction's marker decides them.
    pub producer: Option<(i64, i16)>,
    /// The verification guard that batch is appended with (`GroupRequest::TxnCommit`).
    pub verification: Option<crate::log::VerificationGuard>,
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
    /// The groups of the consumer protocol, by id; their offsets are in `groups`.
    pub consumer_groups: HashMap<String, ConsumerGroup>,
    /// The image of the last consumer heartbeat, for assignments decided by timers.
    last_image: Option<Arc<TopicsImage>>,
    join_seq: u64,
    /// Offsets of transactions not yet ended, by producer id ([`txn_offsets`]).
    pending_txn_offsets: HashMap<i64, Vec<txn_offsets::PendingOffset>>,
    /// The epoch of each producer with pending offsets, to fence its zombies.
    pending_txn_epochs: HashMap<i64, i16>,
    /// Where the load stopped reading the partition: the markers below it were replayed.
    pub loaded_end: i64,
}

impl GroupShard {
    pub fn new(config: GroupConfig) -> GroupShard {
        GroupShard {
            config,
            groups: HashMap::new(),
            consumer_groups: HashMap::new(),
            last_image: None,
            join_seq: 0,
            pending_txn_offsets: HashMap::new(),
            pending_txn_epochs: HashMap::new(),
            loaded_end: 0,
        }
    }

    /// A summary of every group, for the metrics.
    pub fn summary(&self) -> Vec<GroupSummary> {
        self.groups
            .values()
            .map(|g| GroupSummary {
                group_id: g.group_id.clone(),
                // A consumer group counts as Stable while it has members.
                state: match self.consumer_groups.get(&g.group_id) {
                    Some(c) if !c.members.is_empty() => GroupState::Stable,
                    _ => g.state,
                },
                members: g.members.len()
                    + self
                        .consumer_groups
                        .get(&g.group_id)
                        .map_or(0, |c| c.members.len()),
                offsets: g
                    .offsets
                    .iter()
                    .map(|((t, p), o)| (TopicPartition::new(t.clone(), *p), Offset(o.offset)))
                    .collect(),
            })
            .collect()
    }

    /// Decides one request: what to write and what to answer.
    pub fn handle(&mut self, waiter: Waiter, request: GroupRequest, now_ms: i64) -> Decision {
        let mut d = Decision::default();
        match request {
            GroupRequest::Join {
                version,
                client_id,
                client_host,
                req,
                image,
            } => {
                if let Some(image) = image {
                    self.last_image = Some(image);
                }
                self.join(&mut d, waiter, version, client_id, client_host, req, now_ms)
            }
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
            GroupRequest::Commit { version, req } => {
                self.commit(&mut d, waiter, version, req, now_ms)
            }
            GroupRequest::FetchOffsets {
                group_id,
                topics,
                member,
                require_stable,
            } => {
                let r = match self.check_consumer_fetch(&group_id, member.as_ref()) {
                    Some(c) => FetchedOffsets {
                        error_code: c,
                        topics: Vec::new(),
                        unstable: Vec::new(),
                    },
                    None => self.fetch_offsets(&group_id, topics),
                };
                let mut r = r;
                if require_stable {
                    r.unstable = r
                        .topics
                        .iter()
                        .flat_map(|(t, ps)| ps.iter().map(move |(p, _)| (t.clone(), *p)))
                        .filter(|(t, p)| self.has_pending_offset(&group_id, t, *p))
                        .collect();
                }
                d.reply(waiter, GroupResponse::FetchOffsets(r));
            }
            GroupRequest::ConsumerHeartbeat(hb) => {
                self.consumer_heartbeat(&mut d, waiter, *hb, now_ms)
            }
            GroupRequest::ConsumerDescribe { group_ids, image } => {
                let r = self.consumer_describe(&group_ids, &image);
                d.reply(waiter, GroupResponse::ConsumerDescribe(r));
            }
            GroupRequest::Describe { group_id } => {
                let r = self.describe(&group_id);
                d.reply(waiter, GroupResponse::Describe(r));
            }
            GroupRequest::List => d.reply(waiter, GroupResponse::List(self.list())),
            GroupRequest::Delete { group_id } => self.delete_group(&mut d, waiter, &group_id),
            GroupRequest::DeleteOffsets { req } => self.delete_offsets(&mut d, waiter, req),
            GroupRequest::TxnCommit { req, verification } => {
                self.txn_commit(&mut d, waiter, req, now_ms);
                d.verification = verification;
            }
            GroupRequest::TxnCompleted {
                producer_id,
                commit,
                marker_offset,
            } => {
                self.txn_completed(producer_id, commit, marker_offset, now_ms);
                d.reply(waiter, GroupResponse::TxnCompleted);
            }
        }
        d
    }
}
