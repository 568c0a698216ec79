//! One module per Kafka API. Each declares the versions it serves (`VERSIONS`) and a `handle`
//! function; the table below is the only list of them, and ApiVersions is derived from it.
//!
//! A handler does its ordered work (appends, validation) synchronously inside `handle`, so two
//! requests on one connection take effect in the order they were sent, and returns a [`Reply`]:
//! the response now, or a future for the waiting part (fsync, long-poll, metadata commit) that
//! the connection awaits while it reads the next request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use crate::config::ListenerInfo;

/// A response still being produced.
pub type ResponseFuture = Pin<Box<dyn Future<Output = ResponseKind> + Send + 'static>>;

pub enum Reply {
    Now(ResponseKind),
    Later(ResponseFuture),
    /// The request gets no response (Produce with acks=0).
    Nothing,
    /// No response, and the connection reads nothing more for this long: an acks=0 produce
    /// over its quota (KIP-219 mutes the connection even when there is nothing to answer).
    Throttle(std::time::Duration),
}

impl Reply {
    pub fn later(f: impl Future<Output = ResponseKind> + Send + 'static) -> Reply {
        Reply::Later(Box::pin(f))
    }
}

mod apis;
pub mod authz;
pub mod errors;

pub use apis::{ApiMetrics, KafkaApis};

/// What a handler knows of the request beyond its body: the subsystems it may reach, the
/// header, and who sent it.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The broker's subsystems, as handlers see them.
    pub apis: Arc<KafkaApis>,
    pub header: RequestHeader,
    /// The client's address (JoinGroup records it as the member's host).
    pub peer: Option<std::net::SocketAddr>,
    /// Who sent the request. Every connection is Kafka's anonymous principal until the listener
    /// authenticates it; authorization and user quotas match this.
    pub principal: KafkaPrincipal,
    /// Size of the request on the wire (header and body), which produce quotas count.
    pub request_bytes: usize,
    /// The listener the request arrived on: clients are answered with that listener's broker
    /// addresses, and its security protocol says how the connection was authenticated.
    pub listener: ListenerInfo,
}

pub use crate::security::KafkaPrincipal;

impl RequestContext {
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }

    /// The user principal's name, which user quotas match.
    pub fn user(&self) -> &str {
        &self.principal.name
    }

    /// The client id of the request header; a null one is the empty string, as in Kafka.
    pub fn client_id(&self) -> &str {
        self.header.client_id.as_deref().unwrap_or("")
    }
}

macro_rules! handlers {
    ($( $variant:ident => $module:ident ),* $(,)?) => {
        $( pub mod $module; )*

        /// Every API this broker implements, with the versions it serves.
        pub fn supported_apis() -> &'static [(ApiKey, VersionRange)] {
            const APIS: &[(ApiKey, VersionRange)] = &[ $( (ApiKey::$variant, $module::VERSIONS) ),* ];
            APIS
        }

        /// Routes a decoded request to its handler.
        pub fn dispatch(ctx: RequestContext, request: RequestKind) -> Option<Reply> {
            match request {
                $( RequestKind::$variant(r) => Some($module::handle(ctx, r)), )*
                _ => None,
            }
        }
    };
}

handlers! {
    Produce => produce,
    Fetch => fetch,
    ListOffsets => list_offsets,
    OffsetForLeaderEpoch => offset_for_leader_epoch,
    Metadata => metadata,
    ApiVersions => api_versions,
    CreateTopics => create_topics,
    DeleteTopics => delete_topics,
    DeleteRecords => delete_records,
    InitProducerId => init_producer_id,
    DescribeConfigs => describe_configs,
    AlterConfigs => alter_configs,
    CreatePartitions => create_partitions,
    IncrementalAlterConfigs => incremental_alter_configs,
    DescribeCluster => describe_cluster,
    DescribeTopicPartitions => describe_topic_partitions,
    DescribeQuorum => describe_quorum,
    FindCoordinator => find_coordinator,
    JoinGroup => join_group,
    SyncGroup => sync_group,
    Heartbeat => heartbeat,
    LeaveGroup => leave_group,
    OffsetCommit => offset_commit,
    OffsetFetch => offset_fetch,
    ListGroups => list_groups,
    DescribeGroups => describe_groups,
    DeleteGroups => delete_groups,
    OffsetDelete => offset_delete,
    ConsumerGroupHeartbeat => consumer_group_heartbeat,
    ConsumerGroupDescribe => consumer_group_describe,
    DescribeClientQuotas => describe_client_quotas,
    DescribeProducers => describe_producers,
    AlterClientQuotas => alter_client_quotas,
    DescribeUserScramCredentials => describe_user_scram_credentials,
    AlterUserScramCredentials => alter_user_scram_credentials,
    SaslHandshake => sasl_handshake,
    SaslAuthenticate => sasl_authenticate,
    CreateAcls => create_acls,
    DescribeAcls => describe_acls,
    DeleteAcls => delete_acls,
    AddPartitionsToTxn => add_partitions_to_txn,
    AddOffsetsToTxn => add_offsets_to_txn,
    EndTxn => end_txn,
    DescribeTransactions => describe_transactions,
    ListTransactions => list_transactions,
    TxnOffsetCommit => txn_offset_commit,
    WriteTxnMarkers => write_txn_markers,
    AlterPartitionReassignments => alter_partition_reassignments,
    ListPartitionReassignments => list_partition_reassignments,
    ElectLeaders => elect_leaders,
    DescribeLogDirs => describe_log_dirs,
    AlterReplicaLogDirs => alter_replica_log_dirs,
    UnregisterBroker => unregister_broker,
}

pub mod fetch_session;
mod group_call;
mod leader_hint;
pub mod mirror_links;
pub mod restore_topics;
pub mod throttle;
mod txn_call;
pub mod txn_verification;

/// The versions of `key` this broker serves, if it serves it at all.
pub fn supported_versions(key: ApiKey) -> Option<VersionRange> {
    supported_apis()
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
}
