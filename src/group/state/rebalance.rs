//! The join phase of a group, shared by every path that starts or ends one (JoinGroup,
//! LeaveGroup, session expiry, the rebalance timeout): begin it, complete it when every member
//! has rejoined, and remove members that left or expired.

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;

use super::group::InitialDelay;
use super::{code, join_error, sync_error, Decision, Group, GroupResponse, GroupState, Waiter};

impl Group {
    /// Starts a join phase: a pending sync is answered REBALANCE_IN_PROGRESS, and the phase
    /// ends at the rebalance timeout, or after the initial delay when the group was empty.
    pub(super) fn prepare_rebalance(
        &mut self,
        d: &mut Decision,
        now_ms: i64,
        initial_delay_ms: i32,
    ) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.awaiting_sync.take() {
                    d.reply(
                        w,
                        GroupResponse::Sync(sync_error(code(E::RebalanceInProgress))),
                    );
                }
            }
        }
        let was_empty = self.state == GroupState::Empty;
        self.transition(GroupState::PreparingRebalance, now_ms);
        let rebalance_timeout = self.rebalance_timeout_ms();
        if was_empty && initial_delay_ms > 0 {
            let delay = (initial_delay_ms as i64).min(rebalance_timeout.max(0));
            self.initial_delay = Some(InitialDelay {
                remaining_ms: (rebalance_timeout - initial_delay_ms as i64).max(0),
                new_member_added: false,
            });
            self.join_deadline_ms = Some(now_ms + delay);
        } else {
            self.initial_delay = None;
            self.join_deadline_ms = Some(now_ms + rebalance_timeout);
        }
    }

    /// Ends the join phase early once every member has rejoined (never inside the initial delay).
    pub(super) fn maybe_complete_join(&mut self, d: &mut Decision, now_ms: i64) {
        if self.state == GroupState::PreparingRebalance
            && self.initial_delay.is_none()
            && self.all_members_joined()
        {
            self.complete_join(d, now_ms);
        }
    }

    /// Ends the join phase: members that did not rejoin are dropped, the generation advances,
    /// and every joined member gets its JoinGroup response (the leader with the member list).
    pub(super) fn complete_join(&mut self, d: &mut Decision, now_ms: i64) {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            self.remove_member(d, &id);
        }
        self.pending_members.clear();
        self.join_deadline_ms = None;
        self.initial_delay = None;
        self.generation += 1;
        d.rebalances += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.transition(GroupState::Empty, now_ms);
            d.records.push(self.metadata_record());
            return;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self
                .members
                .values()
                .min_by_key(|m| m.join_seq)
                .map(|m| m.member_id.clone());
        }
        self.transition(GroupState::CompletingRebalance, now_ms);
        let leader = self.leader.clone().unwrap_or_default();
        let waiting: Vec<(String, Waiter, i16)> = self
            .members
            .values()
            .filter_map(|m| m.awaiting_join.map(|(w, v)| (m.member_id.clone(), w, v)))
            .collect();
        for (id, w, v) in waiting {
            let resp = self.join_response(&id, id == leader, v);
            d.reply(w, GroupResponse::Join(resp));
            if let Some(m) = self.members.get_mut(&id) {
                m.awaiting_join = None;
                m.assignment = Bytes::new();
                m.last_heartbeat_ms = now_ms;
            }
        }
    }

    /// The join deadline passed: extend the initial delay while members keep arriving, or end
    /// the join phase with whoever rejoined.
    pub(super) fn on_join_deadline(
        &mut self,
        d: &mut Decision,
        now_ms: i64,
        initial_delay_ms: i32,
    ) {
        if self.state != GroupState::PreparingRebalance
            || self.join_deadline_ms.is_none_or(|t| t > now_ms)
        {
            return;
        }
        match &mut self.initial_delay {
            Some(delay) if delay.new_member_added && delay.remaining_ms > 0 => {
                let extend = (initial_delay_ms as i64).min(delay.remaining_ms);
                delay.remaining_ms -= extend;
                delay.new_member_added = false;
                self.join_deadline_ms = Some(now_ms + extend);
            }
            _ => self.complete_join(d, now_ms),
        }
    }

    /// Removes a member, answering its waiting requests with UNKNOWN_MEMBER_ID.
    pub(super) fn remove_member(&mut self, d: &mut Decision, member_id: &str) {
        let Some(mut m) = self.members.remove(member_id) else {
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
            if self.static_members.get(i).map(String::as_str) == Some(member_id) {
                self.static_members.remove(i);
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self
                .members
                .values()
                .min_by_key(|m| m.join_seq)
                .map(|m| m.member_id.clone());
        }
    }

    /// After members left: rebalance what was settled, or finish a join that waited on them.
    pub(super) fn after_removal(&mut self, d: &mut Decision, now_ms: i64, initial_delay_ms: i32) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    // Nobody left to rebalance: the group is empty right away.
                    self.prepare_rebalance(d, now_ms, 0);
                    self.complete_join(d, now_ms);
                } else {
                    self.prepare_rebalance(d, now_ms, initial_delay_ms);
                    self.maybe_complete_join(d, now_ms);
                }
            }
            GroupState::PreparingRebalance => {
                if self.members.is_empty() {
                    self.complete_join(d, now_ms);
                } else {
                    self.maybe_complete_join(d, now_ms);
                }
            }
            GroupState::Empty | GroupState::Dead => {}
        }
    }
}
