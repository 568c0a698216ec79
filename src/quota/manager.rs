//! `ClientQuotaManager`: the byte rates of the clients under a quota on this broker, for one
//! kind of quota (produce or fetch), and the throttle time each response earns (Kafka's
//! `ClientQuotaManager`).
//!
//! A request's bytes are recorded first and the rate then compared with the bound, as Kafka
//! does: a client over its quota is told to wait (`throttle_time_ms`) long enough for its rate
//! over the window to fall back to the bound, and the broker stops reading from its connection
//! meanwhile (KIP-219). Clients with no quota cost one empty-map check and are not tracked.
//!
//! Bound: a rate is kept only for clients under a quota that sent something within the last
//! whole window (`quota.window.num` × `quota.window.size.seconds`); idle ones are swept once a
//! window. `strata_quota_tracked_clients` shows how many there are.

use std::collections::HashMap;
use std::sync::Mutex;

use super::rate::{throttle_time_ms, QuotaWindow, SampledRate};
use super::shared::SharedQuotas;
use super::QuotaMetrics;
use super::{ClientQuotas, SensorKey, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE};

/// Which quota a manager enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaKind {
    /// `producer_byte_rate`, over produce request bytes.
    Produce,
    /// `consumer_byte_rate`, over fetch response bytes.
    Fetch,
    /// `request_percentage`, over handler thread time: recorded in percent-seconds (100 per
    /// second of one thread), so the rate is a percentage of one thread, as in Kafka's
    /// `RequestQuotaManager`.
    Request,
}

impl QuotaKind {
    pub fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => PRODUCER_BYTE_RATE,
            QuotaKind::Fetch => CONSUMER_BYTE_RATE,
            QuotaKind::Request => REQUEST_PERCENTAGE,
        }
    }

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            QuotaKind::Produce => "produce",
            QuotaKind::Fetch => "fetch",
            QuotaKind::Request => "request",
        }
    }

    /// Whether a client sending this API at `version` waits out a throttle itself (KIP-219:
    /// Produce v6+, Fetch v8+). Older clients are throttled by delaying their response. The
    /// request quota only mutes the connection, whatever the version: holding back a response
    /// that cost thread time gives the thread nothing back, and the mute alone bounds the rate.
    pub fn client_throttles(self, version: i16) -> bool {
        match self {
            QuotaKind::Produce => version >= 6,
            QuotaKind::Fetch => version >= 8,
            QuotaKind::Request => true,
        }
    }
}

/// The quota that applies to one client: where its rate is kept and its bound in bytes/s.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientQuota {
    pub sensor: SensorKey,
    pub bound: f64,
}

#[derive(Debug, Default)]
struct Sensors {
    rates: HashMap<SensorKey, SampledRate>,
    last_sweep_ms: i64,
}

#[derive(Debug)]
pub struct ClientQuotaManager {
    kind: QuotaKind,
    window: QuotaWindow,
    metrics: QuotaMetrics,
    // Short sections that never await: a map lookup and a few additions per response.
    sensors: Mutex<Sensors>,
}

impl ClientQuotaManager {
    pub fn new(kind: QuotaKind, window: QuotaWindow, metrics: QuotaMetrics) -> ClientQuotaManager {
        ClientQuotaManager {
            kind,
            window,
            metrics,
            sensors: Mutex::new(Sensors::default()),
        }
    }

    pub fn kind(&self) -> QuotaKind {
        self.kind
    }

