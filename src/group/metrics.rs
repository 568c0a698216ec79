//! [`GroupMetrics`]: the groups this broker coordinates and their lag.

use prometheus::{IntCounter, IntGauge, IntGaugeVec, Registry};

use crate::metrics::{counter, gauge, gauge_vec};

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
    pub fn new(r: &Registry) -> GroupMetrics {
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
