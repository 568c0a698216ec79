//! The group coordinator for both consumer-group protocols, the classic one and the consumer
//! protocol of KIP-848 ([`consumer`]), over `__consumer_offsets`.
//!
//! A group belongs to partition `abs(hashCode(group_id)) % N` of `__consumer_offsets` (Java's
//! `String.hashCode` over UTF-16 code units, Kafka's `Utils.abs`), and the leader of that
//! partition is the group's coordinator. Each led partition has one [`shard`] task that owns its
//! groups: it rebuilds them by reading the partition when this broker gains leadership
//! (COORDINATOR_LOAD_IN_PROGRESS meanwhile), decides requests with the pure state machine in
//! [`state`], and writes commits and group metadata as Kafka-format [`records`] with acks=all.
//!
//! The offsets topic is compacted: the latest record per key (group/topic/partition, or group)
//! is all a load needs; expired offsets and deleted groups are written as tombstones.
//!
//! Metrics: each shard publishes a summary of its groups every few seconds; at scrape time the
//! coordinator counts groups by state and measures consumer [`lag`] against the high watermarks
//! of the partitions this broker leads.
//!
//! Committed offsets are also exported to the tiered-storage bucket ([`export`]) for
//! `strata restore`.
//!
//! The coordinator sees the rest of the broker only through [`GroupCoordinatorContext`]: the
//! controller (metadata image, topic creation), the replica manager (the offsets partitions it
//! leads), the node config, the clock, the shutdown token and its metrics.

pub mod consumer;
pub mod export;
pub mod lag;
mod metrics;
pub mod records;
pub mod shard;
pub mod state;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::NodeConfig;
use crate::controller::{
    decide_create_topic, BrokerRegistration, ControllerError, NewTopic, TopicDefaults,
};
use crate::model::TopicPartition;
use crate::replication::{MetadataClient, ReplicaManager};
pub use metrics::GroupMetrics;
use shard::{Command, ShardHandle, ShardSettings, ACTIVE, LOADING, STOPPED};
pub use state::{GroupConfig, GroupRequest, GroupResponse, GroupState, GroupSummary};

/// The internal topic holding commits and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How long a group request waits for its coordinator shard to finish loading before it is
/// answered COORDINATOR_LOAD_IN_PROGRESS (clients retry that), and how often it looks.
const LOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
const LOAD_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Why a request cannot be served by a coordinator here. Mapped to Kafka codes in
/// `handlers::errors::coordinator_error_code`.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("the coordinator is not available: {0}")]
    NotAvailable(String),
    #[error("this broker is not the coordinator of the group")]
    NotCoordinator,
    #[error("the coordinator is loading the group's offsets partition")]
    LoadInProgress,
    #[error("the coordinator's request queue is full")]
    Busy,
}

