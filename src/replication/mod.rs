//! Replicas on this broker: which partitions it holds, in which role, and their high watermarks.
//!
//! The [`ReplicaManager`] follows the metadata image: a partition assigned to this broker gets a
//! log and a [`Partition`]; a partition whose topic is deleted loses both. A partition led by
//! another broker is followed: the [`fetcher::ReplicaFetcherManager`] copies it from its leader.
//! On the leader, [`isr`] decides the high watermark and ISR changes, which go to the controller
//! as compare-and-set proposals ([`crate::controller::isr`]).

pub mod alter_partition;
pub mod coordinator_load;
pub mod delayed_fetch;
pub mod fetch_session;
pub mod fetcher;
mod gauges;
pub mod hot_tail;
pub mod isr;
pub mod metadata;
mod metrics;
pub mod mirror;
pub mod partition;
pub mod repair;
pub mod throttle;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock, RwLock};

use tokio::sync::watch;

pub use delayed_fetch::{DelayedFetch, FetchIsolation};
pub use fetcher::{FetchTarget, FetcherSettings, ReplicaFetcherManager};
pub use metadata::MetadataClient;
pub use metrics::{BrokerTopicMetrics, ReplicationMetrics};
pub use partition::{FollowerFetch, IsrProposal, Partition, PartitionError, PartitionState};

use crate::clock::SharedClock;
use crate::config::NodeConfig;
use crate::controller::MetadataImage;
use crate::log::remote::{RemoteLogManager, TieredPartition, TieredPartitions};
use crate::log::{LogError, LogManager};
use crate::model::{BrokerId, TopicId, TopicPartition};

#[derive(Debug)]
pub struct ReplicaManager {
    local: BrokerId,
    logs: Arc<LogManager>,
    clock: SharedClock,
    // Read on every produce and fetch, written only when the image changes.
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    applied_offset: watch::Sender<u64>,
    /// Tiered storage, when the broker runs it: told of partitions created and topics deleted.
    remote: OnceLock<Arc<RemoteLogManager>>,
    /// Copies followed partitions from their leaders; set once the broker runs.
    fetchers: OnceLock<Arc<ReplicaFetcherManager>>,
    mirror_fetchers: OnceLock<Arc<mirror::MirrorFetcherManager>>,
    /// The tiered topics whose partition 0 is led here, as the last image says: tiering
    /// publishes their topic manifests. Written only when the image changes.
    led_tiered_topics: RwLock<Vec<strata_tiering::RemoteTopicManifest>>,
    /// `leader.replication.throttled.rate` over the follower fetches this broker answers.
    leader_quota: throttle::LeaderReplicationQuota,
}

impl ReplicaManager {
    pub fn new(local: BrokerId, logs: Arc<LogManager>, clock: SharedClock) -> ReplicaManager {
        let (applied_offset, _) = watch::channel(0);
        ReplicaManager {
            local,
            logs,
            clock,
            partitions: RwLock::new(HashMap::new()),
            applied_offset,
            remote: OnceLock::new(),
            fetchers: OnceLock::new(),
            mirror_fetchers: OnceLock::new(),
            led_tiered_topics: RwLock::new(Vec::new()),
            leader_quota: throttle::LeaderReplicationQuota::new(local),
        }
    }

    /// Hooks the follower fetchers in; set once, before images that need them are applied.
    pub fn set_fetcher_manager(&self, fetchers: Arc<ReplicaFetcherManager>) {
        let _ = self.fetchers.set(fetchers);
    }

    /// Hooks tiered storage in; set once, before the first image is applied.
    pub fn set_mirror_fetcher_manager(&self, fetchers: Arc<mirror::MirrorFetcherManager>) {
        let _ = self.mirror_fetchers.set(fetchers);
    }

    /// A final catch-up of `topic`'s mirror partitions led here before it is promoted (see
    /// [`mirror::MirrorFetcherManager::catch_up`]); the partitions still behind.
    pub async fn mirror_catch_up(
        &self,
        topic: &str,
        timeout: std::time::Duration,
    ) -> Vec<(TopicPartition, i64)> {
        match self.mirror_fetchers.get() {
            Some(m) => m.catch_up(topic, timeout).await,
            None => vec![],
        }
    }

