//! The balance planner: which replicas to move so that every broker holds about as many
//! replicas as the others, and draining brokers hold none. A pure function from the brokers,
//! the partitions (replicas and sizes) and the brokers to drain, to a bounded list of moves,
//! each one a target replica list to hand to a reassignment.
//!
//! Greedy, one replica at a time: the source is a draining broker that still holds replicas,
//! else the broker holding the most; the destination the broker holding the fewest that may
//! take the partition (not draining, not already a replica, and not in a rack that already
//! holds another of its replicas when another broker would keep the racks apart). Of the
//! source's partitions, the smallest that can go is moved first: the same count balance for
//! the fewest bytes copied. Partitions already being reassigned are left alone. It stops when
//! no broker to drain holds a replica and the counts lie within `tolerance` of each other,
//! when nothing more can move, or after `max_moves`.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{BrokerId, PartitionIndex, TopicId};

/// One partition as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLoad {
    pub topic_id: TopicId,
    pub partition: PartitionIndex,
    pub replicas: Vec<BrokerId>,
    /// Bytes a new replica must copy (the leader's local log size); 0 when unknown.
    pub size_bytes: u64,
    /// A reassignment is already running: not moved again.
    pub reassigning: bool,
}

/// One planned move: `from`'s replica goes to `to`; `target` is the partition's new replica
/// list (`from` replaced by `to` in place, so the preferred leader stays first unless it moves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaMove {
    pub topic_id: TopicId,
    pub partition: PartitionIndex,
    pub from: BrokerId,
    pub to: BrokerId,
    pub target: Vec<BrokerId>,
}

