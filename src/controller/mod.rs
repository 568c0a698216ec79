//! The metadata controller: an openraft quorum whose log holds [`MetadataRecord`]s and whose
//! state machine folds them into the [`MetadataImage`] every node serves from.
//!
//! Every change is decided purely (`decide_*`: image and request in, records or an error out),
//! then committed through Raft as a compare-and-set on the image it was decided against
//! ([`quorum::MetadataWrite`]), then applied by every node. A decision can be made on any node:
//! a node that is not the active controller forwards the write to it over the controller RPC,
//! and decides again if the image moved meanwhile.
//!
//! Layout:
//! - [`quorum`]: openraft types, the write and its outcome, `controller.quorum.voters`.
//! - [`log_store`]: the Raft log and vote files. [`state_machine`]: the image and snapshots.
//! - [`network`]: the controller RPC (Raft messages, forwarded writes, heartbeats).
//! - `settings`: [`ControllerSettings`] from the node config, and each voter's Raft timers.
//! - `node`: [`Controller`], this node's member of the quorum: open, bootstrap, commit (decide,
//!   compare-and-set, forward to the active controller).
//! - `service`: the controller RPC as this node serves it.
//! - `failover`: following the active controller, and standing early when its process is gone.
//! - `describe_quorum`: DescribeQuorum and the controller gauges.
//! - `duties`: what the active controller commits on its own, from what it observes. A new kind
//!   of record the controller must maintain (a mirror link, an ACL) gets a pure `decide_*` in
//!   its own module here, like [`client_quotas`]; one the controller must act on by itself
//!   also gets a step in `duties`.
//! - `liveness`: broker heartbeat sessions and the fencing decision (pure).
//! - [`broker_lifecycle`]: the broker's side: heartbeats to the active controller (carrying its
//!   quota usage and bringing back its quota shares).
//! - [`producer_ids`]: producer ids from blocks the controller allocates.
//! - [`elections`]: fencing, leader election, controlled shutdown, rebalancing (pure).
//! - [`isr`]: AlterPartition (ISR changes) decided.
//! - [`reassignment`]: partition reassignments started, completed and cancelled (pure), and
//!   [`placement`]: where new replicas go (Kafka's rack-alternating assignment), and
//!   [`balance`]: the planner of replica moves that even out brokers or drain one (pure).
//! - [`client_quotas`]: AlterClientQuotas decided (the quotas themselves live in `crate::quota`).
//! - [`mirror`]: mirror links and mirror topics decided, and the duty that follows the
//!   source clusters' topics.
//! - [`quota_shares`]: cluster-wide quota limits divided among brokers by demand (pure), kept in
//!   the active controller's memory and handed out with heartbeat answers.

mod describe_quorum;
mod duties;
mod failover;
mod liveness;
mod node;
mod service;
mod settings;

pub mod acls;
pub mod balance;
pub mod balance_bytes;
pub mod balancer;
pub mod broker_lifecycle;
pub mod client_quotas;
pub mod elections;
pub mod image;
pub mod isr;
pub mod log_store;
mod metrics;
pub mod mirror;
pub mod network;
pub mod placement;
pub mod producer_ids;
pub mod quorum;
pub mod quota_shares;
pub mod reassignment;
pub mod records;
pub mod replica_sizes;
pub mod scram_credentials;
pub mod state_machine;

use std::collections::BTreeSet;
use std::path::PathBuf;

pub use acls::{decide_create_acls, decide_delete_acls, AclCreation};
pub use client_quotas::{decide_client_quotas, QuotaAlteration};
pub use image::{BrokerRegistration, MetadataImage, PartitionRegistration, TopicImage};
pub use metrics::ControllerMetrics;
pub use node::Controller;
pub use placement::place_replicas;
pub use records::{BrokerEndpoint, MetadataRecord};
pub use scram_credentials::{
    decide_bootstrap_credentials, decide_scram_credentials, ScramAlteration, ScramAlterationError,
};
pub use settings::ControllerSettings;

