//! [`QuotaMetrics`]: throttling of clients under a quota.

use prometheus::{
    Counter, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::metrics::{counter, counter_vec, gauge, gauge_vec};

/// The `kind` label values: Kafka's per-broker quotas (`produce`, `fetch`, `request`) and the
/// cluster-wide ones (`cluster_produce`, `cluster_fetch`, `topic_produce`, `topic_fetch`).
const KINDS: [&str; 7] = [
    "produce",
    "fetch",
    "request",
    "cluster_produce",
    "cluster_fetch",
    "topic_produce",
    "topic_fetch",
];

/// Client quotas: how long clients under a quota were told to wait, per kind of quota.
/// No client-id, user or topic labels: those are unbounded.
#[derive(Debug, Clone)]
pub struct QuotaMetrics {
    pub throttle_time: HistogramVec,
    pub throttled: IntCounterVec,
    pub tracked_clients: IntGaugeVec,
    /// Handler thread time of requests under a `request_percentage` quota.
    pub request_time: Counter,
    /// Cluster-wide limits this broker holds a share of, from the controller's last answer.
    pub shares: IntGauge,
    /// Heartbeat answers that brought new shares.
    pub share_updates: IntCounter,
}

impl QuotaMetrics {
    pub fn new(r: &Registry) -> QuotaMetrics {
        let throttle_time = HistogramVec::new(
            HistogramOpts::new(
                "strata_quota_throttle_time_seconds",
                "Throttle time given with each response to a client under a quota (0 within it), by quota kind.",
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
                "Responses that told a client to wait because it exceeded a quota, by quota kind.",
                &["kind"],
            ),
            tracked_clients: gauge_vec(
                r,
                "strata_quota_tracked_clients",
                "Clients (and, for kind cluster, tenants and topics under a cluster-wide limit) whose rate this broker keeps (active within the quota window), by quota kind.",
                &["kind"],
            ),
            request_time: {
                let c = Counter::with_opts(Opts::new(
                    "strata_quota_request_time_seconds_total",
                    "Handler thread time (synchronous handling and every poll of the response, blocking sections included) of requests from clients under a request_percentage quota.",
                ))
                .expect("metric definition is valid");
                r.register(Box::new(c.clone())).expect("metric registered once");
                c
            },
            shares: gauge(
                r,
                "strata_quota_cluster_shares",
                "Cluster-wide quota limits (tenant or topic) this broker holds a share of, from the active controller's last heartbeat answer.",
            ),
            share_updates: counter(
                r,
                "strata_quota_cluster_share_updates_total",
                "Heartbeat answers from the active controller that brought this broker new cluster-wide quota shares.",
            ),
        };
        // Exported at zero from the start, so dashboards and alerts see the series.
        for kind in KINDS {
            m.throttle_time.with_label_values(&[kind]);
            m.throttled.with_label_values(&[kind]);
        }
        for kind in ["produce", "fetch", "request", "cluster"] {
            m.tracked_clients.with_label_values(&[kind]);
        }
        m
    }
}
