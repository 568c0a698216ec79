//! SyncGroup: the second half of a rebalance, in which the leader hands out the assignment.

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{code, sync_error, Decision, Group, GroupResponse, GroupShard, GroupState, Waiter};
use crate::protocol::str_bytes;

impl GroupShard {
    /// SyncGroup: followers wait for the leader, whose request carries every member's
    /// assignment; the group is then stable and its metadata is written.
    pub(super) fn sync(
        &mut self,
        d: &mut Decision,
        waiter: Waiter,
        req: SyncGroupRequest,
        now_ms: i64,
    ) {
        if self.consumer_groups.contains_key(req.group_id.0.as_str()) {
            return self.sync_consumer_group(d, waiter, &req, now_ms);
        }
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
}
