//! `Broker`: the node's parts wired together — config, controller, logs, replicas — and the
//! task that keeps the replicas in line with the metadata image.

mod log_dirs;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::client::InterBrokerNet;
use crate::clock::SharedClock;
use crate::config::{Listener, NodeConfig};
use crate::controller::broker_lifecycle::spawn_heartbeats;
use crate::controller::decide_bootstrap_credentials;
use crate::controller::producer_ids::ProducerIdManager;
use crate::controller::ControllerMetrics;
use crate::controller::{
    BrokerEndpoint, Controller, ControllerError, ControllerSettings, MetadataImage, MetadataRecord,
    TopicDefaults,
};
use crate::group::GroupMetrics;
use crate::group::{GroupCoordinator, GroupCoordinatorContext};
use crate::handlers::fetch_session::{
    FetchSessionCache, FetchSessionCacheConfig, FetchSessionMetrics,
};
use crate::handlers::ApiMetrics;
use crate::handlers::KafkaApis;
use crate::log::remote::{RemoteLogManager, RemoteLogManagerConfig, TieringMetrics};
use crate::log::{LogConfig, LogError, LogManager};
use crate::metrics::Metrics;
use crate::model::BrokerId;
use crate::net::Network;
use crate::quota::manager::QuotaManagers;
use crate::quota::QuotaMetrics;
use crate::quota::QuotaWindow;
use crate::replication::alter_partition::spawn_isr_maintenance;
use crate::replication::mirror::{MirrorFetcherManager, MirrorMetrics};
use crate::replication::{
    effective_node_config, FetcherSettings, MetadataClient, ReplicaFetcherManager, ReplicaManager,
};
use crate::replication::{BrokerTopicMetrics, ReplicationMetrics};
use crate::sasl::scram::BootstrapCredential;
use crate::sasl::{ScramCredential, ScramMechanism};
use crate::security::{authorizer_settings, Authorizer};
use crate::server::ServerMetrics;
use crate::txn::markers::MarkerChannel;
use crate::txn::{TransactionCoordinator, TxnCoordinatorContext, TxnMetrics};

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
    #[error("TLS of {what}: {source}")]
    Tls {
        what: String,
        #[source]
        source: crate::net::tls::TlsError,
    },
}

/// The networks of the controller RPC and of the replica fetchers: `net` itself, or `net`
/// wrapped in TLS when the controller listener or the inter-broker listener is SSL. Each side
/// verifies its peer against that listener's truststore and presents that listener's
/// certificate, so brokers authenticate one another (mTLS when the listener sets
/// `ssl.client.auth=required`).
fn secured_networks(
    node: &NodeConfig,
    net: Arc<dyn Network>,
) -> Result<SecuredNetworks, BrokerError> {
    use crate::net::tls::{TlsClient, TlsNetwork, TlsServer};
    let tls_error = |what: String| move |source| BrokerError::Tls { what, source };
    let controller_net: Arc<dyn Network> = match node.controller_listener_names().first() {
        Some(name) if node.controller_security_protocol()?.uses_tls() => {
            let what = format!("the controller listener {name}");
            let settings = node.tls_settings(name);
            Arc::new(TlsNetwork {
                inner: net.clone(),
                client: Some(Arc::new(
                    TlsClient::new(settings.clone()).map_err(tls_error(what.clone()))?,
                )),
                server: Some(Arc::new(TlsServer::new(settings).map_err(tls_error(what))?)),
            })
        }
        _ => net.clone(),
    };
    let inter_broker = node.inter_broker_listener()?;
    let replication_net: Arc<dyn Network> = if inter_broker.info.security_protocol.uses_tls() {
        let name = &inter_broker.info.name;
        let client = TlsClient::new(node.tls_settings(name))
            .map_err(tls_error(format!("the inter-broker listener {name}")))?;
        Arc::new(TlsNetwork {
            inner: net,
            client: Some(Arc::new(client)),
            server: None,
        })
    } else {
        net
    };
    Ok(SecuredNetworks {
        controller: controller_net,
        replication: replication_net,
    })
}

