//! [`RemoteReadQuota`]: the broker-wide cap on bytes read from object storage per second
//! (`remote.log.manager.fetch.max.bytes.per.second`, KIP-956), so a backfill cannot take the
//! store's whole bandwidth. A read over the quota is delayed, never failed.
//!
//! A token bucket that may go into debt: a ranged GET takes its bytes at once and waits until
//! the debt it leaves is paid back at the configured rate; the bucket holds at most one
//! second's worth, so an idle broker may burst that much.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The bucket's arithmetic, pure: time is passed in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    pub rate_bytes_per_s: u64,
    /// Bytes that may be taken now; negative: debt to pay back first.
    pub tokens: f64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_bytes_per_s: u64) -> TokenBucket {
        TokenBucket {
            rate_bytes_per_s,
            tokens: rate_bytes_per_s as f64,
        }
    }

    /// `elapsed` since the last call passed, and `bytes` are taken: how long the taker waits.
    pub fn take(&mut self, elapsed: Duration, bytes: u64) -> Duration {
        let rate = self.rate_bytes_per_s.max(1) as f64;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * rate).min(rate);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}

/// See the module documentation. `None` rate: unlimited.
#[derive(Debug)]
pub struct RemoteReadQuota {
    // Short sections only: the bucket's arithmetic; the wait happens outside it.
    bucket: Option<Mutex<(TokenBucket, Instant)>>,
    /// Total time reads were held back, in nanoseconds.
    pub throttled_ns: AtomicU64,
}

impl RemoteReadQuota {
    /// `bytes_per_second` of 0 or `i64::MAX` (Kafka's default) and above: unlimited.
    pub fn new(bytes_per_second: u64) -> RemoteReadQuota {
        let limited = bytes_per_second > 0 && bytes_per_second < i64::MAX as u64;
        RemoteReadQuota {
            bucket: limited
                .then(|| Mutex::new((TokenBucket::new(bytes_per_second), Instant::now()))),
            throttled_ns: AtomicU64::new(0),
        }
    }

    pub fn unlimited() -> RemoteReadQuota {
        RemoteReadQuota::new(0)
    }

    /// Takes `bytes` from the quota, waiting as long as the quota says.
    pub async fn acquire(&self, bytes: u64) {
        let Some(bucket) = &self.bucket else {
            return;
        };
        let delay = {
            let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(b.1);
            b.1 = now;
            b.0.take(elapsed, bytes)
        };
        if !delay.is_zero() {
            self.throttled_ns
                .fetch_add(delay.as_nanos() as u64, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_lets_one_second_through_then_debt_is_paid_at_the_rate() {
        let mut b = TokenBucket::new(1000);
        assert_eq!(b.take(Duration::ZERO, 600), Duration::ZERO);
        assert_eq!(b.take(Duration::ZERO, 400), Duration::ZERO);
        // Empty: 500 bytes more wait half a second, the next 500 a whole one.
        assert_eq!(b.take(Duration::ZERO, 500), Duration::from_millis(500));
        assert_eq!(b.take(Duration::ZERO, 500), Duration::from_secs(1));
        // Time pays the debt back.
        assert_eq!(b.take(Duration::from_secs(1), 0), Duration::ZERO);
        // Idle time never fills it past one second's worth.
        b.take(Duration::from_secs(60), 0);
        assert_eq!(b.tokens, 1000.0);
    }

    #[tokio::test(start_paused = true)]
    async fn reads_over_the_quota_are_delayed_to_the_rate() {
        let q = RemoteReadQuota::new(1 << 20);
        let start = Instant::now();
        // 1 MiB of burst, then 4 MiB at 1 MiB/s.
        for _ in 0..5 {
            q.acquire(1 << 20).await;
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(4) && took < Duration::from_millis(4100),
            "{took:?}"
        );
        assert!(q.throttled_ns.load(Ordering::Relaxed) >= 4_000_000_000);
        let free = RemoteReadQuota::new(i64::MAX as u64);
        let start = Instant::now();
        free.acquire(u64::MAX / 2).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
