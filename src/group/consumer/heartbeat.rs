//! ConsumerGroupHeartbeat, decided: join, leave (for good or, for static members, for a
//! while), subscription changes, epoch checks, target recomputation and the member's next
//! step of reconciliation — with the records that make it durable.
//!
//! Retries are safe: a heartbeat repeated with the same epoch changes nothing; one that carries
//! the member's previous epoch (the reply with the new one was lost) is accepted while what it
//! reports owning is still its own; a repeated join of a known member id is answered with its
//! current state.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as WireAssignment, TopicPartitions,
};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};

use super::assignor::Assignor;
use super::reconcile::is_subset;
use super::records::{Assignment, ConsumerRecord, MemberMetadataValue};
use super::{
    compile, ConsumerGroup, ConsumerGroupConfig, ConsumerMember, TopicsImage, LEAVE_EPOCH,
    STATIC_LEAVE_EPOCH,
};
use crate::protocol::str_bytes;

/// A refused heartbeat: Kafka's error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatError {
    pub code: i16,
    pub message: String,
}

fn err(e: E, message: impl Into<String>) -> HeartbeatError {
    HeartbeatError {
        code: e.code(),
        message: message.into(),
    }
}

/// What a heartbeat brings besides the request.
#[derive(Debug, Clone)]
pub struct HeartbeatInput<'a> {
    pub version: i16,
    pub client_id: String,
    pub client_host: String,
    /// The member id to use if the member joins without one (v0).
    pub new_member_id: String,
    pub image: &'a TopicsImage,
    pub now_ms: i64,
}

/// Checks a request on its own, as Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`.
pub fn validate(
    req: &ConsumerGroupHeartbeatRequest,
    version: i16,
    config: &ConsumerGroupConfig,
) -> Result<(), HeartbeatError> {
    if req.group_id.0.is_empty() {
        return Err(err(E::InvalidRequest, "GroupId can't be empty."));
    }
    if req.instance_id.as_ref().is_some_and(|i| i.is_empty()) {
        return Err(err(E::InvalidRequest, "InstanceId can't be empty."));
    }
    if req.member_id.is_empty() && (version >= 1 || req.member_epoch != 0) {
        return Err(err(E::InvalidRequest, "MemberId can't be empty."));
    }
    match req.member_epoch {
        0 => {
            if req.rebalance_timeout_ms == -1 {
                return Err(err(
                    E::InvalidRequest,
                    "RebalanceTimeoutMs must be provided in first request.",
                ));
            }
            if req.topic_partitions.as_ref().is_none_or(|t| !t.is_empty()) {
                return Err(err(
                    E::InvalidRequest,
                    "TopicPartitions must be empty when (re-)joining.",
                ));
            }
            if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                return Err(err(
                    E::InvalidRequest,
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                ));
            }
        }
        STATIC_LEAVE_EPOCH if req.instance_id.is_none() => {
            return Err(err(
                E::InvalidRequest,
                "InstanceId can't be null when leaving with epoch -2.",
            ));
        }
        e if e < STATIC_LEAVE_EPOCH => {
            return Err(err(
                E::InvalidRequest,
                format!("MemberEpoch {e} is invalid."),
            ))
        }
        _ => {}
    }
    if let Some(a) = &req.server_assignor {
        if !Assignor::by_name(a).is_some_and(|a| config.assignors.contains(&a)) {
            return Err(err(
                E::UnsupportedAssignor,
                format!("ServerAssignor {a} is not supported."),
            ));
        }
    }
    if let Some(r) = &req.subscribed_topic_regex {
        if let Err(e) = regex::Regex::new(r) {
            return Err(err(
                E::InvalidRegularExpression,
                format!("SubscribedTopicRegex `{r}` is not a valid regular expression: {e}."),
            ));
        }
    }
    Ok(())
}

pub fn to_assignment(
    tps: &[kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions],
) -> Assignment {
    let mut out = Assignment::new();
    for tp in tps {
        if !tp.partitions.is_empty() {
            out.entry(tp.topic_id)
                .or_default()
                .extend(tp.partitions.iter().copied());
        }
    }
    out
}

