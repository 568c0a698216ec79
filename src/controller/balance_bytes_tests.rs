use super::*;
use crate::model::{PartitionIndex, TopicId};

const GIB: u64 = 1 << 30;

fn load(topic_id: TopicId, p: i32, replicas: &[i32], size_bytes: u64) -> PartitionLoad {
    PartitionLoad {
        topic_id,
        partition: PartitionIndex(p),
        replicas: replicas.iter().map(|b| BrokerId(*b)).collect(),
        size_bytes,
        reassigning: false,
    }
}

fn brokers(n: i32) -> Vec<(BrokerId, Option<String>)> {
    (1..=n).map(|b| (BrokerId(b), None)).collect()
}

fn tolerance() -> ByteTolerance {
    ByteTolerance {
        ratio: 0.1,
        min_bytes: GIB,
    }
}

/// The partitions once `moves` are done, each checked against the replicas it moves from.
fn after(parts: &[PartitionLoad], moves: &[ReplicaMove]) -> Vec<PartitionLoad> {
    let mut parts = parts.to_vec();
    for m in moves {
        let p = parts
            .iter_mut()
            .find(|p| p.partition == m.partition)
            .expect("partition");
        assert!(
            p.replicas.contains(&m.from) && !p.replicas.contains(&m.to),
            "{m:?} against {:?}",
            p.replicas
        );
        p.replicas = m.target.clone();
    }
    parts
}

fn counts(b: &[(BrokerId, Option<String>)], parts: &[PartitionLoad]) -> Vec<usize> {
    replicas_per_broker(b, parts).into_values().collect()
}

#[test]
fn equal_counts_unequal_bytes_swap_a_heavy_replica_for_a_light_one() {
    let t = TopicId::random();
    // RF 1, two partitions a broker: broker 1 holds 40 GiB, brokers 2 and 3 hold 2 GiB each.
    let parts = vec![
        load(t, 0, &[1], 20 * GIB),
        load(t, 1, &[1], 20 * GIB),
        load(t, 2, &[2], GIB),
        load(t, 3, &[2], GIB),
        load(t, 4, &[3], GIB),
        load(t, 5, &[3], GIB),
    ];
    let b = brokers(3);
    let moves = plan_byte_moves(&b, &parts, &BTreeSet::new(), 0, &tolerance(), 10);
    let done = after(&parts, &moves);
    assert_eq!(
        counts(&b, &done),
        vec![2, 2, 2],
        "counts stay even: {moves:?}"
    );
    let bytes: Vec<u64> = bytes_per_broker(&b, &done).into_values().collect();
    assert_eq!(
        bytes,
        vec![21 * GIB, 21 * GIB, 2 * GIB],
        "each heavy replica went to another broker, a small one came back: {moves:?}"
    );
    assert_eq!(moves.len(), 2, "one swap: {moves:?}");
    assert_eq!((moves[0].from, moves[0].to), (BrokerId(1), BrokerId(2)));
    assert_eq!(moves[0].partition, PartitionIndex(0));
    assert_eq!((moves[1].from, moves[1].to), (BrokerId(2), BrokerId(1)));
    // Planning again from there never makes the heaviest broker heavier.
    let again = plan_byte_moves(&b, &done, &BTreeSet::new(), 0, &tolerance(), 10);
    let bytes_again: Vec<u64> = bytes_per_broker(&b, &after(&done, &again))
        .into_values()
        .collect();
    assert!(
        bytes_again.iter().max() <= bytes.iter().max(),
        "{again:?} made it worse: {bytes_again:?}"
    );
}

#[test]
fn a_move_without_a_swap_when_counts_allow_it() {
    let t = TopicId::random();
    // Broker 1 holds three replicas (30 GiB), broker 2 two small ones; tolerance 1 lets a
    // replica move on its own.
    let parts = vec![
        load(t, 0, &[1], 10 * GIB),
        load(t, 1, &[1], 10 * GIB),
        load(t, 2, &[1], 10 * GIB),
        load(t, 3, &[2], GIB),
        load(t, 4, &[2], GIB),
    ];
    let b = brokers(2);
    let moves = plan_byte_moves(&b, &parts, &BTreeSet::new(), 1, &tolerance(), 10);
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!((moves[0].from, moves[0].to), (BrokerId(1), BrokerId(2)));
    let done = after(&parts, &moves);
    assert_eq!(
        bytes_per_broker(&b, &done)
            .into_values()
            .collect::<Vec<_>>(),
        vec![20 * GIB, 12 * GIB]
    );
}

