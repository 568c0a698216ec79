//! The automatic balancer: a duty of the active controller that keeps replica counts even
//! and empties the brokers named for draining, by starting partition reassignments a few at a
//! time.
//!
//! Each duty pass decides purely, from the image, with [`decide_balancer_moves`]:
//!
//! - nothing while `strata.balancer.enable` is false (paused);
//! - nothing more while `strata.balancer.max.concurrent.moves` reassignments (any, started by
//!   the balancer or by an operator) are under way: each move completes, through the
//!   ordinary reassignment duty, before the next one starts;
//! - otherwise the next moves of [`super::balance::plan_moves`] over the unfenced brokers, with
//!   the brokers in `strata.balancer.drain.brokers` to empty (a broker listed there is never
//!   filled again, so a drained broker stays empty until it is unregistered or unlisted), and
//!   the tolerance `strata.balancer.tolerance.replicas` between the broker holding the most
//!   replicas and the one holding the fewest. Fenced brokers neither give nor take (unless
//!   listed for draining), and under-replicated partitions are left where they are.
//!
//! - once counts are even and nothing is to be drained, the moves of
//!   [`super::balance_bytes::plan_byte_moves`] over the partition sizes the brokers report
//!   with their heartbeats (`super::replica_sizes`), while the heaviest broker holds more than
//!   `strata.balancer.tolerance.bytes.ratio` above the mean and at least
//!   `strata.balancer.tolerance.bytes.min` more than the lightest. Without reports (a new
//!   active controller hears them within a heartbeat) sizes count as unknown and only
//!   counts are balanced.
//!
//! So a broker that registers with no replicas is filled, a broker marked for draining is
//! emptied, and drift beyond the tolerances is evened out, with no operator command. The
//! settings are dynamic cluster-wide broker configs: set through IncrementalAlterConfigs they
//! are records of the metadata log, so a pause or a drain survives a controller failover.
//!
//! Move throttles ([`move_throttles`]): while `strata.balancer.throttle.bytes.per.second` is
//! set, the commit that starts a move (the balancer's duty, AlterPartitionReassignments) also
//! lists the moving partition's source replicas (its replicas before the move) in its topic's
//! `leader.replication.throttled.replicas` and the replicas being added in
//! `follower.replication.throttled.replicas`, and each duty pass ([`decide_move_throttles`])
//! removes the entries of partitions no longer moving, as `kafka-reassign-partitions
//! --throttle` and `--verify` do. It covers every
//! move, the balancer's, `strata cluster drain`'s and an operator's alike; a `*` list is left
//! as it is. The brokers apply that rate to the listed replicas (`replication::throttle`).

use std::collections::{BTreeMap, BTreeSet};

use super::balance::{plan_moves, PartitionLoad};
use super::balance_bytes::{
    bytes_out_of_tolerance, bytes_per_broker, plan_byte_moves, ByteTolerance,
};
use super::image::MetadataImage;
use super::reassignment::{decide_reassignment, ReassignmentRequest};
use super::records::MetadataRecord;
use crate::model::{BrokerId, PartitionIndex, TopicId};

/// The dynamic key that pauses (false) and resumes (true) the balancer.
pub const BALANCER_ENABLE: &str = "strata.balancer.enable";
/// The dynamic key bounding the reassignments in flight.
pub const BALANCER_MAX_CONCURRENT_MOVES: &str = "strata.balancer.max.concurrent.moves";
/// The dynamic key of the replica-count tolerance.
pub const BALANCER_TOLERANCE_REPLICAS: &str = "strata.balancer.tolerance.replicas";
/// The dynamic key of the byte tolerance: how far above the mean the heaviest broker may be.
pub const BALANCER_TOLERANCE_BYTES_RATIO: &str = "strata.balancer.tolerance.bytes.ratio";
/// The dynamic key of the smallest byte gap worth moving replicas for.
pub const BALANCER_TOLERANCE_BYTES_MIN: &str = "strata.balancer.tolerance.bytes.min";
/// The dynamic key listing the brokers to drain (comma-separated ids).
pub const BALANCER_DRAIN_BROKERS: &str = "strata.balancer.drain.brokers";
/// The dynamic key of the rate moves are throttled to (0: not throttled).
pub const BALANCER_THROTTLE_BYTES_PER_SECOND: &str = "strata.balancer.throttle.bytes.per.second";
/// The topic configs the move throttle manages (Kafka's).
const LEADER_THROTTLED_REPLICAS: &str = "leader.replication.throttled.replicas";
const FOLLOWER_THROTTLED_REPLICAS: &str = "follower.replication.throttled.replicas";