fn to_wire(a: &Assignment) -> WireAssignment {
    WireAssignment::default().with_topic_partitions(
        a.iter()
            .map(|(t, ps)| {
                TopicPartitions::default()
                    .with_topic_id(*t)
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

impl ConsumerGroup {
    /// Decides one (validated) heartbeat; `out` receives the records to write.
    pub fn heartbeat(
        &mut self,
        req: &ConsumerGroupHeartbeatRequest,
        input: &HeartbeatInput<'_>,
        config: &ConsumerGroupConfig,
        out: &mut Vec<ConsumerRecord>,
    ) -> Result<ConsumerGroupHeartbeatResponse, HeartbeatError> {
        let owned = req.topic_partitions.as_deref().map(to_assignment);
        let instance_id = req.instance_id.as_ref().map(|i| i.to_string());
        let mut member_id = req.member_id.to_string();
        if member_id.is_empty() {
            member_id = input.new_member_id.clone();
        }
        if req.member_epoch == LEAVE_EPOCH || req.member_epoch == STATIC_LEAVE_EPOCH {
            return self.leave(
                &member_id,
                instance_id.as_deref(),
                req.member_epoch,
                input,
                config,
                out,
            );
        }
        let mut joined = false;
        if req.member_epoch == 0 {
            joined = self.join(
                &member_id,
                instance_id.as_deref(),
                owned.as_ref(),
                config,
                out,
            )?;
        } else {
            self.check_epoch(
                &member_id,
                instance_id.as_deref(),
                req.member_epoch,
                owned.as_ref(),
            )?;
        }
        let Some(m) = self.members.get_mut(&member_id) else {
            return Err(err(
                E::UnknownMemberId,
                format!("Member {member_id} is not a member of the group."),
            ));
        };
        m.session_deadline_ms = input.now_ms + config.session_timeout_ms as i64;
        // The subscription: fields a heartbeat leaves null stay as they were.
        let mut meta = m.meta.clone();
        meta.client_id = input.client_id.clone();
        meta.client_host = input.client_host.clone();
        if let Some(names) = &req.subscribed_topic_names {
            let mut names: Vec<String> = names.iter().map(|n| n.0.to_string()).collect();
            names.sort();
            names.dedup();
            meta.subscribed_topic_names = names;
        }
        if let Some(r) = &req.subscribed_topic_regex {
            meta.subscribed_topic_regex = Some(r.to_string()).filter(|r| !r.is_empty());
        }
        if let Some(a) = &req.server_assignor {
            meta.server_assignor = Some(a.to_string());
        }
        if req.rebalance_timeout_ms != -1 {
            meta.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if let Some(r) = &req.rack_id {
            meta.rack_id = Some(r.to_string());
        }
        let subscription_changed = meta.subscribed_topic_names != m.meta.subscribed_topic_names
            || meta.subscribed_topic_regex != m.meta.subscribed_topic_regex
            || meta.server_assignor != m.meta.server_assignor;
        if joined || meta != m.meta {
            m.regex = compile(meta.subscribed_topic_regex.as_deref());
            m.meta = meta.clone();
            out.push(ConsumerRecord::MemberMetadata {
                group: self.group_id.clone(),
                member: member_id.clone(),
                value: Some(meta),
            });
        }
        self.follow_metadata(input.image, config, joined || subscription_changed, out);
        if self.epoch > self.assignment_epoch {
            self.compute_target(config, input.image, out);
        }
        let changed = self.reconcile(&member_id, owned.as_ref(), input.now_ms);
        let Some(m) = self.members.get(&member_id) else {
            return Err(err(E::UnknownMemberId, "member vanished"));
        };
        if changed || joined {
            out.push(ConsumerRecord::CurrentMemberAssignment {
                group: self.group_id.clone(),
                member: member_id.clone(),
                value: Some(m.current_value()),
            });
        }
        let send_assignment = joined
            || changed
            || req.member_epoch != m.member_epoch
            || owned.as_ref().is_some_and(|o| *o != m.assigned);
        Ok(ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(str_bytes(member_id)))
            .with_member_epoch(m.member_epoch)
            .with_heartbeat_interval_ms(config.heartbeat_interval_ms)
            .with_assignment(send_assignment.then(|| to_wire(&m.assigned))))
    }

    /// Bumps the group epoch when what the assignment depends on changed: the subscriptions
    /// (`subscriptions_changed`) or the subscribed topics in the image. After a load the hash
    /// is unknown; the target is recomputed then and the epoch bumped only if it differs.
    pub(super) fn follow_metadata(
        &mut self,
        image: &TopicsImage,
        config: &ConsumerGroupConfig,
        subscriptions_changed: bool,
        out: &mut Vec<ConsumerRecord>,
    ) {
        let image_moved = self.metadata_seen.map(|s| s.0) != Some(image.version);
        if !image_moved && !subscriptions_changed {
            return;
        }
        let hash = self.subscription_hash(image);
        let bump = match self.metadata_seen {
            _ if subscriptions_changed => true,
            Some((_, seen)) => seen != hash,
            None => {
                let mut probe = self.clone();
                probe.compute_target(config, image, &mut Vec::new());
                probe.target != self.target || probe.assignor != self.assignor
            }
        };
        self.metadata_seen = Some((image.version, hash));
        if bump {
            self.bump_epoch(out);
        }
    }

    /// A member with epoch 0: new, a static member coming back, or a repeated join.
    /// Returns whether the member is new to the group (under this member id).
    pub(super) fn join(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        owned: Option<&Assignment>,
        config: &ConsumerGroupConfig,
        out: &mut Vec<ConsumerRecord>,
    ) -> Result<bool, HeartbeatError> {
        if let Some(instance) = instance_id {
            if let Some(old_id) = self.static_members.get(instance).cloned() {
                if old_id != member_id {
                    let active = self
                        .members
                        .get(&old_id)
                        .is_some_and(|m| m.member_epoch != STATIC_LEAVE_EPOCH);
                    if active {
                        return Err(err(
                            E::UnreleasedInstanceId,
                            format!("Static member {old_id} with instance id {instance} is not released yet."),
                        ));
                    }
                    // The static member comes back under a new member id: it takes over the
                    // old member's partitions and target.
                    let old = self.members.get(&old_id).cloned();
                    let target = self.target.get(&old_id).cloned();
                    self.remove_member(&old_id, out);
                    if let Some(mut m) = old {
                        m.member_id = member_id.to_string();
                        m.member_epoch = 0;
                        m.previous_member_epoch = 0;
                        self.members.insert(member_id.to_string(), m);
                        if let Some(t) = target {
                            self.target.insert(member_id.to_string(), t.clone());
                            out.push(ConsumerRecord::TargetAssignmentMember {
                                group: self.group_id.clone(),
                                member: member_id.to_string(),
                                value: Some(t),
                            });
                        }
                    }
                    self.static_members
                        .insert(instance.to_string(), member_id.to_string());
                    return Ok(true);
                }
            }
        }
        if let Some(m) = self.members.get(member_id) {
            // A join repeated (its reply was lost): fine while the member claims nothing else.
            if owned.is_none_or(|o| is_subset(o, &m.assigned)) {
                return Ok(false);
            }
            return Err(err(
                E::FencedMemberEpoch,
                "The member rejoined with partitions it does not own.",
            ));
        }
        if self.members.len() >= config.max_size {
            return Err(err(
                E::GroupMaxSizeReached,
                format!(
                    "The consumer group has reached its maximum capacity of {} members.",
                    config.max_size
                ),
            ));
        }
        let meta = MemberMetadataValue {
            instance_id: instance_id.map(str::to_string),
            rebalance_timeout_ms: -1,
            ..Default::default()
        };
        self.members.insert(
            member_id.to_string(),
            ConsumerMember::new(member_id.to_string(), meta),
        );
        if let Some(i) = instance_id {
            self.static_members
                .insert(i.to_string(), member_id.to_string());
        }
        Ok(true)
    }

    /// Kafka's `throwIfMemberEpochIsInvalid`, plus the static member's instance id check.
    fn check_epoch(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        epoch: i32,
        owned: Option<&Assignment>,
    ) -> Result<(), HeartbeatError> {
        let Some(m) = self.members.get(member_id) else {
            return Err(err(
                E::UnknownMemberId,
                format!("Member {member_id} is not a member of the group."),
            ));
        };
        if let Some(i) = instance_id {
            if self.static_members.get(i).is_some_and(|id| id != member_id) {
                return Err(err(
                    E::FencedInstanceId,
                    format!("Instance id {i} belongs to another member."),
                ));
            }
        }
        if epoch > m.member_epoch {
            return Err(err(
                E::FencedMemberEpoch,
                format!("The consumer group member has a greater member epoch ({epoch}) than the one known by the group coordinator ({}).", m.member_epoch),
            ));
        }
        if epoch < m.member_epoch
            && (epoch != m.previous_member_epoch
                || owned.is_some_and(|o| !is_subset(o, &m.assigned)))
        {
            return Err(err(
                E::FencedMemberEpoch,
                format!("The consumer group member has a smaller member epoch ({epoch}) than the one known by the group coordinator ({}).", m.member_epoch),
            ));
        }
        Ok(())
    }

    /// Epoch -1 (leave for good) or -2 (a static member leaving for a while: it keeps its
    /// partitions until its session times out or it comes back).
    fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        epoch: i32,
        input: &HeartbeatInput<'_>,
        config: &ConsumerGroupConfig,
        out: &mut Vec<ConsumerRecord>,
    ) -> Result<ConsumerGroupHeartbeatResponse, HeartbeatError> {
        let member_id = match instance_id {
            Some(i) => match self.static_members.get(i) {
                Some(id) if id == member_id => id.clone(),
                Some(_) => {
                    return Err(err(
                        E::FencedInstanceId,
                        format!("Instance id {i} belongs to another member."),
                    ))
                }
                None => {
                    return Err(err(
                        E::UnknownMemberId,
                        format!("Instance id {i} is unknown."),
                    ))
                }
            },
            None => member_id.to_string(),
        };
        if !self.members.contains_key(&member_id) {
            return Err(err(
                E::UnknownMemberId,
                format!("Member {member_id} is not a member of the group."),
            ));
        }
        if epoch == STATIC_LEAVE_EPOCH {
            if let Some(m) = self.members.get_mut(&member_id) {
                m.member_epoch = STATIC_LEAVE_EPOCH;
                m.session_deadline_ms = input.now_ms + config.session_timeout_ms as i64;
                out.push(ConsumerRecord::CurrentMemberAssignment {
                    group: self.group_id.clone(),
                    member: member_id.clone(),
                    value: Some(m.current_value()),
                });
            }
        } else {
            self.remove_member(&member_id, out);
            self.bump_epoch(out);
            self.metadata_seen = Some((input.image.version, self.subscription_hash(input.image)));
            self.compute_target(config, input.image, out);
        }
        Ok(ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(str_bytes(member_id)))
            .with_member_epoch(epoch)
            .with_heartbeat_interval_ms(0))
    }
}
