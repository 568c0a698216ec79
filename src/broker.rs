//! `Broker`: the node's parts wired together — config, controller, logs, replicas — and the
//! task that keeps the replicas in line with the metadata image.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::{Listener, NodeConfig};
use crate::controller::isr::{decide_alter_partition, AlterPartition};
use crate::controller::{
    Controller, ControllerError, ControllerSettings, MetadataImage, MetadataRecord,
};
use crate::group::{GroupCoordinator, GroupCoordinatorContext};
use crate::log::remote::{RemoteLogManager, RemoteLogManagerConfig};
use crate::log::{LogConfig, LogError, LogManager};
use crate::metrics::Metrics;
use crate::model::BrokerId;
use crate::net::Network;
use crate::quota::manager::QuotaManagers;
use crate::quota::QuotaWindow;
use crate::replication::{
    effective_node_config, FetcherSettings, IsrProposal, Partition, ReplicaFetcherManager,
    ReplicaManager,
};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    MetaProperties(#[from] crate::log::meta_properties::MetaPropertiesError),
    #[error("{path} is not formatted: a node of a multi-node cluster starts only after `strata format --cluster-id ID` (or with cluster.id set)")]
    Unformatted { path: PathBuf },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("tiered storage: {0}")]
    Tiering(#[from] strata_tiering::TieringError),
}

/// How many producer ids a broker takes from the controller at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

#[derive(Debug)]
pub struct Broker {
    pub node_id: BrokerId,
    pub cluster_id: String,
    pub advertised: Listener,
    pub controller: Arc<Controller>,
    pub replicas: Arc<ReplicaManager>,
    /// Consumer groups and committed offsets, over `__consumer_offsets`.
    pub groups: Arc<GroupCoordinator>,
    pub clock: SharedClock,
    pub shutdown: CancellationToken,
    pub metrics: Arc<Metrics>,
    /// Tiered storage: uploads, remote reads, remote retention.
    pub remote: Arc<RemoteLogManager>,
    /// Whether the tiered store passed its startup probe (see [`Broker::readiness`]).
    pub remote_store: Arc<strata_tiering::StoreHealth>,
    /// Client byte-rate quotas: the rates of clients under a quota, per kind.
    pub quotas: QuotaManagers,
    node: NodeConfig,
    /// This run's registration.
    incarnation: uuid::Uuid,
    // Short section: hand out the next id of the current block.
    producer_ids: Mutex<(i64, i64)>,
}

