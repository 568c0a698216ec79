//! Server-side assignors of consumer groups (`group.consumer.assignors`): `uniform`, the
//! default, and `range`. Pure functions from the members' subscriptions and the topics' sizes
//! to a target assignment.
//!
//! To ensure correctness, an assignor must return, for the partitions of the topics given:
//! - every partition of a subscribed topic assigned to exactly one member subscribed to it;
//! - no partition of a topic nobody subscribes to, and nothing for members not given.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::records::Assignment;

/// What an assignor sees of one member.
#[derive(Debug, Clone, Default)]
pub struct AssignorMember {
    /// Ids of the existing topics the member subscribes to.
    pub topics: BTreeSet<Uuid>,
    /// The member's previous target, for stickiness.
    pub previous: Assignment,
}

/// Topic id → number of partitions.
pub type TopicSizes = BTreeMap<Uuid, i32>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    Uniform,
    Range,
}

impl Assignor {
    pub fn by_name(name: &str) -> Option<Assignor> {
        match name {
            "uniform" => Some(Assignor::Uniform),
            "range" => Some(Assignor::Range),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }

    pub fn assign(
        self,
        members: &BTreeMap<String, AssignorMember>,
        topics: &TopicSizes,
    ) -> BTreeMap<String, Assignment> {
        match self {
            Assignor::Uniform => uniform(members, topics),
            Assignor::Range => range(members, topics),
        }
    }
}

fn count(a: &Assignment) -> usize {
    a.values().map(|s| s.len()).sum()
}

/// Balanced and sticky: each member keeps what it had where still valid, the remaining
/// partitions go to the least-loaded eligible member, then partitions move from the most to the
/// least loaded member while the difference exceeds one and a move is possible. With identical
/// subscriptions the counts differ by at most one.
fn uniform(
    members: &BTreeMap<String, AssignorMember>,
    topics: &TopicSizes,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = BTreeMap::new();
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    for (id, m) in members {
        let mut kept = Assignment::new();
        for (topic, partitions) in &m.previous {
            let Some(size) = topics.get(topic) else {
                continue;
            };
            if !m.topics.contains(topic) {
                continue;
            }
            for p in partitions {
                if *p < *size && taken.insert((*topic, *p)) {
                    kept.entry(*topic).or_default().insert(*p);
                }
            }
        }
        out.insert(id.clone(), kept);
    }
    let mut counts: BTreeMap<String, usize> =
        out.iter().map(|(k, a)| (k.clone(), count(a))).collect();
    for (topic, size) in topics {
        for p in 0..*size {
            if taken.contains(&(*topic, p)) {
                continue;
            }
            let best = members
                .iter()
                .filter(|(_, m)| m.topics.contains(topic))
                .min_by_key(|(id, _)| (counts[*id], (*id).clone()))
                .map(|(id, _)| id.clone());
            if let Some(id) = best {
                out.entry(id.clone())
                    .or_default()
                    .entry(*topic)
                    .or_default()
                    .insert(p);
                *counts.entry(id).or_default() += 1;
                taken.insert((*topic, p));
            }
        }
    }
    // Rebalance; each move lowers the sum of squared counts, so moves are bounded; the bound
    // below is never reached in practice (a move needs a count difference of two or more).
    let total: usize = counts.values().sum();
    for _ in 0..=total.saturating_mul(members.len()) {
        let mut order: Vec<(usize, String)> = counts.iter().map(|(k, c)| (*c, k.clone())).collect();
        order.sort();
        let mut moved = false;
        'outer: for (gc, giver) in order.iter().rev() {
            for (rc, receiver) in order.iter() {
                if gc <= &(rc + 1) {
                    break;
                }
                let eligible = &members[receiver].topics;
                let candidate = out[giver]
                    .iter()
                    .rev()
                    .find(|(t, s)| eligible.contains(*t) && !s.is_empty())
                    .and_then(|(t, s)| s.iter().next_back().map(|p| (*t, *p)));
                if let Some((t, p)) = candidate {
                    if let Some(set) = out.get_mut(giver).and_then(|a| a.get_mut(&t)) {
                        set.remove(&p);
                        if set.is_empty() {
                            out.get_mut(giver).map(|a| a.remove(&t));
                        }
                    }
                    out.entry(receiver.clone())
                        .or_default()
                        .entry(t)
                        .or_default()
                        .insert(p);
                    *counts.entry(giver.clone()).or_default() -= 1;
                    *counts.entry(receiver.clone()).or_default() += 1;
                    moved = true;
                    break 'outer;
                }
            }
        }
        if !moved {
            break;
        }
    }
    out
}

