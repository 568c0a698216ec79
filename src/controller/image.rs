//! `MetadataImage`: the cluster metadata every node serves from, built by applying records.
//!
//! Applying a record is a pure function of (image, record); any two nodes that applied the same
//! records hold equal images.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::mirror::MirrorImage;
use super::records::{BrokerEndpoint, MetadataRecord};
use crate::config::TopicConfig;
use crate::model::{BrokerId, LeaderEpoch, PartitionIndex, TopicId};
use crate::quota::ClientQuotas;
use crate::sasl::{CredentialStore, ScramCredential, ScramMechanism};
use crate::security::acl::AclIndex;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: BrokerId,
    pub incarnation: uuid::Uuid,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    pub fenced: bool,
    /// Every advertised listener (empty for a registration from before listeners were
    /// registered, whose `host:port` serves every listener).
    #[serde(default)]
    pub endpoints: Vec<BrokerEndpoint>,
}

impl BrokerRegistration {
    /// The address a client connected on `listener` is told to use for this broker; `None` if
    /// the broker has no such listener (Kafka leaves it out of the answer).
    pub fn endpoint(&self, listener: &str) -> Option<(&str, u16)> {
        if self.endpoints.is_empty() {
            return Some((&self.host, self.port));
        }
        self.endpoints
            .iter()
            .find(|e| e.listener == listener)
            .map(|e| (e.host.as_str(), e.port))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRegistration {
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// -1 when the partition has no leader (offline).
    pub leader: BrokerId,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: i32,
    /// Target replicas a running reassignment adds (empty when none runs).
    #[serde(default)]
    pub adding_replicas: Vec<BrokerId>,
    /// Original replicas a running reassignment removes (empty when none runs).
    #[serde(default)]
    pub removing_replicas: Vec<BrokerId>,
}

impl PartitionRegistration {
    /// A reassignment is under way (Kafka's `isReassignmentInProgress`).
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The record registering this partition as it is, for decisions that change a few fields
    /// and carry the rest (a running reassignment included) over unchanged.
    pub fn to_record(&self, topic_id: TopicId, partition: PartitionIndex) -> MetadataRecord {
        MetadataRecord::Partition {
            topic_id,
            partition,
            replicas: self.replicas.clone(),
            isr: self.isr.clone(),
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            adding_replicas: self.adding_replicas.clone(),
            removing_replicas: self.removing_replicas.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: TopicId,
    pub config: TopicConfig,
    pub partitions: BTreeMap<PartitionIndex, PartitionRegistration>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// Index of the last record applied; 0 for an empty image.
    pub offset: u64,
    pub brokers: BTreeMap<BrokerId, BrokerRegistration>,
    pub topics: BTreeMap<TopicId, TopicImage>,
    pub topic_ids: BTreeMap<String, TopicId>,
    pub broker_configs: BTreeMap<String, String>,
    pub next_producer_id: i64,
    /// The `metadata.version` feature level; 0 until the first controller writes it.
    #[serde(default)]
    pub metadata_version: u16,
    /// Client quotas by entity (user / client id, named or default).
    #[serde(default)]
    pub client_quotas: ClientQuotas,
    /// SCRAM credentials by user and mechanism; PLAIN verifies against them too.
    #[serde(default)]
    pub scram_credentials: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
    /// The ACLs, indexed by resource for the authorizer.
    #[serde(default)]
    pub acls: AclIndex,
    /// Mirror links and the state of each mirror topic.
    #[serde(default)]
    pub mirrors: MirrorImage,
}

impl CredentialStore for MetadataImage {
    fn scram_credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.scram_credentials.get(user)?.get(&mechanism).cloned()
    }
}

impl MetadataImage {
    pub fn topic_by_name(&self, name: &str) -> Option<&TopicImage> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    pub fn topic(&self, id: &TopicId) -> Option<&TopicImage> {
        self.topics.get(id)
    }

    /// Registered and not fenced.
    pub fn is_live(&self, broker: BrokerId) -> bool {
        self.brokers.get(&broker).is_some_and(|b| !b.fenced)
    }

    /// Folds one record into the image. Records that name something absent (a partition of a
    /// deleted topic) are ignored: the log is authoritative and replay must never fail.
    pub fn apply(&mut self, offset: u64, record: &MetadataRecord) {
        self.offset = offset;
        match record {
            MetadataRecord::RegisterBroker {
                broker_id,
                incarnation,
                host,
                port,
                rack,
                endpoints,
            } => {
                self.brokers.insert(
                    *broker_id,
                    BrokerRegistration {
                        broker_id: *broker_id,
                        incarnation: *incarnation,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        fenced: false,
                        endpoints: endpoints.clone(),
                    },
                );
            }
            MetadataRecord::Topic { name, topic_id } => {
                self.topic_ids.insert(name.clone(), *topic_id);
                self.topics.insert(
                    *topic_id,
                    TopicImage {
                        name: name.clone(),
                        topic_id: *topic_id,
                        config: TopicConfig::default(),
                        partitions: BTreeMap::new(),
                    },
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
                adding_replicas,
                removing_replicas,
            } => {
                if let Some(t) = self.topics.get_mut(topic_id) {
                    t.partitions.insert(
                        *partition,
                        PartitionRegistration {
                            replicas: replicas.clone(),
                            isr: isr.clone(),
                            leader: *leader,
                            leader_epoch: *leader_epoch,
                            partition_epoch: *partition_epoch,
                            adding_replicas: adding_replicas.clone(),
                            removing_replicas: removing_replicas.clone(),
                        },
                    );
                }
            }
            MetadataRecord::TopicConfig {
                topic_id,
                key,
                value,
            } => {
                if let Some(t) = self.topics.get_mut(topic_id) {
                    match value {
                        Some(v) => t.config.overrides.insert(key.clone(), v.clone()),
                        None => t.config.overrides.remove(key),
                    };
                }
            }
            MetadataRecord::BrokerConfig { key, value } => {
                match value {
                    Some(v) => self.broker_configs.insert(key.clone(), v.clone()),
                    None => self.broker_configs.remove(key),
                };
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(t) = self.topics.remove(topic_id) {
                    self.topic_ids.remove(&t.name);
                    self.mirrors.topic_deleted(&t.name);
                }
            }
            MetadataRecord::FenceBroker { broker_id } => {
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    b.fenced = true;
                }
            }
            MetadataRecord::UnfenceBroker { broker_id } => {
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    b.fenced = false;
                }
            }
            MetadataRecord::FeatureLevel { name, level } => {
                if name == "metadata.version" {
                    self.metadata_version = *level;
                }
            }
            MetadataRecord::ProducerIds {
                next_producer_id, ..
            } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
            MetadataRecord::ClientQuota { entity, key, value } => {
                self.client_quotas.apply(entity, key, *value);
            }
            MetadataRecord::UserScramCredential {
                user,
                mechanism,
                credential,
            } => {
                self.scram_credentials
                    .entry(user.clone())
                    .or_default()
                    .insert(*mechanism, credential.clone());
            }
            MetadataRecord::RemoveUserScramCredential { user, mechanism } => {
                if let Some(by_mechanism) = self.scram_credentials.get_mut(user) {
                    by_mechanism.remove(mechanism);
                    if by_mechanism.is_empty() {
                        self.scram_credentials.remove(user);
                    }
                }
            }
            MetadataRecord::AccessControlEntry { id, binding } => {
                self.acls.add(*id, binding.clone());
            }
            MetadataRecord::RemoveAccessControlEntry { id } => {
                self.acls.remove(*id);
            }
            MetadataRecord::UnregisterBroker { broker_id } => {
                self.brokers.remove(broker_id);
            }
            MetadataRecord::MirrorLink { .. }
            | MetadataRecord::MirrorLinkState { .. }
            | MetadataRecord::RemoveMirrorLink { .. }
            | MetadataRecord::MirrorTopic { .. }
            | MetadataRecord::MirrorDivergentTail { .. } => self.mirrors.apply(record),
            MetadataRecord::MirrorProducerIds { next_producer_id } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
                self.mirrors.apply(record);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_lifecycle_folds_into_the_image() {
        let id = TopicId::random();
        let mut image = MetadataImage::default();
        image.apply(
            1,
            &MetadataRecord::Topic {
                name: "t".into(),
                topic_id: id,
            },
        );
        image.apply(
            2,
            &MetadataRecord::Partition {
                topic_id: id,
                partition: PartitionIndex(0),
                replicas: vec![BrokerId(1)],
                isr: vec![BrokerId(1)],
                leader: BrokerId(1),
                leader_epoch: LeaderEpoch(0),
                partition_epoch: 0,
                adding_replicas: vec![],
                removing_replicas: vec![],
            },
        );
        image.apply(
            3,
            &MetadataRecord::TopicConfig {
                topic_id: id,
                key: "retention.ms".into(),
                value: Some("5".into()),
            },
        );
        let t = image.topic_by_name("t").expect("topic");
        assert_eq!(t.partitions.len(), 1);
        assert_eq!(
            t.config.overrides.get("retention.ms").map(String::as_str),
            Some("5")
        );
        image.apply(4, &MetadataRecord::RemoveTopic { topic_id: id });
        assert!(image.topic_by_name("t").is_none());
        assert!(image.topics.is_empty());
        assert_eq!(image.offset, 4);
    }
}