impl Broker {
    /// Opens the data directories, replays metadata, recovers the logs, registers this broker
    /// and starts following the metadata image.
    pub async fn start(
        node: NodeConfig,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Broker>, BrokerError> {
        Self::start_with_network(node, clock, metrics, shutdown, crate::net::tokio_network()).await
    }

    /// [`Broker::start`] with the controller RPC over `net`.
    pub async fn start_with_network(
        node: NodeConfig,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        net: Arc<dyn Network>,
    ) -> Result<Arc<Broker>, BrokerError> {
        let node_id = node.node_id();
        let log_dirs = node.log_dirs();
        let mut cluster_id = node.get("cluster.id").to_string();
        for dir in &log_dirs {
            std::fs::create_dir_all(dir).map_err(|source| BrokerError::Io {
                path: dir.clone(),
                source,
            })?;
            if cluster_id.is_empty()
                && !dir.join("meta.properties").exists()
                && node
                    .get("controller.quorum.voters")
                    .split(',')
                    .filter(|v| !v.trim().is_empty())
                    .count()
                    > 1
            {
                return Err(BrokerError::Unformatted { path: dir.clone() });
            }
            cluster_id = crate::log::meta_properties::check_or_write(dir, node_id, &cluster_id)?;
        }
        let settings = ControllerSettings::from_node(&node)?;
        let controller = Controller::open(
            &log_dirs[0].join("__cluster_metadata"),
            settings,
            net.clone(),
            None,
            shutdown.child_token(),
        )
        .await?;

        // Register before opening the logs: the image is then at least as new as the
        // registration, so no partition this broker already holds looks deleted.
        let advertised = node.advertised_listener()?;
        let rack = Some(node.get("broker.rack"))
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        let incarnation = uuid::Uuid::new_v4();
        let registration = MetadataRecord::RegisterBroker {
            broker_id: node_id,
            incarnation,
            host: advertised.host.clone(),
            port: advertised.port,
            rack,
        };
        loop {
            match controller
                .commit(|_| Ok(((), vec![registration.clone()])))
                .await
            {
                Ok(_) => break,
                Err(ControllerError::NotController { leader }) if !shutdown.is_cancelled() => {
                    tracing::info!(?leader, "waiting for an active controller to register with");
                }
                Err(e) => return Err(e.into()),
            }
        }
        let image = controller.image();
        let config_for = |topic: &str| topic_log_config(&node, &image, topic);
        let logs = Arc::new(crate::runtime::block_in_place(|| {
            LogManager::open(log_dirs.clone(), clock.clone(), &config_for)
        })?);
        logs.checkpoint_interval_ms.store(
            node.get_i64("log.flush.offset.checkpoint.interval.ms")
                .max(1) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        logs.retention_check_interval_ms.store(
            node.get_i64("log.retention.check.interval.ms").max(1) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let replicas = Arc::new(ReplicaManager::new(node_id, logs.clone(), clock.clone()));
        let (remote, remote_store) =
            start_remote_log_manager(&node, &log_dirs, &clock, &metrics, &shutdown)?;
        replicas.set_remote_log_manager(remote.clone());
        replicas.set_fetcher_manager(ReplicaFetcherManager::new(
            node_id,
            net.clone(),
            fetcher_settings(&node),
            shutdown.child_token(),
        ));
        crate::runtime::block_in_place(|| replicas.apply_image(&image, &node))?;
        remote.recover_partitions(replicas.as_ref()).await;

        let quotas = QuotaManagers::new(quota_window(&node), &metrics.quota);
        let broker = Arc::new(Broker {
            node_id,
            cluster_id,
            advertised,
            controller: controller.clone(),
            replicas: replicas.clone(),
            groups: Arc::new(GroupCoordinator::new(GroupCoordinatorContext {
                controller: controller.clone(),
                replicas: replicas.clone(),
                node: node.clone(),
                clock: clock.clone(),
                shutdown: shutdown.clone(),
                metrics: metrics.groups.clone(),
            })),
            clock,
            shutdown: shutdown.clone(),
            metrics,
            remote: remote.clone(),
            remote_store,
            quotas,
            node,
            incarnation,
            producer_ids: Mutex::new((0, 0)),
        });
        broker.follow_metadata();
        broker.send_heartbeats();
        broker.maintain_isr();
        broker.groups.start();
        logs.start_background(shutdown);
        remote.start(replicas.clone());
        Ok(broker)
    }

    fn follow_metadata(self: &Arc<Self>) {
        let broker = self.clone();
        let mut rx = self.controller.subscribe();
        tokio::spawn(async move {
            loop {
                let image = rx.borrow_and_update().clone();
                let b = broker.clone();
                let applied =
                    tokio::task::spawn_blocking(move || b.replicas.apply_image(&image, &b.node))
                        .await;
                match applied {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "applying the metadata image failed"),
                    Err(e) => tracing::error!(error = %e, "metadata apply task failed"),
                }
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { break },
                    () = broker.shutdown.cancelled() => break,
                }
            }
        });
    }

    /// Heartbeats to the active controller every `broker.heartbeat.interval.ms`, and at once
    /// when Raft names a new one: a new active controller knows no sessions and fences brokers
    /// it has not heard from within its election grace.
    fn send_heartbeats(self: &Arc<Self>) {
        let broker = self.clone();
        tokio::spawn(async move {
            let every = broker.controller.settings().broker_heartbeat_interval;
            let mut was_fenced = false;
            loop {
                let controller = broker.controller.leader_id();
                let heartbeat = broker
                    .controller
                    .heartbeat(broker.node_id, broker.incarnation)
                    .await;
                if let Ok(fenced) = heartbeat {
                    if fenced != was_fenced {
                        tracing::info!(fenced, "broker fencing changed");
                    }
                    was_fenced = fenced;
                }
                // Fenced brokers heartbeat faster so they are unfenced soon after they return;
                // a failed heartbeat (no active controller, or a new one) is retried soon, so a
                // newly elected controller hears from this broker within its election grace.
                let wait = match heartbeat {
                    Err(e) => {
                        tracing::debug!(error = %e, "heartbeat to the active controller failed");
                        (every / 5).max(std::time::Duration::from_millis(20))
                    }
                    Ok(_) if was_fenced => every / 4,
                    Ok(_) => every,
                };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = broker.controller.leader_changed(controller) => {}
                    () = broker.shutdown.cancelled() => return,
                }
            }
        });
    }

