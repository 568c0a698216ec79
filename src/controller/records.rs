//! Metadata records: every change to cluster metadata is one of these, appended to the
//! metadata log and folded into the [`MetadataImage`](super::image::MetadataImage).
//!
//! New kinds of metadata arrive as new variants; a node that
//! replays a log never reinterprets an old record.

use serde::{Deserialize, Serialize};

use super::mirror::{DivergentTail, LinkState, MirrorLinkSpec, MirrorTopicState};
use crate::config::SecurityProtocol;
use crate::model::{BrokerId, LeaderEpoch, PartitionIndex, TopicId};
use crate::quota::ClientQuotaEntity;
use crate::sasl::{ScramCredential, ScramMechanism};
use crate::security::acl::{AclBinding, AclId};

/// One advertised listener of a broker (Kafka's `BrokerEndpoint` of `RegisterBrokerRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    pub listener: String,
    pub host: String,
    pub port: u16,
    pub security_protocol: SecurityProtocol,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// A broker registered (or re-registered after a restart: a new incarnation).
    RegisterBroker {
        broker_id: BrokerId,
        incarnation: uuid::Uuid,
        /// The inter-broker listener's advertised address: where followers fetch from.
        host: String,
        port: u16,
        rack: Option<String>,
        /// Every advertised listener; clients are answered with the one they connected on.
        /// Empty in records written before listeners were registered: `host:port` serves all.
        #[serde(default)]
        endpoints: Vec<BrokerEndpoint>,
    },
    /// A topic was created. Its partitions follow as `Partition` records.
    Topic { name: String, topic_id: TopicId },
    /// A partition's full registration: created, or changed (leader, ISR, replicas).
    Partition {
        topic_id: TopicId,
        partition: PartitionIndex,
        replicas: Vec<BrokerId>,
        isr: Vec<BrokerId>,
        leader: BrokerId,
        leader_epoch: LeaderEpoch,
        /// Bumped on every change, for compare-and-set by AlterPartition.
        partition_epoch: i32,
        /// While a reassignment runs: the target replicas not in the original set (they
        /// follow and catch up). `replicas` is then the target followed by `removing_replicas`.
        /// Absent in records written before reassignments existed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        adding_replicas: Vec<BrokerId>,
        /// While a reassignment runs: the original replicas not in the target; they leave
        /// when every target replica is in the ISR.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removing_replicas: Vec<BrokerId>,
    },
    /// A topic config key set (`Some`) or removed (`None`).
    TopicConfig {
        topic_id: TopicId,
        key: String,
        value: Option<String>,
    },
    /// A cluster-wide dynamic broker config set or removed.
    BrokerConfig { key: String, value: Option<String> },
    /// A topic and all its partitions were deleted.
    RemoveTopic { topic_id: TopicId },
    /// A broker missed heartbeats for `broker.session.timeout.ms` (or is shutting down): it
    /// leads nothing and is not placed on.
    FenceBroker { broker_id: BrokerId },
    /// A fenced broker is heartbeating again.
    UnfenceBroker { broker_id: BrokerId },
    /// A feature's level; `metadata.version` is the format of these records.
    FeatureLevel { name: String, level: u16 },
    /// Producer ids below `next_producer_id` have been handed out.
    ProducerIds {
        broker_id: BrokerId,
        next_producer_id: i64,
    },
    /// A client quota value set (`Some`) or removed (`None`) for an entity (Kafka's
    /// `ClientQuotaRecord`). Keys are Kafka's (`producer_byte_rate`, ...).
    ClientQuota {
        entity: ClientQuotaEntity,
        key: String,
        value: Option<f64>,
    },
    /// A user's SCRAM credential for one mechanism, created or replaced (Kafka's
    /// `UserScramCredentialRecord`): the salt, iterations and derived keys, never the password.
    UserScramCredential {
        user: String,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    },
    /// A user's SCRAM credential for one mechanism was deleted.
    RemoveUserScramCredential {
        user: String,
        mechanism: ScramMechanism,
    },
    /// An ACL was created under a stable id (Kafka's `AccessControlEntryRecord`).
    AccessControlEntry { id: AclId, binding: AclBinding },
    /// The ACL with this id was deleted (Kafka's `RemoveAccessControlEntryRecord`).
    RemoveAccessControlEntry { id: AclId },
    /// A broker's registration was removed (Kafka's `UnregisterBrokerRecord`): it held no
    /// replicas and was fenced.
    UnregisterBroker { broker_id: BrokerId },
    /// A mirror link created or its settings replaced (`controller::mirror`).
    MirrorLink { spec: MirrorLinkSpec },
    /// A mirror link paused or resumed.
    MirrorLinkState { name: String, state: LinkState },
    /// A mirror link was deleted.
    RemoveMirrorLink { name: String },
    /// A topic's mirror state: mirroring from `link`, promoted, or failed with the reason.
    MirrorTopic {
        topic: String,
        link: String,
        state: MirrorTopicState,
    },
    /// Producer ids below `next_producer_id` appear in mirrored data: this cluster never
    /// hands them out, so that a producer on a promoted mirror topic never meets the state of
    /// a source producer with the same id.
    MirrorProducerIds { next_producer_id: i64 },
    /// A reversed mirror partition's divergent tail, removed and kept (`reverse`).
    MirrorDivergentTail {
        topic: String,
        partition: i32,
        tail: DivergentTail,
    },
}
