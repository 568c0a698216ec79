//! Cluster-wide quotas, this broker's side: [`SharedQuotas`] keeps the observed rate of every
//! tenant and topic under a cluster-wide byte-rate limit, throttles them against this broker's
//! share of the limit, and reports the rates to the active controller with each heartbeat.
//!
//! Two kinds of limit are shared this way (see [`SharedEntity`]):
//! - a client quota under `strata.cluster.producer_byte_rate` / `strata.cluster.consumer_byte_rate`
//!   (same entities and precedence as Kafka's byte-rate quotas), whose limit is the tenant's
//!   total over every broker;
//! - a topic config `strata.producer.byte.rate` / `strata.consumer.byte.rate`: bytes/s into or
//!   out of the topic over every broker.
//!
//! The controller divides each limit among brokers by their observed demand
//! (`controller::quota_shares`) and answers each heartbeat with this broker's shares. Until a
//! share has arrived for a key, this broker takes an even part of the limit (the limit divided
//! by the live brokers); a share, once received, holds until the next one replaces it, so a
//! controller failover leaves the last shares in force.
//!
//! Bound: rates are kept only for keys that saw traffic within the whole quota window (swept
//! once a window); at most [`MAX_REPORTED_KEYS`] go into one report, busiest first.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::rate::{throttle_time_ms, QuotaWindow, SampledRate};
use super::{QuotaMetrics, SensorKey};

/// Most keys one heartbeat reports; the rest (the quietest) keep the share they had.
pub const MAX_REPORTED_KEYS: usize = 10_000;

/// What a cluster-wide limit applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharedEntity {
    /// A tenant: the (user, client id) parts of the quota entity that applies, as in
    /// [`SensorKey`].
    Client(SensorKey),
    /// A topic, by name.
    Topic(String),
}

/// Which direction of traffic a shared limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharedDirection {
    /// Bytes produced (request bytes, or appended batch bytes for a topic).
    Produce,
    /// Bytes fetched by consumers.
    Fetch,
}

/// One cluster-wide limit as the brokers and the controller name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SharedQuotaKey {
    pub direction: SharedDirection,
    pub entity: SharedEntity,
}

impl SharedQuotaKey {
    /// The metrics label of the kind of limit.
    pub fn label(&self) -> &'static str {
        match (&self.entity, self.direction) {
            (SharedEntity::Client(_), SharedDirection::Produce) => "cluster_produce",
            (SharedEntity::Client(_), SharedDirection::Fetch) => "cluster_fetch",
            (SharedEntity::Topic(_), SharedDirection::Produce) => "topic_produce",
            (SharedEntity::Topic(_), SharedDirection::Fetch) => "topic_fetch",
        }
    }
}

/// One broker's observation of one key, sent with its heartbeat: the limit its image holds
/// and the rate it measured (bytes/s over the quota window, throttled traffic included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaUsage {
    pub key: SharedQuotaKey,
    pub limit: f64,
    pub rate: f64,
}

/// The part of one key's limit the controller gives a broker, in bytes/s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaShare {
    pub key: SharedQuotaKey,
    pub share: f64,
}

#[derive(Debug, Default)]
struct Tracked {
    rate: SampledRate,
    limit: f64,
}

#[derive(Debug, Default)]
struct State {
    tracked: HashMap<SharedQuotaKey, Tracked>,
    shares: HashMap<SharedQuotaKey, f64>,
    last_sweep_ms: i64,
}

/// This broker's rates and shares of the cluster-wide limits.
#[derive(Debug)]
pub struct SharedQuotas {
    window: QuotaWindow,
    metrics: QuotaMetrics,
    // Short sections that never await: a map lookup and a few additions per request.
    state: Mutex<State>,
}

