//! Replication throttling: Kafka's `follower.replication.throttled.rate` applied to the
//! replicas listed in a topic's `follower.replication.throttled.replicas`, and
//! `leader.replication.throttled.rate` to those listed in `leader.replication.throttled.replicas`.
//!
//! Both lists name `partition:broker` pairs, and each broker applies the pairs naming itself
//! (Kafka's `parseThrottledPartitions`): a move's leader list names the replicas it copies
//! from, its follower list the replicas being added.
//!
//! As Kafka's `ReplicaFetcherThread` does, a follower leaves its throttled partitions out of a
//! fetch while the throttled bytes it fetched are over the rate, and counts the bytes of their
//! records after each fetch; partitions that are not throttled are fetched as always, so
//! ordinary replication is untouched. The rate is kept as a token bucket holding at most one
//! second of bytes and starting empty: a throttled copy of `B` bytes takes at least
//! `(B - one fetch) / rate` seconds, since one fetch may overdraw the bucket.
//!
//! The leader side ([`should_leader_throttle`], as Kafka's `ReplicaManager`): a leader
//! answering a follower's fetch returns no records for a listed partition while the bytes it
//! sent for listed partitions are over the rate, unless that follower is in the ISR (throttling
//! an in-sync replica would only shrink the ISR); the bytes of every listed partition it sends
//! are counted. Other partitions in the same fetch are answered as always.
//!
//! Where no rate is set (`*.replication.throttled.rate` left at its unlimited default), the
//! balancer's `strata.balancer.throttle.bytes.per.second` applies, if set ([`effective_rate`]),
//! so the moves the balancer throttles are bounded without further settings.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::Partition;
use crate::controller::MetadataImage;
use crate::model::{BrokerId, PartitionIndex, TopicPartition};

/// The topic config listing the replicas a leader sends within `leader.replication.throttled.rate`.
pub const LEADER_THROTTLED_REPLICAS: &str = "leader.replication.throttled.replicas";
/// The topic config listing the replicas a follower fetches within
/// `follower.replication.throttled.rate`.
pub const FOLLOWER_THROTTLED_REPLICAS: &str = "follower.replication.throttled.replicas";

/// Whether `list` (a `*.replication.throttled.replicas` value: `"*"`, or
/// `"partition:broker"` pairs, comma-separated) names `broker`'s replica of `partition`.
pub fn is_throttled(list: &str, partition: PartitionIndex, broker: BrokerId) -> bool {
    list.split(',').map(str::trim).any(|entry| {
        entry == "*"
            || entry.split_once(':').is_some_and(|(p, b)| {
                p.trim().parse() == Ok(partition.0) && b.trim().parse() == Ok(broker.0)
            })
    })
}

/// Whether a leader leaves a listed partition's records out of a follower's fetch (Kafka's
/// `shouldLeaderThrottle`): listed here, the follower out of the ISR, and the quota exceeded.
pub fn should_leader_throttle(listed: bool, follower_in_sync: bool, quota_exceeded: bool) -> bool {
    listed && !follower_in_sync && quota_exceeded
}

/// The rate a `*.replication.throttled.rate` value (`i64::MAX` or not positive: none) and the
/// balancer's move throttle (0 or less: none) give: the explicit rate wins.
pub fn effective_rate(throttled_rate: i64, balancer_rate: i64) -> Option<u64> {
    let set = |r: i64| (r > 0 && r < i64::MAX).then_some(r as u64);
    set(throttled_rate).or(set(balancer_rate))
}

/// A token bucket of bytes per second; `None` is no limit. Decisions take the time as an
/// argument so they are tested without a clock.
#[derive(Debug, Clone)]
pub struct ReplicationQuota {
    rate_bytes_per_s: Option<u64>,
    tokens: f64,
    at: Instant,
}

impl ReplicationQuota {
    pub fn new(rate_bytes_per_s: Option<u64>, now: Instant) -> ReplicationQuota {
        ReplicationQuota {
            rate_bytes_per_s,
            tokens: 0.0,
            at: now,
        }
    }

    /// A new rate (a dynamic config change); the bucket keeps what it holds, within the new
    /// one second.
    pub fn set_rate(&mut self, rate_bytes_per_s: Option<u64>, now: Instant) {
        if self.rate_bytes_per_s != rate_bytes_per_s {
            self.refill(now);
            self.rate_bytes_per_s = rate_bytes_per_s;
            if let Some(r) = rate_bytes_per_s {
                self.tokens = self.tokens.min(r as f64);
            }
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(r) = self.rate_bytes_per_s {
            let secs = now.saturating_duration_since(self.at).as_secs_f64();
            self.tokens = (self.tokens + secs * r as f64).min(r as f64);
        }
        self.at = now;
    }

    /// `Some(wait)` while throttled partitions must be left out of fetches: how long until the
    /// bucket holds bytes again.
    pub fn exceeded(&mut self, now: Instant) -> Option<Duration> {
        let r = self.rate_bytes_per_s?;
        self.refill(now);
        if self.tokens > 0.0 {
            return None;
        }
        let secs = (-self.tokens + 1.0) / r.max(1) as f64;
        Some(Duration::from_secs_f64(secs.min(1.0)))
    }

    /// Counts `bytes` fetched for throttled partitions.
    pub fn record(&mut self, bytes: u64, now: Instant) {
        if self.rate_bytes_per_s.is_some() {
            self.refill(now);
            self.tokens -= bytes as f64;
        }
    }
}

/// The leader side of the throttle on one broker (Kafka's leader `ReplicationQuotaManager`):
/// `leader.replication.throttled.rate` over every follower fetch it answers.
#[derive(Debug)]
pub struct LeaderReplicationQuota {
    local: BrokerId,
    // Short sections that never await: one check per partition read, one record per fetch.
    quota: Mutex<ReplicationQuota>,
    /// Whether a rate is set: without one, follower fetches skip the lists and the lock.
    limited: AtomicBool,
}

impl LeaderReplicationQuota {
    pub fn new(local: BrokerId) -> LeaderReplicationQuota {
        LeaderReplicationQuota {
            local,
            quota: Mutex::new(ReplicationQuota::new(None, Instant::now())),
            limited: AtomicBool::new(false),
        }
    }

