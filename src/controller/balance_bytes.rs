//! The byte side of the balance planner: once replica counts are even (and nothing is to be
//! drained, [`super::balance::plan_moves`] plans nothing), which replicas to move so that no
//! broker holds much more data than the others.
//!
//! Greedy, one step at a time, over the sizes the brokers report (a partition's size is its
//! largest replica's local log). The heaviest broker (most bytes among the brokers that may
//! take replicas) gives the lightest the replica whose size comes closest to halving the gap
//! between them, of those smaller than the gap, so every step lowers the spread. Where the
//! move would put replica counts out of their tolerance, the lightest gives back its smallest
//! replica in the same step (a swap), as long as the swap still moves bytes the right way.
//! Partitions already being reassigned, or with no known size, stay. It stops when the
//! heaviest broker holds at most `ratio` above the mean, when the gap is under `min_bytes`
//! (not worth a copy), when no step lowers the spread, or after `max_moves`.

use std::collections::{BTreeMap, BTreeSet};

use super::balance::{PartitionLoad, ReplicaMove};
use crate::model::BrokerId;

/// When bytes are uneven enough to move replicas for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ByteTolerance {
    /// The heaviest broker may hold this fraction above the mean.
    pub ratio: f64,
    /// Gaps between the heaviest and the lightest broker under this are left alone.
    pub min_bytes: u64,
}

/// Bytes held per broker in `brokers` (replicas of partitions with a known size).
pub fn bytes_per_broker(
    brokers: &[(BrokerId, Option<String>)],
    partitions: &[PartitionLoad],
) -> BTreeMap<BrokerId, u64> {
    let mut bytes: BTreeMap<BrokerId, u64> = brokers.iter().map(|(b, _)| (*b, 0)).collect();
    for p in partitions {
        for b in &p.replicas {
            if let Some(n) = bytes.get_mut(b) {
                *n += p.size_bytes;
            }
        }
    }
    bytes
}

/// Whether `bytes` (of the brokers that may take replicas) are out of `tolerance`.
pub fn bytes_out_of_tolerance(bytes: &BTreeMap<BrokerId, u64>, tolerance: &ByteTolerance) -> bool {
    let (Some(max), Some(min)) = (bytes.values().max(), bytes.values().min()) else {
        return false;
    };
    let mean = bytes.values().sum::<u64>() as f64 / bytes.len() as f64;
    max - min >= tolerance.min_bytes.max(1) && *max as f64 > mean * (1.0 + tolerance.ratio)
}

/// The moves, at most `max_moves` of them (see the module docs). `draining` brokers neither
/// give nor take here (draining is [`super::balance::plan_moves`]'s).
pub fn plan_byte_moves(
    brokers: &[(BrokerId, Option<String>)],
    partitions: &[PartitionLoad],
    draining: &BTreeSet<BrokerId>,
    count_tolerance: usize,
    tolerance: &ByteTolerance,
    max_moves: usize,
) -> Vec<ReplicaMove> {
    let takers: Vec<(BrokerId, Option<String>)> = brokers
        .iter()
        .filter(|(b, _)| !draining.contains(b))
        .cloned()
        .collect();
    let rack: BTreeMap<BrokerId, Option<&str>> =
        takers.iter().map(|(b, r)| (*b, r.as_deref())).collect();
    let mut parts: Vec<PartitionLoad> = partitions.to_vec();
    let mut moves = Vec::new();
    while moves.len() < max_moves {
        let bytes = bytes_per_broker(&takers, &parts);
        if !bytes_out_of_tolerance(&bytes, tolerance) {
            break;
        }
        let count = replicas_per_broker(&takers, &parts);
        let heavy = *bytes
            .iter()
            .max_by_key(|(b, n)| (**n, **b))
            .expect("brokers")
            .0;
        let light = *bytes
            .iter()
            .min_by_key(|(b, n)| (**n, **b))
            .expect("brokers")
            .0;
        let gap = bytes[&heavy] - bytes[&light];
        // A replica may go from `from` to `to` when `to` holds none of it and, where racks are
        // known, `to`'s rack holds none of its other replicas.
        let may_move = |p: &PartitionLoad, from: BrokerId, to: BrokerId| {
            !p.reassigning
                && p.size_bytes > 0
                && p.replicas.contains(&from)
                && !p.replicas.contains(&to)
                && rack[&to].is_none_or(|r| {
                    p.replicas
                        .iter()
                        .filter(|b| **b != from)
                        .all(|b| rack.get(b).copied().flatten() != Some(r))
                })
        };
        let Some(give) = (0..parts.len())
            .filter(|&i| may_move(&parts[i], heavy, light) && parts[i].size_bytes < gap)
            .min_by_key(|&i| ((gap as i128 - 2 * parts[i].size_bytes as i128).abs(), i))
        else {
            break;
        };
        // Counts must stay within their tolerance (or no worse than they are, where racks
        // kept the count planner from evening them out).
        let spread_now = spread_after(&count, heavy, heavy);
        let counts_hold = spread_after(&count, heavy, light) <= count_tolerance.max(spread_now);
        let give_back = if counts_hold {
            None
        } else {
            // The smallest replica of `light` that `heavy` can take and that keeps the swap
            // moving bytes from heavy to light.
            let found = (0..parts.len())
                .filter(|&i| i != give && may_move(&parts[i], light, heavy))
                .filter(|&i| parts[i].size_bytes < parts[give].size_bytes)
                .min_by_key(|&i| (parts[i].size_bytes, i));
            match found {
                Some(i) if moves.len() + 2 <= max_moves => Some(i),
                _ => break,
            }
        };
        moves.push(apply(&mut parts[give], heavy, light));
        if let Some(i) = give_back {
            moves.push(apply(&mut parts[i], light, heavy));
        }
    }
    moves
}

/// The spread of replica counts once one replica went from `from` to `to`.
/// (`from == to`: the spread as it is.)
fn spread_after(count: &BTreeMap<BrokerId, usize>, from: BrokerId, to: BrokerId) -> usize {
    let after = count.iter().map(|(b, c)| match (*b == from, *b == to) {
        (true, false) => c - 1,
        (false, true) => c + 1,
        _ => *c,
    });
    let (hi, lo) = after.fold((0, usize::MAX), |(hi, lo), c| (hi.max(c), lo.min(c)));
    hi.saturating_sub(lo)
}

fn replicas_per_broker(
    brokers: &[(BrokerId, Option<String>)],
    partitions: &[PartitionLoad],
) -> BTreeMap<BrokerId, usize> {
    let mut count: BTreeMap<BrokerId, usize> = brokers.iter().map(|(b, _)| (*b, 0)).collect();
    for p in partitions {
        for b in &p.replicas {
            if let Some(c) = count.get_mut(b) {
                *c += 1;
            }
        }
    }
    count
}

fn apply(p: &mut PartitionLoad, from: BrokerId, to: BrokerId) -> ReplicaMove {
    let target: Vec<BrokerId> = p
        .replicas
        .iter()
        .map(|b| if *b == from { to } else { *b })
        .collect();
    p.replicas = target.clone();
    ReplicaMove {
        topic_id: p.topic_id,
        partition: p.partition,
        from,
        to,
        target,
    }
}

#[cfg(test)]
#[path = "balance_bytes_tests.rs"]
mod tests;
