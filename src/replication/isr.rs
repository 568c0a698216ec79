//! The leader's view of its followers, and the decisions made from it: the high watermark and
//! ISR shrinks and expansions. Pure functions over plain values, unit tested here; the
//! [`Partition`](super::Partition) feeds them and acts on what they return.
//!
//! A follower's fetch offset says it holds every record below it. It is *caught up* at time t
//! when its fetch at t asked for the leader's log end offset, or asked for at least what the
//! leader's end was at its previous fetch (then it was caught up as of that previous fetch) —
//! Kafka's `lastCaughtUpTimeMs`. A follower not caught up for `replica.lag.time.max.ms` leaves
//! the ISR; one out of the ISR rejoins once it holds everything below the high watermark and
//! everything the current leader epoch wrote.

use std::collections::HashMap;

use crate::model::{BrokerId, Offset};

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// The follower's log end offset (its last fetch offset); `None` until it fetches from
    /// this leadership.
    pub log_end_offset: Option<Offset>,
    pub last_fetch_ms: i64,
    /// The leader's log end offset at the follower's last fetch.
    pub last_fetch_leader_end: Offset,
    pub last_caught_up_ms: i64,
}

impl FollowerState {
    /// A follower as a new leadership starts: end unknown, counted caught up now, so it has
    /// `replica.lag.time.max.ms` to show up before it leaves the ISR.
    pub fn new(now_ms: i64) -> FollowerState {
        FollowerState {
            log_end_offset: None,
            last_fetch_ms: now_ms,
            last_fetch_leader_end: Offset(-1),
            last_caught_up_ms: now_ms,
        }
    }

    /// The state after a fetch at `fetch_offset`, when the leader's end is `leader_end`.
    pub fn on_fetch(self, fetch_offset: Offset, leader_end: Offset, now_ms: i64) -> FollowerState {
        let last_caught_up_ms = if fetch_offset >= leader_end {
            now_ms
        } else if fetch_offset >= self.last_fetch_leader_end && self.log_end_offset.is_some() {
            self.last_fetch_ms.max(self.last_caught_up_ms)
        } else {
            self.last_caught_up_ms
        };
        FollowerState {
            log_end_offset: Some(fetch_offset),
            last_fetch_ms: now_ms,
            last_fetch_leader_end: leader_end,
            last_caught_up_ms,
        }
    }
}

/// The highest offset every member of `isr` holds: the leader's committed end (its durable
/// offset under group commit) and each follower's end. A member whose end is unknown holds the
/// high watermark where it is (`current`). Never below `current`: the high watermark only
/// moves forward while a leadership lasts.
pub fn high_watermark(
    current: Offset,
    leader_end: Offset,
    local: BrokerId,
    isr: &[BrokerId],
    followers: &HashMap<BrokerId, FollowerState>,
) -> Offset {
    let mut hw = leader_end;
    for b in isr.iter().filter(|b| **b != local) {
        match followers.get(b).and_then(|f| f.log_end_offset) {
            Some(end) => hw = hw.min(end),
            None => return current,
        }
    }
    hw.max(current)
}

/// The ISR without the followers that have not caught up within `lag_max_ms`, or `None` when
/// every member is in sync. The leader always stays.
pub fn shrink_isr(
    isr: &[BrokerId],
    local: BrokerId,
    followers: &HashMap<BrokerId, FollowerState>,
    now_ms: i64,
    lag_max_ms: i64,
) -> Option<Vec<BrokerId>> {
    let out_of_sync = |b: &BrokerId| {
        *b != local
            && followers
                .get(b)
                .is_none_or(|f| now_ms - f.last_caught_up_ms > lag_max_ms)
    };
    if !isr.iter().any(out_of_sync) {
        return None;
    }
    Some(isr.iter().copied().filter(|b| !out_of_sync(b)).collect())
}

