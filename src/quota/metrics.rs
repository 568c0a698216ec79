//! [`QuotaMetrics`]: throttling of clients under a quota.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Registry};

use crate::metrics::{counter_vec, gauge_vec};

/// Client quotas: how long clients under a quota were told to wait, per kind of quota
/// (`produce`, `fetch`). No client-id or user labels: those are unbounded.
#[derive(Debug, Clone)]
pub struct QuotaMetrics {
    pub throttle_time: HistogramVec,
    pub throttled: IntCounterVec,
    pub tracked_clients: IntGaugeVec,
}

impl QuotaMetrics {
    pub fn new(r: &Registry) -> QuotaMetrics {
        let throttle_time = HistogramVec::new(
            HistogramOpts::new(
                "strata_quota_throttle_time_seconds",
                "Throttle time given with each response to a client under a byte-rate quota (0 within its quota), by quota kind.",
            )
            .buckets(vec![
                0.0, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["kind"],
        )
        .expect("metric definition is valid");
        r.register(Box::new(throttle_time.clone()))
            .expect("metric registered once");
        let m = QuotaMetrics {
            throttle_time,
            throttled: counter_vec(
                r,
                "strata_quota_throttled_responses_total",
                "Responses that told a client to wait because it exceeded its byte-rate quota, by quota kind.",
                &["kind"],
            ),
            tracked_clients: gauge_vec(
                r,
                "strata_quota_tracked_clients",
                "Clients under a quota whose rate this broker keeps (active within the quota window), by quota kind.",
                &["kind"],
            ),
        };
        // Exported at zero from the start, so dashboards and alerts see the series.
        for kind in ["produce", "fetch"] {
            m.throttle_time.with_label_values(&[kind]);
            m.throttled.with_label_values(&[kind]);
            m.tracked_clients.with_label_values(&[kind]);
        }
        m
    }
}
