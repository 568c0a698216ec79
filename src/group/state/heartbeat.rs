//! Liveness: Heartbeat, LeaveGroup, and the timers that run without a request (session expiry,
//! the end of a join phase).

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{HeartbeatRequest, LeaveGroupRequest, LeaveGroupResponse};

use super::{code, Decision, Group, GroupResponse, GroupShard, GroupState, Waiter};

impl GroupShard {
    /// Heartbeat: a member of the current generation is alive; the error code tells it to
    /// rejoin when a rebalance is under way.
    pub(super) fn heartbeat(&mut self, req: &HeartbeatRequest, now_ms: i64) -> i16 {
        if self.consumer_groups.contains_key(req.group_id.0.as_str()) {
            return self.heartbeat_consumer_group(req, now_ms);
        }
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

    /// LeaveGroup: removes members (by member id, or by group.instance.id from v3) and
    /// rebalances the rest.
    pub(super) fn leave(
        &mut self,
        d: &mut Decision,
        waiter: Waiter,
        version: i16,
        req: LeaveGroupRequest,
        now_ms: i64,
    ) {
        use kafka_protocol::messages::leave_group_request::MemberIdentity;
        if self.consumer_groups.contains_key(req.group_id.0.as_str()) {
            return self.leave_consumer_group(d, waiter, version, req, now_ms);
        }
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
                    group.remove_member(d, &member_id);
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
            group.after_removal(d, now_ms, initial_delay_ms);
        }
        let resp = if version >= 3 {
            LeaveGroupResponse::default().with_members(results)
        } else {
            LeaveGroupResponse::default()
                .with_error_code(results.first().map(|r| r.error_code).unwrap_or(0))
        };
        d.reply(waiter, GroupResponse::Leave(resp));
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
        if let Some(t) = self.next_consumer_deadline_ms() {
            consider(t);
        }
        next
    }

    /// Fires every timer due at `now_ms`.
    pub fn tick(&mut self, now_ms: i64) -> Decision {
        let mut d = Decision::default();
        let initial_delay_ms = self.config.initial_rebalance_delay_ms;
        for group in self.groups.values_mut() {
            expire_sessions(&mut d, group, now_ms, initial_delay_ms);
            group.on_join_deadline(&mut d, now_ms, initial_delay_ms);
        }
        self.tick_consumer(&mut d, now_ms);
        d
    }
}

/// Session expiry: removes the members that neither heartbeat nor wait in a join or sync, and
/// forgets handed-out member ids that were never used.
fn expire_sessions(d: &mut Decision, group: &mut Group, now_ms: i64, initial_delay_ms: i32) {
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
            group.remove_member(d, id);
        }
        group.after_removal(d, now_ms, initial_delay_ms);
    } else if !pending_expired.is_empty() {
        group.maybe_complete_join(d, now_ms);
    }
}