/// The networks of the controller RPC and of the replica fetchers.
struct SecuredNetworks {
    controller: Arc<dyn Network>,
    replication: Arc<dyn Network>,
}

#[derive(Debug)]
pub struct Broker {
    pub node_id: BrokerId,
    pub cluster_id: String,
    /// The inter-broker listener's advertised address, which this broker registers as its own.
    pub advertised: Listener,
    pub controller: Arc<Controller>,
    pub replicas: Arc<ReplicaManager>,
    /// Consumer groups and committed offsets, over `__consumer_offsets`.
    pub groups: Arc<GroupCoordinator>,
    pub clock: SharedClock,
    pub shutdown: CancellationToken,
    pub metrics: BrokerMetrics,
    /// Tiered storage: uploads, remote reads, remote retention.
    pub remote: Arc<RemoteLogManager>,
    /// Whether the tiered store passed its startup probe (see [`Broker::readiness`]).
    pub remote_store: Arc<strata_tiering::StoreHealth>,
    /// The image, the effective node config, and commits that wait until applied here.
    pub metadata: MetadataClient,
    /// What request handlers reach; the server hands it to every request.
    pub apis: Arc<KafkaApis>,
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
        let cluster_id = log_dirs::prepare(&log_dirs, &node)?;
        let settings = ControllerSettings::from_node(&node)?;
        // Source clusters of mirror links are reached over the plain network: a link carries
        // its own security settings.
        let source_net = net.clone();
        let SecuredNetworks {
            controller: controller_net,
            replication: replication_net,
        } = secured_networks(&node, net)?;
        let controller = Controller::open(
            &log_dirs[0].join("__cluster_metadata"),
            settings,
            controller_net,
            None,
            shutdown.child_token(),
        )
        .await?;

        // Register before opening the logs: the image is then at least as new as the
        // registration, so no partition this broker already holds looks deleted.
        let listeners = node.kafka_listeners()?;
        let advertised = node.inter_broker_listener()?.advertised;
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
            endpoints: listeners
                .iter()
                .map(|l| BrokerEndpoint {
                    listener: l.info.name.clone(),
                    host: l.advertised.host.clone(),
                    port: l.advertised.port,
                    security_protocol: l.info.security_protocol,
                })
                .collect(),
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
        logs.set_intervals(|key| node.get_i64(key));
        logs.set_disk_pressure(node.disk_pressure()?);
        halt_when_all_log_dirs_offline(&logs, &shutdown);
        let replicas = Arc::new(ReplicaManager::new(node_id, logs.clone(), clock.clone()));
        let metrics = BrokerMetrics::register(metrics);
        let (remote, remote_store) =
            start_remote_log_manager(&node, &log_dirs, &clock, &metrics.tiering, &shutdown)?;
        replicas.set_remote_log_manager(remote.clone());
        // The cluster's own brokers, as the transaction coordinator and the mirror links'
        // group offset sync reach them.
        let brokers = InterBrokerNet {
            net: replication_net.clone(),
            sasl: node.inter_broker_sasl()?,
        };
        replicas.set_fetcher_manager(ReplicaFetcherManager::new(
            node_id,
            replication_net,
            fetcher_settings(&node)?,
            shutdown.child_token(),
            metrics.replication.clone(),
        ));
        replicas.set_mirror_fetcher_manager(MirrorFetcherManager::new(
            source_net.clone(),
            controller.clone(),
            metrics.mirror.clone(),
            clock.clone(),
            shutdown.child_token(),
        ));
        controller.clone().spawn_mirror_duty(
            cluster_id.clone(),
            TopicDefaults {
                num_partitions: node.get_i32("num.partitions"),
                replication_factor: node.get_i32("default.replication.factor") as i16,
            },
            source_net,
            brokers.clone(),
        );
        match crate::runtime::block_in_place(|| replicas.apply_image(&image, &node)) {
            // Partitions of a dir that failed at startup are reported offline, not fatal.
            Err(LogError::LogDirOffline { .. }) => {}
            r => r?,
        }
        remote.recover_partitions(replicas.as_ref()).await;

