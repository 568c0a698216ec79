//! Where the replicas of new partitions go: Kafka's rack-aware assignment
//! (`AdminUtils.assignReplicasToBrokers`), a pure function of the live brokers.
//!
//! The brokers are first listed rack by rack in turn (racks and brokers in id order: rack a's
//! first broker, rack b's first, rack c's first, rack a's second, ...), so that consecutive
//! brokers sit in different racks. Partition p's first replica, its preferred leader, is broker
//! `(start + p) mod n` of that list, so leaderships rotate evenly. Each further replica is
//! found by walking the list from there with a shift that grows every n partitions (so that
//! followers do not always pair with the same leader), skipping a broker whose rack already
//! holds a replica of the partition until every rack does, and a broker that already holds
//! one. Hence with at least as many racks as replicas, every replica of a partition lies in a
//! different rack. Brokers without `broker.rack` count as one rack of their own.

use std::collections::{BTreeMap, BTreeSet};

use super::ControllerError;
use crate::model::BrokerId;

/// Spreads `partitions` x `replication_factor` replicas over `brokers` (see the module docs);
/// `start` offsets the first leader and the replica shift, so that successive topics do not
/// all start on the same broker.
pub fn place_replicas(
    brokers: &[(BrokerId, Option<String>)],
    partitions: i32,
    replication_factor: i16,
    start: usize,
) -> Result<Vec<Vec<BrokerId>>, ControllerError> {
    let rf = replication_factor as usize;
    if replication_factor < 1 {
        return Err(ControllerError::InvalidReplicationFactor {
            factor: replication_factor.into(),
            reason: "must be at least 1".into(),
        });
    }
    if rf > brokers.len() {
        return Err(ControllerError::InvalidReplicationFactor {
            factor: replication_factor.into(),
            reason: format!("larger than the {} available brokers", brokers.len()),
        });
    }
    let rack_of: BTreeMap<BrokerId, Option<&str>> =
        brokers.iter().map(|(b, r)| (*b, r.as_deref())).collect();
    let racks = rack_of.values().collect::<BTreeSet<_>>().len();
    let ordered = rack_alternated(brokers);
    let n = ordered.len();
    let first_index = start % n;
    let mut shift = start % n;
    let mut out = Vec::with_capacity(partitions.max(0) as usize);
    for p in 0..partitions.max(0) as usize {
        if p > 0 && p % n == 0 {
            shift += 1;
        }
        let first = (p + first_index) % n;
        let leader = ordered[first];
        let mut replicas = vec![leader];
        let mut racks_used = BTreeSet::from([rack_of[&leader]]);
        // Bounded: within n - 1 steps of k the walk visits every other broker once.
        let mut k = 0;
        while replicas.len() < rf && k < n * n {
            let broker = ordered[replica_index(first, shift * racks, k, n)];
            let rack = rack_of[&broker];
            let rack_ok = !racks_used.contains(&rack) || racks_used.len() == racks;
            if rack_ok && !replicas.contains(&broker) {
                replicas.push(broker);
                racks_used.insert(rack);
            }
            k += 1;
        }
        out.push(replicas);
    }
    Ok(out)
}

/// Kafka's `replicaIndex`: the k-th follower position after `first`, never `first` itself.
fn replica_index(first: usize, shift: usize, k: usize, n: usize) -> usize {
    if n == 1 {
        return first;
    }
    let step = 1 + (shift + k) % (n - 1);
    (first + step) % n
}

/// The brokers listed rack by rack in turn (Kafka's `getRackAlternatedBrokerList`).
fn rack_alternated(brokers: &[(BrokerId, Option<String>)]) -> Vec<BrokerId> {
    let mut racks: BTreeMap<Option<&str>, Vec<BrokerId>> = BTreeMap::new();
    for (id, rack) in brokers {
        racks.entry(rack.as_deref()).or_default().push(*id);
    }
    for ids in racks.values_mut() {
        ids.sort();
    }
    let mut out = Vec::with_capacity(brokers.len());
    let mut round = 0;
    while out.len() < brokers.len() {
        for ids in racks.values() {
            if let Some(id) = ids.get(round) {
                out.push(*id);
            }
        }
        round += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(racks: &[(i32, &str)]) -> Vec<(BrokerId, Option<String>)> {
        racks
            .iter()
            .map(|(b, r)| (BrokerId(*b), Some(r.to_string())))
            .collect()
    }

    #[test]
    fn the_broker_list_alternates_racks() {
        let b = brokers(&[(0, "a"), (1, "a"), (2, "b"), (3, "b"), (4, "c"), (5, "a")]);
        let ids: Vec<i32> = rack_alternated(&b).iter().map(|b| b.0).collect();
        // Kafka's own example: rack1: 0 1 5, rack2: 2 3, rack3: 4 -> 0 2 4 1 3 5.
        assert_eq!(ids, vec![0, 2, 4, 1, 3, 5]);
    }

    #[test]
    fn every_replica_of_a_partition_lies_in_another_rack() {
        let b = brokers(&[(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]);
        for start in 0..6 {
            for replicas in place_replicas(&b, 24, 3, start).expect("placement") {
                let racks: BTreeSet<i32> = replicas.iter().map(|b| (b.0 + 1) / 2).collect();
                assert_eq!(racks.len(), 3, "{replicas:?}");
            }
        }
    }

    #[test]
    fn leaders_and_replicas_spread_evenly_over_racks_and_brokers() {
        let b = brokers(&[(1, "a"), (2, "a"), (3, "b"), (4, "b")]);
        let a = place_replicas(&b, 8, 2, 0).expect("placement");
        let mut leaders = BTreeMap::new();
        let mut replicas = BTreeMap::new();
        for r in &a {
            assert_eq!(r.len(), 2);
            assert_ne!((r[0].0 + 1) / 2, (r[1].0 + 1) / 2, "same rack: {r:?}");
            *leaders.entry(r[0]).or_insert(0) += 1;
            for b in r {
                *replicas.entry(*b).or_insert(0) += 1;
            }
        }
        assert_eq!(
            leaders.values().copied().collect::<Vec<_>>(),
            vec![2, 2, 2, 2]
        );
        assert_eq!(
            replicas.values().copied().collect::<Vec<_>>(),
            vec![4, 4, 4, 4]
        );
    }

    #[test]
    fn fewer_racks_than_replicas_still_uses_distinct_brokers() {
        let b = brokers(&[(1, "a"), (2, "a"), (3, "b")]);
        for r in place_replicas(&b, 6, 3, 1).expect("placement") {
            assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), 3, "{r:?}");
        }
        let none: Vec<_> = (1..=3).map(|i| (BrokerId(i), None)).collect();
        assert!(place_replicas(&none, 1, 4, 0).is_err());
        assert!(place_replicas(&none, 1, 0, 0).is_err());
    }
}
