//! The administrative requests: DescribeGroups, ListGroups and DeleteGroups.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::GroupId;

use super::{code, Decision, GroupResponse, GroupShard, GroupState, Member, Waiter};
use crate::group::records::OffsetsRecord;
use crate::protocol::str_bytes;

impl GroupShard {
    /// DescribeGroups: state, protocol and members; metadata and assignments only when stable.
    pub fn describe(&self, group_id: &str) -> DescribedGroup {
        let base =
            DescribedGroup::default().with_group_id(GroupId(str_bytes(group_id.to_string())));
        if self.consumer_groups.contains_key(group_id) {
            // Kafka answers DescribeGroups for a consumer group with GROUP_ID_NOT_FOUND;
            // ConsumerGroupDescribe describes it.
            return base
                .with_group_state(str_bytes(GroupState::Dead.name()))
                .with_error_code(code(E::GroupIdNotFound))
                .with_error_message(Some(str_bytes(format!(
                    "Group {group_id} is not a classic group."
                ))));
        }
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

    /// ListGroups: every live group of the shard, by id.
    pub(super) fn list(&self) -> Vec<ListedGroup> {
        let mut groups: Vec<ListedGroup> = self
            .groups
            .values()
            .filter(|g| {
                g.state != GroupState::Dead && !self.consumer_groups.contains_key(&g.group_id)
            })
            .map(|g| {
                ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(g.group_id.clone())))
                    .with_protocol_type(str_bytes(g.protocol_type.clone().unwrap_or_default()))
                    .with_group_state(str_bytes(g.state.name()))
                    .with_group_type(str_bytes("classic"))
            })
            .collect();
        groups.extend(self.list_consumer_groups());
        groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
        groups
    }

    /// DeleteGroups: only an empty group goes, with tombstones for its offsets and metadata.
    pub(super) fn delete_group(&mut self, d: &mut Decision, waiter: Waiter, group_id: &str) {
        if self.consumer_groups.contains_key(group_id) {
            let c = self.delete_consumer_group(d, group_id);
            return d.reply(waiter, GroupResponse::Delete(c));
        }
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
}