        let quotas = QuotaManagers::new(quota_window(&node), &metrics.quota);
        let metadata = MetadataClient::new(
            controller.clone(),
            replicas.clone(),
            node.clone(),
            shutdown.clone(),
        );
        let groups = Arc::new(GroupCoordinator::new(GroupCoordinatorContext {
            metadata: metadata.clone(),
            replicas: replicas.clone(),
            clock: clock.clone(),
            shutdown: shutdown.clone(),
            metrics: metrics.groups.clone(),
        }));
        let txns = Arc::new(TransactionCoordinator::new(TxnCoordinatorContext {
            metadata: metadata.clone(),
            replicas: replicas.clone(),
            markers: MarkerChannel {
                metadata: metadata.clone(),
                brokers: brokers.clone(),
                replicas: replicas.clone(),
                groups: groups.clone(),
                clients: Default::default(),
            },
            clock: clock.clone(),
            shutdown: shutdown.clone(),
            metrics: metrics.txns.clone(),
        }));
        let apis = Arc::new(KafkaApis {
            node_id,
            cluster_id: cluster_id.clone(),
            metadata: metadata.clone(),
            controller: controller.clone(),
            replicas: replicas.clone(),
            groups: groups.clone(),
            txns: txns.clone(),
            txn_verifications: Default::default(),
            quotas,
            producer_ids: ProducerIdManager::new(controller.clone(), node_id),
            fetch_sessions: FetchSessionCache::new(
                fetch_session_cache_config(&node),
                metrics.fetch_sessions.clone(),
            ),
            authorizer: Authorizer::new(authorizer_settings(&node), &metrics.registry.registry),
            metrics: ApiMetrics {
                topics: metrics.topics.clone(),
            },
            clock: clock.clone(),
            shutdown: shutdown.clone(),
        });
        let broker = Arc::new(Broker {
            node_id,
            cluster_id,
            advertised,
            controller: controller.clone(),
            replicas: replicas.clone(),
            groups,
            clock,
            shutdown: shutdown.clone(),
            metrics: metrics.clone(),
            remote: remote.clone(),
            remote_store,
            metadata: metadata.clone(),
            apis,
        });
        broker.follow_metadata();
        spawn_bootstrap_scram(&node, &broker)?;
        spawn_heartbeats(
            controller.clone(),
            node_id,
            incarnation,
            broker.apis.quotas.shared.clone(),
            Arc::clone(&logs),
            broker.clock.clone(),
            shutdown.clone(),
        );
        spawn_isr_maintenance(
            node_id,
            replicas.clone(),
            metadata,
            metrics.replication.clone(),
            shutdown.clone(),
        );
        broker.groups.start();
        broker.groups.start_offsets_export(
            remote.storage().clone(),
            node.get_i64("remote.group.offsets.export.interval.ms")
                .max(0) as u64,
            shutdown.child_token(),
        );
        txns.start();
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
                let applied = tokio::task::spawn_blocking(move || {
                    b.replicas.apply_image(&image, b.static_node_config())
                })
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

