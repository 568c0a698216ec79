//! Prometheus metrics and the HTTP endpoint that serves them (`/metrics`, `/health`, `/ready`).
//!
//! One registry per process; each subsystem owns a struct of its metrics, registered once.
//! Names follow `strata_<subsystem>_<what>_<unit>`, counters end in `_total`. Labels are bounded:
//! API names are a fixed set; per-topic series are created only for topics that exist.

mod http;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

pub use http::serve_http;

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition is valid");
    registry
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric definition is valid");
    registry
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("metric definition is valid");
    registry
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("metric definition is valid");
    registry
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

/// Latency buckets from 100 µs to 10 s.
fn latency_buckets() -> Vec<f64> {
    vec![
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ]
}

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
    pub bytes_received: IntCounter,
    pub bytes_sent: IntCounter,
}

impl ServerMetrics {
    fn new(r: &Registry) -> ServerMetrics {
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
            bytes_received: counter(
                r,
                "strata_server_received_bytes_total",
                "Request bytes received.",
            ),
            bytes_sent: counter(r, "strata_server_sent_bytes_total", "Response bytes sent."),
        }
    }
}

/// Per-topic traffic and partition health, refreshed from the replicas at scrape time.
#[derive(Debug, Clone)]
pub struct BrokerTopicMetrics {
    pub bytes_in: IntCounterVec,
    pub bytes_out: IntCounterVec,
    pub records_in: IntCounterVec,
    pub produce_errors: IntCounterVec,
    pub partitions: IntGauge,
    pub leaders: IntGauge,
    pub under_replicated: IntGauge,
    pub under_min_isr: IntGauge,
    pub offline: IntGauge,
    pub log_size: IntGaugeVec,
    pub log_segments: IntGaugeVec,
}

impl BrokerTopicMetrics {
    fn new(r: &Registry) -> BrokerTopicMetrics {
        BrokerTopicMetrics {
            bytes_in: counter_vec(
                r,
                "strata_broker_topic_in_bytes_total",
                "Record bytes appended by producers, by topic.",
                &["topic"],
            ),
            bytes_out: counter_vec(
                r,
                "strata_broker_topic_out_bytes_total",
                "Record bytes returned to fetchers, by topic.",
                &["topic"],
            ),
            records_in: counter_vec(
                r,
                "strata_broker_topic_in_records_total",
                "Records appended by producers, by topic.",
                &["topic"],
            ),
            produce_errors: counter_vec(
                r,
                "strata_broker_topic_produce_errors_total",
                "Partition appends refused, by topic.",
                &["topic"],
            ),
            partitions: gauge(
                r,
                "strata_replication_partitions",
                "Partition replicas on this broker.",
            ),
            leaders: gauge(
                r,
                "strata_replication_leaders",
                "Partitions this broker leads.",
            ),
            under_replicated: gauge(
                r,
                "strata_replication_under_replicated_partitions",
                "Led partitions whose ISR is smaller than their replica set.",
            ),
            under_min_isr: gauge(
                r,
                "strata_replication_under_min_isr_partitions",
                "Led partitions whose ISR is below min.insync.replicas.",
            ),
            offline: gauge(
                r,
                "strata_replication_offline_partitions",
                "Partitions with no leader.",
            ),
            log_size: gauge_vec(
                r,
                "strata_log_size_bytes",
                "Bytes in local log segments, by topic.",
                &["topic"],
            ),
            log_segments: gauge_vec(
                r,
                "strata_log_segments",
                "Local log segments, by topic.",
                &["topic"],
            ),
        }
    }
}

/// Every metric of the process.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub server: ServerMetrics,
    pub topics: BrokerTopicMetrics,
    pub flush_latency: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // CPU, memory, open files of this process, from /proc.
        let _ = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        let flush_latency = Histogram::with_opts(
            HistogramOpts::new(
                "strata_log_flush_latency_seconds",
                "Time an acknowledgement waited for fsync (group commit).",
            )
            .buckets(latency_buckets()),
        )
        .expect("metric definition is valid");
        registry
            .register(Box::new(flush_latency.clone()))
            .expect("metric registered once");
        Metrics {
            server: ServerMetrics::new(&registry),
            topics: BrokerTopicMetrics::new(&registry),
            flush_latency,
            registry,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        let mut out = Vec::new();
        // Encoding text into a Vec cannot fail for well-formed families.
        let _ = prometheus::TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