use crate::config::defs::node_key;
use crate::config::{validate_value, TopicConfig};
use crate::model::{BrokerId, LeaderEpoch, PartitionIndex, TopicId};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    #[error("unknown topic id {0}")]
    UnknownTopicId(TopicId),
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopic { name: String, reason: String },
    #[error("invalid partition count {count}: {reason}")]
    InvalidPartitions { count: i32, reason: String },
    #[error("invalid replication factor {factor}: {reason}")]
    InvalidReplicationFactor { factor: i32, reason: String },
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    /// The message is Kafka's own wording, sent to the client as is.
    #[error("{0}")]
    InvalidConfig(String),
    #[error("could not encode a metadata record: {0}")]
    Encode(String),
    #[error("no active controller reachable (last known leader: {leader:?})")]
    NotController { leader: Option<u64> },
    #[error("the proposal names an old leadership (now leader {leader} at epoch {leader_epoch})")]
    StaleLeaderEpoch {
        leader: BrokerId,
        leader_epoch: LeaderEpoch,
    },
    #[error("the proposal names partition epoch {got}, the registration is at {expected}")]
    InvalidUpdateVersion { expected: i32, got: i32 },
    #[error("ineligible replica: {0}")]
    IneligibleReplica(String),
    #[error("no partition reassignment is in progress")]
    NoReassignmentInProgress,
    #[error("leader election not needed: {0}")]
    ElectionNotNeeded(String),
    #[error("the preferred leader is not available: {0}")]
    PreferredLeaderNotAvailable(String),
    #[error("no eligible leader: {0}")]
    EligibleLeadersNotAvailable(String),
    #[error("broker {0} is not registered")]
    BrokerIdNotRegistered(BrokerId),
    #[error("broker {broker} cannot be unregistered: {reason}")]
    BrokerInUse { broker: BrokerId, reason: String },
    #[error("the controller is shutting down")]
    ShuttingDown,
    #[error("metadata quorum error: {0}")]
    Raft(String),
    #[error(transparent)]
    Mirror(#[from] mirror::MirrorError),
    #[error("metadata log I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A topic to create, as CreateTopics asks for it.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// -1 means the broker default (`num.partitions`).
    pub num_partitions: i32,
    /// -1 means the broker default (`default.replication.factor`).
    pub replication_factor: i16,
    /// Explicit assignment, one replica list per partition; empty to let placement decide.
    pub assignments: Vec<Vec<BrokerId>>,
    pub configs: Vec<(String, Option<String>)>,
}

/// One config change, as IncrementalAlterConfigs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOp {
    Set(String, String),
    Delete(String),
    Append(String, String),
    Subtract(String, String),
}

/// The defaults that auto-creation and `-1` in CreateTopics fall back to.
#[derive(Debug, Clone, Copy)]
pub struct TopicDefaults {
    pub num_partitions: i32,
    pub replication_factor: i16,
}

/// Kafka's rule: 1 to 249 characters of `[a-zA-Z0-9._-]`, and neither `.` nor `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    let invalid = |reason: &str| ControllerError::InvalidTopic {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("empty name"));
    }
    if name == "." || name == ".." {
        return Err(invalid("'.' and '..' are not allowed"));
    }
    if name.len() > 249 {
        return Err(invalid("longer than 249 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(invalid(
            "only ASCII letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    Ok(())
}

fn validated_topic_configs(
    configs: &[(String, Option<String>)],
) -> Result<Vec<(String, String)>, ControllerError> {
    configs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .map(|(k, v)| {
            TopicConfig::validate(k, v)
                .map(|canonical| (k.clone(), canonical))
                .map_err(|e| ControllerError::InvalidConfig(e.to_string()))
        })
        .collect()
}

/// Decides the records that create `topic`.
pub fn decide_create_topic(
    image: &MetadataImage,
    topic: &NewTopic,
    defaults: TopicDefaults,
) -> Result<(TopicId, Vec<MetadataRecord>), ControllerError> {
    decide_create_topic_with_id(image, topic, defaults, TopicId::random())
}

/// Decides the records that create `topic` under a given id: a restore from the object store
/// re-creates a topic with the id its remote objects are keyed by. An id in use is refused.
pub fn decide_create_topic_with_id(
    image: &MetadataImage,
    topic: &NewTopic,
    defaults: TopicDefaults,
    topic_id: TopicId,
) -> Result<(TopicId, Vec<MetadataRecord>), ControllerError> {
    validate_topic_name(&topic.name)?;
    if image.topic_by_name(&topic.name).is_some() {
        return Err(ControllerError::TopicExists(topic.name.clone()));
    }
    if let Some(other) = image.topic(&topic_id) {
        return Err(ControllerError::InvalidTopic {
            name: topic.name.clone(),
            reason: format!(
                "topic id {} is already used by '{}'",
                topic_id.0, other.name
            ),
        });
    }
    let configs = validated_topic_configs(&topic.configs)?;
    let live: Vec<(BrokerId, Option<String>)> = image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| (b.broker_id, b.rack.clone()))
        .collect();
    let assignments = if topic.assignments.is_empty() {
        let partitions = if topic.num_partitions == -1 {
            defaults.num_partitions
        } else {
            topic.num_partitions
        };
        if partitions < 1 {
            return Err(ControllerError::InvalidPartitions {
                count: partitions,
                reason: "must be at least 1".into(),
            });
        }
        let rf = if topic.replication_factor == -1 {
            defaults.replication_factor
        } else {
            topic.replication_factor
        };
        place_replicas(&live, partitions, rf, image.topics.len())?
    } else {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(ControllerError::InvalidReplicaAssignment(
                "give either an assignment or partition count and replication factor, not both"
                    .into(),
            ));
        }
        check_assignment(image, &topic.assignments)?;
        topic.assignments.clone()
    };
    let mut records = vec![MetadataRecord::Topic {
        name: topic.name.clone(),
        topic_id,
    }];
    records.extend(
        configs
            .into_iter()
            .map(|(key, value)| MetadataRecord::TopicConfig {
                topic_id,
                key,
                value: Some(value),
            }),
    );
    records.extend(
        assignments
            .into_iter()
            .enumerate()
            .map(|(p, replicas)| new_partition(topic_id, p as i32, replicas)),
    );
    Ok((topic_id, records))
}