/// The balancer's settings: the node's static values, overridden by the dynamic cluster-wide
/// configs of the image.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancerConfig {
    pub enable: bool,
    pub max_concurrent_moves: usize,
    pub tolerance_replicas: usize,
    pub drain_brokers: BTreeSet<BrokerId>,
    /// Bytes/s moves are throttled to; 0: moves are not throttled.
    pub throttle_bytes_per_s: u64,
    pub tolerance_bytes: ByteTolerance,
}

impl Default for BalancerConfig {
    fn default() -> BalancerConfig {
        BalancerConfig {
            enable: true,
            max_concurrent_moves: 2,
            tolerance_replicas: 1,
            drain_brokers: BTreeSet::new(),
            throttle_bytes_per_s: 0,
            tolerance_bytes: ByteTolerance {
                ratio: 0.2,
                min_bytes: 1 << 30,
            },
        }
    }
}

impl BalancerConfig {
    /// From `key -> value` pairs (the node's config); missing or unparsable keys keep `self`'s.
    pub fn with_values<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> BalancerConfig {
        let mut c = self.clone();
        if let Some(v) = get(BALANCER_ENABLE) {
            c.enable = v.trim() != "false";
        }
        if let Some(n) = get(BALANCER_MAX_CONCURRENT_MOVES).and_then(|v| v.trim().parse().ok()) {
            c.max_concurrent_moves = n;
        }
        if let Some(n) = get(BALANCER_TOLERANCE_REPLICAS).and_then(|v| v.trim().parse().ok()) {
            c.tolerance_replicas = n;
        }
        if let Some(v) = get(BALANCER_DRAIN_BROKERS) {
            c.drain_brokers = parse_broker_list(v);
        }
        if let Some(n) =
            get(BALANCER_THROTTLE_BYTES_PER_SECOND).and_then(|v| v.trim().parse::<i64>().ok())
        {
            c.throttle_bytes_per_s = n.max(0) as u64;
        }
        if let Some(r) = get(BALANCER_TOLERANCE_BYTES_RATIO)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|r| r.is_finite() && *r >= 0.0)
        {
            c.tolerance_bytes.ratio = r;
        }
        if let Some(n) =
            get(BALANCER_TOLERANCE_BYTES_MIN).and_then(|v| v.trim().parse::<i64>().ok())
        {
            c.tolerance_bytes.min_bytes = n.max(0) as u64;
        }
        c
    }

    /// These settings with the image's dynamic cluster-wide overrides applied.
    pub fn effective(&self, image: &MetadataImage) -> BalancerConfig {
        self.with_values(|k| image.broker_configs.get(k).map(String::as_str))
    }
}

/// `"1, 3"` -> {1, 3}; entries that are not ids are ignored (the config is validated as a
/// list when set).
pub fn parse_broker_list(v: &str) -> BTreeSet<BrokerId> {
    v.split(',')
        .filter_map(|s| s.trim().parse().ok().map(BrokerId))
        .collect()
}

/// What the balancer sees and decides in one pass.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BalancerDecision {
    /// Reassignments under way before this pass.
    pub in_flight: usize,
    /// The reassignments to start (one `Partition` record each).
    pub records: Vec<MetadataRecord>,
}

