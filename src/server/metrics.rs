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
    pub connections_rejected_per_ip: IntCounter,
    /// Connections whose acceptance waited for max.connection.creation.rate.
    pub connections_throttled: IntCounter,
    /// TLS handshakes that failed, by listener and reason (timeout, bad_certificate, ...).
    pub tls_handshake_failures: IntCounterVec,
    /// SASL exchanges and sessions that ended in a closed connection, by listener and reason.
    pub sasl_authentication_failures: IntCounterVec,
    /// SASL sessions established (first authentications and KIP-368 renewals), by listener.
    pub sasl_authentications: IntCounterVec,
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
                "Client connections refused because max.connections (broker-wide or of their listener) was reached.",
            ),
            connections_rejected_per_ip: counter(
                r,
                "strata_server_connections_rejected_per_ip_total",
                "Client connections closed on accept because their address reached max.connections.per.ip.",
            ),
            connections_throttled: counter(
                r,
                "strata_server_connections_throttled_total",
                "Client connections whose acceptance was delayed by max.connection.creation.rate.",
            ),
            tls_handshake_failures: counter_vec(
                r,
                "strata_server_tls_handshake_failures_total",
                "TLS handshakes that failed (each closed its connection), by listener and reason.",
                &["listener", "reason"],
            ),
            sasl_authentication_failures: counter_vec(
                r,
                "strata_server_sasl_authentication_failures_total",
                "SASL authentications that failed or sessions that lapsed (each closed its connection), by listener and reason.",
                &["listener", "reason"],
            ),
            sasl_authentications: counter_vec(
                r,
                "strata_server_sasl_authentications_total",
                "SASL authentications that succeeded, re-authentications included, by listener.",
                &["listener"],
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

/// The reasons of `strata_server_tls_handshake_failures_total` (`HandshakeError::reason`, and
/// a subject no mapping rule accepts).
pub(super) const TLS_FAILURE_REASONS: [&str; 7] = [
    "timeout",
    "eof",
    "bad_certificate",
    "no_certificate",
    "protocol",
    "io",
    "principal_mapping",
];

/// The reasons of `strata_server_sasl_authentication_failures_total` (`SaslClose::reason`).
pub(super) const SASL_FAILURE_REASONS: [&str; 6] = [
    "bad_credentials",
    "unsupported_mechanism",
    "illegal_state",
    "token_too_large",
    "unauthenticated_request",
    "session_expired",
];

impl ServerMetrics {
    /// Exports the security counters of `listener` at zero before its first connection, so
    /// that dashboards and alerts see every series from the start. Every listener gets them
    /// (a PLAINTEXT listener's stay at zero), which keeps the set the same on every broker.
    pub fn init_listener(&self, listener: &str) {
        for reason in TLS_FAILURE_REASONS {
            self.tls_handshake_failures
                .with_label_values(&[listener, reason]);
        }
        for reason in SASL_FAILURE_REASONS {
            self.sasl_authentication_failures
                .with_label_values(&[listener, reason]);
        }
        self.sasl_authentications.with_label_values(&[listener]);
    }
}