fn check_assignment(
    image: &MetadataImage,
    assignments: &[Vec<BrokerId>],
) -> Result<(), ControllerError> {
    let rf = assignments.first().map(Vec::len).unwrap_or(0);
    for replicas in assignments {
        if replicas.is_empty() || replicas.len() != rf {
            return Err(ControllerError::InvalidReplicaAssignment(
                "every partition needs the same number of replicas".into(),
            ));
        }
        let distinct: BTreeSet<_> = replicas.iter().collect();
        if distinct.len() != replicas.len() {
            return Err(ControllerError::InvalidReplicaAssignment(
                "a broker appears twice in one partition".into(),
            ));
        }
        if let Some(b) = replicas.iter().find(|b| !image.brokers.contains_key(b)) {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "unknown broker {b}"
            )));
        }
    }
    Ok(())
}

fn new_partition(topic_id: TopicId, partition: i32, replicas: Vec<BrokerId>) -> MetadataRecord {
    MetadataRecord::Partition {
        topic_id,
        partition: PartitionIndex(partition),
        leader: replicas[0],
        isr: replicas.clone(),
        replicas,
        leader_epoch: LeaderEpoch(0),
        partition_epoch: 0,
        adding_replicas: vec![],
        removing_replicas: vec![],
    }
}

/// Decides the records that grow `name` to `count` partitions.
pub fn decide_create_partitions(
    image: &MetadataImage,
    name: &str,
    count: i32,
    assignments: Option<&[Vec<BrokerId>]>,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let topic = image
        .topic_by_name(name)
        .ok_or_else(|| ControllerError::UnknownTopic(name.into()))?;
    let current = topic.partitions.len() as i32;
    if count <= current {
        return Err(ControllerError::InvalidPartitions {
            count,
            reason: format!("topic has {current} partitions; the count can only grow"),
        });
    }
    let rf = topic
        .partitions
        .values()
        .next()
        .map(|p| p.replicas.len())
        .unwrap_or(1) as i16;
    let new = match assignments {
        Some(a) => {
            if a.len() as i32 != count - current {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "{} assignments for {} new partitions",
                    a.len(),
                    count - current
                )));
            }
            check_assignment(image, a)?;
            a.to_vec()
        }
        None => {
            let live: Vec<_> = image
                .brokers
                .values()
                .filter(|b| !b.fenced)
                .map(|b| (b.broker_id, b.rack.clone()))
                .collect();
            place_replicas(&live, count - current, rf, current as usize)?
        }
    };
    Ok(new
        .into_iter()
        .enumerate()
        .map(|(i, r)| new_partition(topic.topic_id, current + i as i32, r))
        .collect())
}

