//! Prometheus metrics and the HTTP endpoint that serves them (`/metrics`, `/health`, `/ready`).
//!
//! One registry per process; each subsystem owns a struct of its metrics, registered once.
//! Names follow `strata_<subsystem>_<what>_<unit>`, counters end in `_total`. Labels are bounded:
//! API names are a fixed set; per-topic series are created only for topics that exist.

mod http;

pub use crate::log::remote::TieringMetrics;

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
    /// Always 1; its labels say which Strata this is and which Kafka release it answers as.
    pub build_info: IntGaugeVec,
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

/// ISR replication: membership changes and follower fetching.
#[derive(Debug, Clone)]
pub struct ReplicationMetrics {
    pub isr_shrinks: IntCounter,
    pub isr_expands: IntCounter,
    pub follower_fetchers: IntGauge,
}

impl ReplicationMetrics {
    fn new(r: &Registry) -> ReplicationMetrics {
        ReplicationMetrics {
            isr_shrinks: counter(
                r,
                "strata_replication_isr_shrinks_total",
                "ISR shrinks this broker made as a leader (followers that fell behind).",
            ),
            isr_expands: counter(
                r,
                "strata_replication_isr_expands_total",
                "ISR expansions this broker made as a leader (followers that caught up).",
            ),
            follower_fetchers: gauge(
                r,
                "strata_replication_follower_fetchers",
                "Leaders this broker fetches from as a follower.",
            ),
        }
    }
}

/// The metadata quorum as this node sees it, refreshed from the Raft metrics and the image at
/// scrape time. Offsets are Raft log indexes + 1 (the next entry), as DescribeQuorum reports
/// them.
#[derive(Debug, Clone)]
pub struct ControllerMetrics {
    pub active: IntGauge,
    pub term: IntGauge,
    pub log_end_offset: IntGauge,
    pub committed_offset: IntGauge,
    pub applied_offset: IntGauge,
    pub commit_lag: IntGauge,
    pub image_offset: IntGauge,
    pub registered_brokers: IntGauge,
    pub fenced_brokers: IntGauge,
}

impl ControllerMetrics {
    fn new(r: &Registry) -> ControllerMetrics {
        ControllerMetrics {
            active: gauge(r, "strata_controller_active", "1 on the active controller (the Raft leader), else 0."),
            term: gauge(r, "strata_controller_term", "The current Raft term (the controller epoch)."),
            log_end_offset: gauge(r, "strata_controller_log_end_offset", "End of this node's copy of the metadata log."),
            committed_offset: gauge(r, "strata_controller_committed_offset", "Committed end of the metadata log: on the active controller what a majority of voters holds; elsewhere what this node has applied (the most it knows to be committed)."),
            applied_offset: gauge(r, "strata_controller_applied_offset", "End of the metadata log this node has applied to its image."),
            commit_lag: gauge(r, "strata_controller_commit_lag_records", "Metadata log entries this node holds that are not yet known committed (log end minus committed)."),
            image_offset: gauge(r, "strata_controller_image_offset", "Offset of this node's metadata image (the last record folded in)."),
            registered_brokers: gauge(r, "strata_controller_registered_brokers", "Brokers registered in the metadata image."),
            fenced_brokers: gauge(r, "strata_controller_fenced_brokers", "Registered brokers that are fenced."),
        }
    }
}

/// Consumer groups this broker coordinates and how far behind they are, refreshed from the
/// coordinator's shards and the replicas at scrape time. Lag is measured only where this broker
/// both coordinates the group and leads the partition: the coordinator knows the committed
/// offset, the leader the high watermark.
#[derive(Debug, Clone)]
pub struct GroupMetrics {
    pub groups: IntGaugeVec,
    pub members: IntGauge,
    pub rebalances: IntCounter,
    pub consumer_lag: IntGaugeVec,
    pub consumer_lag_sum: IntGaugeVec,
    pub lag_series_dropped: IntGauge,
}

impl GroupMetrics {
    fn new(r: &Registry) -> GroupMetrics {
        GroupMetrics {
            groups: gauge_vec(
                r,
                "strata_group_groups",
                "Consumer groups this broker coordinates, by state (Kafka's names).",
                &["state"],
            ),
            members: gauge(
                r,
                "strata_group_members",
                "Members of the consumer groups this broker coordinates.",
            ),
            rebalances: counter(
                r,
                "strata_group_rebalances_total",
                "Rebalances completed (generation bumps) by groups this broker coordinates.",
            ),
            consumer_lag: gauge_vec(
                r,
                "strata_group_consumer_lag_records",
                "High watermark minus committed offset, per group and partition, for groups this broker coordinates and partitions it leads (partitions led elsewhere are not measured). At most metrics.group.lag.max.series series.",
                &["group", "topic", "partition"],
            ),
            consumer_lag_sum: gauge_vec(
                r,
                "strata_group_consumer_lag_sum_records",
                "Sum of a group's consumer lag over the partitions this broker leads, for groups it coordinates; never capped.",
                &["group"],
            ),
            lag_series_dropped: gauge(
                r,
                "strata_group_consumer_lag_series_dropped",
                "Partitions measured but left out of strata_group_consumer_lag_records by metrics.group.lag.max.series (still counted in the per-group sum).",
            ),
        }
    }
}

/// Client quotas: how long clients under a quota were told to wait, per kind of quota
/// (`produce`, `fetch`). No client-id or user labels: those are unbounded.
#[derive(Debug, Clone)]
pub struct QuotaMetrics {
    pub throttle_time: HistogramVec,
    pub throttled: IntCounterVec,
    pub tracked_clients: IntGaugeVec,
}

impl QuotaMetrics {
    fn new(r: &Registry) -> QuotaMetrics {
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

/// Every metric of the process.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub server: ServerMetrics,
    pub topics: BrokerTopicMetrics,
    pub flush_latency: Histogram,
    pub tiering: TieringMetrics,
    pub replication: ReplicationMetrics,
    pub controller: ControllerMetrics,
    pub groups: GroupMetrics,
    pub quota: QuotaMetrics,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // CPU, memory, open files of this process, from /proc.
        let _ = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        let flush_latency = crate::log::metrics().flush_latency.clone();
        registry
            .register(Box::new(flush_latency.clone()))
            .expect("metric registered once");
        Metrics {
            server: ServerMetrics::new(&registry),
            topics: BrokerTopicMetrics::new(&registry),
            tiering: TieringMetrics::new(&registry),
            replication: ReplicationMetrics::new(&registry),
            controller: ControllerMetrics::new(&registry),
            groups: GroupMetrics::new(&registry),
            quota: QuotaMetrics::new(&registry),
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