    /// On partitions led here: sends ISR changes to the controller as they come due (checked
    /// every quarter of `replica.lag.time.max.ms`, at most every 500 ms), and checkpoints high
    /// watermarks every `replica.high.watermark.checkpoint.interval.ms`.
    fn maintain_isr(self: &Arc<Self>) {
        let broker = self.clone();
        tokio::spawn(async move {
            let mut last_checkpoint = tokio::time::Instant::now();
            loop {
                let node = broker.node_config();
                let lag_max_ms = node.get_i64("replica.lag.time.max.ms").max(1);
                let tick = Duration::from_millis((lag_max_ms as u64 / 4).clamp(10, 500));
                let checkpoint_every = Duration::from_millis(
                    node.get_i64("replica.high.watermark.checkpoint.interval.ms")
                        .max(100) as u64,
                );
                tokio::select! {
                    () = tokio::time::sleep(tick) => {}
                    () = broker.shutdown.cancelled() => break,
                }
                for (partition, proposal) in broker.replicas.isr_proposals(lag_max_ms) {
                    let b = broker.clone();
                    tokio::spawn(async move { b.alter_partition(&partition, proposal).await });
                }
                if last_checkpoint.elapsed() >= checkpoint_every {
                    last_checkpoint = tokio::time::Instant::now();
                    let b = broker.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        b.replicas.checkpoint_high_watermarks()
                    })
                    .await;
                }
            }
            let b = broker.clone();
            let _ =
                tokio::task::spawn_blocking(move || b.replicas.checkpoint_high_watermarks()).await;
        });
    }

    /// Sends one ISR change to the controller (Kafka's AlterPartition). The image brings the
    /// outcome; a refusal (an older registration, a fenced replica) just allows a new proposal.
    async fn alter_partition(&self, partition: &Partition, proposal: IsrProposal) {
        let req = AlterPartition {
            topic_id: proposal.topic_id,
            partition: partition.tp.partition,
            leader: self.node_id,
            leader_epoch: proposal.leader_epoch,
            partition_epoch: proposal.partition_epoch,
            new_isr: proposal.new_isr.clone(),
        };
        let old_isr = partition.state().isr;
        match self
            .controller
            .commit(|image| Ok(((), decide_alter_partition(image, &req)?)))
            .await
        {
            Ok(_) => {
                let (shrank, grew) = (
                    old_isr.iter().any(|b| !req.new_isr.contains(b)),
                    req.new_isr.iter().any(|b| !old_isr.contains(b)),
                );
                let m = &self.metrics.replication;
                if shrank {
                    m.isr_shrinks.inc();
                }
                if grew {
                    m.isr_expands.inc();
                }
                tracing::info!(partition = %partition.tp, from = ?old_isr, to = ?req.new_isr, "ISR changed");
            }
            Err(e) => {
                tracing::info!(partition = %partition.tp, to = ?req.new_isr, error = %e, "ISR change refused");
                partition.isr_proposal_failed();
            }
        }
    }

    /// Controlled shutdown: asks the active controller to move this broker's leaderships to
    /// other in-sync replicas and waits for it (bounded by `controlled.shutdown.timeout.ms`).
    /// A no-op for a lone broker, whose partitions have nowhere to go.
    pub async fn controlled_shutdown(&self) -> Result<(), ControllerError> {
        let image = self.image();
        let others = image
            .brokers
            .values()
            .any(|b| b.broker_id != self.node_id && !b.fenced);
        if self.node.get("controlled.shutdown.enable") != "true" || !others {
            return Ok(());
        }
        let timeout = std::time::Duration::from_millis(
            self.node.get_i64("controlled.shutdown.timeout.ms").max(0) as u64,
        );
        tracing::info!("controlled shutdown: moving leaderships away");
        self.controller
            .controlled_shutdown(self.node_id, timeout)
            .await
    }

    /// Stops the Raft node (after [`Broker::close`]).
    pub async fn stop_controller(&self) {
        self.controller.shutdown().await;
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.controller.image()
    }

    /// The node config with dynamic broker configs applied.
    pub fn node_config(&self) -> NodeConfig {
        effective_node_config(&self.node, &self.image())
    }

    /// The node config as started, without dynamic changes.
    pub fn static_node_config(&self) -> &NodeConfig {
        &self.node
    }

    /// Commits a decision and waits until this broker's replicas reflect it. `decide` may run
    /// more than once: again whenever the image moved before its records were committed.
    pub async fn commit<T>(
        &self,
        decide: impl FnMut(&MetadataImage) -> Result<(T, Vec<MetadataRecord>), ControllerError>,
    ) -> Result<T, ControllerError> {
        let (value, image) = self.controller.commit(decide).await?;
        // The task that applies images stops at shutdown; a request in flight then must not wait
        // for an apply that will never come (it would hold graceful shutdown for 30 s).
        tokio::select! {
            () = self.replicas.wait_applied(image.offset) => {}
            () = self.shutdown.cancelled() => {}
        }
        Ok(value)
    }

    /// A producer id unique in the cluster, taken from this broker's current block.
    pub async fn next_producer_id(&self) -> Result<i64, ControllerError> {
        if let Some(id) = self.take_producer_id() {
            return Ok(id);
        }
        let first = self
            .controller
            .allocate_producer_ids(self.node_id, PRODUCER_ID_BLOCK)
            .await?;
        if let Ok(mut ids) = self.producer_ids.lock() {
            *ids = (first + 1, first + PRODUCER_ID_BLOCK);
        }
        Ok(first)
    }

    fn take_producer_id(&self) -> Option<i64> {
        let mut ids = self.producer_ids.lock().ok()?;
        if ids.0 < ids.1 {
            ids.0 += 1;
            Some(ids.0 - 1)
        } else {
            None
        }
    }

    /// Refreshes the gauges that are read off the replicas, then renders every metric.
    pub fn render_metrics(&self) -> String {
        let m = &self.metrics.topics;
        let image = self.image();
        let min_isr_default = self.node_config().get_i32("min.insync.replicas").max(1) as usize;
        let (mut partitions, mut leaders, mut under_replicated, mut under_min_isr) = (0, 0, 0, 0);
        let mut per_topic: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        for p in self.replicas.all() {
            partitions += 1;
            let state = p.state();
            if state.leader == self.node_id {
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
        m.partitions.set(partitions);
        m.leaders.set(leaders);
        m.under_replicated.set(under_replicated);
        m.under_min_isr.set(under_min_isr);
        self.metrics
            .replication
            .follower_fetchers
            .set(self.replicas.fetcher_count() as i64);
        m.offline.set(offline as i64);
        m.log_size.reset();
        m.log_segments.reset();
        for (topic, (bytes, segments)) in per_topic {
            m.log_size.with_label_values(&[&topic]).set(bytes as i64);
            m.log_segments
                .with_label_values(&[&topic])
                .set(segments as i64);
        }
        self.remote.sync_metrics();
        self.controller.sync_metrics(&self.metrics.controller);
        self.groups.sync_metrics();
        self.metrics.render()
    }

    /// What `/ready` answers once the broker has started: `Ok`, or why it is not ready, on one
    /// line (today: the tiered store has not passed its startup probe).
    pub fn readiness(&self) -> Result<(), String> {
        self.remote_store.readiness()
    }

    /// Flushes and closes every log.
    pub fn close(&self) -> Result<(), LogError> {
        self.replicas.logs().shutdown()
    }
}

/// The storage config of `topic` as the image and node config say.
pub fn topic_log_config(node: &NodeConfig, image: &MetadataImage, topic: &str) -> LogConfig {
    let node = effective_node_config(node, image);
    image
        .topic_by_name(topic)
        .map(|t| t.config.log_config(&node).for_topic(topic))
        .unwrap_or_else(|| Default::default())
}

/// Builds the object store named by `remote.storage.uri` (default: `{first log dir}/remote`)
/// and the remote log manager over it, with its chunk cache in `{first log dir}/remote-cache`.
fn start_remote_log_manager(
    node: &NodeConfig,
    log_dirs: &[PathBuf],
    clock: &SharedClock,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<(Arc<RemoteLogManager>, Arc<strata_tiering::StoreHealth>), BrokerError> {
    use strata_tiering::{ProbePolicy, RemoteStorage, StorageConfig, StoreHealth};
    let first = log_dirs
        .first()
        .cloned()
        .unwrap_or_else(|| PathBuf::from("."));
    let storage = StorageConfig::parse(
        node.get("remote.storage.uri"),
        &first.join("remote"),
        node.get("remote.storage.s3.endpoint"),
        node.get("remote.storage.s3.region"),
        match node.get("remote.storage.s3.path.style") {
            "" => None,
            v => Some(v == "true"),
        },
    )?
    .build()?;
    tracing::info!(store = %storage.describe(), location = %storage.location(), "tiered storage");
    let health = Arc::new(StoreHealth::new(storage.location().clone()));
    let storage: Arc<dyn RemoteStorage> = Arc::new(storage);
    // The broker keeps running when the store fails its probe: it still serves and replicates
    // local data, an outage at startup is no different from one later (uploads wait, counted
    // as errors), and a bucket created afterwards is picked up without a restart. What the
    // operator needs is the reason, in one line: the probe logs it once and `/ready` answers
    // 503 with it until the store passes.
    tokio::spawn(strata_tiering::watch_store(
        storage.clone(),
        health.clone(),
        ProbePolicy::default(),
        shutdown.child_token(),
    ));
    let manager = RemoteLogManager::new(
        storage,
        first.join("remote-cache"),
        RemoteLogManagerConfig::from_node(node),
        clock.clone(),
        metrics.tiering.clone(),
        shutdown.clone(),
    )?;
    Ok((manager, health))
}

/// `quota.window.num` samples of `quota.window.size.seconds`.
fn quota_window(node: &NodeConfig) -> QuotaWindow {
    QuotaWindow {
        num: node.get_i32("quota.window.num").max(1) as u32,
        size_ms: node.get_i32("quota.window.size.seconds").max(1) as u64 * 1000,
    }
}

fn fetcher_settings(node: &NodeConfig) -> FetcherSettings {
    FetcherSettings {
        max_wait: Duration::from_millis(node.get_i32("replica.fetch.wait.max.ms").max(0) as u64),
        partition_max_bytes: node.get_i32("replica.fetch.max.bytes").max(1),
        response_max_bytes: node.get_i32("replica.fetch.response.max.bytes").max(1),
        backoff: Duration::from_millis(node.get_i64("replica.fetch.backoff.ms").max(0) as u64),
    }
}

/// `strata format`: writes `meta.properties` with `cluster_id` into every log dir of `node`;
/// a dir already formatted for the same cluster and node is left alone, one of another refused.
pub fn format_log_dirs(node: &NodeConfig, cluster_id: &str) -> Result<Vec<PathBuf>, BrokerError> {
    if cluster_id.is_empty() {
        return Err(BrokerError::Config(
            crate::config::ConfigError::InvalidValue {
                key: "cluster.id".into(),
                value: String::new(),
                reason: "the cluster id must not be empty".into(),
            },
        ));
    }
    let dirs = node.log_dirs();
    for dir in &dirs {
        std::fs::create_dir_all(dir).map_err(|source| BrokerError::Io {
            path: dir.clone(),
            source,
        })?;
        crate::log::meta_properties::check_or_write(dir, node.node_id(), cluster_id)?;
    }
    Ok(dirs)
}