/// Decides the records for config changes on a topic.
pub fn decide_topic_configs(
    image: &MetadataImage,
    name: &str,
    ops: &[ConfigOp],
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let topic = image
        .topic_by_name(name)
        .ok_or_else(|| ControllerError::UnknownTopic(name.into()))?;
    let mut current = topic.config.overrides.clone();
    let known = |k: &str| match crate::config::defs::topic_key(k) {
        Some(_) => Ok(()),
        None => Err(ControllerError::InvalidConfig(format!(
            "Unknown topic config name: {k}"
        ))),
    };
    apply_config_ops(&mut current, ops, known, |k, v| {
        TopicConfig::validate(k, v).map_err(|e| ControllerError::InvalidConfig(e.to_string()))
    })?;
    Ok(diff_configs(&topic.config.overrides, &current)
        .into_iter()
        .map(|(key, value)| MetadataRecord::TopicConfig {
            topic_id: topic.topic_id,
            key,
            value,
        })
        .collect())
}

/// Decides the records for cluster-wide dynamic broker config changes.
pub fn decide_broker_configs(
    image: &MetadataImage,
    ops: &[ConfigOp],
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let mut current = image.broker_configs.clone();
    let known = |k: &str| match node_key(k) {
        Some(d) if d.dynamic => Ok(()),
        Some(_) => Err(ControllerError::InvalidConfig(format!(
            "'{k}' cannot be changed without a restart"
        ))),
        None => Err(ControllerError::InvalidConfig(format!(
            "unknown broker config '{k}'"
        ))),
    };
    apply_config_ops(&mut current, ops, known, |k, v| {
        let def = node_key(k).ok_or_else(|| {
            ControllerError::InvalidConfig(format!("unknown broker config '{k}'"))
        })?;
        if !def.dynamic {
            return Err(ControllerError::InvalidConfig(format!(
                "'{k}' cannot be changed without a restart"
            )));
        }
        validate_value(def.name, def.kind, v)
            .map_err(|e| ControllerError::InvalidConfig(e.to_string()))
    })?;
    Ok(diff_configs(&image.broker_configs, &current)
        .into_iter()
        .map(|(key, value)| MetadataRecord::BrokerConfig { key, value })
        .collect())
}

fn apply_config_ops(
    map: &mut std::collections::BTreeMap<String, String>,
    ops: &[ConfigOp],
    known: impl Fn(&str) -> Result<(), ControllerError>,
    validate: impl Fn(&str, &str) -> Result<String, ControllerError>,
) -> Result<(), ControllerError> {
    for op in ops {
        match op {
            ConfigOp::Set(k, v) => {
                let v = validate(k, v)?;
                map.insert(k.clone(), v);
            }
            ConfigOp::Delete(k) => {
                known(k)?;
                map.remove(k);
            }
            ConfigOp::Append(k, v) | ConfigOp::Subtract(k, v) => {
                let mut items: Vec<String> = map
                    .get(k)
                    .map(|s| s.split(',').map(str::to_string).collect())
                    .unwrap_or_default();
                items.retain(|s| !s.is_empty());
                if matches!(op, ConfigOp::Append(..)) {
                    if !items.contains(v) {
                        items.push(v.clone());
                    }
                } else {
                    items.retain(|s| s != v);
                }
                if items.is_empty() {
                    map.remove(k);
                } else {
                    let joined = validate(k, &items.join(","))?;
                    map.insert(k.clone(), joined);
                }
            }
        }
    }
    Ok(())
}

