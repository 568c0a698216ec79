//! Load: the shard rebuilt from the records of its `__consumer_offsets` partition, the latest
//! record per key winning, tombstones removing.

use super::{Group, GroupShard, GroupState, Member};
use crate::group::records::OffsetsRecord;

impl GroupShard {
    /// Folds one record read back from the log into memory (load after gaining leadership).
    /// Members of a loaded group are considered alive from `now_ms`.
    pub fn replay(&mut self, record: OffsetsRecord, now_ms: i64) {
        match record {
            OffsetsRecord::Consumer(r) => self.replay_consumer(r, now_ms),
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
                            && !self.consumer_groups.contains_key(&group)
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
}
