//! The transaction coordinator (Kafka's exactly-once), over `__transaction_state`.
//!
//! A transactional id belongs to partition `abs(hashCode(id)) % N` of `__transaction_state`
//! (the same hash as groups, `group::partition_for`), and the leader of that partition is its
//! coordinator. Each led partition has one [`shard`] task owning its transactional ids: it
//! rebuilds them by reading the partition when this broker gains leadership
//! (COORDINATOR_LOAD_IN_PROGRESS meanwhile), decides requests with the pure state machine in
//! [`state`], writes Kafka-format [`records`] with acks=all, and writes the commit or abort
//! markers on the transaction's partitions through [`markers`] (WriteTxnMarkers to each
//! partition's leader) before completing the transaction.
//!
//! The topic is compacted: the latest record per transactional id is all a load needs, and an
//! expired id is written as a tombstone.
//!
//! The coordinator sees the rest of the broker only through [`TxnCoordinatorContext`].

pub mod markers;
mod metadata;
mod metrics;
mod parked;
pub mod records;
pub mod shard;
pub mod state;
pub mod verification;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::NodeConfig;
use crate::controller::{
    decide_create_topic, BrokerRegistration, ControllerError, NewTopic, TopicDefaults,
};
use crate::group::{partition_for, CoordinatorError};
use crate::model::{PartitionIndex, TopicPartition};
use crate::replication::{MetadataClient, ReplicaManager};
use markers::MarkerChannel;
pub use metrics::TxnMetrics;
use shard::{Command, ShardHandle, ShardSettings, TxnReply, ACTIVE, LOADING, STOPPED};
pub use state::{TxnConfig, TxnError, TxnMetadata, TxnRequest, TxnResponse, TxnState, TV2};
use verification::TxnVerifier;

/// The internal topic holding the transactions' state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// What the coordinator needs of the rest of the broker. Built once, where the broker wires
/// its parts together.
#[derive(Clone)]
pub struct TxnCoordinatorContext {
    pub metadata: MetadataClient,
    pub replicas: Arc<ReplicaManager>,
    /// How markers reach partition leaders.
    pub markers: MarkerChannel,
    pub clock: SharedClock,
    pub shutdown: CancellationToken,
    pub metrics: TxnMetrics,
}

impl std::fmt::Debug for TxnCoordinatorContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnCoordinatorContext")
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct TransactionCoordinator {
    // Short sections only (look up, insert or remove a handle); never held across `.await`.
    shards: Mutex<HashMap<i32, ShardHandle>>,
    ctx: TxnCoordinatorContext,
    /// Partition leaders' questions to the coordinators on other brokers (KIP-890).
    verifier: Arc<TxnVerifier>,
}

impl TransactionCoordinator {
    pub fn new(ctx: TxnCoordinatorContext) -> TransactionCoordinator {
        let verifier = TxnVerifier::new(ctx.markers.metadata.clone(), ctx.markers.brokers.clone());
        TransactionCoordinator {
            shards: Mutex::new(HashMap::new()),
            verifier: Arc::new(verifier),
            ctx,
        }
    }

    /// `transaction.max.timeout.ms` and `transactional.id.expiration.ms` as configured now.
    pub fn config(node: &NodeConfig) -> TxnConfig {
        TxnConfig {
            max_timeout_ms: node.get_i32("transaction.max.timeout.ms").max(1),
            id_expiration_ms: node.get_i64("transactional.id.expiration.ms").max(1),
        }
    }

    fn settings(&self, node: &NodeConfig) -> ShardSettings {
        ShardSettings {
            config: Self::config(node),
            commit_timeout: Duration::from_millis(
                node.get_i64("offsets.commit.timeout.ms").max(1) as u64
            ),
            check_interval: Duration::from_millis(
                node.get_i64("transaction.abort.timed.out.transaction.cleanup.interval.ms")
                    .max(100) as u64,
            ),
            markers: self.ctx.markers.clone(),
            metrics: self.ctx.metrics.clone(),
        }
    }

    /// Follows the metadata image: starts a shard for every transaction state partition this
    /// broker leads (so prepared transactions complete after a failover without waiting for a
    /// client), and stops those of partitions it no longer leads.
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