    fn quota(&self) -> MutexGuard<'_, ReplicationQuota> {
        self.quota.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets `leader.replication.throttled.rate` (`None`: no limit).
    pub fn set_rate(&self, rate_bytes_per_s: Option<u64>) {
        self.quota().set_rate(rate_bytes_per_s, Instant::now());
        self.limited
            .store(rate_bytes_per_s.is_some(), Ordering::Relaxed);
    }

    /// Whether `leader.replication.throttled.rate` is set at all.
    pub fn is_limited(&self) -> bool {
        self.limited.load(Ordering::Relaxed)
    }

    /// Whether the topic's `leader.replication.throttled.replicas` names this broker's replica
    /// of `tp`: its bytes sent to followers count against the rate.
    pub fn is_listed(&self, image: &MetadataImage, tp: &TopicPartition) -> bool {
        image
            .topic_by_name(&tp.topic)
            .and_then(|t| t.config.overrides.get(LEADER_THROTTLED_REPLICAS))
            .is_some_and(|list| is_throttled(list, tp.partition, self.local))
    }

    /// Whether `follower`'s fetch of `partition` gets no records now ([`should_leader_throttle`]).
    pub fn should_throttle(
        &self,
        image: &MetadataImage,
        partition: &Partition,
        follower: BrokerId,
    ) -> bool {
        let listed = self.is_listed(image, &partition.tp);
        listed
            && should_leader_throttle(
                listed,
                partition.state().isr.contains(&follower),
                self.quota().exceeded(Instant::now()).is_some(),
            )
    }

    /// Counts `bytes` sent to followers for listed partitions.
    pub fn record(&self, bytes: u64) {
        if bytes > 0 {
            self.quota().record(bytes, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_lists_name_partitions_on_brokers_or_all() {
        let (p0, p1, b2, b3) = (
            PartitionIndex(0),
            PartitionIndex(1),
            BrokerId(2),
            BrokerId(3),
        );
        assert!(is_throttled("*", p1, b3));
        assert!(is_throttled("0:2, 1:3", p0, b2));
        assert!(is_throttled("0:2,1:3", p1, b3));
        assert!(!is_throttled("0:2,1:3", p0, b3));
        assert!(!is_throttled("", p0, b2));
        assert!(!is_throttled("x:y,0", p0, b2));
    }

    #[test]
    fn a_leader_throttles_listed_out_of_sync_followers_over_the_rate() {
        assert!(should_leader_throttle(true, false, true));
        assert!(
            !should_leader_throttle(true, false, false),
            "under the rate"
        );
        assert!(!should_leader_throttle(true, true, true), "in sync: never");
        assert!(!should_leader_throttle(false, false, true), "not listed");
    }

    #[test]
    fn the_explicit_rate_wins_over_the_balancers() {
        assert_eq!(effective_rate(i64::MAX, 0), None);
        assert_eq!(effective_rate(i64::MAX, -1), None);
        assert_eq!(effective_rate(i64::MAX, 5000), Some(5000));
        assert_eq!(effective_rate(1000, 5000), Some(1000));
        assert_eq!(effective_rate(0, 5000), Some(5000));
        assert_eq!(effective_rate(1000, 0), Some(1000));
    }

    #[test]
    fn the_bucket_admits_rate_bytes_per_second() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut q = ReplicationQuota::new(Some(1000), t0);
        // Empty at first: throttled partitions wait about a millisecond for the first byte.
        assert!(q.exceeded(t0).is_some());
        assert_eq!(q.exceeded(t0 + s(1)), None);
        // A fetch of 3000 bytes overdraws it: about two seconds before the next.
        q.record(3000, t0 + s(1));
        let wait = q.exceeded(t0 + s(1)).expect("exceeded");
        assert!(
            wait <= s(1),
            "waits are capped so a rate change is seen: {wait:?}"
        );
        assert!(q.exceeded(t0 + s(2)).is_some());
        assert!(q.exceeded(t0 + s(3)).is_some(), "at zero, not above");
        assert_eq!(q.exceeded(t0 + s(3) + Duration::from_millis(10)), None);
        // It never holds more than one second of bytes, however long it idles.
        q.record(0, t0 + s(100));
        q.record(1000, t0 + s(100));
        assert!(q.exceeded(t0 + s(100)).is_some());
        // No limit: never exceeded.
        let mut q = ReplicationQuota::new(None, t0);
        q.record(u64::MAX / 2, t0);
        assert_eq!(q.exceeded(t0), None);
        // Lifting the limit at run time.
        let mut q = ReplicationQuota::new(Some(10), t0);
        q.record(1000, t0);
        assert!(q.exceeded(t0).is_some());
        q.set_rate(None, t0);
        assert_eq!(q.exceeded(t0), None);
    }
}
