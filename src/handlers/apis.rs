//! [`KafkaApis`]: what request handlers reach of the broker.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::NodeConfig;
use crate::controller::producer_ids::ProducerIdManager;
use crate::controller::{Controller, ControllerError, MetadataImage, MetadataRecord};
use crate::group::GroupCoordinator;
use crate::model::BrokerId;
use crate::quota::manager::QuotaManagers;
use crate::replication::{BrokerTopicMetrics, MetadataClient, ReplicaManager};
use crate::security::Authorizer;
use crate::txn::TransactionCoordinator;

use super::fetch_session::FetchSessionCache;

/// One handle per subsystem a handler may use, as Kafka's `KafkaApis` is built from the replica
/// manager, the coordinators, the metadata cache and the quota managers. The broker builds it
/// at startup; handlers never see the broker itself, so the arrows run from the handlers down
/// to the subsystems and never back. A new subsystem that requests reach becomes a field here.
#[derive(Debug)]
pub struct KafkaApis {
    pub node_id: BrokerId,
    pub cluster_id: String,
    /// The image, the effective node config, and commits that wait until applied here.
    pub metadata: MetadataClient,
    /// The quorum itself: DescribeQuorum and who the active controller is.
    pub controller: Arc<Controller>,
    /// The partitions this broker holds, with their logs.
    pub replicas: Arc<ReplicaManager>,
    /// Consumer groups and committed offsets, over `__consumer_offsets`.
    pub groups: Arc<GroupCoordinator>,
    /// Transactional ids and their transactions, over `__transaction_state`.
    pub txns: Arc<TransactionCoordinator>,
    /// Transactional batches waiting for their KIP-890 verification, per partition and producer.
    pub txn_verifications: super::txn_verification::PendingVerifications,
    /// Client byte-rate quotas: the rates of clients under a quota, per kind.
    pub quotas: QuotaManagers,
    pub producer_ids: ProducerIdManager,
    /// Incremental fetch sessions of consumers and followers (KIP-227), bounded.
    pub fetch_sessions: FetchSessionCache,
    /// Decides from this broker's image whether a principal may act; audits denials.
    pub authorizer: Authorizer,
    pub metrics: ApiMetrics,
    pub clock: SharedClock,
    /// Cancelled when the broker shuts down: long polls answer at once.
    pub shutdown: CancellationToken,
}

/// What handlers count into.
#[derive(Debug, Clone)]
pub struct ApiMetrics {
    /// Per-topic bytes and records in and out, produce errors.
    pub topics: BrokerTopicMetrics,
}

impl KafkaApis {
    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.image()
    }

    /// The node config with dynamic broker configs applied.
    pub fn node_config(&self) -> NodeConfig {
        self.metadata.node_config()
    }

    /// Commits a decision and waits until this broker's replicas reflect it.
    pub async fn commit<T>(
        &self,
        decide: impl FnMut(&MetadataImage) -> Result<(T, Vec<MetadataRecord>), ControllerError>,
    ) -> Result<T, ControllerError> {
        self.metadata.commit(decide).await
    }

    /// A producer id unique in the cluster.
    pub async fn next_producer_id(&self) -> Result<i64, ControllerError> {
        self.producer_ids.next_producer_id().await
    }
}
