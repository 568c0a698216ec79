//! What the active controller knows of replica sizes: each broker reports the local log size
//! of every replica it holds with a heartbeat now and then (`broker_lifecycle`), and the
//! balancer reads them as partition sizes. Soft state, as Kafka keeps broker load for Cruise
//! Control outside the metadata log: a new active controller starts empty and hears every
//! broker within a heartbeat, since brokers report at once to a new one.

use std::collections::BTreeMap;

use super::balancer::PartitionSizes;
use super::image::MetadataImage;
use crate::model::{BrokerId, PartitionIndex, TopicPartition};

/// The latest report of each broker.
#[derive(Debug, Default)]
pub struct ReplicaSizeBook {
    by_broker: BTreeMap<BrokerId, Vec<(TopicPartition, u64)>>,
}

impl ReplicaSizeBook {
    /// `broker`'s report replaces its previous one.
    pub fn record(&mut self, broker: BrokerId, sizes: Vec<(TopicPartition, u64)>) {
        self.by_broker.insert(broker, sizes);
    }

    /// Forgets every report (this node is no longer, or newly, the active controller).
    pub fn clear(&mut self) {
        self.by_broker.clear();
    }

    /// Each partition of the image with a report: the largest size any of its current
    /// replicas reported (a broker's report of a replica it no longer holds is ignored).
    pub fn partition_sizes(&self, image: &MetadataImage) -> PartitionSizes {
        let mut sizes = PartitionSizes::new();
        for (broker, reports) in &self.by_broker {
            for (tp, bytes) in reports {
                let Some(topic) = image.topic_by_name(&tp.topic) else {
                    continue;
                };
                let index = PartitionIndex(tp.partition.0);
                let holds = topic
                    .partitions
                    .get(&index)
                    .is_some_and(|p| p.replicas.contains(broker));
                if holds {
                    let size = sizes.entry((topic.topic_id, index)).or_insert(0);
                    *size = (*size).max(*bytes);
                }
            }
        }
        sizes
    }
}
