//! [`ServerMetrics`]: connections and requests, registered once per process.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};

use crate::metrics::{counter, counter_vec, gauge, gauge_vec, latency_buckets};

/// The server's metrics: connections and requests per API.
#[derive(Debug, Clone)]
pub struct ServerMetrics {
    pub requests: IntCounterVec,
    pub request_errors: IntCounterVec,
    pub request_latency: HistogramVec,
    pub requests_waiting: IntGaugeVec,
    pub connections: IntGauge,
    pub connections_accepted: IntCounter,
    pub connections_rejected: IntCounter,
    /// TLS handshakes that failed, by listener and reason (timeout, bad_certificate, ...).
    pub tls_handshake_failures: IntCounterVec,
    pub bytes_received: IntCounter,
    pub bytes_sent: IntCounter,
    /// Always 1; its labels say which Strata this is and which Kafka release it answers as.
    pub build_info: IntGaugeVec,
}

impl ServerMetrics {
    pub fn new(r: &Registry) -> ServerMetrics {
        let request_latency = HistogramVec::new(
            HistogramOpts::new(
                "strata_server_request_latency_seconds",
                "Time from reading a request to writing its response.",
            )
            .buckets(latency_buckets()),
            &["api"],
        )
        .expect("metric definition is valid");
        r.register(Box::new(request_latency.clone()))
            .expect("metric registered once");
        let request_errors = counter_vec(
            r,
            "strata_server_request_errors_total",
            "Requests that closed their connection: malformed, unsupported or oversize.",
            &["reason"],
        );
        // Exported at zero from the start, so alerts on it see a series before the first error.
        request_errors.with_label_values(&["malformed"]);
        ServerMetrics {
            build_info: gauge_vec(
                r,
                "strata_build_info",
                "Always 1: the Strata version and the Kafka release whose API versions it advertises.",
                &["version", "kafka_release"],
            ),
            requests: counter_vec(
                r,
                "strata_server_requests_total",
                "Requests received, by API.",
                &["api"],
            ),
            request_errors,
            request_latency,
            requests_waiting: gauge_vec(
                r,
                "strata_server_requests_waiting",
                "Requests waiting to complete (produce for acks, fetch long-polls), by API.",
                &["api"],
            ),
            connections: gauge(r, "strata_server_connections", "Open client connections."),
            connections_accepted: counter(
                r,
                "strata_server_connections_accepted_total",
                "Client connections accepted.",
            ),
            connections_rejected: counter(
                r,
                "strata_server_connections_rejected_total",
                "Client connections refused because max.connections was reached.",
            ),
            tls_handshake_failures: counter_vec(
                r,
                "strata_server_tls_handshake_failures_total",
                "TLS handshakes that failed (each closed its connection), by listener and reason.",
                &["listener", "reason"],
            ),
            bytes_received: counter(
                r,
                "strata_server_received_bytes_total",
                "Request bytes received.",
            ),
            bytes_sent: counter(r, "strata_server_sent_bytes_total", "Response bytes sent."),
        }
    }
}