/// Each partition's size as its replicas report it (the largest), by topic id.
pub type PartitionSizes = BTreeMap<(TopicId, PartitionIndex), u64>;

/// [`decide_balancer_moves_by_size`] with no sizes known: counts alone.
pub fn decide_balancer_moves(image: &MetadataImage, config: &BalancerConfig) -> BalancerDecision {
    decide_balancer_moves_by_size(image, config, &PartitionSizes::new())
}

/// The reassignments to start now (see the module docs).
pub fn decide_balancer_moves_by_size(
    image: &MetadataImage,
    config: &BalancerConfig,
    sizes: &PartitionSizes,
) -> BalancerDecision {
    let in_flight = super::reassignment::ongoing_reassignments(image).count();
    let mut decision = BalancerDecision {
        in_flight,
        records: vec![],
    };
    let room = config.max_concurrent_moves.saturating_sub(in_flight);
    if !config.enable || room == 0 {
        return decision;
    }
    // The usual case, checked without copying every partition: nothing to do.
    let counts = replicas_per_broker(image);
    let draining_holds = image.topics.values().any(|t| {
        t.partitions
            .values()
            .any(|p| p.replicas.iter().any(|b| config.drain_brokers.contains(b)))
    });
    let spread = counts
        .iter()
        .filter(|(b, _)| !config.drain_brokers.contains(b))
        .map(|(_, c)| *c);
    let (max, min) = spread.fold((0, usize::MAX), |(hi, lo), c| (hi.max(c), lo.min(c)));
    let counts_even = !draining_holds && max <= min.saturating_add(config.tolerance_replicas);
    if counts_even && sizes.is_empty() {
        return decision;
    }
    let loads = partition_loads(image, sizes);
    let brokers: Vec<(BrokerId, Option<String>)> = image
        .brokers
        .values()
        .filter(|b| !b.fenced || config.drain_brokers.contains(&b.broker_id))
        .map(|b| (b.broker_id, b.rack.clone()))
        .collect();
    if brokers.len() < 2 {
        return decision;
    }
    let mut moves = if counts_even {
        vec![]
    } else {
        plan_moves(
            &brokers,
            &loads,
            &config.drain_brokers,
            config.tolerance_replicas,
            room,
        )
    };
    if moves.is_empty() && !draining_holds {
        let takers: Vec<(BrokerId, Option<String>)> = brokers
            .iter()
            .filter(|(b, _)| !config.drain_brokers.contains(b))
            .cloned()
            .collect();
        if bytes_out_of_tolerance(&bytes_per_broker(&takers, &loads), &config.tolerance_bytes) {
            moves = plan_byte_moves(
                &takers,
                &loads,
                &config.drain_brokers,
                config.tolerance_replicas,
                &config.tolerance_bytes,
                room,
            );
        }
    }
    // The planner may move one partition twice; one reassignment per partition per pass.
    let mut seen = BTreeSet::new();
    for m in moves {
        if !seen.insert((m.topic_id, m.partition)) {
            continue;
        }
        let Some(topic) = image.topics.get(&m.topic_id) else {
            continue;
        };
        let request = ReassignmentRequest {
            topic: topic.name.clone(),
            partition: m.partition,
            target: Some(m.target),
        };
        // Refusals (a target broker just fenced) are left for a later pass.
        if let Ok(Some(record)) = decide_reassignment(image, &request, false, false) {
            decision.records.push(record);
        }
    }
    decision
}

/// The topic config records that bring the throttled replica lists in line with the moves
/// under way (see the module docs); none while moves are not throttled.
pub fn decide_move_throttles(
    image: &MetadataImage,
    config: &BalancerConfig,
) -> Vec<MetadataRecord> {
    move_throttles(image, &[], config)
}