    pub fn set_remote_log_manager(&self, remote: Arc<RemoteLogManager>) {
        let _ = self.remote.set(remote);
    }

    pub fn remote_log_manager(&self) -> Option<&Arc<RemoteLogManager>> {
        self.remote.get()
    }

    /// This broker's id.
    pub fn local_broker(&self) -> BrokerId {
        self.local
    }

    pub fn logs(&self) -> &Arc<LogManager> {
        &self.logs
    }

    /// The leader side of the replication throttle (`throttle`).
    pub fn leader_quota(&self) -> &throttle::LeaderReplicationQuota {
        &self.leader_quota
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

    /// The ISR changes due on partitions led here (see [`Partition::propose_isr_change`]).
    pub fn isr_proposals(&self, lag_max_ms: i64) -> Vec<(Arc<Partition>, IsrProposal)> {
        self.all()
            .into_iter()
            .filter_map(|p| p.propose_isr_change(lag_max_ms).map(|c| (p, c)))
            .collect()
    }

    /// Leaders this broker's replica fetchers lost lately (see
    /// [`ReplicaFetcherManager::unreachable_leaders`]).
    pub fn unreachable_leaders(&self) -> Vec<BrokerId> {
        self.fetchers
            .get()
            .map_or_else(Vec::new, |f| f.unreachable_leaders())
    }

    /// Leaders this broker fetches from.
    pub fn fetcher_count(&self) -> usize {
        self.fetchers.get().map_or(0, |f| f.fetcher_count())
    }

    /// Checkpoints the high watermark of every replicated partition that moved.
    pub fn checkpoint_high_watermarks(&self) {
        for p in self.all() {
            if let Err(e) = p.checkpoint_high_watermark() {
                tracing::warn!(partition = %p.tp, error = %e, "cannot checkpoint the high watermark");
            }
        }
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
        let mut led_tiered = Vec::new();
        for topic in image.topics.values() {
            let log_config = topic.config.log_config(&node).for_topic(
                &topic.name,
                node.get_bool("strata.remote.storage.internal.topics.enable"),
            );
            let leads_first = topic
                .partitions
                .values()
                .next()
                .is_some_and(|r| r.leader == self.local);
            if log_config.remote_storage_enable && leads_first {
                let mut m = strata_tiering::RemoteTopicManifest::new(
                    &topic.name,
                    topic.topic_id.0,
                    topic.partitions.len() as i32,
                    topic.config.overrides.clone(),
                );
                m.next_producer_id = image.next_producer_id;
                led_tiered.push(m);
            }
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
                // Produces waiting for acks=all answer NOT_LEADER_OR_FOLLOWER now rather than
                // time out (a reassignment moved the replica away from this broker).
                let mut gone = p.state();
                gone.leader = BrokerId(-1);
                p.update_state(gone, 1);
                // Fetches waiting on it read again and answer that it is gone; others may hold
                // the partition a while longer, so its dropping cannot be what wakes them.
                p.fetch_wakeups().reset();
                match self.logs.delete(tp) {
                    Ok(()) => tracing::info!(partition = %tp, "deleted partition replica"),
                    Err(e) => first_error = first_error.or(Some(e)),
                }
                if image.topic(&p.topic_id).is_none() {
                    if let Some(r) = self.remote.get() {
                        r.on_topic_deleted(tp, p.topic_id);
                    }
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
            let mut partition = Partition::new(
                tp.clone(),
                topic_id,
                log.clone(),
                self.local,
                state,
                min_isr,
                self.clock.clone(),
            );
            if let Some(r) = self.remote.get() {
                partition = partition.with_remote_log(r.attach(&tp, topic_id, &log));
            }
            let partition = Arc::new(partition);
            if let Ok(mut m) = self.partitions.write() {
                m.insert(tp, partition);
            }
        }
        self.leader_quota.set_rate(throttle::effective_rate(
            node.get_i64("leader.replication.throttled.rate"),
            node.get_i64(crate::controller::balancer::BALANCER_THROTTLE_BYTES_PER_SECOND),
        ));
        self.assign_fetchers(image, &node);
        self.assign_mirror_fetchers(image);
        if let Ok(mut t) = self.led_tiered_topics.write() {
            *t = led_tiered;
        }
        self.applied_offset.send_replace(image.offset);
        first_error.map_or(Ok(()), Err)
    }

    /// Points the follower fetchers at the leaders of every partition followed here.
    /// A link fetcher for each mirroring partition led here whose link is active.
    fn assign_mirror_fetchers(&self, image: &MetadataImage) {
        use crate::controller::mirror::{LinkState, MirrorTopicState};
        let Some(fetchers) = self.mirror_fetchers.get() else {
            return;
        };
        let mut led = mirror::LedMirrorPartitions::default();
        for partition in self.all() {
            if partition.state().leader != self.local {
                continue;
            }
            let Some(m) = image.mirrors.topic(&partition.tp.topic) else {
                continue;
            };
            if m.state == MirrorTopicState::Promoted {
                led.promoted.push((partition, m.link.clone()));
                continue;
            }
            let Some(link) = image.mirrors.links.get(&m.link) else {
                continue;
            };
            led.read_only.insert(partition.tp.clone());
            match &m.state {
                MirrorTopicState::Mirroring | MirrorTopicState::Reconciling
                    if link.state == LinkState::Active =>
                {
                    let reconcile = m.state == MirrorTopicState::Reconciling
                        || image
                            .mirrors
                            .divergent_tail(&partition.tp.topic, partition.tp.partition.0)
                            .is_some();
                    led.targets.push(mirror::MirrorTarget {
                        partition,
                        link: link.spec.clone(),
                        reconcile,
                    })
                }
                MirrorTopicState::Failed(_) => {
                    led.failed.push((m.link.clone(), partition.tp.clone()))
                }
                _ => {}
            }
        }
        fetchers.assign(led);
    }

    fn assign_fetchers(&self, image: &MetadataImage, node: &NodeConfig) {
        self.logs
            .alter_dirs()
            .set_rate(node.get_i64("replica.alter.log.dirs.io.max.bytes.per.second"));
        let Some(fetchers) = self.fetchers.get() else {
            return;
        };
        fetchers.set_follower_throttle(throttle::effective_rate(
            node.get_i64("follower.replication.throttled.rate"),
            node.get_i64(crate::controller::balancer::BALANCER_THROTTLE_BYTES_PER_SECOND),
        ));
        let targets = self
            .all()
            .into_iter()
            .filter_map(|partition| {
                let state = partition.state();
                if state.leader == self.local || state.leader.0 < 0 {
                    return None;
                }
                let leader = image.brokers.get(&state.leader)?;
                let throttled = image
                    .topic_by_name(&partition.tp.topic)
                    .and_then(|t| {
                        t.config
                            .overrides
                            .get(throttle::FOLLOWER_THROTTLED_REPLICAS)
                    })
                    .is_some_and(|list| {
                        throttle::is_throttled(list, partition.tp.partition, self.local)
                    });
                Some(FetchTarget {
                    throttled,
                    leader: state.leader,
                    leader_addr: format!("{}:{}", leader.host, leader.port),
                    leader_epoch: state.leader_epoch,
                    partition,
                })
            })
            .collect();
        fetchers.assign(targets);
    }
}

impl TieredPartitions for ReplicaManager {
    fn tiered_partitions(&self) -> Vec<Arc<dyn TieredPartition>> {
        self.all()
            .into_iter()
            .map(|p| p as Arc<dyn TieredPartition>)
            .collect()
    }

    fn led_tiered_topics(&self) -> Vec<strata_tiering::RemoteTopicManifest> {
        self.led_tiered_topics
            .read()
            .map(|t| t.clone())
            .unwrap_or_default()
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
