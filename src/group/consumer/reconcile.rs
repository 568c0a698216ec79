//! Reconciliation of one member towards its target (Kafka's `CurrentAssignmentBuilder`).
//!
//! Revocation first: a member whose current partitions are not all in its target keeps its
//! epoch and is asked to revoke the others (`UnrevokedPartitions`); only when a heartbeat
//! reports them gone does it move to the assignment epoch and receive new partitions. A new
//! partition is handed out only once no other member holds it (in its assignment or pending
//! revocation); until then the member waits in `UnreleasedPartitions`. Hence the invariant the
//! tests check: no partition is ever held by two members.

use super::records::Assignment;
use super::{ConsumerGroup, MemberState};

/// Whether `a` and `b` share a partition.
fn overlaps(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .any(|(t, ps)| b.get(t).is_some_and(|qs| !ps.is_disjoint(qs)))
}

fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        let rest: std::collections::BTreeSet<i32> = match b.get(t) {
            Some(qs) => ps.difference(qs).copied().collect(),
            None => ps.clone(),
        };
        if !rest.is_empty() {
            out.insert(*t, rest);
        }
    }
    out
}

fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        if let Some(qs) = b.get(t) {
            let both: std::collections::BTreeSet<i32> = ps.intersection(qs).copied().collect();
            if !both.is_empty() {
                out.insert(*t, both);
            }
        }
    }
    out
}

pub fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    minus(a, b).is_empty()
}

impl ConsumerGroup {
    /// Moves `member_id` towards its target given the partitions it reports owning (`None`:
    /// not reported in this heartbeat). Returns whether the member's state changed (and so must
    /// be written).
    pub fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now_ms: i64) -> bool {
        let Some(m) = self.members.get(member_id) else {
            return false;
        };
        if m.member_epoch < 0 {
            return false;
        }
        let before = (
            m.member_epoch,
            m.state,
            m.assigned.clone(),
            m.pending_revocation.clone(),
        );
        if m.state == MemberState::UnrevokedPartitions {
            match owned {
                Some(o) if !overlaps(o, &m.pending_revocation) => {}
                _ => return false,
            }
        } else if m.member_epoch == self.assignment_epoch && m.state == MemberState::Stable {
            return false;
        }
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        // Partitions held by the other members, which must be released first.
        let mut held = Assignment::new();
        for (id, other) in &self.members {
            if id != member_id {
                for a in [&other.assigned, &other.pending_revocation] {
                    for (t, ps) in a {
                        held.entry(*t).or_default().extend(ps.iter().copied());
                    }
                }
            }
        }
        let epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(member_id) else {
            return false;
        };
        let keep = intersect(&m.assigned, &target);
        let revoke = minus(&m.assigned, &target);
        if !revoke.is_empty() {
            m.assigned = keep;
            m.pending_revocation = revoke;
            m.state = MemberState::UnrevokedPartitions;
            if m.revocation_deadline_ms.is_none() {
                m.revocation_deadline_ms = Some(now_ms + m.meta.rebalance_timeout_ms.max(0) as i64);
            }
        } else {
            let new = minus(&target, &keep);
            let free = minus(&new, &held);
            let all_free = free == new;
            let mut assigned = keep;
            for (t, ps) in free {
                assigned.entry(t).or_default().extend(ps);
            }
            m.assigned = assigned;
            m.pending_revocation = Assignment::new();
            m.revocation_deadline_ms = None;
            if m.member_epoch != epoch {
                m.previous_member_epoch = m.member_epoch;
                m.member_epoch = epoch;
            }
            m.state = if all_free {
                MemberState::Stable
            } else {
                MemberState::UnreleasedPartitions
            };
        }
        let after = (
            m.member_epoch,
            m.state,
            m.assigned.clone(),
            m.pending_revocation.clone(),
        );
        before != after
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;
    use crate::group::consumer::records::MemberMetadataValue;
    use crate::group::consumer::{ConsumerGroupConfig, ConsumerMember, TopicMeta, TopicsImage};

    fn image(partitions: i32) -> TopicsImage {
        TopicsImage {
            version: 1,
            by_name: [(
                "t".to_string(),
                TopicMeta {
                    id: Uuid::from_u128(7),
                    partitions,
                },
            )]
            .into_iter()
            .collect(),
        }
    }

    fn add(g: &mut ConsumerGroup, id: &str) {
        let meta = MemberMetadataValue {
            subscribed_topic_names: vec!["t".into()],
            rebalance_timeout_ms: 1000,
            ..Default::default()
        };
        g.members
            .insert(id.to_string(), ConsumerMember::new(id.to_string(), meta));
    }

    fn no_partition_held_twice(g: &ConsumerGroup) {
        let mut seen = BTreeSet::new();
        for m in g.members.values() {
            for a in [&m.assigned, &m.pending_revocation] {
                for (t, ps) in a {
                    for p in ps {
                        assert!(seen.insert((*t, *p)), "{t}-{p} held twice");
                    }
                }
            }
        }
    }

    proptest! {
        /// Members join and leave while others heartbeat (acknowledging revocations or not):
        /// no partition is ever held by two members, and once everyone has heartbeated
        /// enough after the last change, the group is stable with every partition held once.
        #[test]
        fn revocation_first_never_doubles_ownership(
            partitions in 1i32..10,
            steps in proptest::collection::vec((0u8..4, 0usize..5, any::<bool>()), 1..60),
        ) {
            let img = image(partitions);
            let config = ConsumerGroupConfig::default();
            let mut g = ConsumerGroup::new("g");
            let mut out = Vec::new();
            for (op, who, ack) in steps {
                let id = format!("m{who}");
                match op {
                    0 if !g.members.contains_key(&id) => {
                        add(&mut g, &id);
                        g.bump_epoch(&mut out);
                        g.compute_target(&config, &img, &mut out);
                    }
                    1 if g.members.contains_key(&id) => {
                        g.remove_member(&id, &mut out);
                        g.bump_epoch(&mut out);
                        g.compute_target(&config, &img, &mut out);
                    }
                    _ => {
                        if let Some(m) = g.members.get(&id) {
                            // The member reports what it owns: after revoking if `ack`.
                            let owned = if ack { m.assigned.clone() } else {
                                let mut o = m.assigned.clone();
                                for (t, ps) in &m.pending_revocation { o.entry(*t).or_default().extend(ps); }
                                o
                            };
                            g.reconcile(&id, Some(&owned), 0);
                        }
                    }
                }
                no_partition_held_twice(&g);
            }
            for _ in 0..3 {
                let ids: Vec<String> = g.members.keys().cloned().collect();
                for id in ids {
                    let owned = g.members[&id].assigned.clone();
                    g.reconcile(&id, Some(&owned), 0);
                    no_partition_held_twice(&g);
                }
            }
            if !g.members.is_empty() {
                prop_assert_eq!(g.state_name(), "Stable");
                let total: usize = g.members.values().map(|m| m.assigned.values().map(|s| s.len()).sum::<usize>()).sum();
                prop_assert_eq!(total, partitions as usize);
            }
        }
    }
}