/// The moves, at most `max_moves` of them (see the module docs).
pub fn plan_moves(
    brokers: &[(BrokerId, Option<String>)],
    partitions: &[PartitionLoad],
    draining: &BTreeSet<BrokerId>,
    tolerance: usize,
    max_moves: usize,
) -> Vec<ReplicaMove> {
    let rack: BTreeMap<BrokerId, Option<&str>> =
        brokers.iter().map(|(b, r)| (*b, r.as_deref())).collect();
    let mut count: BTreeMap<BrokerId, usize> = brokers.iter().map(|(b, _)| (*b, 0)).collect();
    let mut replicas: Vec<Vec<BrokerId>> = partitions.iter().map(|p| p.replicas.clone()).collect();
    for r in &replicas {
        for b in r {
            if let Some(c) = count.get_mut(b) {
                *c += 1;
            }
        }
    }
    // Smallest first, so each source gives up its cheapest partition.
    let mut order: Vec<usize> = (0..partitions.len()).collect();
    order.sort_by_key(|i| (partitions[*i].size_bytes, *i));
    let takers = |count: &BTreeMap<BrokerId, usize>| -> Vec<BrokerId> {
        let mut t: Vec<BrokerId> = count
            .keys()
            .copied()
            .filter(|b| !draining.contains(b))
            .collect();
        t.sort_by_key(|b| (count[b], *b));
        t
    };
    let mut moves = Vec::new();
    while moves.len() < max_moves {
        let to_drain = count
            .iter()
            .filter(|(b, c)| draining.contains(b) && **c > 0)
            .map(|(b, _)| *b)
            .next();
        let candidates = takers(&count);
        let (Some(fewest), Some(most)) = (candidates.first(), candidates.last()) else {
            break;
        };
        let source = match to_drain {
            Some(b) => b,
            None if count[most] > count[fewest].saturating_add(tolerance) => *most,
            None => break,
        };
        let found = order.iter().find_map(|&i| {
            let p = &partitions[i];
            let r = &replicas[i];
            if p.reassigning || !r.contains(&source) {
                return None;
            }
            let other_racks: BTreeSet<Option<&str>> = r
                .iter()
                .filter(|b| **b != source)
                .map(|b| rack.get(b).copied().flatten())
                .collect();
            let fits = |b: &BrokerId| {
                !r.contains(b) && (to_drain.is_some() || count[b] + 1 < count[&source])
            };
            let apart = candidates
                .iter()
                .find(|b| fits(b) && !other_racks.contains(&rack.get(*b).copied().flatten()));
            apart
                .or_else(|| candidates.iter().find(|b| fits(b)))
                .map(|to| (i, *to))
        });
        let Some((i, to)) = found else {
            break;
        };
        let target: Vec<BrokerId> = replicas[i]
            .iter()
            .map(|b| if *b == source { to } else { *b })
            .collect();
        replicas[i] = target.clone();
        if let Some(c) = count.get_mut(&source) {
            *c -= 1;
        }
        if let Some(c) = count.get_mut(&to) {
            *c += 1;
        }
        moves.push(ReplicaMove {
            topic_id: partitions[i].topic_id,
            partition: partitions[i].partition,
            from: source,
            to,
            target,
        });
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(topic_id: TopicId, p: i32, replicas: &[i32], size_bytes: u64) -> PartitionLoad {
        PartitionLoad {
            topic_id,
            partition: PartitionIndex(p),
            replicas: replicas.iter().map(|b| BrokerId(*b)).collect(),
            size_bytes,
            reassigning: false,
        }
    }

    fn counts(
        brokers: &[(BrokerId, Option<String>)],
        parts: &[PartitionLoad],
        moves: &[ReplicaMove],
    ) -> BTreeMap<BrokerId, usize> {
        let mut replicas: BTreeMap<PartitionIndex, Vec<BrokerId>> = parts
            .iter()
            .map(|p| (p.partition, p.replicas.clone()))
            .collect();
        for m in moves {
            let r = replicas.get_mut(&m.partition).expect("partition");
            assert!(
                r.contains(&m.from) && !r.contains(&m.to),
                "{m:?} against {r:?}"
            );
            *r = m.target.clone();
        }
        let mut c: BTreeMap<BrokerId, usize> = brokers.iter().map(|(b, _)| (*b, 0)).collect();
        for r in replicas.values() {
            for b in r {
                *c.get_mut(b).expect("broker") += 1;
            }
        }
        c
    }

    fn brokers(n: i32) -> Vec<(BrokerId, Option<String>)> {
        (1..=n).map(|b| (BrokerId(b), None)).collect()
    }

    #[test]
    fn a_new_broker_gets_its_share_within_tolerance() {
        let t = TopicId::random();
        // Six partitions, RF 2, on brokers 1-3; broker 4 has joined empty.
        let parts: Vec<_> = (0..6)
            .map(|p| load(t, p, &[1 + p % 3, 1 + (p + 1) % 3], 100 + p as u64))
            .collect();
        let b = brokers(4);
        let moves = plan_moves(&b, &parts, &BTreeSet::new(), 0, 100);
        let c = counts(&b, &parts, &moves);
        assert_eq!(
            c.values().copied().collect::<Vec<_>>(),
            vec![3, 3, 3, 3],
            "{moves:?}"
        );
        assert_eq!(moves.len(), 3);
        assert!(moves.iter().all(|m| m.to == BrokerId(4)));
        // Balanced: nothing more to do.
        let mut after = parts.clone();
        for m in &moves {
            after[m.partition.0 as usize].replicas = m.target.clone();
        }
        assert!(plan_moves(&b, &after, &BTreeSet::new(), 0, 100).is_empty());
        // The bound holds.
        assert_eq!(plan_moves(&b, &parts, &BTreeSet::new(), 0, 2).len(), 2);
        // Within tolerance 1 (3,3,3,3 vs 4,4,4,0 -> needs moves until max-min <= 1).
        let c = counts(
            &b,
            &parts,
            &plan_moves(&b, &parts, &BTreeSet::new(), 1, 100),
        );
        assert!(
            c.values().max().expect("counts") - c.values().min().expect("counts") <= 1,
            "{c:?}"
        );
    }

    #[test]
    fn draining_empties_a_broker_and_moves_the_smallest_partitions_first() {
        let t = TopicId::random();
        let parts = vec![
            load(t, 0, &[1, 2], 500),
            load(t, 1, &[2, 3], 10),
            load(t, 2, &[3, 1], 50),
        ];
        let b = brokers(3);
        let moves = plan_moves(&b, &parts, &BTreeSet::from([BrokerId(1)]), 0, 100);
        assert_eq!(counts(&b, &parts, &moves)[&BrokerId(1)], 0);
        assert_eq!(moves.len(), 2);
        assert_eq!(
            moves[0].partition,
            PartitionIndex(2),
            "the smaller of broker 1's partitions first"
        );
        assert_eq!(moves[0].target, vec![BrokerId(3), BrokerId(2)]);
        // A broker that cannot be drained (no other broker may take the partition) stops the plan.
        let parts = vec![load(t, 0, &[1, 2], 1)];
        assert!(plan_moves(&brokers(2), &parts, &BTreeSet::from([BrokerId(1)]), 0, 10).is_empty());
    }

    #[test]
    fn moves_keep_replicas_in_different_racks_and_skip_running_moves() {
        let t = TopicId::random();
        let b = vec![
            (BrokerId(1), Some("a".to_string())),
            (BrokerId(2), Some("b".to_string())),
            (BrokerId(3), Some("a".to_string())),
            (BrokerId(4), Some("b".to_string())),
        ];
        let parts: Vec<_> = (0..4).map(|p| load(t, p, &[1, 2], 1)).collect();
        let moves = plan_moves(&b, &parts, &BTreeSet::new(), 0, 100);
        for m in &moves {
            let racks: BTreeSet<_> = m.target.iter().map(|b| b.0 % 2).collect();
            assert_eq!(racks.len(), 2, "{m:?}");
        }
        assert_eq!(
            counts(&b, &parts, &moves)
                .values()
                .copied()
                .collect::<Vec<_>>(),
            vec![2, 2, 2, 2]
        );
        let mut running = parts.clone();
        for p in &mut running {
            p.reassigning = true;
        }
        assert!(plan_moves(&b, &running, &BTreeSet::new(), 0, 100).is_empty());
    }
}
