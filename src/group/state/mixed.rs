//! Mixed groups: the classic requests (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) of members
//! inside a consumer group, and the two online conversions of the shard, applied to its maps
//! (the pure parts are in `convert` and `group::consumer::classic`).
//!
//! Upgrade: the first consumer-protocol member heartbeating into a classic group with members
//! (policy `upgrade` or `bidirectional`) turns it into a consumer group that keeps them; their
//! pending JoinGroup/SyncGroup are answered REBALANCE_IN_PROGRESS so they rejoin the consumer
//! group. Downgrade: when the last consumer-protocol member has left a group whose remaining
//! members are classic (policy `downgrade` or `bidirectional`), it becomes a classic group
//! again and rebalances. Offsets stay where they are throughout.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest,
    SyncGroupResponse,
};

use super::convert::{classic_group_from_consumer, consumer_group_from_classic, creation_records};
use super::join::JoinParams;
use super::{join_error, sync_error, Decision, GroupResponse, GroupShard, GroupState, Waiter};
use crate::group::consumer::classic::{ClassicJoin, PROTOCOL_TYPE};
use crate::group::consumer::heartbeat::HeartbeatError;
use crate::group::consumer::TopicsImage;
use crate::group::records::OffsetsRecord;
use crate::protocol::str_bytes;

impl GroupShard {
    /// JoinGroup into a consumer group with members: answered at once, as the server-side
    /// assignor decides (no join phase to wait for).
    pub(super) fn join_consumer_group(&mut self, d: &mut Decision, j: &JoinParams) {
        let Some(image) = self.last_image.clone() else {
            return j.fail(d, E::CoordinatorNotAvailable);
        };
        let config = self.config.consumer.clone();
        let Some(cg) = self.consumer_groups.get_mut(&j.group_id) else {
            return j.fail(d, E::UnknownMemberId);
        };
        if !cg.supports_classic_protocols(&j.protocol_type, &j.protocols, &j.member_id) {
            return j.fail(d, E::InconsistentGroupProtocol);
        }
        let mut member_id = j.member_id.clone();
        if member_id.is_empty() {
            member_id = j.generate_member_id();
            if j.version >= 4 && j.instance_id.is_none() {
                // KIP-394: the member comes back with this id; nothing is kept until it does.
                return d.reply(
                    j.waiter,
                    GroupResponse::Join(join_error(E::MemberIdRequired.code(), member_id)),
                );
            }
        }
        let join = ClassicJoin {
            member_id,
            instance_id: j.instance_id.clone(),
            client_id: j.client_id.clone(),
            client_host: j.client_host.clone(),
            session_timeout_ms: j.session_timeout_ms,
            rebalance_timeout_ms: j.rebalance_timeout_ms,
            protocols: j.protocols.clone(),
            image: &image,
            now_ms: j.now_ms,
        };
        let mut records = Vec::new();
        match cg.classic_join(&join, &config, &mut records) {
            Ok(joined) => {
                d.records
                    .extend(records.into_iter().map(OffsetsRecord::Consumer));
                let resp = JoinGroupResponse::default()
                    .with_generation_id(joined.generation)
                    .with_protocol_type(Some(str_bytes(PROTOCOL_TYPE)))
                    .with_protocol_name(Some(str_bytes(joined.protocol_name)))
                    .with_leader(str_bytes(""))
                    .with_member_id(str_bytes(joined.member_id));
                d.reply(j.waiter, GroupResponse::Join(resp));
            }
            Err(e) => j.fail(d, e),
        }
    }

