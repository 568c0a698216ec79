//! Retries with exponential backoff and full jitter, for single store calls and for the
//! per-partition upload loop.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::{Result, TieringError};

/// Exponential backoff: attempt `n` (from 0) waits a random time in `[0, min(max, base * 2^n)]`
/// ("full jitter", so partitions that failed together do not retry together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The ceiling of the wait before retry `attempt` (0-based), before jitter.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u64 << attempt.min(20);
        self.base
            .saturating_mul(factor.min(u32::MAX as u64) as u32)
            .min(self.max)
    }

    /// A jittered wait before retry `attempt`, at least a millisecond.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis().max(1) as u64;
        Duration::from_millis(rand::random_range(ceiling / 2..=ceiling).max(1))
    }
}

/// The least backoff after the store answered "slow down" (S3 `SlowDown`, 503, 429): AWS asks
/// clients to back off exponentially from there, and retrying at a blip's pace only adds to
/// the request rate that caused it.
pub const THROTTLED_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    max: Duration::from_secs(20),
};

/// Runs `op` until it succeeds, fails with a non-retriable error, or `max_attempts` are used;
/// waits [`Backoff::delay`] between attempts, and at least [`THROTTLED_BACKOFF`]'s after a
/// throttled answer ([`TieringError::is_throttled`]). Cancelling `cancel` ends it with `ShuttingDown`.
pub async fn retry<T, F, Fut>(
    backoff: Backoff,
    max_attempts: u32,
    cancel: &CancellationToken,
    mut op: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        let e = tokio::select! {
            r = op() => match r {
                Ok(v) => return Ok(v),
                Err(e) => e,
            },
            () = cancel.cancelled() => return Err(TieringError::ShuttingDown),
        };
        attempt += 1;
        if !e.is_retriable() || attempt >= max_attempts {
            return Err(e);
        }
        let wait = if e.is_throttled() {
            tracing::info!(error = %e, attempt, "object store asked to slow down; backing off");
            backoff
                .delay(attempt - 1)
                .max(THROTTLED_BACKOFF.delay(attempt - 1))
        } else {
            tracing::debug!(error = %e, attempt, "object store call failed; retrying");
            backoff.delay(attempt - 1)
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => return Err(TieringError::ShuttingDown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn ceilings_grow_and_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(400));
        assert_eq!(b.ceiling(10), Duration::from_secs(1));
        assert_eq!(b.ceiling(63), Duration::from_secs(1));
        for a in 0..8 {
            let d = b.delay(a);
            assert!(d <= b.ceiling(a) && d >= b.ceiling(a) / 2, "{d:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_or_fatal() {
        let calls = AtomicU32::new(0);
        let cancel = CancellationToken::new();
        let r = retry(Backoff::default(), 5, &cancel, || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(TieringError::Io {
                    path: "x".into(),
                    source: std::io::Error::other("flaky"),
                })
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r.ok(), Some(7));
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        let calls = AtomicU32::new(0);
        let r: Result<()> = retry(Backoff::default(), 5, &cancel, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(TieringError::NotFound { key: "k".into() })
        })
        .await;
        assert!(matches!(r, Err(TieringError::NotFound { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_down_answer_backs_off_longer_than_a_blip() {
        let slow_down = || TieringError::Store {
            op: "get_range",
            key: "k".into(),
            retriable: true,
            source: "Server returned non-2xx status code: 503 Service Unavailable: \
                     <Error><Code>SlowDown</Code><Message>Please reduce your request rate.\
                     </Message></Error>"
                .into(),
        };
        assert!(slow_down().is_throttled());
        let blip = TieringError::Store {
            op: "get_range",
            key: "k".into(),
            retriable: true,
            source: "connection reset".into(),
        };
        assert!(!blip.is_throttled());
        let quick = Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(10),
        };
        let cancel = CancellationToken::new();
        let calls = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let r = retry(quick, 5, &cancel, || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(slow_down())
            } else {
                Ok(1)
            }
        })
        .await;
        assert_eq!(r.ok(), Some(1));
        // Two throttled waits: at least 0.5 s and 1 s (half of each ceiling, full jitter).
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(1500), "{waited:?}");
        assert!(waited <= Duration::from_secs(3), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_is_a_typed_outcome() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let r: Result<()> = retry(Backoff::default(), 5, &cancel, || std::future::pending()).await;
        assert!(matches!(r, Err(TieringError::ShuttingDown)));
    }
}
