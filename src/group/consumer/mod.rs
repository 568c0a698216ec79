//! Consumer groups of the new protocol (KIP-848), as a pure state machine beside the classic
//! one: the broker assigns partitions, members learn their share through
//! ConsumerGroupHeartbeat, and no member ever waits on another.
//!
//! Epochs, as in Kafka's `ConsumerGroup`:
//! - the *group epoch* moves whenever what the assignment depends on changes: a member joins or
//!   leaves, a subscription changes, a subscribed topic appears or grows;
//! - the *target assignment* is recomputed by the group's assignor when it is older than the
//!   group epoch, and takes the group epoch as its *assignment epoch*;
//! - each *member epoch* catches up with the assignment epoch through reconciliation
//!   ([`reconcile`]): a member first gives up (revokes) the partitions no longer its own and
//!   only then gets its new ones, each new one only once its previous owner has released it,
//!   so no partition is ever owned by two members at once.
//!
//! Persistence: every change is written as the records of [`records`] (member metadata, group
//! epoch, target assignment, current member assignment) and [`ConsumerGroup::replay`] rebuilds
//! the group from them at load.
//!
//! Layout: [`assignor`] (uniform, range), [`classic`] (classic members inside a consumer
//! group, and the ConsumerProtocol bytes they exchange), [`reconcile`] (member epochs and revocation),
//! [`heartbeat`] (the ConsumerGroupHeartbeat decision), [`describe`] (ConsumerGroupDescribe),
//! [`records`] (the `__consumer_offsets` schemas).

pub mod assignor;
pub mod classic;
pub mod describe;
pub mod heartbeat;
pub mod reconcile;
pub mod records;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use uuid::Uuid;

use assignor::{Assignor, AssignorMember, TopicSizes};
use records::{Assignment, ConsumerRecord, CurrentAssignmentValue, MemberMetadataValue};

/// Kafka's `LEAVE_GROUP_MEMBER_EPOCH`.
pub const LEAVE_EPOCH: i32 = -1;
/// Kafka's `LEAVE_GROUP_STATIC_MEMBER_EPOCH`: a static member leaving for a while.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// The coordinator settings of consumer groups (node config keys in brackets).
#[derive(Debug, Clone)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.heartbeat.interval.ms`
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.session.timeout.ms`
    pub session_timeout_ms: i32,
    /// `group.consumer.assignors`; the first is the default.
    pub assignors: Vec<Assignor>,
    /// `group.consumer.max.size`
    pub max_size: usize,
    /// `group.consumer.migration.policy`
    pub migration: MigrationPolicy,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        ConsumerGroupConfig {
            heartbeat_interval_ms: 5_000,
            session_timeout_ms: 45_000,
            assignors: vec![Assignor::Uniform, Assignor::Range],
            max_size: i32::MAX as usize,
            migration: MigrationPolicy::Bidirectional,
        }
    }
}

/// `group.consumer.migration.policy`: which conversions between the group types are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationPolicy {
    Bidirectional,
    Upgrade,
    Downgrade,
    Disabled,
}

impl MigrationPolicy {
    pub fn parse(s: &str) -> MigrationPolicy {
        match s.to_ascii_lowercase().as_str() {
            "upgrade" => MigrationPolicy::Upgrade,
            "downgrade" => MigrationPolicy::Downgrade,
            "disabled" => MigrationPolicy::Disabled,
            _ => MigrationPolicy::Bidirectional,
        }
    }

    pub fn upgrade(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Bidirectional | MigrationPolicy::Upgrade
        )
    }

    pub fn downgrade(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Bidirectional | MigrationPolicy::Downgrade
        )
    }
}

/// One topic as the group sees the metadata image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TopicMeta {
    pub id: Uuid,
    pub partitions: i32,
}

/// The part of the metadata image a consumer group depends on, handed in with each request so
/// the state machine stays pure. `version` is the image offset: unchanged means unchanged.
#[derive(Debug, Clone, Default)]
pub struct TopicsImage {
    pub version: u64,
    pub by_name: BTreeMap<String, TopicMeta>,
}

impl TopicsImage {
    pub fn name_of(&self, id: &Uuid) -> Option<&str> {
        self.by_name
            .iter()
            .find(|(_, t)| t.id == *id)
            .map(|(n, _)| n.as_str())
    }
}

/// Kafka's `MemberState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Stable = 0,
    /// Waiting for the member to revoke `pending_revocation`.
    UnrevokedPartitions = 1,
    /// At the target epoch, waiting for partitions other members still own.
    UnreleasedPartitions = 2,
}

