//! Follower replication throttling (Kafka's `follower.replication.throttled.rate` applied to
//! the replicas listed in a topic's `follower.replication.throttled.replicas`).
//!
//! As Kafka's `ReplicaFetcherThread` does, a follower leaves its throttled partitions out of a
//! fetch while the throttled bytes it fetched are over the rate, and counts the bytes of their
//! records after each fetch; partitions that are not throttled are fetched as always, so
//! ordinary replication is untouched. The rate is kept as a token bucket holding at most one
//! second of bytes and starting empty: a throttled copy of `B` bytes takes at least
//! `(B - one fetch) / rate` seconds, since one fetch may overdraw the bucket.

use std::time::Duration;

use tokio::time::Instant;

use crate::model::{BrokerId, PartitionIndex};

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
