//! Replicas on this broker: which partitions it holds, in which role, and their high watermarks.
//!
//! The [`ReplicaManager`] follows the metadata image: a partition assigned to this broker gets a
//! log and a [`Partition`]; a partition whose topic is deleted loses both. Follower fetchers
//! arrive with ISR replication.

pub mod partition;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

pub use partition::{Partition, PartitionError, PartitionState};

use crate::config::NodeConfig;
use crate::controller::MetadataImage;
use crate::log::{LogError, LogManager};
use crate::model::{BrokerId, TopicId, TopicPartition};

#[derive(Debug)]
pub struct ReplicaManager {
    local: BrokerId,
    logs: Arc<LogManager>,
    // Read on every produce and fetch, written only when the image changes.
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    data_version: Arc<watch::Sender<u64>>,
    applied_offset: watch::Sender<u64>,
}

impl ReplicaManager {
    pub fn new(local: BrokerId, logs: Arc<LogManager>) -> ReplicaManager {
        let (data_version, _) = watch::channel(0);
        let (applied_offset, _) = watch::channel(0);
        ReplicaManager {
            local,
            logs,
            partitions: RwLock::new(HashMap::new()),
            data_version: Arc::new(data_version),
            applied_offset,
        }
    }

    pub fn logs(&self) -> &Arc<LogManager> {
        &self.logs
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.partitions.read().ok().and_then(|m| m.get(tp).cloned())
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Changes whenever some partition's high watermark advances.
    pub fn data_version(&self) -> watch::Receiver<u64> {
        self.data_version.subscribe()
    }

    /// Waits until the image at `offset` (or later) has been applied here.
    pub async fn wait_applied(&self, offset: u64) {
        let mut rx = self.applied_offset.subscribe();
        let _ = rx.wait_for(|applied| *applied >= offset).await;
    }

    /// Brings the local replicas in line with `image`: creates logs for new assignments,
    /// updates leadership and configs, deletes the logs of removed partitions.
    pub fn apply_image(&self, image: &MetadataImage, node: &NodeConfig) -> Result<(), LogError> {
        let node = effective_node_config(node, image);
        let mut wanted: HashMap<
            TopicPartition,
            (TopicId, PartitionState, crate::log::LogConfig, usize),
        > = HashMap::new();
        for topic in image.topics.values() {
            let log_config = topic.config.log_config(&node);
            let min_isr = topic
                .config
                .effective("min.insync.replicas", &node)
                .0
                .parse::<usize>()
                .unwrap_or(1);
            for (index, reg) in &topic.partitions {
                if reg.replicas.contains(&self.local) {
                    let tp = TopicPartition {
                        topic: topic.name.clone(),
                        partition: *index,
                    };
                    wanted.insert(
                        tp,
                        (
                            topic.topic_id,
                            PartitionState::from(reg),
                            log_config.clone(),
                            min_isr,
                        ),
                    );
                }
            }
        }
        let current: Vec<(TopicPartition, Arc<Partition>)> = self
            .partitions
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let mut first_error: Option<LogError> = None;
        // Removals first: a topic deleted and re-created under its name reuses the directory.
        for (tp, p) in &current {
            let keep = wanted
                .get(tp)
                .map(|(id, ..)| *id == p.topic_id)
                .unwrap_or(false);
            if !keep {
                if let Ok(mut m) = self.partitions.write() {
                    m.remove(tp);
                }
                match self.logs.delete(tp) {
                    Ok(()) => tracing::info!(partition = %tp, "deleted partition replica"),
                    Err(e) => first_error = first_error.or(Some(e)),
                }
            }
        }
        let present: BTreeSet<TopicPartition> = self
            .partitions
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for (tp, (topic_id, state, log_config, min_isr)) in wanted {
            if present.contains(&tp) {
                if let Some(p) = self.get(&tp) {
                    if p.log().config() != log_config {
                        p.log().update_config(log_config);
                    }
                    p.update_state(state, min_isr);
                    p.advance_high_watermark();
                }
                continue;
            }
            // One partition that cannot be created (a full disk) must not keep the others, or
            // the waiters on this image, from making progress.
            let log = match self.logs.get_or_create(&tp, log_config) {
                Ok(log) => log,
                Err(e) => {
                    tracing::error!(partition = %tp, error = %e, "cannot create partition log");
                    first_error = first_error.or(Some(e));
                    continue;
                }
            };
            let partition = Arc::new(Partition::new(
                tp.clone(),
                topic_id,
                log,
                self.local,
                state,
                min_isr,
                self.data_version.clone(),
            ));
            if let Ok(mut m) = self.partitions.write() {
                m.insert(tp, partition);
            }
        }
        self.applied_offset.send_replace(image.offset);
        first_error.map_or(Ok(()), Err)
    }
}

/// The node config with the cluster-wide dynamic broker configs of `image` laid over it.
pub fn effective_node_config(node: &NodeConfig, image: &MetadataImage) -> NodeConfig {
    if image.broker_configs.is_empty() {
        return node.clone();
    }
    let mut cfg = node.clone();
    for (k, v) in &image.broker_configs {
        // Validated when committed; a key a newer version added is skipped, not fatal.
        let _ = cfg.set(k, v, crate::config::ConfigSource::Dynamic);
    }
    cfg
}