/// Java's `String.hashCode`: `s[0]*31^(n-1) + ... + s[n-1]` over UTF-16 code units, wrapping.
pub fn java_string_hashcode(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The `__consumer_offsets` partition of `group_id` (Kafka's `Utils.abs(hashCode) % N`).
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let h = java_string_hashcode(group_id);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

/// The consumer-lag series last exported, so that those whose group or partition is gone are
/// removed rather than left at their last value.
#[derive(Debug, Default)]
struct ExportedLag {
    partitions: BTreeSet<(String, TopicPartition)>,
    groups: BTreeSet<String>,
}

/// What the coordinator needs of the rest of the broker, and nothing more. Built once, where
/// the broker wires its parts together.
#[derive(Debug, Clone)]
pub struct GroupCoordinatorContext {
    /// The metadata image (where `__consumer_offsets` lives, who leads it), the node config,
    /// and the commits that create the topic.
    pub metadata: MetadataClient,
    /// The `__consumer_offsets` partitions this broker leads, which the shards read and write,
    /// and the high watermarks consumer lag is measured against.
    pub replicas: Arc<ReplicaManager>,
    pub clock: SharedClock,
    pub shutdown: CancellationToken,
    pub metrics: GroupMetrics,
}

#[derive(Debug)]
pub struct GroupCoordinator {
    // Short sections only (look up, insert or remove a handle); never held across `.await`.
    shards: Mutex<HashMap<i32, ShardHandle>>,
    ctx: GroupCoordinatorContext,
    // Held while a scrape updates the lag gauges, so two scrapes never interleave their updates
    // and removals; no I/O or `.await` inside.
    exported_lag: Mutex<ExportedLag>,
}

impl GroupCoordinator {
    pub fn new(ctx: GroupCoordinatorContext) -> GroupCoordinator {
        GroupCoordinator {
            shards: Mutex::new(HashMap::new()),
            ctx,
            exported_lag: Mutex::new(ExportedLag::default()),
        }
    }

    fn settings(&self, node: &NodeConfig) -> ShardSettings {
        ShardSettings {
            config: GroupConfig {
                min_session_timeout_ms: node.get_i32("group.min.session.timeout.ms"),
                max_session_timeout_ms: node.get_i32("group.max.session.timeout.ms"),
                initial_rebalance_delay_ms: node.get_i32("group.initial.rebalance.delay.ms"),
                max_group_size: node.get_i32("group.max.size").max(1) as usize,
                offset_metadata_max_bytes: node.get_i32("offset.metadata.max.bytes").max(0)
                    as usize,
                offsets_retention_ms: node
                    .get_i64("offsets.retention.minutes")
                    .saturating_mul(60_000),
                consumer: consumer::ConsumerGroupConfig {
                    heartbeat_interval_ms: node
                        .get_i32("group.consumer.heartbeat.interval.ms")
                        .max(1),
                    session_timeout_ms: node.get_i32("group.consumer.session.timeout.ms").max(1),
                    assignors: {
                        let named: Vec<consumer::assignor::Assignor> = node
                            .get("group.consumer.assignors")
                            .split(',')
                            .filter_map(|a| consumer::assignor::Assignor::by_name(a.trim()))
                            .collect();
                        if named.is_empty() {
                            consumer::ConsumerGroupConfig::default().assignors
                        } else {
                            named
                        }
                    },
                    max_size: node.get_i32("group.consumer.max.size").max(1) as usize,
                    migration: consumer::MigrationPolicy::parse(
                        node.get("group.consumer.migration.policy"),
                    ),
                },
            },
            commit_timeout: Duration::from_millis(
                node.get_i64("offsets.commit.timeout.ms").max(1) as u64
            ),
            retention_check_interval: Duration::from_millis(
                node.get_i64("offsets.retention.check.interval.ms")
                    .max(1000) as u64,
            ),
            rebalances: self.ctx.metrics.rebalances.clone(),
        }
    }

    /// Follows the metadata image: starts a shard (which loads) for every offsets partition this
    /// broker leads, and stops the shards of partitions it no longer leads.
    pub fn start(self: &Arc<Self>) {
        let coordinator = self.clone();
        let mut rx = self.ctx.metadata.controller().subscribe();
        tokio::spawn(async move {
            loop {
                let offset = rx.borrow_and_update().offset;
                coordinator.ctx.replicas.wait_applied(offset).await;
                coordinator.reconcile();
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { break },
                    () = coordinator.ctx.shutdown.cancelled() => break,
                }
            }
        });
    }

    /// Brings the shards in line with which offsets partitions this broker leads.
    pub fn reconcile(&self) {
        let image = self.ctx.metadata.image();
        let Some(topic) = image.topic_by_name(OFFSETS_TOPIC) else {
            return;
        };
        let mut led = Vec::new();
        for index in topic.partitions.keys() {
            let tp = TopicPartition::new(OFFSETS_TOPIC, index.0);
            if let Some(p) = self.ctx.replicas.get(&tp) {
                if p.is_leader() {
                    led.push(p);
                }
            }
        }
        let node = self.ctx.metadata.node_config();
        let Ok(mut shards) = self.shards.lock() else {
            return;
        };
        shards.retain(|index, h| {
            let keep = led
                .iter()
                .any(|p| p.tp.partition.0 == *index && p.state().leader_epoch.0 == h.leader_epoch)
                && h.status() != STOPPED;
            if !keep {
                tracing::info!(partition = index, "stopping group coordinator shard");
            }
            keep
        });
        for p in led {
            shards.entry(p.tp.partition.0).or_insert_with(|| {
                tracing::info!(partition = %p.tp, "loading group coordinator shard");
                shard::spawn(
                    p.clone(),
                    self.settings(&node),
                    self.ctx.clock.clone(),
                    self.ctx.shutdown.child_token(),
                )
            });
        }
    }

    /// Creates `__consumer_offsets` if it does not exist yet.
    pub async fn ensure_offsets_topic(&self) -> Result<(), CoordinatorError> {
        if self
            .ctx
            .metadata
            .image()
            .topic_by_name(OFFSETS_TOPIC)
            .is_some()
        {
            return Ok(());
        }
        let node = self.ctx.metadata.node_config();
        let live = self
            .ctx
            .metadata
            .image()
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .count()
            .max(1);
        // Kafka refuses to create the topic with fewer brokers than its replication factor; a
        // small cluster is better served by as many replicas as it has.
        let rf = node
            .get_i32("offsets.topic.replication.factor")
            .clamp(1, live as i32) as i16;
        let topic = NewTopic {
            name: OFFSETS_TOPIC.to_string(),
            num_partitions: node.get_i32("offsets.topic.num.partitions").max(1),
            replication_factor: rf,
            assignments: vec![],
            configs: vec![
                ("cleanup.policy".into(), Some("compact".into())),
                (
                    "segment.bytes".into(),
                    Some(node.get("offsets.topic.segment.bytes").to_string()),
                ),
                ("compression.type".into(), Some("producer".into())),
            ],
        };
        let defaults = TopicDefaults {
            num_partitions: topic.num_partitions,
            replication_factor: rf,
        };
        match self
            .ctx
            .metadata
            .commit(|image| decide_create_topic(image, &topic, defaults))
            .await
        {
            Ok(_) => {
                tracing::info!(
                    partitions = topic.num_partitions,
                    replication_factor = rf,
                    "created {OFFSETS_TOPIC}"
                );
            }
            Err(ControllerError::TopicExists(_)) => {}
            Err(e) => {
                return Err(CoordinatorError::NotAvailable(format!(
                    "cannot create {OFFSETS_TOPIC}: {e}"
                )))
            }
        }
        self.reconcile();
        Ok(())
    }

    /// The broker that coordinates `group_id`, from the metadata image.
    pub fn coordinator_of(&self, group_id: &str) -> Result<BrokerRegistration, CoordinatorError> {
        let image = self.ctx.metadata.image();
        let topic = image.topic_by_name(OFFSETS_TOPIC).ok_or_else(|| {
            CoordinatorError::NotAvailable(format!("{OFFSETS_TOPIC} does not exist yet"))
        })?;
        let index = partition_for(group_id, topic.partitions.len() as i32);
        let reg = topic
            .partitions
            .get(&crate::model::PartitionIndex(index))
            .ok_or_else(|| {
                CoordinatorError::NotAvailable(format!("{OFFSETS_TOPIC}-{index} is missing"))
            })?;
        image
            .brokers
            .get(&reg.leader)
            .filter(|b| !b.fenced)
            .cloned()
            .ok_or_else(|| {
                CoordinatorError::NotAvailable(format!("{OFFSETS_TOPIC}-{index} has no leader"))
            })
    }

    fn shard_for(&self, group_id: &str) -> Result<ShardHandle, CoordinatorError> {
        let image = self.ctx.metadata.image();
        let topic = image
            .topic_by_name(OFFSETS_TOPIC)
            .ok_or(CoordinatorError::NotCoordinator)?;
        let index = partition_for(group_id, topic.partitions.len() as i32);
        let hosted = self
            .ctx
            .replicas
            .get(&TopicPartition::new(OFFSETS_TOPIC, index))
            .filter(|p| p.is_leader());
        let Some(partition) = hosted else {
            // The image already names this broker the leader (so FindCoordinator sent the
            // client here) but the replica has not taken up the leadership yet: the shard is
            // as good as loading, which clients retry in place.
            let led_here = topic
                .partitions
                .get(&crate::model::PartitionIndex(index))
                .is_some_and(|reg| reg.leader == self.ctx.replicas.local_broker());
            return Err(if led_here {
                CoordinatorError::LoadInProgress
            } else {
                CoordinatorError::NotCoordinator
            });
        };
        let epoch = partition.state().leader_epoch.0;
        let Ok(mut shards) = self.shards.lock() else {
            return Err(CoordinatorError::NotAvailable(
                "coordinator state poisoned".into(),
            ));
        };
        if let Some(h) = shards.get(&index) {
            if h.leader_epoch == epoch {
                match h.status() {
                    ACTIVE => return Ok(h.clone()),
                    LOADING => return Err(CoordinatorError::LoadInProgress),
                    _ => {}
                }
            }
        }
        // No live shard for the current leadership (first use, or the last one stopped after a
        // failed write): start one, which loads from the log.
        let handle = shard::spawn(
            partition,
            self.settings(&self.ctx.metadata.node_config()),
            self.ctx.clock.clone(),
            self.ctx.shutdown.child_token(),
        );
        shards.insert(index, handle);
        Err(CoordinatorError::LoadInProgress)
    }

    /// Queues `request` with the shard of `group_id`; the receiver yields the reply.
    pub fn call(
        &self,
        group_id: &str,
        request: GroupRequest,
    ) -> Result<oneshot::Receiver<GroupResponse>, CoordinatorError> {
        let shard = self.shard_for(group_id)?;
        Self::send(&shard, request)
    }

    /// As [`call`](Self::call), but a shard that is loading (or about to, its partition's
    /// leadership just arrived) is waited for, up to [`LOAD_WAIT`], instead of answered
    /// COORDINATOR_LOAD_IN_PROGRESS at once: a first request to a fresh coordinator then
    /// succeeds, where some clients give up after a few quick retries.
    pub async fn call_when_loaded(
        self: Arc<Self>,
        group_id: String,
        request: GroupRequest,
    ) -> Result<oneshot::Receiver<GroupResponse>, CoordinatorError> {
        let deadline = tokio::time::Instant::now() + LOAD_WAIT;
        loop {
            match self.call(&group_id, request.clone()) {
                Err(CoordinatorError::LoadInProgress) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(LOAD_POLL).await;
                }
                other => return other,
            }
        }
    }

    fn send(
        shard: &ShardHandle,
        request: GroupRequest,
    ) -> Result<oneshot::Receiver<GroupResponse>, CoordinatorError> {
        let (tx, rx) = oneshot::channel();
        match shard.tx.try_send(Command { request, reply: tx }) {
            Ok(()) => Ok(rx),
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => Err(CoordinatorError::Busy),
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                Err(CoordinatorError::NotCoordinator)
            }
        }
    }

    /// A transaction marker of `producer_id` was written (and committed) on
    /// `__consumer_offsets` partition `partition`, led here, at `marker_offset`: its pending
    /// transactional offsets become committed or are dropped. A shard that is loading is told
    /// too, as its load may have stopped before the marker; it applies the event only if its
    /// load did not read the marker (`GroupShard::loaded_end`). A shard that starts later
    /// reads the marker from the log.
    pub fn complete_transaction(
        &self,
        partition: i32,
        producer_id: i64,
        commit: bool,
        marker_offset: i64,
    ) {
        let shard = match self.shards.lock() {
            Ok(s) => s
                .get(&partition)
                .filter(|h| matches!(h.status(), ACTIVE | LOADING))
                .cloned(),
            Err(_) => None,
        };
        if let Some(shard) = shard {
            let (reply, _) = oneshot::channel();
            let command = Command {
                request: GroupRequest::TxnCompleted {
                    producer_id,
                    commit,
                    marker_offset,
                },
                reply,
            };
            // Queued at once, so it is decided before any commit of the producer's next
            // transaction. Unlike a client's request it is not dropped when the queue is full:
            // it then waits for room (the queue is bounded), or ends with the shard, whose
            // successor reads the marker at its load.
            if let Err(tokio::sync::mpsc::error::TrySendError::Full(command)) =
                shard.tx.try_send(command)
            {
                tokio::spawn(async move {
                    if shard.tx.send(command).await.is_err() {
                        tracing::debug!(
                            partition,
                            producer_id,
                            "group shard gone; its successor reads the marker"
                        );
                    }
                });
            }
        }
    }

    /// Sends `request` to every shard this broker serves (ListGroups). Fails if any is loading.
    pub fn call_all(
        &self,
        request: GroupRequest,
    ) -> Result<Vec<oneshot::Receiver<GroupResponse>>, CoordinatorError> {
        self.reconcile();
        let shards: Vec<ShardHandle> = match self.shards.lock() {
            Ok(s) => s.values().cloned().collect(),
            Err(_) => {
                return Err(CoordinatorError::NotAvailable(
                    "coordinator state poisoned".into(),
                ))
            }
        };
        if shards.iter().any(|s| s.status() == LOADING) {
            return Err(CoordinatorError::LoadInProgress);
        }
        shards
            .iter()
            .filter(|s| s.status() == ACTIVE)
            .map(|s| Self::send(s, request.clone()))
            .collect()
    }
}

