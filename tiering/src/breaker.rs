//! A circuit breaker per object store: when the store keeps failing (errors, `SlowDown`/503,
//! timeouts), calls of every partition stop at the breaker instead of each hammering the store
//! and logging; a single half-open probe later closes it again.
//!
//! [`CircuitBreaker`] is the pure decision: (state, call or outcome, now) -> (state, verdict).
//! [`BreakerStorage`] carries it out around a [`RemoteStorage`]: it asks before each call,
//! waits out the pacing, reports the outcome, and answers a rejected call with
//! [`TieringError::CircuitOpen`] (retriable) without touching the store.
//!
//! # When it opens
//! After `failure_threshold` consecutive failed calls with no success in between, coming from
//! at least `min_failing_prefixes` distinct partitions (the first two components of the key,
//! `{topic}-{topic_id}/{partition}`). Failures of one partition alone never open it: that
//! partition backs off on its own while healthy partitions keep uploading, and any success
//! anywhere resets the count. A failure is a retriable store error ([`TieringError::Store`]
//! with `retriable`), which includes throttling and the HTTP client's timeouts; any other
//! answer (including "not found" and "precondition failed") shows the store is up.
//!
//! # Open, half-open, closed
//! Open rejects every call until its backoff ends ([`Backoff::ceiling`] of the number of
//! times it opened in a row, so a store that stays down is probed less and less often). Then
//! the first call is let through as the probe (half-open) and every other call is rejected
//! until the probe answers: success closes the breaker, failure opens it again for longer.
//!
//! # Pacing
//! A throttled answer (S3 `SlowDown`, 503, 429) doubles a spacing between calls (from
//! `pace_step_ms` up to `pace_max_ms`) and each success halves it: calls then start at least
//! that far apart, across the whole store, so the request rate falls while the store asks.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Result, TieringError};
use crate::retry::Backoff;
use crate::stats::StoreStats;
use crate::storage::{ObjectInfo, ObjectVersion, PutCondition, PutFileOutcome, RemoteStorage};

/// The breaker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failed calls that open the breaker; 0 disables it (pacing stays).
    pub failure_threshold: u32,
    /// Distinct partitions those failures must come from.
    pub min_failing_prefixes: usize,
    /// How long it stays open: the ceiling for the n-th opening in a row.
    pub open_backoff: Backoff,
    pub pace_step_ms: u64,
    pub pace_max_ms: u64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failure_threshold: 8,
            min_failing_prefixes: 2,
            open_backoff: Backoff {
                base: Duration::from_secs(1),
                max: Duration::from_secs(30),
            },
            pace_step_ms: 20,
            pace_max_ms: 500,
        }
    }
}

/// The breaker's state, as the `strata_tiering_store_breaker_state` gauge shows it
/// (0 closed, 1 open, 2 half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open { until_ms: u64 },
    HalfOpen,
}

impl BreakerState {
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open { .. } => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// What the breaker says about a call about to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead after `wait_ms` (pacing); `probe`: this call decides a half-open breaker.
    Proceed { wait_ms: u64, probe: bool },
    /// Do not call the store; try again in `retry_in_ms`.
    Reject { retry_in_ms: u64 },
}

/// How a call ended, as the breaker counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// The store answered (data, "not found", a refused condition...).
    Answered,
    /// A retriable store failure, from the partition `prefix`; `throttled`: the store asked
    /// to slow down.
    Failed { prefix: String, throttled: bool },
    /// The call ended without an answer that says anything about the store (cancelled, a
    /// local file error): only a probe's slot is given back.
    Abandoned,
}

/// A change of state worth one log line and a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened { open_ms: u64, times_in_a_row: u32 },
    Closed,
}

/// See the module documentation. Pure: every method takes the time.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    policy: BreakerPolicy,
    state: BreakerState,
    consecutive_failures: u32,
    /// The partitions of the current run of failures; at most `min_failing_prefixes` kept.
    failing_prefixes: BTreeSet<String>,
    opened_in_a_row: u32,
    probe_in_flight: bool,
    pace_ms: u64,
    next_slot_ms: u64,
}