impl MemberState {
    fn from_i8(v: i8) -> MemberState {
        match v {
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => MemberState::Stable,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MemberState::Stable => "stable",
            MemberState::UnrevokedPartitions => "unrevoked_partitions",
            MemberState::UnreleasedPartitions => "unreleased_partitions",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub member_id: String,
    pub meta: MemberMetadataValue,
    /// The compiled `subscribed_topic_regex`, if any.
    pub regex: Option<regex::Regex>,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
    /// The session ends here unless a heartbeat comes first.
    pub session_deadline_ms: i64,
    /// A member that has not revoked by then is removed (its rebalance timeout).
    pub revocation_deadline_ms: Option<i64>,
}

impl ConsumerMember {
    pub fn new(member_id: String, meta: MemberMetadataValue) -> ConsumerMember {
        let regex = compile(meta.subscribed_topic_regex.as_deref());
        ConsumerMember {
            member_id,
            meta,
            regex,
            member_epoch: 0,
            previous_member_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            session_deadline_ms: i64::MAX,
            revocation_deadline_ms: None,
        }
    }

    /// The existing topics this member subscribes to, by name and through its regex. Internal
    /// topics (`__` prefix) are never matched by a regex, as in Kafka.
    pub fn subscribed<'a>(&self, image: &'a TopicsImage) -> BTreeMap<&'a str, TopicMeta> {
        let mut out = BTreeMap::new();
        for name in &self.meta.subscribed_topic_names {
            if let Some((n, t)) = image.by_name.get_key_value(name.as_str()) {
                out.insert(n.as_str(), *t);
            }
        }
        if let Some(re) = &self.regex {
            for (n, t) in &image.by_name {
                if !n.starts_with("__") && re.is_match(n) {
                    out.insert(n.as_str(), *t);
                }
            }
        }
        out
    }

    pub fn current_value(&self) -> CurrentAssignmentValue {
        CurrentAssignmentValue {
            member_epoch: self.member_epoch,
            previous_member_epoch: self.previous_member_epoch,
            state: self.state as i8,
            assigned: self.assigned.clone(),
            pending_revocation: self.pending_revocation.clone(),
        }
    }
}

/// Compiles a subscription regex (RE2/J syntax, which the `regex` crate follows); the caller
/// validated it, so a failure here (a record written by someone else) matches nothing.
pub fn compile(regex: Option<&str>) -> Option<regex::Regex> {
    regex.and_then(|r| regex::Regex::new(r).ok())
}

#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    pub group_id: String,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    /// Target assignment by member id, at `assignment_epoch`.
    pub target: BTreeMap<String, Assignment>,
    /// instance id → member id, for static members.
    pub static_members: HashMap<String, String>,
    /// The image version and subscription hash the group epoch last accounted for; `None`
    /// after a load, when the next heartbeat recomputes and compares the target instead.
    pub metadata_seen: Option<(u64, u64)>,
    /// The assignor of the last target assignment.
    pub assignor: Assignor,
}

impl ConsumerGroup {
    pub fn new(group_id: &str) -> ConsumerGroup {
        ConsumerGroup {
            group_id: group_id.to_string(),
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            static_members: HashMap::new(),
            metadata_seen: None,
            assignor: Assignor::Uniform,
        }
    }