impl GroupCoordinator {
    /// Refreshes `strata_group_*` from the summaries the active shards last published and the
    /// high watermarks of the partitions this broker leads. Called at scrape time.
    pub fn sync_metrics(&self) {
        let summaries: Vec<Arc<Vec<GroupSummary>>> = match self.shards.lock() {
            Ok(shards) => shards
                .values()
                .filter(|h| h.status() == ACTIVE)
                .map(ShardHandle::summary)
                .collect(),
            Err(_) => return,
        };
        let groups = || summaries.iter().flat_map(|s| s.iter());
        let m = &self.ctx.metrics;
        for state in GroupState::ALL {
            let n = groups().filter(|g| g.state == state).count();
            m.groups.with_label_values(&[state.name()]).set(n as i64);
        }
        m.members
            .set(groups().map(|g| g.members).sum::<usize>() as i64);

        let max_series = self
            .ctx
            .metadata
            .node_config()
            .get_i64("metrics.group.lag.max.series")
            .max(0) as usize;
        let lag = lag::consumer_lag(
            groups(),
            |tp| {
                self.ctx
                    .replicas
                    .get(tp)
                    .filter(|p| p.is_leader())
                    .map(|p| p.high_watermark())
            },
            max_series,
        );
        let Ok(mut exported) = self.exported_lag.lock() else {
            return;
        };
        let mut now = ExportedLag::default();
        for p in &lag.partitions {
            m.consumer_lag
                .with_label_values(&[&p.group, &p.tp.topic, &p.tp.partition.to_string()])
                .set(p.lag_records);
            now.partitions.insert((p.group.clone(), p.tp.clone()));
        }
        for (group, tp) in exported.partitions.difference(&now.partitions) {
            let _ =
                m.consumer_lag
                    .remove_label_values(&[group, &tp.topic, &tp.partition.to_string()]);
        }
        for (group, sum) in &lag.group_sums_records {
            m.consumer_lag_sum.with_label_values(&[group]).set(*sum);
            now.groups.insert(group.clone());
        }
        for group in exported.groups.difference(&now.groups) {
            let _ = m.consumer_lag_sum.remove_label_values(&[group]);
        }
        m.lag_series_dropped.set(lag.dropped as i64);
        *exported = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_kafka() {
        assert_eq!(java_string_hashcode(""), 0);
        assert_eq!(java_string_hashcode("a"), 97);
        assert_eq!(java_string_hashcode("ab"), 97 * 31 + 98);
        assert_eq!(java_string_hashcode("hello"), 99162322);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE; Utils.abs maps it to 0.
        assert_eq!(java_string_hashcode("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // Beyond the BMP: hashed as two UTF-16 surrogates, like Java.
        assert_eq!(java_string_hashcode("\u{1F600}"), 0xD83D * 31 + 0xDE00);
        for g in ["g", "group-1", "console-consumer-12345"] {
            let p = partition_for(g, 50);
            assert!((0..50).contains(&p));
        }
    }
}