impl CircuitBreaker {
    pub fn new(policy: BreakerPolicy) -> CircuitBreaker {
        CircuitBreaker {
            policy,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            failing_prefixes: BTreeSet::new(),
            opened_in_a_row: 0,
            probe_in_flight: false,
            pace_ms: 0,
            next_slot_ms: 0,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn pace_ms(&self) -> u64 {
        self.pace_ms
    }

    /// Whether calls are being refused at `now_ms` (open and not yet due for a probe).
    pub fn is_open(&self, now_ms: u64) -> bool {
        matches!(self.state, BreakerState::Open { until_ms } if now_ms < until_ms)
    }

    /// Decides whether a call may start at `now_ms`.
    pub fn admit(&mut self, now_ms: u64) -> Admission {
        let mut probe = false;
        match self.state {
            BreakerState::Closed => {}
            BreakerState::Open { until_ms } if now_ms < until_ms => {
                return Admission::Reject {
                    retry_in_ms: until_ms - now_ms,
                }
            }
            BreakerState::Open { .. } => {
                self.state = BreakerState::HalfOpen;
                self.probe_in_flight = true;
                probe = true;
            }
            BreakerState::HalfOpen if self.probe_in_flight => {
                return Admission::Reject {
                    retry_in_ms: self.policy.open_backoff.base.as_millis() as u64,
                }
            }
            BreakerState::HalfOpen => {
                self.probe_in_flight = true;
                probe = true;
            }
        }
        let start = self.next_slot_ms.max(now_ms);
        self.next_slot_ms = start + self.pace_ms;
        Admission::Proceed {
            wait_ms: start - now_ms,
            probe,
        }
    }

    /// Counts how a call ended; `probe` as [`Admission::Proceed`] said.
    pub fn record(&mut self, now_ms: u64, probe: bool, outcome: CallOutcome) -> Option<Transition> {
        if probe {
            self.probe_in_flight = false;
        }
        match outcome {
            CallOutcome::Abandoned => None,
            CallOutcome::Answered => {
                self.consecutive_failures = 0;
                self.failing_prefixes.clear();
                self.pace_ms /= 2;
                if self.pace_ms < self.policy.pace_step_ms {
                    self.pace_ms = 0;
                }
                if self.state == BreakerState::Closed {
                    return None;
                }
                // An answer while open comes from a call admitted before it opened: the store
                // is reachable, so closing is right either way.
                self.state = BreakerState::Closed;
                self.opened_in_a_row = 0;
                Some(Transition::Closed)
            }
            CallOutcome::Failed { prefix, throttled } => {
                if throttled {
                    self.pace_ms = (self.pace_ms * 2)
                        .max(self.policy.pace_step_ms)
                        .min(self.policy.pace_max_ms);
                }
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                if self.failing_prefixes.len() < self.policy.min_failing_prefixes {
                    self.failing_prefixes.insert(prefix);
                }
                let trips = match self.state {
                    BreakerState::HalfOpen => probe,
                    BreakerState::Open { .. } => false,
                    BreakerState::Closed => {
                        self.policy.failure_threshold > 0
                            && self.consecutive_failures >= self.policy.failure_threshold
                            && self.failing_prefixes.len() >= self.policy.min_failing_prefixes
                    }
                };
                if !trips {
                    return None;
                }
                let open_ms = self
                    .policy
                    .open_backoff
                    .ceiling(self.opened_in_a_row)
                    .as_millis() as u64;
                self.opened_in_a_row += 1;
                self.state = BreakerState::Open {
                    until_ms: now_ms + open_ms,
                };
                Some(Transition::Opened {
                    open_ms,
                    times_in_a_row: self.opened_in_a_row,
                })
            }
        }
    }
}

/// The partition a key belongs to: its first two components (`{topic}-{id}/{partition}`).
pub fn key_prefix(key: &str) -> &str {
    let mut slashes = key.match_indices('/').map(|(i, _)| i);
    let _first = slashes.next();
    match slashes.next() {
        Some(i) => &key[..i],
        None => key,
    }
}

/// How a result counts for the breaker.
fn outcome_of<T>(key: &str, r: &Result<T>) -> CallOutcome {
    match r {
        Ok(_) => CallOutcome::Answered,
        Err(
            e @ TieringError::Store {
                retriable: true, ..
            },
        ) => CallOutcome::Failed {
            prefix: key_prefix(key).to_string(),
            throttled: e.is_throttled(),
        },
        Err(TieringError::Io { .. } | TieringError::ShuttingDown) => CallOutcome::Abandoned,
        Err(TieringError::CircuitOpen { .. }) => CallOutcome::Abandoned,
        Err(_) => CallOutcome::Answered,
    }
}

/// The breaker of one store with its counters; shared by [`BreakerStorage`] and whoever
/// schedules work on the store (the upload task pauses while it is open).
#[derive(Debug)]
pub struct StoreBreaker {
    // Short sections only: a decision, never held across a store call.
    breaker: Mutex<CircuitBreaker>,
    epoch: tokio::time::Instant,
    /// Calls refused without reaching the store.
    pub rejected_calls: AtomicU64,
    /// Times the breaker opened.
    pub opened: AtomicU64,
}

impl StoreBreaker {
    pub fn new(policy: BreakerPolicy) -> StoreBreaker {
        StoreBreaker {
            breaker: Mutex::new(CircuitBreaker::new(policy)),
            epoch: tokio::time::Instant::now(),
            rejected_calls: AtomicU64::new(0),
            opened: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CircuitBreaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state()
    }

    /// Whether calls are refused now; `Some(ms)` until the next probe may go.
    pub fn open_for_ms(&self) -> Option<u64> {
        let now = self.now_ms();
        match self.lock().state() {
            BreakerState::Open { until_ms } if now < until_ms => Some(until_ms - now),
            _ => None,
        }
    }

    /// Runs `call` under the breaker: refuses it while open, paces it, counts its outcome.
    pub async fn call<T, F>(&self, op: &'static str, key: &str, call: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let admission = self.lock().admit(self.now_ms());
        let probe = match admission {
            Admission::Reject { retry_in_ms } => {
                self.rejected_calls.fetch_add(1, Ordering::Relaxed);
                return Err(TieringError::CircuitOpen {
                    op,
                    key: key.to_string(),
                    retry_in_ms,
                });
            }
            Admission::Proceed { wait_ms, probe } => {
                if wait_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                }
                probe
            }
        };
        // A dropped call (cancelled) gives a probe's slot back through the guard.
        let mut guard = ProbeGuard {
            breaker: self,
            probe,
        };
        let r = call.await;
        guard.probe = false;
        let transition = self
            .lock()
            .record(self.now_ms(), probe, outcome_of(key, &r));
        match transition {
            Some(Transition::Opened {
                open_ms,
                times_in_a_row,
            }) => {
                self.opened.fetch_add(1, Ordering::Relaxed);
                if times_in_a_row == 1 {
                    tracing::warn!(
                        op,
                        key,
                        open_ms,
                        "object store keeps failing: circuit breaker open, store calls paused"
                    );
                } else {
                    tracing::info!(
                        op,
                        key,
                        open_ms,
                        times_in_a_row,
                        "object store probe failed: circuit breaker stays open"
                    );
                }
            }
            Some(Transition::Closed) => {
                tracing::warn!(
                    op,
                    key,
                    "object store answers again: circuit breaker closed"
                )
            }
            None => {}
        }
        r
    }
}

struct ProbeGuard<'a> {
    breaker: &'a StoreBreaker,
    probe: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.probe {
            let now = self.breaker.now_ms();
            self.breaker
                .lock()
                .record(now, true, CallOutcome::Abandoned);
        }
    }
}

