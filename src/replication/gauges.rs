//! The gauges read off the replicas at scrape time: partitions, leaderships, under-replicated
//! and under-min-ISR partitions, offline partitions, log sizes, open transactions and the
//! last-stable-offset lag per topic.

use std::collections::BTreeMap;

use super::{BrokerTopicMetrics, ReplicaManager, ReplicationMetrics};
use crate::config::NodeConfig;
use crate::controller::MetadataImage;

impl ReplicaManager {
    /// Sets the gauges from the replicas as they are now. `node` is the effective node config
    /// (its `min.insync.replicas` is the default a topic may override).
    pub fn sync_metrics(
        &self,
        topics: &BrokerTopicMetrics,
        replication: &ReplicationMetrics,
        image: &MetadataImage,
        node: &NodeConfig,
    ) {
        let min_isr_default = node.get_i32("min.insync.replicas").max(1) as usize;
        let (mut partitions, mut leaders, mut under_replicated, mut under_min_isr) = (0, 0, 0, 0);
        let mut per_topic: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        // Led partitions only: (open transactions, largest LSO lag).
        let mut txns: BTreeMap<String, (u64, i64)> = BTreeMap::new();
        for p in self.all() {
            partitions += 1;
            let state = p.state();
            if state.leader == self.local {
                leaders += 1;
                if state.isr.len() < state.replicas.len() {
                    under_replicated += 1;
                }
                let min_isr = image
                    .topic_by_name(&p.tp.topic)
                    .and_then(|t| t.config.overrides.get("min.insync.replicas"))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(min_isr_default);
                if state.isr.len() < min_isr {
                    under_min_isr += 1;
                }
                let t = txns.entry(p.tp.topic.clone()).or_default();
                t.0 += p.log().ongoing_txn_count() as u64;
                t.1 = t.1.max(p.high_watermark().0 - p.last_stable_offset().0);
            }
            let entry = per_topic.entry(p.tp.topic.clone()).or_default();
            entry.0 += p.log().size_bytes();
            entry.1 += p.log().segment_count() as u64;
        }
        let offline = image
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.leader.0 < 0)
            .count();
        topics.partitions.set(partitions);
        topics.leaders.set(leaders);
        topics.under_replicated.set(under_replicated);
        topics.under_min_isr.set(under_min_isr);
        topics.offline.set(offline as i64);
        replication
            .follower_fetchers
            .set(self.fetcher_count() as i64);
        topics.open_transactions.reset();
        topics.last_stable_offset_lag.reset();
        for (topic, (open, lag)) in txns {
            topics
                .open_transactions
                .with_label_values(&[&topic])
                .set(open as i64);
            topics
                .last_stable_offset_lag
                .with_label_values(&[&topic])
                .set(lag);
        }
        topics.log_size.reset();
        topics.log_segments.reset();
        for (topic, (bytes, segments)) in per_topic {
            topics
                .log_size
                .with_label_values(&[&topic])
                .set(bytes as i64);
            topics
                .log_segments
                .with_label_values(&[&topic])
                .set(segments as i64);
        }
    }
}