fn diff_configs(
    before: &std::collections::BTreeMap<String, String>,
    after: &std::collections::BTreeMap<String, String>,
) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for (k, v) in after {
        if before.get(k) != Some(v) {
            out.push((k.clone(), Some(v.clone())));
        }
    }
    for k in before.keys() {
        if !after.contains_key(k) {
            out.push((k.clone(), None));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with_brokers(n: i32) -> MetadataImage {
        let mut image = MetadataImage::default();
        for i in 1..=n {
            image.apply(
                i as u64,
                &MetadataRecord::RegisterBroker {
                    broker_id: BrokerId(i),
                    incarnation: uuid::Uuid::new_v4(),
                    host: "h".into(),
                    port: 9092,
                    rack: Some(format!("r{}", i % 3)),
                    endpoints: vec![],
                },
            );
        }
        image
    }

    #[test]
    fn placement_spreads_leaders_and_replicas_evenly() {
        let brokers: Vec<_> = (1..=3).map(|i| (BrokerId(i), None)).collect();
        let a = place_replicas(&brokers, 6, 3, 0).expect("placement");
        let mut leaders = std::collections::BTreeMap::new();
        for replicas in &a {
            assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 3);
            *leaders.entry(replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
        assert!(place_replicas(&brokers, 1, 4, 0).is_err());
    }

    #[test]
    fn placement_puts_replicas_in_different_racks() {
        let brokers: Vec<_> = (1..=6)
            .map(|i| (BrokerId(i), Some(format!("r{}", i % 3))))
            .collect();
        for replicas in place_replicas(&brokers, 12, 3, 0).expect("placement") {
            let racks: BTreeSet<_> = replicas.iter().map(|b| b.0 % 3).collect();
            assert_eq!(racks.len(), 3, "{replicas:?}");
        }
    }

    #[test]
    fn create_topic_decides_topic_config_and_partition_records() {
        let image = image_with_brokers(3);
        let topic = NewTopic {
            name: "orders".into(),
            num_partitions: 3,
            replication_factor: 2,
            assignments: vec![],
            configs: vec![("retention.ms".into(), Some("1000".into()))],
        };
        let defaults = TopicDefaults {
            num_partitions: 1,
            replication_factor: 1,
        };
        let (id, records) = decide_create_topic(&image, &topic, defaults).expect("create");
        assert_eq!(records.len(), 1 + 1 + 3);
        let mut next = image.clone();
        for (i, r) in records.iter().enumerate() {
            next.apply(100 + i as u64, r);
        }
        let t = next.topic(&id).expect("topic");
        assert_eq!(t.partitions.len(), 3);
        assert!(t
            .partitions
            .values()
            .all(|p| p.replicas.len() == 2 && p.isr == p.replicas));
        assert!(matches!(
            decide_create_topic(&next, &topic, defaults),
            Err(ControllerError::TopicExists(_))
        ));
        // A restore keeps the id; an id in use is refused even under another name.
        let kept = TopicId::random();
        let (got, _) =
            decide_create_topic_with_id(&image, &topic, defaults, kept).expect("with id");
        assert_eq!(got, kept);
        let other = NewTopic {
            name: "other".into(),
            ..topic.clone()
        };
        assert!(matches!(
            decide_create_topic_with_id(&next, &other, defaults, id),
            Err(ControllerError::InvalidTopic { .. })
        ));
        let bad = NewTopic {
            name: "bad/name".into(),
            ..topic.clone()
        };
        assert!(matches!(
            decide_create_topic(&image, &bad, defaults),
            Err(ControllerError::InvalidTopic { .. })
        ));
        let bad_cfg = NewTopic {
            configs: vec![("retention.ms".into(), Some("x".into()))],
            ..topic
        };
        assert!(matches!(
            decide_create_topic(&image, &bad_cfg, defaults),
            Err(ControllerError::InvalidConfig(_))
        ));
    }

    #[test]
    fn incremental_config_ops_append_subtract_and_delete() {
        let mut image = image_with_brokers(1);
        let id = TopicId::random();
        image.apply(
            10,
            &MetadataRecord::Topic {
                name: "t".into(),
                topic_id: id,
            },
        );
        let recs = decide_topic_configs(
            &image,
            "t",
            &[ConfigOp::Append("cleanup.policy".into(), "compact".into())],
        )
        .expect("ops");
        for r in &recs {
            image.apply(11, r);
        }
        assert_eq!(
            image
                .topic(&id)
                .and_then(|t| t.config.overrides.get("cleanup.policy"))
                .map(String::as_str),
            Some("compact")
        );
        let recs = decide_topic_configs(&image, "t", &[ConfigOp::Delete("cleanup.policy".into())])
            .expect("ops");
        assert_eq!(
            recs,
            vec![MetadataRecord::TopicConfig {
                topic_id: id,
                key: "cleanup.policy".into(),
                value: None
            }]
        );
        assert!(
            decide_topic_configs(&image, "t", &[ConfigOp::Set("nope".into(), "1".into())]).is_err()
        );
        assert!(
            decide_broker_configs(&image, &[ConfigOp::Set("node.id".into(), "2".into())]).is_err()
        );
        assert!(decide_broker_configs(
            &image,
            &[ConfigOp::Set("log.retention.ms".into(), "5".into())]
        )
        .is_ok());
    }
}