/// A [`RemoteStorage`] whose calls go through a [`StoreBreaker`].
#[derive(Debug)]
pub struct BreakerStorage {
    inner: Arc<dyn RemoteStorage>,
    breaker: Arc<StoreBreaker>,
}

impl BreakerStorage {
    pub fn new(inner: Arc<dyn RemoteStorage>, policy: BreakerPolicy) -> BreakerStorage {
        BreakerStorage {
            inner,
            breaker: Arc::new(StoreBreaker::new(policy)),
        }
    }
}

#[async_trait]
impl RemoteStorage for BreakerStorage {
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.breaker
            .call("put", key, self.inner.put(key, data))
            .await
    }
    async fn put_file(&self, key: &str, path: &Path) -> Result<PutFileOutcome> {
        self.breaker
            .call("put_file", key, self.inner.put_file(key, path))
            .await
    }
    async fn get(&self, key: &str) -> Result<Bytes> {
        self.breaker.call("get", key, self.inner.get(key)).await
    }
    async fn get_versioned(&self, key: &str) -> Result<(Bytes, ObjectVersion)> {
        self.breaker
            .call("get", key, self.inner.get_versioned(key))
            .await
    }
    async fn put_if(
        &self,
        key: &str,
        data: Bytes,
        expected: &PutCondition,
    ) -> Result<ObjectVersion> {
        self.breaker
            .call("put", key, self.inner.put_if(key, data, expected))
            .await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.breaker
            .call("get_range", key, self.inner.get_range(key, range))
            .await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.breaker
            .call("delete", key, self.inner.delete(key))
            .await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.breaker
            .call("list", prefix, self.inner.list(prefix))
            .await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn stats(&self) -> Option<Arc<StoreStats>> {
        self.inner.stats()
    }
    fn breaker(&self) -> Option<Arc<StoreBreaker>> {
        Some(self.breaker.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            failure_threshold: 3,
            min_failing_prefixes: 2,
            open_backoff: Backoff {
                base: Duration::from_millis(100),
                max: Duration::from_millis(400),
            },
            pace_step_ms: 10,
            pace_max_ms: 40,
        }
    }

    fn fail(b: &mut CircuitBreaker, now: u64, prefix: &str) -> Option<Transition> {
        let Admission::Proceed { probe, .. } = b.admit(now) else {
            panic!("rejected at {now}");
        };
        b.record(
            now,
            probe,
            CallOutcome::Failed {
                prefix: prefix.into(),
                throttled: false,
            },
        )
    }

    #[test]
    fn one_failing_partition_never_opens_it() {
        let mut b = CircuitBreaker::new(policy());
        for t in 0..100 {
            assert_eq!(fail(&mut b, t, "t-1/0"), None);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_success_resets_the_run_of_failures() {
        let mut b = CircuitBreaker::new(policy());
        for t in 0..10 {
            fail(&mut b, t, "t-1/0");
            fail(&mut b, t, "t-1/1");
            assert!(matches!(b.admit(t), Admission::Proceed { .. }));
            b.record(t, false, CallOutcome::Answered);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn opens_rejects_probes_once_and_closes_or_reopens_longer() {
        let mut b = CircuitBreaker::new(policy());
        assert_eq!(fail(&mut b, 0, "t-1/0"), None);
        assert_eq!(fail(&mut b, 1, "t-1/1"), None);
        assert_eq!(
            fail(&mut b, 2, "t-1/0"),
            Some(Transition::Opened {
                open_ms: 100,
                times_in_a_row: 1
            })
        );
        assert!(b.is_open(50));
        assert_eq!(b.admit(50), Admission::Reject { retry_in_ms: 52 });
        // Due: one probe goes, the others wait for it.
        assert_eq!(
            b.admit(102),
            Admission::Proceed {
                wait_ms: 0,
                probe: true
            }
        );
        assert!(matches!(b.admit(103), Admission::Reject { .. }));
        let t = b.record(
            110,
            true,
            CallOutcome::Failed {
                prefix: "t-1/0".into(),
                throttled: false,
            },
        );
        assert_eq!(
            t,
            Some(Transition::Opened {
                open_ms: 200,
                times_in_a_row: 2
            })
        );
        assert_eq!(b.admit(200), Admission::Reject { retry_in_ms: 110 });
        // A cancelled probe gives its slot back.
        let Admission::Proceed { probe: true, .. } = b.admit(310) else {
            panic!("no probe");
        };
        assert_eq!(b.record(311, true, CallOutcome::Abandoned), None);
        let Admission::Proceed { probe: true, .. } = b.admit(312) else {
            panic!("no probe after an abandoned one");
        };
        assert_eq!(
            b.record(320, true, CallOutcome::Answered),
            Some(Transition::Closed)
        );
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(matches!(
            b.admit(321),
            Admission::Proceed { probe: false, .. }
        ));
        // The next opening starts from the shortest backoff again.
        fail(&mut b, 330, "a/0");
        fail(&mut b, 331, "b/0");
        assert_eq!(
            fail(&mut b, 332, "a/0"),
            Some(Transition::Opened {
                open_ms: 100,
                times_in_a_row: 1
            })
        );
    }

    #[test]
    fn slow_down_paces_calls_and_successes_relax_it() {
        let mut b = CircuitBreaker::new(BreakerPolicy {
            failure_threshold: 0,
            ..policy()
        });
        for _ in 0..5 {
            let Admission::Proceed { probe, .. } = b.admit(0) else {
                panic!()
            };
            b.record(
                0,
                probe,
                CallOutcome::Failed {
                    prefix: "t/0".into(),
                    throttled: true,
                },
            );
        }
        assert_eq!(b.pace_ms(), 40, "capped at pace_max_ms");
        assert_eq!(b.state(), BreakerState::Closed, "threshold 0: never opens");
        let waits: Vec<u64> = (0..3)
            .map(|_| match b.admit(1000) {
                Admission::Proceed { wait_ms, .. } => wait_ms,
                r => panic!("{r:?}"),
            })
            .collect();
        assert_eq!(waits, vec![0, 40, 80]);
        for _ in 0..3 {
            b.record(1000, false, CallOutcome::Answered);
        }
        assert_eq!(b.pace_ms(), 0);
    }

    #[test]
    fn prefixes_are_the_partition() {
        assert_eq!(key_prefix("orders-abc/3/00000.log"), "orders-abc/3");
        assert_eq!(key_prefix("orders-abc/3"), "orders-abc/3");
        assert_eq!(key_prefix("probe"), "probe");
    }
}