/// [`decide_move_throttles`] for the image as it will be once `pending` (records about to be
/// committed with the result) are applied, so a move starts throttled in the very commit that
/// starts it rather than a duty pass later, by which time a small partition is copied.
pub fn move_throttles(
    image: &MetadataImage,
    pending: &[MetadataRecord],
    config: &BalancerConfig,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    if config.throttle_bytes_per_s == 0 {
        return records;
    }
    for topic in image.topics.values() {
        // Partition -> (its replicas before the move, the replicas being added).
        let mut moving: BTreeMap<i32, (Vec<BrokerId>, Vec<BrokerId>)> = BTreeMap::new();
        let mut note = |index: PartitionIndex,
                        replicas: &[BrokerId],
                        adding: &[BrokerId],
                        removing: &[BrokerId]| {
            if adding.is_empty() && removing.is_empty() {
                moving.remove(&index.0);
            } else {
                let sources = replicas
                    .iter()
                    .filter(|b| !adding.contains(b))
                    .copied()
                    .collect();
                moving.insert(index.0, (sources, adding.to_vec()));
            }
        };
        for (i, p) in &topic.partitions {
            note(*i, &p.replicas, &p.adding_replicas, &p.removing_replicas);
        }
        for r in pending {
            if let MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                adding_replicas,
                removing_replicas,
                ..
            } = r
            {
                if *topic_id == topic.topic_id {
                    note(*partition, replicas, adding_replicas, removing_replicas);
                }
            }
        }
        let lists = [
            (LEADER_THROTTLED_REPLICAS, true),
            (FOLLOWER_THROTTLED_REPLICAS, false),
        ];
        for (key, sources) in lists {
            let current = topic.config.overrides.get(key).map_or("", String::as_str);
            if current.split(',').any(|e| e.trim() == "*") {
                continue;
            }
            let wanted = moving.iter().flat_map(|(i, (from, adding))| {
                let brokers = if sources { from } else { adding };
                brokers.iter().map(move |b| format!("{i}:{b}"))
            });
            let mut next: Vec<String> = Vec::new();
            let kept = current.split(',').map(str::trim).filter(|e| {
                let partition = e
                    .split_once(':')
                    .and_then(|(p, _)| p.trim().parse::<i32>().ok());
                partition.is_some_and(|p| moving.contains_key(&p))
            });
            for entry in kept.map(str::to_string).chain(wanted) {
                if !next.contains(&entry) {
                    next.push(entry);
                }
            }
            let next = next.join(",");
            if next != current {
                records.push(MetadataRecord::TopicConfig {
                    topic_id: topic.topic_id,
                    key: key.to_string(),
                    value: (!next.is_empty()).then_some(next),
                });
            }
        }
    }
    records
}

/// Replicas held per unfenced broker (0 for one holding none).
pub fn replicas_per_broker(image: &MetadataImage) -> BTreeMap<BrokerId, usize> {
    let mut count: BTreeMap<BrokerId, usize> = image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| (b.broker_id, 0))
        .collect();
    for t in image.topics.values() {
        for p in t.partitions.values() {
            for b in &p.replicas {
                if let Some(c) = count.get_mut(b) {
                    *c += 1;
                }
            }
        }
    }
    count
}

fn partition_loads(image: &MetadataImage, sizes: &PartitionSizes) -> Vec<PartitionLoad> {
    image
        .topics
        .values()
        .flat_map(|t| {
            t.partitions.iter().map(|(i, p)| PartitionLoad {
                topic_id: t.topic_id,
                partition: *i,
                replicas: p.replicas.clone(),
                size_bytes: sizes.get(&(t.topic_id, *i)).copied().unwrap_or(0),
                // An under-replicated partition is not moved: its new replica would wait
                // for the missing one, holding a move slot, and the copy adds load to a
                // partition already short of replicas.
                reassigning: p.is_reassigning() || p.isr.len() < p.replicas.len(),
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "balancer_tests.rs"]
mod tests;