    /// SyncGroup of a classic member of a consumer group: its current assignment.
    pub(super) fn sync_consumer_group(
        &mut self,
        d: &mut Decision,
        waiter: Waiter,
        req: &SyncGroupRequest,
        now_ms: i64,
    ) {
        let config = self.config.consumer.clone();
        let image = self.last_image.clone();
        let Some(cg) = self.consumer_groups.get_mut(req.group_id.0.as_str()) else {
            return;
        };
        // Without an image (a reload) the member rejoins, which brings one.
        let result = match image {
            None => Err(E::RebalanceInProgress),
            Some(image) => cg.classic_sync(
                req.member_id.as_str(),
                req.group_instance_id.as_deref(),
                req.generation_id,
                req.protocol_type.as_deref(),
                req.protocol_name.as_deref(),
                &image,
                &config,
                now_ms,
            ),
        };
        let resp = match result {
            Ok((name, assignment)) => SyncGroupResponse::default()
                .with_protocol_type(Some(str_bytes(PROTOCOL_TYPE)))
                .with_protocol_name(Some(str_bytes(name)))
                .with_assignment(assignment),
            Err(e) => sync_error(e.code()),
        };
        d.reply(waiter, GroupResponse::Sync(resp));
    }

    /// Heartbeat of a classic member of a consumer group.
    pub(super) fn heartbeat_consumer_group(&mut self, req: &HeartbeatRequest, now_ms: i64) -> i16 {
        let config = self.config.consumer.clone();
        let Some(cg) = self.consumer_groups.get_mut(req.group_id.0.as_str()) else {
            return E::UnknownMemberId.code();
        };
        match cg.classic_heartbeat(
            req.member_id.as_str(),
            req.group_instance_id.as_deref(),
            req.generation_id,
            &config,
            now_ms,
        ) {
            Ok(()) => 0,
            Err(e) => e.code(),
        }
    }

    /// LeaveGroup of classic members of a consumer group (by member id, or by instance id from
    /// v3); a consumer-protocol member cannot be removed this way (UNKNOWN_MEMBER_ID).
    pub(super) fn leave_consumer_group(
        &mut self,
        d: &mut Decision,
        waiter: Waiter,
        version: i16,
        req: LeaveGroupRequest,
        now_ms: i64,
    ) {
        use kafka_protocol::messages::leave_group_request::MemberIdentity;
        let config = self.config.consumer.clone();
        let image = self.last_image.clone();
        let group_id = req.group_id.0.to_string();
        let identities: Vec<MemberIdentity> = if version >= 3 {
            req.members
        } else {
            vec![MemberIdentity::default().with_member_id(req.member_id.clone())]
        };
        let Some(cg) = self.consumer_groups.get_mut(&group_id) else {
            return;
        };
        let mut leaving = Vec::new();
        let mut results = Vec::new();
        for ident in &identities {
            let resolved = match &ident.group_instance_id {
                Some(i) => match cg.static_members.get(i.as_str()) {
                    Some(id) if ident.member_id.is_empty() || **id == *ident.member_id => {
                        cg.classic_member(id, Some(i.as_str()))
                    }
                    Some(_) => Err(E::FencedInstanceId),
                    None => Err(E::UnknownMemberId),
                },
                None => cg.classic_member(ident.member_id.as_str(), None),
            };
            let c = match resolved {
                Ok(m) => {
                    tracing::info!(group = %group_id, member = %m.member_id, "classic member left the consumer group");
                    leaving.push(m.member_id.clone());
                    0
                }
                Err(e) => e.code(),
            };
            results.push(
                MemberResponse::default()
                    .with_member_id(ident.member_id.clone())
                    .with_group_instance_id(ident.group_instance_id.clone())
                    .with_error_code(c),
            );
        }
        let mut records = Vec::new();
        cg.classic_leave(&leaving, image.as_deref(), &config, &mut records);
        d.records
            .extend(records.into_iter().map(OffsetsRecord::Consumer));
        let resp = if version >= 3 {
            LeaveGroupResponse::default().with_members(results)
        } else {
            LeaveGroupResponse::default()
                .with_error_code(results.first().map(|r| r.error_code).unwrap_or(0))
        };
        d.reply(waiter, GroupResponse::Leave(resp));
        self.maybe_downgrade(d, &group_id, now_ms);
    }

