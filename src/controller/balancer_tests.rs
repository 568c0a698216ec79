use super::*;
use crate::controller::reassignment::decide_complete_reassignments;
use crate::model::{LeaderEpoch, PartitionIndex, TopicId};

fn register(broker: i32) -> MetadataRecord {
    MetadataRecord::RegisterBroker {
        broker_id: BrokerId(broker),
        incarnation: uuid::Uuid::new_v4(),
        host: "h".into(),
        port: 1,
        rack: None,
        endpoints: vec![],
    }
}

fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
    for r in records {
        let o = image.offset + 1;
        image.apply(o, r);
    }
}

/// Brokers 1-3 registered, `partitions` partitions of RF 2 spread over them.
fn cluster(partitions: i32) -> MetadataImage {
    let mut image = MetadataImage::default();
    let mut records: Vec<MetadataRecord> = (1..=3).map(register).collect();
    let topic_id = TopicId::random();
    records.push(MetadataRecord::Topic {
        name: "t".into(),
        topic_id,
    });
    for p in 0..partitions {
        let r = vec![BrokerId(1 + p % 3), BrokerId(1 + (p + 1) % 3)];
        records.push(MetadataRecord::Partition {
            topic_id,
            partition: PartitionIndex(p),
            leader: r[0],
            isr: r.clone(),
            replicas: r,
            leader_epoch: LeaderEpoch(0),
            partition_epoch: 0,
            adding_replicas: vec![],
            removing_replicas: vec![],
        });
    }
    apply(&mut image, &records);
    image
}

/// Every adding replica catches up (the leader's AlterPartition), then the completion duty.
fn catch_up(image: &mut MetadataImage) {
    let mut records = Vec::new();
    for t in image.topics.values() {
        for (i, p) in &t.partitions {
            if p.is_reassigning() {
                let mut next = p.clone();
                next.isr = p.replicas.clone();
                next.partition_epoch += 1;
                records.push(next.to_record(t.topic_id, *i));
            }
        }
    }
    apply(image, &records);
    let done = decide_complete_reassignments(image);
    apply(image, &done);
}

/// Runs balancer passes (each followed by catch-up) until it starts nothing; the passes run
/// and the most moves ever in flight.
fn run_until_quiet(image: &mut MetadataImage, config: &BalancerConfig) -> (usize, usize) {
    let mut most = 0;
    for pass in 0..100 {
        let d = decide_balancer_moves(image, &config.effective(image));
        if d.records.is_empty() {
            return (pass, most);
        }
        apply(image, &d.records);
        most = most.max(decide_balancer_moves(image, config).in_flight);
        catch_up(image);
    }
    panic!("the balancer never settled");
}

#[test]
fn a_new_empty_broker_is_filled_a_few_moves_at_a_time() {
    let mut image = cluster(12);
    apply(&mut image, &[register(4)]);
    let config = BalancerConfig {
        max_concurrent_moves: 2,
        tolerance_replicas: 1,
        ..BalancerConfig::default()
    };
    let first = decide_balancer_moves(&image, &config);
    assert_eq!(
        first.records.len(),
        2,
        "at most max.concurrent.moves at once"
    );
    apply(&mut image, &first.records);
    // Nothing more starts while both are in flight.
    let blocked = decide_balancer_moves(&image, &config);
    assert_eq!(blocked.in_flight, 2);
    assert!(blocked.records.is_empty());
    catch_up(&mut image);
    let (passes, most) = run_until_quiet(&mut image, &config);
    assert!(passes > 0);
    assert_eq!(most, 2);
    let counts = replicas_per_broker(&image);
    // 24 replicas over 4 brokers: 6 each, within 1.
    let (max, min) = (counts.values().max(), counts.values().min());
    assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{counts:?}");
    assert!(counts[&BrokerId(4)] >= 5, "{counts:?}");
    // Every partition kept two distinct replicas.
    for p in image.topics.values().flat_map(|t| t.partitions.values()) {
        assert_eq!(p.replicas.len(), 2);
        assert_ne!(p.replicas[0], p.replicas[1]);
        assert!(!p.is_reassigning());
    }
}