    pub fn reconcile(&self) {
        let image = self.ctx.metadata.image();
        let Some(topic) = image.topic_by_name(TRANSACTION_STATE_TOPIC) else {
            return;
        };
        let led: Vec<_> = topic
            .partitions
            .keys()
            .filter_map(|i| {
                self.ctx
                    .replicas
                    .get(&TopicPartition::new(TRANSACTION_STATE_TOPIC, i.0))
            })
            .filter(|p| p.is_leader())
            .collect();
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
                tracing::info!(partition = index, "stopping transaction coordinator shard");
                h.stop.cancel();
            }
            keep
        });
        for p in led {
            shards.entry(p.tp.partition.0).or_insert_with(|| {
                tracing::info!(partition = %p.tp, "loading transaction coordinator shard");
                shard::spawn(
                    p.clone(),
                    self.settings(&node),
                    self.ctx.clock.clone(),
                    self.ctx.shutdown.child_token(),
                )
            });
        }
    }

    /// Creates `__transaction_state` if it does not exist yet.
    pub async fn ensure_state_topic(&self) -> Result<(), CoordinatorError> {
        let image = self.ctx.metadata.image();
        if image.topic_by_name(TRANSACTION_STATE_TOPIC).is_some() {
            return Ok(());
        }
        let node = self.ctx.metadata.node_config();
        let live = image.brokers.values().filter(|b| !b.fenced).count().max(1);
        // As for `__consumer_offsets`: a small cluster gets as many replicas as it has.
        let rf = node
            .get_i32("transaction.state.log.replication.factor")
            .clamp(1, live as i32) as i16;
        let min_isr = node
            .get_i32("transaction.state.log.min.isr")
            .clamp(1, i32::from(rf));
        let topic = NewTopic {
            name: TRANSACTION_STATE_TOPIC.to_string(),
            num_partitions: node.get_i32("transaction.state.log.num.partitions").max(1),
            replication_factor: rf,
            assignments: vec![],
            configs: vec![
                ("cleanup.policy".into(), Some("compact".into())),
                (
                    "segment.bytes".into(),
                    Some(node.get("transaction.state.log.segment.bytes").to_string()),
                ),
                ("min.insync.replicas".into(), Some(min_isr.to_string())),
                (
                    "unclean.leader.election.enable".into(),
                    Some("false".into()),
                ),
                ("compression.type".into(), Some("uncompressed".into())),
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
            Ok(_) => tracing::info!(
                partitions = topic.num_partitions,
                replication_factor = rf,
                "created {TRANSACTION_STATE_TOPIC}"
            ),
            Err(ControllerError::TopicExists(_)) => {}
            Err(e) => {
                return Err(CoordinatorError::NotAvailable(format!(
                    "cannot create {TRANSACTION_STATE_TOPIC}: {e}"
                )))
            }
        }
        self.reconcile();
        Ok(())
    }

    pub fn metrics(&self) -> &TxnMetrics {
        &self.ctx.metrics
    }

    /// Partition leaders' verification of transactions coordinated on other brokers.
    pub fn verifier(&self) -> &Arc<TxnVerifier> {
        &self.verifier
    }

    /// The broker that coordinates `transactional_id`, from the metadata image.
    pub fn coordinator_of(
        &self,
        transactional_id: &str,
    ) -> Result<BrokerRegistration, CoordinatorError> {
        let image = self.ctx.metadata.image();
        let topic = image
            .topic_by_name(TRANSACTION_STATE_TOPIC)
            .ok_or_else(|| {
                CoordinatorError::NotAvailable(format!(
                    "{TRANSACTION_STATE_TOPIC} does not exist yet"
                ))
            })?;
        let index = partition_for(transactional_id, topic.partitions.len() as i32);
        let reg = topic
            .partitions
            .get(&PartitionIndex(index))
            .ok_or_else(|| {
                CoordinatorError::NotAvailable(format!(
                    "{TRANSACTION_STATE_TOPIC}-{index} is missing"
                ))
            })?;
        image
            .brokers
            .get(&reg.leader)
            .filter(|b| !b.fenced)
            .cloned()
            .ok_or_else(|| {
                CoordinatorError::NotAvailable(format!(
                    "{TRANSACTION_STATE_TOPIC}-{index} has no leader"
                ))
            })
    }

    fn shard_for(&self, transactional_id: &str) -> Result<ShardHandle, CoordinatorError> {
        let image = self.ctx.metadata.image();
        let topic = image
            .topic_by_name(TRANSACTION_STATE_TOPIC)
            .ok_or(CoordinatorError::NotCoordinator)?;
        let index = partition_for(transactional_id, topic.partitions.len() as i32);
        let partition = self
            .ctx
            .replicas
            .get(&TopicPartition::new(TRANSACTION_STATE_TOPIC, index))
            .filter(|p| p.is_leader())
            .ok_or(CoordinatorError::NotCoordinator)?;
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
        let handle = shard::spawn(
            partition,
            self.settings(&self.ctx.metadata.node_config()),
            self.ctx.clock.clone(),
            self.ctx.shutdown.child_token(),
        );
        if let Some(old) = shards.insert(index, handle) {
            old.stop.cancel();
        }
        Err(CoordinatorError::LoadInProgress)
    }

    /// Queues `request` with the shard of `transactional_id`; the receiver yields the reply.
    pub fn call(
        &self,
        transactional_id: &str,
        request: TxnRequest,
    ) -> Result<oneshot::Receiver<TxnReply>, CoordinatorError> {
        let shard = self.shard_for(transactional_id)?;
        Self::send(&shard, request)
    }

    fn send(
        shard: &ShardHandle,
        request: TxnRequest,
    ) -> Result<oneshot::Receiver<TxnReply>, CoordinatorError> {
        let (tx, rx) = oneshot::channel();
        match shard.tx.try_send(Command { request, reply: tx }) {
            Ok(()) => Ok(rx),
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => Err(CoordinatorError::Busy),
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                Err(CoordinatorError::NotCoordinator)
            }
        }
    }

    /// Sends `request` to every shard this broker serves (ListTransactions). Fails if any is
    /// loading.
    pub fn call_all(
        &self,
        request: TxnRequest,
    ) -> Result<Vec<oneshot::Receiver<TxnReply>>, CoordinatorError> {
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

    /// Refreshes the open-transaction gauges from what the shards last published.
    pub fn sync_metrics(&self) {
        let Ok(shards) = self.shards.lock() else {
            return;
        };
        let active = shards.values().filter(|h| h.status() == ACTIVE);
        let open: i64 = active
            .clone()
            .map(|h| h.summary.open.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        let oldest = active
            .map(|h| {
                h.summary
                    .oldest_start_ms
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .filter(|s| *s >= 0)
            .min();
        self.ctx.metrics.open.set(open);
        self.ctx
            .metrics
            .oldest_open_age_seconds
            .set(oldest.map_or(0.0, |s| {
                (self.ctx.clock.now_ms() - s).max(0) as f64 / 1000.0
            }));
    }
}