#[test]
fn within_tolerance_or_under_the_minimum_gap_nothing_moves() {
    let t = TopicId::random();
    let b = brokers(2);
    // 11 against 10 GiB: the heaviest is 5 % above the mean, within a ratio of 0.1.
    let parts = vec![load(t, 0, &[1], 11 * GIB), load(t, 1, &[2], 10 * GIB)];
    assert!(plan_byte_moves(&b, &parts, &BTreeSet::new(), 0, &tolerance(), 10).is_empty());
    // Far apart in ratio, but the gap is under min_bytes.
    let small = vec![
        load(t, 0, &[1], 300 << 20),
        load(t, 1, &[1], 300 << 20),
        load(t, 2, &[2], 1 << 20),
        load(t, 3, &[2], 1 << 20),
    ];
    assert!(plan_byte_moves(&b, &small, &BTreeSet::new(), 0, &tolerance(), 10).is_empty());
    let no_floor = ByteTolerance {
        ratio: 0.1,
        min_bytes: 1,
    };
    assert_eq!(
        plan_byte_moves(&b, &small, &BTreeSet::new(), 0, &no_floor, 10).len(),
        2,
        "the same cluster with no floor swaps"
    );
}

#[test]
fn unknown_sizes_running_moves_and_draining_brokers_are_left_alone() {
    let t = TopicId::random();
    let b = brokers(3);
    // No sizes reported: nothing to balance by bytes.
    let unknown = vec![load(t, 0, &[1], 0), load(t, 1, &[2], 0)];
    assert!(plan_byte_moves(&b, &unknown, &BTreeSet::new(), 1, &tolerance(), 10).is_empty());
    // Every replica of the heavy broker is being reassigned already.
    let mut running = vec![
        load(t, 0, &[1], 20 * GIB),
        load(t, 1, &[2], GIB),
        load(t, 2, &[3], GIB),
    ];
    running[0].reassigning = true;
    assert!(plan_byte_moves(&b, &running, &BTreeSet::new(), 1, &tolerance(), 10).is_empty());
    // Broker 3, the lightest, is being drained: it is never filled.
    let parts = vec![
        load(t, 0, &[1], 20 * GIB),
        load(t, 1, &[1], 4 * GIB),
        load(t, 2, &[2], GIB),
    ];
    let moves = plan_byte_moves(
        &b,
        &parts,
        &BTreeSet::from([BrokerId(3)]),
        1,
        &tolerance(),
        10,
    );
    assert!(moves.iter().all(|m| m.to != BrokerId(3)), "{moves:?}");
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(
        moves[0].partition,
        PartitionIndex(1),
        "the 4 GiB replica fits the gap"
    );
}

#[test]
fn racks_are_kept_apart_and_the_bound_holds() {
    let t = TopicId::random();
    let b = vec![
        (BrokerId(1), Some("a".to_string())),
        (BrokerId(2), Some("b".to_string())),
        (BrokerId(3), Some("a".to_string())),
        (BrokerId(4), Some("b".to_string())),
    ];
    // RF 2 across racks; broker 1 carries the big partitions.
    let parts = vec![
        load(t, 0, &[1, 2], 30 * GIB),
        load(t, 1, &[1, 4], 30 * GIB),
        load(t, 2, &[3, 2], GIB),
        load(t, 3, &[3, 4], GIB),
    ];
    let moves = plan_byte_moves(&b, &parts, &BTreeSet::new(), 1, &tolerance(), 10);
    assert!(!moves.is_empty());
    for m in &moves {
        let racks: BTreeSet<_> = m.target.iter().map(|b| b.0 % 2).collect();
        assert_eq!(racks.len(), 2, "replicas share a rack: {m:?}");
    }
    assert_eq!(moves.len() % 2, 0, "swaps, counts being even: {moves:?}");
    assert!(
        plan_byte_moves(&b, &parts, &BTreeSet::new(), 1, &tolerance(), 1).is_empty(),
        "a swap does not fit in one move"
    );
}