    /// Controlled shutdown: asks the active controller to move this broker's leaderships to
    /// other in-sync replicas and waits for it (bounded by `controlled.shutdown.timeout.ms`).
    /// A no-op for a lone broker, whose partitions have nowhere to go.
    pub async fn controlled_shutdown(&self) -> Result<(), ControllerError> {
        let image = self.image();
        let others = image
            .brokers
            .values()
            .any(|b| b.broker_id != self.node_id && !b.fenced);
        if self.static_node_config().get("controlled.shutdown.enable") != "true" || !others {
            return Ok(());
        }
        let timeout = std::time::Duration::from_millis(
            self.static_node_config()
                .get_i64("controlled.shutdown.timeout.ms")
                .max(0) as u64,
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
        self.metadata.image()
    }

    /// The node config with dynamic broker configs applied.
    pub fn node_config(&self) -> NodeConfig {
        self.metadata.node_config()
    }

    /// The node config as started, without dynamic changes.
    pub fn static_node_config(&self) -> &NodeConfig {
        self.metadata.static_node_config()
    }

    /// Refreshes the gauges that each subsystem reads off its own state, then renders every
    /// metric.
    pub fn render_metrics(&self) -> String {
        let image = self.image();
        self.replicas.sync_metrics(
            &self.metrics.topics,
            &self.metrics.replication,
            &image,
            &self.node_config(),
        );
        self.remote.sync_metrics();
        self.controller.sync_metrics(&self.metrics.controller);
        self.groups.sync_metrics();
        self.apis.txns.sync_metrics();
        self.metrics.registry.render()
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
    let tier = node.get_bool("strata.remote.storage.internal.topics.enable");
    image
        .topic_by_name(topic)
        .map(|t| t.config.log_config(&node).for_topic(topic, tier))
        .unwrap_or_else(|| Default::default())
}

/// Builds the object store named by `remote.storage.uri` (default: `{first log dir}/remote`)
/// and the remote log manager over it, with its chunk cache in `{first log dir}/remote-cache`.
fn start_remote_log_manager(
    node: &NodeConfig,
    log_dirs: &[PathBuf],
    clock: &SharedClock,
    metrics: &TieringMetrics,
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
    let breaker = store_breaker_policy(node);
    let guarded: Arc<dyn RemoteStorage> = Arc::new(strata_tiering::BreakerStorage::new(
        storage.clone(),
        breaker,
    ));
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
    // The probe above talks to the store directly (it is its own health check); everything
    // else goes through the circuit breaker.
    let manager = RemoteLogManager::new(
        guarded,
        first.join("remote-cache"),
        remote_log_manager_config(node),
        clock.clone(),
        metrics.clone(),
        shutdown.clone(),
    )?;
    Ok((manager, health))
}

/// Every subsystem's metrics, registered once into the process's registry.
#[derive(Debug, Clone)]
pub struct BrokerMetrics {
    pub registry: Arc<Metrics>,
    pub server: Arc<ServerMetrics>,
    pub topics: BrokerTopicMetrics,
    pub replication: ReplicationMetrics,
    pub tiering: TieringMetrics,
    pub controller: ControllerMetrics,
    pub groups: GroupMetrics,
    pub txns: TxnMetrics,
    pub quota: QuotaMetrics,
    pub fetch_sessions: FetchSessionMetrics,
    pub mirror: MirrorMetrics,
}

impl BrokerMetrics {
    fn register(registry: Arc<Metrics>) -> BrokerMetrics {
        let r = &registry.registry;
        crate::net::tls::register_metrics(r);
        BrokerMetrics {
            server: Arc::new(ServerMetrics::new(r)),
            topics: BrokerTopicMetrics::new(r),
            replication: ReplicationMetrics::new(r),
            tiering: TieringMetrics::new(r),
            controller: ControllerMetrics::new(r),
            groups: GroupMetrics::new(r),
            txns: TxnMetrics::new(r),
            quota: QuotaMetrics::new(r),
            fetch_sessions: FetchSessionMetrics::new(r),
            mirror: MirrorMetrics::new(r),
            registry,
        }
    }
}

/// The remote log manager's settings from the node config.
fn remote_log_manager_config(node: &NodeConfig) -> RemoteLogManagerConfig {
    RemoteLogManagerConfig {
        task_interval_ms: node.get_i64("remote.log.manager.task.interval.ms").max(10) as u64,
        upload_concurrency: node.get_i32("remote.upload.concurrency").max(1) as usize,
        orphan_grace_ms: node.get_i64("remote.orphan.grace.ms").max(0),
        orphan_sweep_interval_ms: node.get_i64("remote.orphan.sweep.interval.ms").max(0),
        fetch_max_bytes: node.get_i32("remote.fetch.max.bytes").max(64 * 1024) as usize,
        cache_bytes: node.get_i64("remote.cache.bytes").max(0) as u64,
        cache_chunk_bytes: node.get_i32("remote.cache.chunk.bytes").max(4096) as u64,
        cache_memory_bytes: node.get_i64("remote.cache.memory.bytes").max(0) as u64,
        readahead_chunks: node.get_i32("remote.cache.readahead.chunks").max(0) as u64,
        readahead_max_chunks: node.get_i32("remote.fetch.read.ahead.max.chunks").max(0) as u64,
        fetch_concurrency: node.get_i32("remote.fetch.concurrency").max(1) as usize,
        fetch_max_bytes_per_second: node
            .get_i64("remote.log.manager.fetch.max.bytes.per.second")
            .max(0) as u64,
        compaction_interval_ms: node.get_i64("remote.compaction.interval.ms").max(10),
    }
}

/// `remote.storage.breaker.*`: the store's circuit breaker.
fn store_breaker_policy(node: &NodeConfig) -> strata_tiering::BreakerPolicy {
    let default = strata_tiering::BreakerPolicy::default();
    let open_max_ms = node.get_i64("remote.storage.breaker.open.max.ms").max(1) as u64;
    strata_tiering::BreakerPolicy {
        failure_threshold: node
            .get_i32("remote.storage.breaker.failure.threshold")
            .max(0) as u32,
        open_backoff: strata_tiering::Backoff {
            base: default
                .open_backoff
                .base
                .min(std::time::Duration::from_millis(open_max_ms)),
            max: std::time::Duration::from_millis(open_max_ms),
        },
        ..default
    }
}

/// `quota.window.num` samples of `quota.window.size.seconds`.
fn quota_window(node: &NodeConfig) -> QuotaWindow {
    QuotaWindow {
        num: node.get_i32("quota.window.num").max(1) as u32,
        size_ms: node.get_i32("quota.window.size.seconds").max(1) as u64 * 1000,
    }
}

fn fetch_session_cache_config(node: &NodeConfig) -> FetchSessionCacheConfig {
    FetchSessionCacheConfig {
        max_slots: node
            .get_i32("max.incremental.fetch.session.cache.slots")
            .max(0) as usize,
        eviction_ms: node
            .get_i64("min.incremental.fetch.session.eviction.ms")
            .max(0) as u64,
    }
}

fn fetcher_settings(node: &NodeConfig) -> Result<FetcherSettings, BrokerError> {
    Ok(FetcherSettings {
        max_wait: Duration::from_millis(node.get_i32("replica.fetch.wait.max.ms").max(0) as u64),
        partition_max_bytes: node.get_i32("replica.fetch.max.bytes").max(1),
        response_max_bytes: node.get_i32("replica.fetch.response.max.bytes").max(1),
        backoff: Duration::from_millis(node.get_i64("replica.fetch.backoff.ms").max(0) as u64),
        fetch_last_tiered_offset: node.get_bool("follower.fetch.last.tiered.offset.enable"),
        sasl: node.inter_broker_sasl()?,
    })
}

/// The file `strata format --add-scram` writes into the first log dir: the derived credentials
/// (salt, iterations, keys; never a password), created at the first start that can commit them.
pub const BOOTSTRAP_SCRAM_FILE: &str = "bootstrap-scram.json";

type BootstrapCredentials = Vec<(String, ScramMechanism, ScramCredential)>;

/// `strata format --add-scram`: writes the credentials for the first start to create.
pub fn write_bootstrap_scram(
    node: &NodeConfig,
    specs: &[BootstrapCredential],
) -> Result<PathBuf, BrokerError> {
    let dir = node.log_dirs().into_iter().next().unwrap_or_default();
    let path = dir.join(BOOTSTRAP_SCRAM_FILE);
    let credentials: BootstrapCredentials = specs
        .iter()
        .map(|c| (c.user.clone(), c.mechanism, c.credential()))
        .collect();
    let json = serde_json::to_vec_pretty(&credentials).unwrap_or_default();
    std::fs::write(&path, json).map_err(|source| BrokerError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Reads the bootstrap credentials (the format file and `sasl.scram.bootstrap.credentials.file`)
/// now, so a bad file stops the start, and commits those missing from the image in the
/// background (the controller may not be reachable yet). The format file is renamed once
/// applied; the config file is read at every start, creating only what is missing.
fn spawn_bootstrap_scram(node: &NodeConfig, broker: &Arc<Broker>) -> Result<(), BrokerError> {
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| BrokerError::Io { path, source }
    };
    let mut credentials: BootstrapCredentials = Vec::new();
    let formatted = node
        .log_dirs()
        .into_iter()
        .next()
        .map(|d| d.join(BOOTSTRAP_SCRAM_FILE))
        .filter(|p| p.exists());
    if let Some(path) = &formatted {
        let bytes = std::fs::read(path).map_err(io(path))?;
        let parsed: BootstrapCredentials = serde_json::from_slice(&bytes)
            .map_err(|e| io(path)(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        credentials.extend(parsed);
    }
    let file = node.get("sasl.scram.bootstrap.credentials.file");
    if !file.is_empty() {
        let path = PathBuf::from(file);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        {
            let c = BootstrapCredential::parse(line).map_err(|reason| {
                crate::config::ConfigError::InvalidValue {
                    key: "sasl.scram.bootstrap.credentials.file".into(),
                    value: format!("{file}:{}", n + 1),
                    reason,
                }
            })?;
            credentials.push((c.user.clone(), c.mechanism, c.credential()));
        }
    }
    if credentials.is_empty() {
        return Ok(());
    }
    let (metadata, shutdown) = (broker.metadata.clone(), broker.shutdown.clone());
    tokio::spawn(async move {
        // Bounded: a controller that stays unreachable this long is an outage to fix first.
        for attempt in 0..120u32 {
            match metadata
                .commit(|image| Ok(((), decide_bootstrap_credentials(image, &credentials))))
                .await
            {
                Ok(()) => {
                    let users: Vec<&str> = credentials.iter().map(|(u, _, _)| u.as_str()).collect();
                    tracing::info!(?users, "bootstrap SCRAM credentials present");
                    if let Some(path) = formatted {
                        let _ = std::fs::rename(&path, path.with_extension("json.applied"));
                    }
                    return;
                }
                Err(e) if attempt % 10 == 0 => {
                    tracing::warn!(error = %e, "bootstrap SCRAM credentials not committed yet; retrying")
                }
                Err(_) => {}
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = shutdown.cancelled() => return,
            }
        }
        tracing::error!("bootstrap SCRAM credentials could not be committed; create them with AlterUserScramCredentials");
    });
    Ok(())
}

/// Halts the process once every log dir is offline, as Kafka does ("all log dirs have
/// failed"): no partition can be served, and a halt (not a graceful shutdown, which would flush
/// and checkpoint onto the failed disks) gets the broker fenced so its leaderships move.
fn halt_when_all_log_dirs_offline(logs: &Arc<LogManager>, shutdown: &CancellationToken) {
    let failures = Arc::clone(logs.failures());
    let mut changes = failures.subscribe();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
            if failures.all_offline() {
                tracing::error!(
                    offline = ?failures.offline_dirs(),
                    "halting: every log dir is offline"
                );
                std::process::exit(1);
            }
        }
    });
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
        crate::log::checkpoint::create_dir_all_durable(dir).map_err(|source| BrokerError::Io {
            path: dir.clone(),
            source,
        })?;
        crate::log::meta_properties::check_or_write(dir, node.node_id(), cluster_id)?;
    }
    Ok(dirs)
}