#[test]
fn a_drained_broker_is_emptied_and_never_refilled() {
    let mut image = cluster(9);
    apply(&mut image, &[register(4)]);
    // The drain list is a dynamic config in the metadata log.
    apply(
        &mut image,
        &[MetadataRecord::BrokerConfig {
            key: BALANCER_DRAIN_BROKERS.into(),
            value: Some("2".into()),
        }],
    );
    let config = BalancerConfig::default();
    assert_eq!(
        config.effective(&image).drain_brokers,
        BTreeSet::from([BrokerId(2)])
    );
    run_until_quiet(&mut image, &config);
    let counts = replicas_per_broker(&image);
    assert_eq!(counts[&BrokerId(2)], 0, "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 18);
    // The others are even (18 over 3).
    assert_eq!(
        [1, 3, 4].map(|b| counts[&BrokerId(b)]),
        [6, 6, 6],
        "{counts:?}"
    );
}

#[test]
fn a_pause_in_the_metadata_log_stops_new_moves() {
    let mut image = cluster(6);
    apply(&mut image, &[register(4)]);
    apply(
        &mut image,
        &[MetadataRecord::BrokerConfig {
            key: BALANCER_ENABLE.into(),
            value: Some("false".into()),
        }],
    );
    // A new controller reads the same log: paused too.
    let config = BalancerConfig::default().effective(&image);
    assert!(!config.enable);
    assert!(decide_balancer_moves(&image, &config).records.is_empty());
    // Resumed: moves start.
    apply(
        &mut image,
        &[MetadataRecord::BrokerConfig {
            key: BALANCER_ENABLE.into(),
            value: None,
        }],
    );
    let config = BalancerConfig::default().effective(&image);
    assert!(!decide_balancer_moves(&image, &config).records.is_empty());
}

#[test]
fn a_balanced_cluster_or_a_fenced_newcomer_gets_no_moves() {
    let mut image = cluster(6);
    let config = BalancerConfig::default();
    assert!(decide_balancer_moves(&image, &config).records.is_empty());
    // A fenced broker is no destination.
    apply(
        &mut image,
        &[
            register(4),
            MetadataRecord::FenceBroker {
                broker_id: BrokerId(4),
            },
        ],
    );
    assert!(decide_balancer_moves(&image, &config).records.is_empty());
    // An under-replicated partition stays where it is, even when it is the only one to move.
    let mut image = cluster(1);
    apply(&mut image, &[register(4), register(5)]);
    let topic_id = *image.topics.keys().next().expect("topic");
    let mut p = image.topics[&topic_id].partitions[&PartitionIndex(0)].clone();
    let config = BalancerConfig {
        drain_brokers: BTreeSet::from([p.replicas[1]]),
        ..BalancerConfig::default()
    };
    assert_eq!(decide_balancer_moves(&image, &config).records.len(), 1);
    p.isr.truncate(1);
    p.partition_epoch += 1;
    apply(&mut image, &[p.to_record(topic_id, PartitionIndex(0))]);
    assert!(decide_balancer_moves(&image, &config).records.is_empty());
}

#[test]
fn config_values_parse_and_fall_back() {
    let base = BalancerConfig::default();
    let c = base.with_values(|k| match k {
        BALANCER_MAX_CONCURRENT_MOVES => Some("5"),
        BALANCER_TOLERANCE_REPLICAS => Some("x"),
        BALANCER_DRAIN_BROKERS => Some(" 3, 1 ,"),
        _ => None,
    });
    assert_eq!(c.max_concurrent_moves, 5);
    assert_eq!(c.tolerance_replicas, base.tolerance_replicas);
    assert_eq!(c.drain_brokers, BTreeSet::from([BrokerId(1), BrokerId(3)]));
    assert!(c.enable);
}

fn throttled_lists(image: &MetadataImage) -> (Option<String>, Option<String>) {
    let t = image.topics.values().next().expect("topic");
    let get = |k: &str| t.config.overrides.get(k).cloned();
    (
        get("leader.replication.throttled.replicas"),
        get("follower.replication.throttled.replicas"),
    )
}

#[test]
fn a_throttled_move_lists_its_sources_and_new_replicas_until_it_completes() {
    let mut image = cluster(3);
    apply(&mut image, &[register(4)]);
    let topic_id = *image.topics.keys().next().expect("topic");
    let throttled = BalancerConfig {
        throttle_bytes_per_s: 1_000_000,
        ..BalancerConfig::default()
    };
    // Nothing moving: nothing to list.
    assert_eq!(decide_move_throttles(&image, &throttled), vec![]);
    // Partition 1 (on 2 and 3) moves to 3 and 4; partition 2 (on 3 and 1) to 4 and 2.
    for (p, target) in [(1, [3, 4]), (2, [4, 2])] {
        let request = ReassignmentRequest {
            topic: "t".into(),
            partition: PartitionIndex(p),
            target: Some(target.map(BrokerId).to_vec()),
        };
        let record = decide_reassignment(&image, &request, false, false)
            .expect("valid")
            .expect("a move");
        apply(&mut image, &[record]);
    }
    // Off: the lists are the operator's alone.
    assert_eq!(
        decide_move_throttles(&image, &BalancerConfig::default()),
        vec![]
    );
    let records = decide_move_throttles(&image, &throttled);
    assert_eq!(
        records,
        vec![
            MetadataRecord::TopicConfig {
                topic_id,
                key: "leader.replication.throttled.replicas".into(),
                value: Some("1:3,1:2,2:3,2:1".into()),
            },
            MetadataRecord::TopicConfig {
                topic_id,
                key: "follower.replication.throttled.replicas".into(),
                value: Some("1:4,2:4,2:2".into()),
            },
        ]
    );
    apply(&mut image, &records);
    // Decided again from the image it produced: nothing more (a pass per duty tick).
    assert_eq!(decide_move_throttles(&image, &throttled), vec![]);
    // Both moves complete: every entry goes, and the keys with them.
    catch_up(&mut image);
    let records = decide_move_throttles(&image, &throttled);
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(records
        .iter()
        .all(|r| matches!(r, MetadataRecord::TopicConfig { value: None, .. })));
    apply(&mut image, &records);
    assert_eq!(throttled_lists(&image), (None, None));
}

#[test]
fn a_finished_move_leaves_the_other_moves_entries_and_a_star_list() {
    let mut image = cluster(3);
    apply(&mut image, &[register(4)]);
    let topic_id = *image.topics.keys().next().expect("topic");
    let throttled = BalancerConfig::default()
        .with_values(|k| (k == BALANCER_THROTTLE_BYTES_PER_SECOND).then_some("1048576"));
    assert_eq!(throttled.throttle_bytes_per_s, 1_048_576);
    apply(
        &mut image,
        &[
            MetadataRecord::TopicConfig {
                topic_id,
                key: "leader.replication.throttled.replicas".into(),
                value: Some("*".into()),
            },
            // Partition 0 moved earlier; partition 2 is about to.
            MetadataRecord::TopicConfig {
                topic_id,
                key: "follower.replication.throttled.replicas".into(),
                value: Some("0:4, 2:4".into()),
            },
        ],
    );
    let request = ReassignmentRequest {
        topic: "t".into(),
        partition: PartitionIndex(2),
        target: Some(vec![BrokerId(4), BrokerId(1)]),
    };
    let record = decide_reassignment(&image, &request, false, false)
        .expect("valid")
        .expect("a move");
    apply(&mut image, &[record]);
    let records = decide_move_throttles(&image, &throttled);
    apply(&mut image, &records);
    assert_eq!(
        throttled_lists(&image),
        (Some("*".into()), Some("2:4".into())),
        "{records:?}"
    );
}

#[test]
fn balancer_moves_are_throttled_while_a_rate_is_set() {
    let mut image = cluster(6);
    apply(&mut image, &[register(4)]);
    let config = BalancerConfig {
        throttle_bytes_per_s: 10_000,
        ..BalancerConfig::default()
    };
    let started = decide_balancer_moves(&image, &config);
    assert!(!started.records.is_empty());
    // Decided with the moves, for the same commit: what the image after them calls for.
    let with_moves = move_throttles(&image, &started.records, &config);
    assert!(!with_moves.is_empty());
    assert_eq!(
        decide_move_throttles(&image, &config),
        vec![],
        "nothing moving yet"
    );
    apply(&mut image, &started.records);
    assert_eq!(decide_move_throttles(&image, &config), with_moves);
    apply(&mut image, &with_moves);
    assert_eq!(decide_move_throttles(&image, &config), vec![]);
    let (_, follower) = throttled_lists(&image);
    let follower = follower.expect("the new replicas are listed");
    // Every move fills broker 4, the one that joined: it is each move's new replica.
    let moves = started.records.len();
    let entries: Vec<&str> = follower.split(',').collect();
    assert_eq!(entries.len(), moves, "{follower}");
    assert!(entries.iter().all(|e| e.ends_with(":4")), "{follower}");
    catch_up(&mut image);
    let records = decide_move_throttles(&image, &config);
    apply(&mut image, &records);
    assert_eq!(throttled_lists(&image), (None, None));
}

#[test]
fn even_counts_with_uneven_bytes_start_a_swap_and_settle() {
    // cluster(6): brokers 1-3 hold 4 replicas each. Partitions 0 (on 1, 2) and 3 (on 1, 2)
    // are large, so brokers 1 and 2 hold far more bytes than broker 3.
    let mut image = cluster(6);
    let topic_id = *image.topics.keys().next().expect("topic");
    let gib = 1u64 << 30;
    let sizes: PartitionSizes = (0..6)
        .map(|p| {
            let size = if p % 3 == 0 { 50 * gib } else { gib };
            ((topic_id, PartitionIndex(p)), size)
        })
        .collect();
    let config = BalancerConfig::default();
    // Without sizes, counts alone: nothing to do.
    assert!(decide_balancer_moves(&image, &config).records.is_empty());
    let first = decide_balancer_moves_by_size(&image, &config, &sizes);
    assert_eq!(first.records.len(), 2, "a swap: {:?}", first.records);
    apply(&mut image, &first.records);
    catch_up(&mut image);
    let bytes = |image: &MetadataImage| {
        let mut b = BTreeMap::new();
        for (i, p) in &image.topics[&topic_id].partitions {
            for r in &p.replicas {
                *b.entry(*r).or_insert(0u64) += sizes[&(topic_id, *i)];
            }
        }
        b
    };
    let after = bytes(&image);
    assert_eq!(
        replicas_per_broker(&image)
            .into_values()
            .collect::<Vec<_>>(),
        vec![4, 4, 4],
        "counts stay even"
    );
    // 102 + 102 + 4 GiB before; a large replica went to broker 3.
    assert!(after[&BrokerId(3)] >= 50 * gib, "{after:?}");
    // Later passes never move the heaviest broker's load up, and stop.
    let mut passes = 0;
    loop {
        let d = decide_balancer_moves_by_size(&image, &config, &sizes);
        if d.records.is_empty() {
            break;
        }
        passes += 1;
        assert!(
            passes < 10,
            "the balancer keeps moving: {:?}",
            bytes(&image)
        );
        apply(&mut image, &d.records);
        catch_up(&mut image);
    }
    let settled = bytes(&image);
    assert!(
        settled.values().max() <= after.values().max(),
        "{after:?} -> {settled:?}"
    );
}