/// The ISR with every replica outside it that has caught up: holds everything below the high
/// watermark and everything since `epoch_start` (the first offset of the current leader
/// epoch), so it cannot be missing a record this leadership acknowledged. `None` when none has.
pub fn expand_isr(
    replicas: &[BrokerId],
    isr: &[BrokerId],
    followers: &HashMap<BrokerId, FollowerState>,
    high_watermark: Offset,
    epoch_start: Offset,
) -> Option<Vec<BrokerId>> {
    let joining: Vec<BrokerId> = replicas
        .iter()
        .copied()
        .filter(|b| !isr.contains(b))
        .filter(|b| {
            followers
                .get(b)
                .and_then(|f| f.log_end_offset)
                .is_some_and(|end| end >= high_watermark && end >= epoch_start)
        })
        .collect();
    if joining.is_empty() {
        return None;
    }
    // Replica order, so every proposal for the same members reads the same.
    Some(
        replicas
            .iter()
            .copied()
            .filter(|b| isr.contains(b) || joining.contains(b))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: BrokerId = BrokerId(1);
    const F2: BrokerId = BrokerId(2);
    const F3: BrokerId = BrokerId(3);

    fn fetched(at: i64, offset: i64, leader_end: i64) -> FollowerState {
        FollowerState::new(0).on_fetch(Offset(offset), Offset(leader_end), at)
    }

    #[test]
    fn the_high_watermark_is_the_smallest_end_in_the_isr() {
        let mut f = HashMap::new();
        f.insert(F2, fetched(1, 7, 10));
        f.insert(F3, fetched(1, 4, 10));
        assert_eq!(
            high_watermark(Offset(0), Offset(10), L, &[L, F2, F3], &f),
            Offset(4)
        );
        // A follower outside the ISR does not hold it back.
        assert_eq!(
            high_watermark(Offset(0), Offset(10), L, &[L, F2], &f),
            Offset(7)
        );
        // The leader's own committed end bounds it too.
        assert_eq!(
            high_watermark(Offset(0), Offset(5), L, &[L, F2], &f),
            Offset(5)
        );
        // Alone, the leader's end is the high watermark.
        assert_eq!(
            high_watermark(Offset(0), Offset(10), L, &[L], &f),
            Offset(10)
        );
        // Never backwards.
        assert_eq!(
            high_watermark(Offset(8), Offset(10), L, &[L, F3], &f),
            Offset(8)
        );
    }

    #[test]
    fn an_isr_member_not_yet_heard_from_holds_the_high_watermark() {
        let mut f = HashMap::new();
        f.insert(F2, FollowerState::new(0));
        assert_eq!(
            high_watermark(Offset(3), Offset(10), L, &[L, F2], &f),
            Offset(3)
        );
        assert_eq!(
            high_watermark(Offset(3), Offset(10), L, &[L, F3], &f),
            Offset(3)
        );
    }

    #[test]
    fn caught_up_time_follows_kafka() {
        let s = FollowerState::new(0);
        // Fetching the leader's end: caught up now.
        let s = s.on_fetch(Offset(10), Offset(10), 100);
        assert_eq!(s.last_caught_up_ms, 100);
        // The leader moved on to 20; the follower asks for 10 again: not caught up at 200.
        let s = s.on_fetch(Offset(10), Offset(20), 200);
        assert_eq!(s.last_caught_up_ms, 100);
        // It now asks for 20 while the leader is at 30: it held the end of its last fetch, so
        // it was caught up as of that fetch.
        let s = s.on_fetch(Offset(20), Offset(30), 300);
        assert_eq!(s.last_caught_up_ms, 200);
    }

    #[test]
    fn laggards_leave_the_isr_and_the_leader_stays() {
        let mut f = HashMap::new();
        f.insert(F2, fetched(1_000, 10, 10));
        f.insert(F3, fetched(29_000, 10, 10));
        assert_eq!(
            shrink_isr(&[L, F2, F3], L, &f, 30_000, 10_000),
            Some(vec![L, F3])
        );
        assert_eq!(shrink_isr(&[L, F3], L, &f, 30_000, 10_000), None);
        // A member the leader has no state for is out of sync.
        assert_eq!(
            shrink_isr(&[L, F2], L, &HashMap::new(), 0, 10_000),
            Some(vec![L])
        );
    }

    #[test]
    fn a_follower_rejoins_once_it_holds_the_high_watermark_and_the_epoch() {
        let mut f = HashMap::new();
        f.insert(F2, fetched(1, 9, 12));
        f.insert(F3, fetched(1, 12, 12));
        assert_eq!(
            expand_isr(&[L, F2, F3], &[L], &f, Offset(10), Offset(0)),
            Some(vec![L, F3])
        );
        assert_eq!(
            expand_isr(&[L, F2, F3], &[L], &f, Offset(9), Offset(0)),
            Some(vec![L, F2, F3])
        );
        // Everything since the epoch started is required even above the high watermark.
        assert_eq!(
            expand_isr(&[L, F2, F3], &[L], &f, Offset(9), Offset(11)),
            Some(vec![L, F3])
        );
        assert_eq!(
            expand_isr(&[L, F2, F3], &[L, F2, F3], &f, Offset(0), Offset(0)),
            None
        );
    }
}