impl SharedQuotas {
    pub fn new(window: QuotaWindow, metrics: QuotaMetrics) -> SharedQuotas {
        SharedQuotas {
            window,
            metrics,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bound this broker enforces for `key`: its share, or an even part of `limit` among
    /// `live_brokers` until the controller has given one.
    fn bound(state: &State, key: &SharedQuotaKey, limit: f64, live_brokers: usize) -> f64 {
        state
            .shares
            .get(key)
            .copied()
            .unwrap_or(limit / live_brokers.max(1) as f64)
    }

    /// Records `bytes` for `key` (limited to `limit` cluster-wide) at `now_ms`; returns how
    /// long the client must wait, in ms (0 within this broker's share).
    pub fn record(
        &self,
        key: &SharedQuotaKey,
        limit: f64,
        bytes: u64,
        now_ms: i64,
        live_brokers: usize,
    ) -> u64 {
        let window = self.window;
        let throttle_ms = {
            let mut s = self.lock();
            if now_ms - s.last_sweep_ms >= window.total_ms() as i64 {
                s.last_sweep_ms = now_ms;
                s.tracked.retain(|_, t| !t.rate.is_idle(now_ms, &window));
            }
            let bound = Self::bound(&s, key, limit, live_brokers);
            let t = s.tracked.entry(key.clone()).or_default();
            t.limit = limit;
            t.rate.record(bytes as f64, now_ms, &window);
            let window_ms = t.rate.window_ms(now_ms, &window);
            let measured = t.rate.rate(now_ms, &window);
            throttle_time_ms(measured, bound, window_ms, window.total_ms())
        };
        let label = [key.label()];
        self.metrics
            .throttle_time
            .with_label_values(&label)
            .observe(throttle_ms as f64 / 1000.0);
        if throttle_ms > 0 {
            self.metrics.throttled.with_label_values(&label).inc();
        }
        throttle_ms
    }

    /// Takes back bytes recorded for a response that was not sent (a throttled fetch).
    pub fn unrecord(&self, key: &SharedQuotaKey, bytes: u64, now_ms: i64) {
        let window = self.window;
        if let Some(t) = self.lock().tracked.get_mut(key) {
            t.rate.record(-(bytes as f64), now_ms, &window);
        }
    }

    /// The most one response may carry for `key`: this broker's share over the window less
    /// the current sample, as [`super::ClientQuotaManager::max_bytes_in_window`].
    pub fn max_bytes_in_window(
        &self,
        key: &SharedQuotaKey,
        limit: f64,
        live_brokers: usize,
    ) -> f64 {
        let bound = Self::bound(&self.lock(), key, limit, live_brokers);
        bound * f64::from(self.window.num.saturating_sub(1).max(1)) * self.window.size_ms as f64
            / 1000.0
    }

    /// The rates to report with the next heartbeat: every key with traffic within the window,
    /// busiest first, at most [`MAX_REPORTED_KEYS`].
    pub fn usage(&self, now_ms: i64) -> Vec<QuotaUsage> {
        let window = self.window;
        let mut s = self.lock();
        s.tracked.retain(|_, t| !t.rate.is_idle(now_ms, &window));
        let mut out: Vec<QuotaUsage> = s
            .tracked
            .iter_mut()
            .map(|(key, t)| QuotaUsage {
                key: key.clone(),
                limit: t.limit,
                rate: t.rate.rate(now_ms, &window).max(0.0),
            })
            .collect();
        out.sort_by(|a, b| b.rate.total_cmp(&a.rate));
        out.truncate(MAX_REPORTED_KEYS);
        self.metrics
            .tracked_clients
            .with_label_values(&["cluster"])
            .set(out.len() as i64);
        out
    }

    /// The controller's answer: these shares replace the ones it gave before. Keys it left out
    /// fall back to the even part of their limit.
    pub fn set_shares(&self, shares: Vec<QuotaShare>) {
        let mut s = self.lock();
        s.shares = shares.into_iter().map(|q| (q.key, q.share)).collect();
        self.metrics.shares.set(s.shares.len() as i64);
        self.metrics.share_updates.inc();
    }

    /// This broker's share of `key`, if the controller gave one (for tests and tools).
    pub fn share(&self, key: &SharedQuotaKey) -> Option<f64> {
        self.lock().shares.get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(topic: &str) -> SharedQuotaKey {
        SharedQuotaKey {
            direction: SharedDirection::Produce,
            entity: SharedEntity::Topic(topic.into()),
        }
    }

    #[test]
    fn a_broker_throttles_against_its_share_or_an_even_part_before_it_has_one() {
        let metrics = crate::metrics::Metrics::new();
        let window = QuotaWindow {
            num: 11,
            size_ms: 1000,
        };
        let q = SharedQuotas::new(window, QuotaMetrics::new(&metrics.registry));
        let k = key("t");
        // No share yet: a third of 3000 B/s among three brokers, so 10 s of 1000 B/s at once
        // fits the padded window and 5000 more are 5 s early.
        assert_eq!(q.record(&k, 3000.0, 10_000, 0, 3), 0);
        assert_eq!(q.record(&k, 3000.0, 5_000, 0, 3), 5_000);
        // The controller gives this broker all of it: no longer over.
        q.set_shares(vec![QuotaShare {
            key: k.clone(),
            share: 3000.0,
        }]);
        assert_eq!(q.share(&k), Some(3000.0));
        assert_eq!(q.record(&k, 3000.0, 0, 0, 3), 0);
        let usage = q.usage(0);
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].limit, 3000.0);
        assert!((usage[0].rate - 1500.0).abs() < 1e-9, "{usage:?}");
        // A throttled fetch takes its bytes back.
        q.unrecord(&k, 5_000, 0);
        assert!((q.usage(0)[0].rate - 1000.0).abs() < 1e-9);
        // Idle keys leave the report after a whole window.
        assert!(q.usage(11_000).is_empty());
        let text = metrics.render();
        assert!(
            text.contains("strata_quota_throttled_responses_total{kind=\"topic_produce\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn keys_round_trip_through_json() {
        let k = SharedQuotaKey {
            direction: SharedDirection::Fetch,
            entity: SharedEntity::Client(SensorKey {
                user: Some("alice".into()),
                client_id: None,
            }),
        };
        let json = serde_json::to_string(&k).expect("encode");
        assert_eq!(
            serde_json::from_str::<SharedQuotaKey>(&json).expect("decode"),
            k
        );
    }
}