/// Per topic, the subscribed members in member-id order get consecutive ranges of partitions,
/// the first `partitions % members` of them one more (the range strategy of the classic
/// consumer, done on the broker).
fn range(
    members: &BTreeMap<String, AssignorMember>,
    topics: &TopicSizes,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .keys()
        .map(|k| (k.clone(), Assignment::new()))
        .collect();
    for (topic, size) in topics {
        let subscribed: Vec<&String> = members
            .iter()
            .filter(|(_, m)| m.topics.contains(topic))
            .map(|(k, _)| k)
            .collect();
        if subscribed.is_empty() {
            continue;
        }
        let n = subscribed.len() as i32;
        let (per, extra) = (size / n, size % n);
        let mut next = 0;
        for (i, id) in subscribed.iter().enumerate() {
            let take = per + if (i as i32) < extra { 1 } else { 0 };
            if take > 0 {
                let set: BTreeSet<i32> = (next..next + take).collect();
                out.entry((*id).clone()).or_default().insert(*topic, set);
            }
            next += take;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topic(i: u128) -> Uuid {
        Uuid::from_u128(i + 1)
    }

    fn check_exactly_once(
        members: &BTreeMap<String, AssignorMember>,
        topics: &TopicSizes,
        out: &BTreeMap<String, Assignment>,
    ) {
        let mut seen = BTreeSet::new();
        for (m, a) in out {
            for (t, ps) in a {
                assert!(
                    members[m].topics.contains(t),
                    "{m} got {t} it does not subscribe to"
                );
                for p in ps {
                    assert!(*p < topics[t]);
                    assert!(seen.insert((*t, *p)), "{t}-{p} assigned twice");
                }
            }
        }
        for (t, size) in topics {
            if members.values().any(|m| m.topics.contains(t)) {
                for p in 0..*size {
                    assert!(seen.contains(&(*t, p)), "{t}-{p} unassigned");
                }
            }
        }
    }

    #[test]
    fn range_splits_like_the_classic_range_strategy() {
        let topics: TopicSizes = [(topic(0), 7)].into_iter().collect();
        let members: BTreeMap<String, AssignorMember> = ["a", "b", "c"]
            .iter()
            .map(|m| {
                (
                    m.to_string(),
                    AssignorMember {
                        topics: [topic(0)].into(),
                        ..Default::default()
                    },
                )
            })
            .collect();
        let out = Assignor::Range.assign(&members, &topics);
        let got: Vec<Vec<i32>> = out
            .values()
            .map(|a| a[&topic(0)].iter().copied().collect())
            .collect();
        assert_eq!(got, vec![vec![0, 1, 2], vec![3, 4], vec![5, 6]]);
    }

    #[test]
    fn uniform_is_sticky() {
        let topics: TopicSizes = [(topic(0), 6)].into_iter().collect();
        let mut members: BTreeMap<String, AssignorMember> = ["a", "b", "c"]
            .iter()
            .map(|m| {
                (
                    m.to_string(),
                    AssignorMember {
                        topics: [topic(0)].into(),
                        ..Default::default()
                    },
                )
            })
            .collect();
        let first = Assignor::Uniform.assign(&members, &topics);
        // "b" leaves: "a" and "c" keep their partitions and share b's.
        members.remove("b");
        for (id, m) in members.iter_mut() {
            m.previous = first[id].clone();
        }
        let second = Assignor::Uniform.assign(&members, &topics);
        for id in ["a", "c"] {
            assert!(first[id][&topic(0)].is_subset(&second[id][&topic(0)]));
            assert_eq!(second[id][&topic(0)].len(), 3);
        }
    }

    proptest! {
        #[test]
        fn uniform_balanced_and_exactly_once(
            sizes in proptest::collection::vec(1i32..12, 1..4),
            n in 1usize..7,
            previous_seed in any::<u64>(),
        ) {
            let topics: TopicSizes = sizes.iter().enumerate().map(|(i, s)| (topic(i as u128), *s)).collect();
            let all: BTreeSet<Uuid> = topics.keys().copied().collect();
            let mut members: BTreeMap<String, AssignorMember> = (0..n)
                .map(|i| (format!("m{i}"), AssignorMember { topics: all.clone(), ..Default::default() }))
                .collect();
            // A random (possibly overlapping, out of range) previous assignment.
            let mut seed = previous_seed;
            for m in members.values_mut() {
                for (t, s) in &topics {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    if seed >> 62 == 0 {
                        m.previous.entry(*t).or_default().insert((seed >> 40) as i32 % (s + 2));
                    }
                }
            }
            let out = Assignor::Uniform.assign(&members, &topics);
            check_exactly_once(&members, &topics, &out);
            let counts: Vec<usize> = out.values().map(count).collect();
            let (min, max) = (counts.iter().min().copied().unwrap_or(0), counts.iter().max().copied().unwrap_or(0));
            prop_assert!(max - min <= 1, "unbalanced: {:?}", counts);
        }

        #[test]
        fn heterogeneous_subscriptions_exactly_once(
            sizes in proptest::collection::vec(1i32..8, 1..4),
            subs in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 3), 1..6),
        ) {
            let topics: TopicSizes = sizes.iter().enumerate().map(|(i, s)| (topic(i as u128), *s)).collect();
            let members: BTreeMap<String, AssignorMember> = subs.iter().enumerate().map(|(i, s)| {
                let t = topics.keys().enumerate().filter(|(j, _)| s[*j]).map(|(_, t)| *t).collect();
                (format!("m{i}"), AssignorMember { topics: t, ..Default::default() })
            }).collect();
            for a in [Assignor::Uniform, Assignor::Range] {
                check_exactly_once(&members, &topics, &a.assign(&members, &topics));
            }
        }
    }
}