    /// Kafka's `ConsumerGroupState` as shown by ListGroups and ConsumerGroupDescribe.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch != self.epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.member_epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The assignor the group uses: the one members asked for (the most common, ties by name),
    /// else the configured default.
    pub fn pick_assignor(&self, config: &ConsumerGroupConfig) -> Assignor {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.meta.server_assignor.as_deref() {
                *votes.entry(a).or_default() += 1;
            }
        }
        votes
            .iter()
            .max_by_key(|(name, n)| (**n, std::cmp::Reverse(*name)))
            .and_then(|(name, _)| Assignor::by_name(name))
            .or_else(|| config.assignors.first().copied())
            .unwrap_or(Assignor::Uniform)
    }

    /// A hash of what the assignment depends on in the image: the subscribed topics with their
    /// ids and sizes.
    pub fn subscription_hash(&self, image: &TopicsImage) -> u64 {
        let mut topics: BTreeMap<&str, TopicMeta> = BTreeMap::new();
        for m in self.members.values() {
            topics.extend(m.subscribed(image));
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        topics.hash(&mut h);
        h.finish()
    }

    /// Recomputes the target assignment at the group epoch with the group's assignor; records
    /// only the members whose target changed.
    pub fn compute_target(
        &mut self,
        config: &ConsumerGroupConfig,
        image: &TopicsImage,
        out: &mut Vec<ConsumerRecord>,
    ) {
        self.assignor = self.pick_assignor(config);
        let mut sizes = TopicSizes::new();
        let inputs: BTreeMap<String, AssignorMember> = self
            .members
            .iter()
            .map(|(id, m)| {
                let topics: BTreeSet<Uuid> = m
                    .subscribed(image)
                    .into_values()
                    .map(|t| {
                        sizes.insert(t.id, t.partitions);
                        t.id
                    })
                    .collect();
                let previous = self.target.get(id).cloned().unwrap_or_default();
                (id.clone(), AssignorMember { topics, previous })
            })
            .collect();
        let new = self.assignor.assign(&inputs, &sizes);
        for (id, a) in &new {
            if self.target.get(id) != Some(a) {
                out.push(ConsumerRecord::TargetAssignmentMember {
                    group: self.group_id.clone(),
                    member: id.clone(),
                    value: Some(a.clone()),
                });
            }
        }
        self.target = new;
        self.assignment_epoch = self.epoch;
        out.push(ConsumerRecord::TargetAssignmentMetadata {
            group: self.group_id.clone(),
            assignment_epoch: Some(self.assignment_epoch),
        });
    }

    /// Bumps the group epoch and records it.
    pub fn bump_epoch(&mut self, out: &mut Vec<ConsumerRecord>) {
        self.epoch += 1;
        out.push(ConsumerRecord::GroupMetadata {
            group: self.group_id.clone(),
            epoch: Some(self.epoch),
        });
    }

    /// Removes a member (left, fenced, expired) with tombstones for its records; its
    /// partitions are free at once. The caller bumps the epoch.
    pub fn remove_member(&mut self, member_id: &str, out: &mut Vec<ConsumerRecord>) {
        let Some(m) = self.members.remove(member_id) else {
            return;
        };
        if let Some(i) = &m.meta.instance_id {
            if self.static_members.get(i).is_some_and(|id| id == member_id) {
                self.static_members.remove(i);
            }
        }
        self.target.remove(member_id);
        out.extend(self.member_tombstones(member_id));
    }

    fn member_tombstones(&self, member_id: &str) -> [ConsumerRecord; 3] {
        let (group, member) = (self.group_id.clone(), member_id.to_string());
        [
            ConsumerRecord::CurrentMemberAssignment {
                group: group.clone(),
                member: member.clone(),
                value: None,
            },
            ConsumerRecord::TargetAssignmentMember {
                group: group.clone(),
                member: member.clone(),
                value: None,
            },
            ConsumerRecord::MemberMetadata {
                group,
                member,
                value: None,
            },
        ]
    }

    /// Every record of the group as tombstones, Kafka's order for a deletion: current
    /// assignments, targets, target metadata, members, group metadata last.
    pub fn tombstones(&self) -> Vec<ConsumerRecord> {
        let mut out = Vec::new();
        for id in self.members.keys() {
            out.extend(self.member_tombstones(id));
        }
        out.push(ConsumerRecord::TargetAssignmentMetadata {
            group: self.group_id.clone(),
            assignment_epoch: None,
        });
        out.push(ConsumerRecord::GroupMetadata {
            group: self.group_id.clone(),
            epoch: None,
        });
        out
    }

    /// Folds one record read back from the log into the group. Members are alive from
    /// `now_ms` plus their session timeout, as after a coordinator move in Kafka.
    pub fn replay(&mut self, record: ConsumerRecord, now_ms: i64, session_timeout_ms: i32) {
        match record {
            ConsumerRecord::GroupMetadata { epoch, .. } => self.epoch = epoch.unwrap_or(0),
            ConsumerRecord::TargetAssignmentMetadata {
                assignment_epoch, ..
            } => self.assignment_epoch = assignment_epoch.unwrap_or(0),
            ConsumerRecord::MemberMetadata { member, value, .. } => match value {
                Some(v) => {
                    if let Some(i) = &v.instance_id {
                        self.static_members.insert(i.clone(), member.clone());
                    }
                    let m = self
                        .members
                        .entry(member.clone())
                        .or_insert_with(|| ConsumerMember::new(member.clone(), v.clone()));
                    m.regex = compile(v.subscribed_topic_regex.as_deref());
                    let session_ms = v
                        .classic
                        .as_ref()
                        .map_or(session_timeout_ms, |c| c.session_timeout_ms);
                    m.meta = v;
                    m.session_deadline_ms = now_ms + session_ms as i64;
                }
                None => {
                    if let Some(m) = self.members.remove(&member) {
                        if let Some(i) = m.meta.instance_id {
                            if self.static_members.get(&i) == Some(&member) {
                                self.static_members.remove(&i);
                            }
                        }
                    }
                }
            },
            ConsumerRecord::TargetAssignmentMember { member, value, .. } => match value {
                Some(a) => {
                    self.target.insert(member, a);
                }
                None => {
                    self.target.remove(&member);
                }
            },
            ConsumerRecord::CurrentMemberAssignment { member, value, .. } => {
                // After compaction a member's assignment may precede its metadata record (the
                // metadata was rewritten later): the member starts from whichever comes first.
                if let Some(v) = value {
                    let m = self.members.entry(member.clone()).or_insert_with(|| {
                        let mut m =
                            ConsumerMember::new(member.clone(), MemberMetadataValue::default());
                        m.session_deadline_ms = now_ms + session_timeout_ms as i64;
                        m
                    });
                    m.member_epoch = v.member_epoch;
                    m.previous_member_epoch = v.previous_member_epoch;
                    m.state = MemberState::from_i8(v.state);
                    m.assigned = v.assigned;
                    m.pending_revocation = v.pending_revocation;
                }
            }
        }
    }

    /// The earliest timer of the group: a session end or a revocation deadline.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.members
            .values()
            .flat_map(|m| [Some(m.session_deadline_ms), m.revocation_deadline_ms])
            .flatten()
            .min()
    }

    /// Removes the members whose session ended or who did not revoke in time, bumps the epoch
    /// if any went and recomputes the target. Returns whether anything changed.
    pub fn expire(
        &mut self,
        now_ms: i64,
        config: &ConsumerGroupConfig,
        image: Option<&TopicsImage>,
        out: &mut Vec<ConsumerRecord>,
    ) -> bool {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.session_deadline_ms <= now_ms
                    || m.revocation_deadline_ms.is_some_and(|d| d <= now_ms)
            })
            .map(|m| m.member_id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = %self.group_id, member = %id, "consumer group member expired");
            self.remove_member(id, out);
        }
        if expired.is_empty() {
            return false;
        }
        self.bump_epoch(out);
        if let Some(image) = image {
            self.compute_target(config, image, out);
        }
        true
    }
}