    /// Upgrade of a classic group with members (the caller checked the policy): refused, as
    /// Kafka does, when the group is not one of consumers, is too large, or its members'
    /// ConsumerProtocol bytes do not parse.
    pub(super) fn upgrade_with_members(
        &mut self,
        d: &mut Decision,
        group_id: &str,
        image: &TopicsImage,
        now_ms: i64,
    ) -> Result<(), HeartbeatError> {
        let refuse = |why: &str| HeartbeatError {
            code: E::GroupIdNotFound.code(),
            message: format!(
                "Cannot upgrade the classic group {group_id} to a consumer group: {why}."
            ),
        };
        let max_size = self.config.consumer.max_size;
        let Some(g) = self.groups.get_mut(group_id) else {
            return Err(refuse("it is gone"));
        };
        if g.state == GroupState::Dead {
            return Err(refuse("it is being deleted"));
        }
        if g.protocol_type.as_deref() != Some(PROTOCOL_TYPE) || g.protocol.is_none() {
            return Err(refuse("it does not use the consumer embedded protocol"));
        }
        if g.members.len() > max_size {
            return Err(refuse("it has more members than group.consumer.max.size"));
        }
        let cg =
            consumer_group_from_classic(g, image, now_ms).map_err(|e| refuse(&e.to_string()))?;
        tracing::info!(
            group = group_id,
            members = g.members.len(),
            generation = g.generation,
            "converting a classic group with members to a consumer group"
        );
        for m in g.members.values_mut() {
            if let Some((w, _)) = m.awaiting_join.take() {
                let c = E::RebalanceInProgress.code();
                d.reply(w, GroupResponse::Join(join_error(c, m.member_id.clone())));
            }
            if let Some(w) = m.awaiting_sync.take() {
                d.reply(
                    w,
                    GroupResponse::Sync(sync_error(E::RebalanceInProgress.code())),
                );
            }
        }
        d.records.push(OffsetsRecord::GroupMetadata {
            group: group_id.to_string(),
            value: None,
        });
        d.records.extend(
            creation_records(&cg)
                .into_iter()
                .map(OffsetsRecord::Consumer),
        );
        let offsets = std::mem::take(&mut g.offsets);
        *g = super::Group::new(group_id, now_ms);
        g.offsets = offsets;
        self.consumer_groups.insert(group_id.to_string(), cg);
        Ok(())
    }

    /// After members left a consumer group: if only classic members remain and the policy
    /// allows, the group becomes classic again (Kafka's `convertToClassicGroup`) and
    /// rebalances, its members learning of it through their heartbeats.
    pub(super) fn maybe_downgrade(&mut self, d: &mut Decision, group_id: &str, now_ms: i64) {
        if !self.config.consumer.migration.downgrade()
            || self.config.max_group_size
                < self
                    .consumer_groups
                    .get(group_id)
                    .map_or(0, |g| g.members.len())
        {
            return;
        }
        let Some(cg) = self.consumer_groups.get(group_id) else {
            return;
        };
        if !cg.only_classic_besides("") {
            return;
        }
        let Some(cg) = self.consumer_groups.remove(group_id) else {
            return;
        };
        let image = self.last_image.clone().unwrap_or_default();
        tracing::info!(
            group = group_id,
            members = cg.members.len(),
            epoch = cg.epoch,
            "converting a consumer group of classic members to a classic group"
        );
        d.records
            .extend(cg.tombstones().into_iter().map(OffsetsRecord::Consumer));
        let mut g = classic_group_from_consumer(&cg, &image, now_ms, &mut self.join_seq);
        if let Some(old) = self.groups.remove(group_id) {
            g.offsets = old.offsets;
        }
        d.records.push(g.metadata_record());
        g.prepare_rebalance(d, now_ms, 0);
        self.groups.insert(group_id.to_string(), g);
    }
}
