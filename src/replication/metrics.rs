//! [`BrokerTopicMetrics`] and [`ReplicationMetrics`]: per-topic traffic, partition health, ISR changes.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use crate::metrics::{counter, counter_vec, gauge, gauge_vec};

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
    /// Open transactions on the partitions this broker leads, by topic.
    pub open_transactions: IntGaugeVec,
    /// The largest high watermark minus last stable offset over a topic's led partitions:
    /// how far read_committed consumers trail read_uncommitted ones.
    pub last_stable_offset_lag: IntGaugeVec,
    /// End-transaction markers this broker appended as a partition leader, by topic and
    /// result (`commit`, `abort`: the aborted transactions).
    pub txn_markers: IntCounterVec,
}

impl BrokerTopicMetrics {
    pub fn new(r: &Registry) -> BrokerTopicMetrics {
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
            open_transactions: gauge_vec(
                r,
                "strata_log_open_transactions",
                "Open transactions on the partitions this broker leads, by topic.",
                &["topic"],
            ),
            last_stable_offset_lag: gauge_vec(
                r,
                "strata_log_last_stable_offset_lag",
                "Largest high watermark minus last stable offset of a led partition, by topic.",
                &["topic"],
            ),
            txn_markers: counter_vec(
                r,
                "strata_log_txn_markers_total",
                "End-transaction markers appended as partition leader, by topic and result.",
                &["topic", "result"],
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
    /// Fetch request bytes (frames, header included) this broker's fetchers sent to leaders.
    pub fetcher_request_bytes: IntCounter,
    /// Fetch response bytes (frames) this broker's fetchers read from leaders.
    pub fetcher_response_bytes: IntCounter,
    /// Fetch requests this broker's fetchers sent, by kind (full, incremental).
    pub fetcher_requests: IntCounterVec,
    /// Record bytes this broker's fetchers copied from leaders, by topic and partition: what a
    /// new replica cost (only the hot tail for a tiered topic).
    pub fetch_bytes: IntCounterVec,
}

impl ReplicationMetrics {
    pub fn new(r: &Registry) -> ReplicationMetrics {
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
            fetcher_request_bytes: counter(
                r,
                "strata_replica_fetcher_request_bytes_total",
                "Bytes of the fetch requests this broker sent to leaders as a follower.",
            ),
            fetcher_response_bytes: counter(
                r,
                "strata_replica_fetcher_response_bytes_total",
                "Bytes of the fetch responses this broker read from leaders as a follower.",
            ),
            fetcher_requests: counter_vec(
                r,
                "strata_replica_fetcher_requests_total",
                "Fetch requests this broker sent to leaders as a follower, by kind (full, incremental).",
                &["kind"],
            ),
            fetch_bytes: counter_vec(
                r,
                "strata_replication_fetch_bytes_total",
                "Record bytes this broker fetched from leaders as a follower, by topic and partition.",
                &["topic", "partition"],
            ),
        }
    }
}