    /// The quota of this kind that applies to `(user, client_id)`, if any.
    pub fn quota_for(
        &self,
        quotas: &ClientQuotas,
        user: &str,
        client_id: &str,
    ) -> Option<ClientQuota> {
        quotas
            .resolve(user, client_id, self.kind.key())
            .map(|(sensor, bound)| ClientQuota { sensor, bound })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sensors> {
        self.sensors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `bytes` for the client at `now_ms` and returns how long it must wait, in ms
    /// (0 within its quota). Counted in the throttle metrics.
    pub fn record(&self, quota: &ClientQuota, bytes: u64, now_ms: i64) -> u64 {
        self.record_value(quota, bytes as f64, now_ms)
    }

    /// [`ClientQuotaManager::record`] of any quantity (the request quota's percent-seconds).
    pub fn record_value(&self, quota: &ClientQuota, value: f64, now_ms: i64) -> u64 {
        let window = self.window;
        let throttle_ms = {
            let mut s = self.lock();
            if now_ms - s.last_sweep_ms >= window.total_ms() as i64 {
                s.last_sweep_ms = now_ms;
                s.rates.retain(|_, r| !r.is_idle(now_ms, &window));
            }
            let rate = s.rates.entry(quota.sensor.clone()).or_default();
            rate.record(value, now_ms, &window);
            let window_ms = rate.window_ms(now_ms, &window);
            let measured = rate.rate(now_ms, &window);
            let tracked = s.rates.len();
            self.metrics
                .tracked_clients
                .with_label_values(&[self.kind.label()])
                .set(tracked as i64);
            throttle_time_ms(measured, quota.bound, window_ms, window.total_ms())
        };
        let label = [self.kind.label()];
        self.metrics
            .throttle_time
            .with_label_values(&label)
            .observe(throttle_ms as f64 / 1000.0);
        if throttle_ms > 0 {
            self.metrics.throttled.with_label_values(&label).inc();
        }
        throttle_ms
    }

    /// Takes back bytes recorded for a response that was not sent after all (a throttled fetch
    /// is answered empty).
    pub fn unrecord(&self, quota: &ClientQuota, bytes: u64, now_ms: i64) {
        let window = self.window;
        if let Some(rate) = self.lock().rates.get_mut(&quota.sensor) {
            rate.record(-(bytes as f64), now_ms, &window);
        }
    }

    /// The most a client may receive in one response: what its quota allows over the window
    /// less the current sample (Kafka's `getMaxValueInQuotaWindow`). Capping a fetch to it lets
    /// a consumer under a small quota get data at all, instead of one large response that is
    /// always over the quota and so always answered empty.
    pub fn max_bytes_in_window(&self, quota: &ClientQuota) -> f64 {
        quota.bound
            * f64::from(self.window.num.saturating_sub(1).max(1))
            * self.window.size_ms as f64
            / 1000.0
    }

    /// The client's current rate in bytes/s (for tests and tools).
    pub fn rate(&self, quota: &ClientQuota, now_ms: i64) -> f64 {
        let window = self.window;
        self.lock()
            .rates
            .get_mut(&quota.sensor)
            .map_or(0.0, |r| r.rate(now_ms, &window))
    }
}

/// The quota managers of a broker (Kafka's `QuotaManagers`), and its side of the
/// cluster-wide limits.
#[derive(Debug)]
pub struct QuotaManagers {
    pub produce: ClientQuotaManager,
    pub fetch: ClientQuotaManager,
    pub request: ClientQuotaManager,
    /// Shared with the heartbeat task, which reports its rates and brings back shares.
    pub shared: std::sync::Arc<SharedQuotas>,
    metrics: QuotaMetrics,
}

impl QuotaManagers {
    pub fn new(window: QuotaWindow, metrics: &QuotaMetrics) -> QuotaManagers {
        QuotaManagers {
            produce: ClientQuotaManager::new(QuotaKind::Produce, window, metrics.clone()),
            fetch: ClientQuotaManager::new(QuotaKind::Fetch, window, metrics.clone()),
            request: ClientQuotaManager::new(QuotaKind::Request, window, metrics.clone()),
            shared: std::sync::Arc::new(SharedQuotas::new(window, metrics.clone())),
            metrics: metrics.clone(),
        }
    }

    /// Counts thread time of a request under a `request_percentage` quota.
    pub fn request_time_counted(&self, spent: std::time::Duration) {
        self.metrics.request_time.inc_by(spent.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::{ClientQuotaEntity, EntityName};

    #[test]
    fn a_client_over_its_quota_is_throttled_and_another_is_not() {
        let metrics = crate::metrics::Metrics::new();
        let window = QuotaWindow {
            num: 11,
            size_ms: 1000,
        };
        let m = ClientQuotaManager::new(
            QuotaKind::Produce,
            window,
            QuotaMetrics::new(&metrics.registry),
        );
        let mut quotas = ClientQuotas::default();
        let entity = ClientQuotaEntity {
            user: None,
            client_id: Some(EntityName::Named("slow".into())),
        };
        quotas.apply(&entity, PRODUCER_BYTE_RATE, Some(1000.0));
        assert_eq!(m.quota_for(&quotas, "ANONYMOUS", "fast"), None);
        let q = m.quota_for(&quotas, "ANONYMOUS", "slow").expect("quota");
        // 10 s of quota at once is within the padded window...
        assert_eq!(m.record(&q, 10_000, 0), 0);
        // ...5000 more is 5 s early.
        assert_eq!(m.record(&q, 5_000, 0), 5_000);
        assert!((m.rate(&q, 0) - 1500.0).abs() < 1e-9);
        // 100 ms on, the window has grown by 100 ms: 15 000 - 10 100 bytes still to pay back.
        assert_eq!(m.record(&q, 0, 100), 4_900);
        // A throttled fetch-style unrecord takes the bytes back.
        m.unrecord(&q, 5_000, 100);
        assert!((m.rate(&q, 100) - 10_000.0 / 10.1).abs() < 1e-9);
        let text = metrics.render();
        assert!(
            text.contains("strata_quota_throttled_responses_total{kind=\"produce\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("strata_quota_throttle_time_seconds_count{kind=\"produce\"} 3"),
            "{text}"
        );
        // Idle clients are swept after a whole window.
        let q2 = ClientQuota {
            sensor: SensorKey {
                user: None,
                client_id: Some("x".into()),
            },
            bound: 1.0,
        };
        m.record(&q2, 1, 60_000);
        assert_eq!(m.lock().rates.len(), 1);
    }
}
