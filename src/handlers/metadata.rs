//! Metadata: brokers, controller, topics and partitions from the metadata image, with
//! auto-creation of missing topics when the client and `auto.create.topics.enable` allow it.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::{BrokerId as WireBrokerId, MetadataRequest, MetadataResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::TOPIC_AUTHORIZATION_FAILED;
use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use super::KafkaApis;
use crate::controller::{decide_create_topic, validate_topic_name, MetadataImage, NewTopic, TopicDefaults, TopicImage};
use crate::model::{BrokerId, TopicId};
use crate::handlers::errors::{controller_error_code, unknown_topic_id, unknown_topic_or_partition};
use crate::protocol::{str_bytes, topic_name};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 13 };

/// Topics whose names start with this are internal (`__consumer_offsets`).
const INTERNAL_PREFIX: &str = "__";

pub fn handle(ctx: RequestContext, req: MetadataRequest) -> Reply {
    let image = ctx.apis.image();
    let version = ctx.version();
    // v0 sends an empty list for "all topics"; later versions send null.
    let all = req.topics.is_none() || (version == 0 && req.topics.as_ref().is_some_and(Vec::is_empty));
    let node = ctx.apis.node_config();
    let auto_create = node.get_bool("auto.create.topics.enable") && (version < 4 || req.allow_auto_topic_creation);
    let mut missing: Vec<String> = if all {
        Vec::new()
    } else {
        req.topics
            .iter()
            .flatten()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .filter(|n| image.topic_by_name(n).is_none() && validate_topic_name(n).is_ok())
            .collect()
    };
    // Authorization: auto-creation needs CREATE on the cluster or on the topic; a topic the
    // principal may not create (but may describe) is TOPIC_AUTHORIZATION_FAILED. DESCRIBE
    // itself is checked, and audited, in `build`.
    // A topic the principal may not DESCRIBE is never created (`build` refuses it).
    missing.retain(|n| ctx.may_list(&image, AclOperation::Describe, &Resource::topic(n)));
    let mut refused: Vec<(String, i16)> = Vec::new();
    if auto_create && !missing.is_empty() && !ctx.may_list(&image, AclOperation::Create, &Resource::cluster()) {
        missing.retain(|n| {
            let may = ctx.authorize_in(&image, AclOperation::Create, &Resource::topic(n));
            if !may {
                refused.push((n.clone(), TOPIC_AUTHORIZATION_FAILED));
            }
            may
        });
    }
    if !auto_create || missing.is_empty() {
        return Reply::Now(ResponseKind::Metadata(build(&ctx, &image, &ctx.listener.name, &req, all, &refused, version)));
    }
    let defaults = TopicDefaults {
        num_partitions: node.get_i32("num.partitions"),
        replication_factor: node.get_i32("default.replication.factor") as i16,
    };
    Reply::later(async move {
        let mut failed = refused;
        for name in missing {
            let topic = NewTopic { name: name.clone(), num_partitions: -1, replication_factor: -1, assignments: vec![], configs: vec![] };
            let result = ctx.apis.commit(|image| decide_create_topic(image, &topic, defaults)).await;
            match result {
                Ok(_) => tracing::info!(topic = %name, "auto-created topic"),
                Err(crate::controller::ControllerError::TopicExists(_)) => {}
                Err(e) => {
                    tracing::warn!(topic = %name, error = %e, "auto-creating topic failed");
                    failed.push((name, controller_error_code(&e)));
                }
            }
        }
        let image = ctx.apis.image();
        ResponseKind::Metadata(build(&ctx, &image, &ctx.listener.name, &req, all, &failed, version))
    })
}

fn build(
    ctx: &RequestContext,
    image: &MetadataImage,
    listener: &str,
    req: &MetadataRequest,
    all: bool,
    failed: &[(String, i16)],
    version: i16,
) -> MetadataResponse {
    let apis: &KafkaApis = &ctx.apis;
    // Authorization: a listing leaves out topics the principal may not DESCRIBE; a topic asked
    // for by name or id is TOPIC_AUTHORIZATION_FAILED (checked before existence, so a refused
    // principal cannot probe which names exist).
    let may_describe = |name: &str| ctx.authorize_in(image, AclOperation::Describe, &Resource::topic(name));
    let refused = |name: Option<String>, id: uuid::Uuid| {
        MetadataResponseTopic::default().with_name(name.map(topic_name)).with_topic_id(id).with_error_code(TOPIC_AUTHORIZATION_FAILED)
    };
    let brokers = image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        // A broker without the client's listener is left out, as Kafka does.
        .filter_map(|b| b.endpoint(listener).map(|e| (b, e)))
        .map(|(b, (host, port))| {
            MetadataResponseBroker::default()
                .with_node_id(WireBrokerId(b.broker_id.0))
                .with_host(str_bytes(host.to_string()))
                .with_port(i32::from(port))
                .with_rack(b.rack.clone().filter(|_| version >= 1).map(str_bytes))
        })
        .collect();
    // A leader this broker's fetcher just lost (its connection broke, or its port refuses) is
    // most likely dead though not yet fenced: report its partitions leaderless, so clients poll
    // for the new leader instead of the dead one. One snapshot per request, usually empty.
    let unreachable = apis.replicas.unreachable_leaders();
    let unreachable = |leader: BrokerId| leader != apis.node_id && unreachable.contains(&leader);
    // v8+: the operations the principal may do on each topic (and, v8-v10, the cluster), when asked.
    let topic_operations = version >= 8 && req.include_topic_authorized_operations;
    let describe = |t: &TopicImage| {
        let r = topic_response(image, t, version, &unreachable);
        if topic_operations {
            r.with_topic_authorized_operations(ctx.authorized_operations(image, &Resource::topic(&t.name)))
        } else {
            r
        }
    };
    let topics = if all {
        image.topics.values().filter(|t| ctx.may_list(image, AclOperation::Describe, &Resource::topic(&t.name))).map(describe).collect()
    } else {
        req.topics
            .iter()
            .flatten()
            .map(|t| {
                if let Some(name) = &t.name {
                    let name = name.0.to_string();
                    if !may_describe(&name) {
                        return refused(Some(name), uuid::Uuid::nil());
                    }
                    match image.topic_by_name(&name) {
                        Some(topic) => describe(topic),
                        None => {
                            let code = failed
                                .iter()
                                .find(|(n, _)| *n == name)
                                .map(|(_, c)| *c)
                                .unwrap_or_else(|| match validate_topic_name(&name) {
                                    Ok(()) => unknown_topic_or_partition(),
                                    Err(_) => ResponseError::InvalidTopicException.code(),
                                });
                            MetadataResponseTopic::default().with_name(Some(topic_name(name))).with_error_code(code)
                        }
                    }
                } else {
                    match image.topic(&TopicId(t.topic_id)) {
                        Some(topic) if !may_describe(&topic.name) => refused(None, t.topic_id),
                        Some(topic) => describe(topic),
                        None => MetadataResponseTopic::default().with_topic_id(t.topic_id).with_error_code(unknown_topic_id()),
                    }
                }
            })
            .collect()
    };
    let cluster_operations = (8..=10).contains(&version) && req.include_cluster_authorized_operations;
    let response = if cluster_operations {
        MetadataResponse::default().with_cluster_authorized_operations(ctx.authorized_operations(image, &Resource::cluster()))
    } else {
        MetadataResponse::default()
    };
    response
        .with_brokers(brokers)
        .with_cluster_id((version >= 2).then(|| str_bytes(apis.cluster_id.clone())))
        .with_controller_id(WireBrokerId(if version >= 1 { apis.node_id.0 } else { -1 }))
        .with_topics(topics)
}

fn topic_response(
    image: &MetadataImage,
    topic: &TopicImage,
    version: i16,
    unreachable: &dyn Fn(BrokerId) -> bool,
) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|(index, p)| {
            let offline: Vec<WireBrokerId> = p
                .replicas
                .iter()
                .filter(|r| image.brokers.get(r).is_none_or(|b| b.fenced))
                .map(|r| WireBrokerId(r.0))
                .collect();
            let leader = if p.leader.0 >= 0 && unreachable(p.leader) { -1 } else { p.leader.0 };
            let error_code = if leader < 0 { ResponseError::LeaderNotAvailable.code() } else { 0 };
            MetadataResponsePartition::default()
                .with_error_code(error_code)
                .with_partition_index(index.0)
                .with_leader_id(WireBrokerId(leader))
                .with_leader_epoch(if version >= 7 { p.leader_epoch.0 } else { -1 })
                .with_replica_nodes(p.replicas.iter().map(|r| WireBrokerId(r.0)).collect())
                .with_isr_nodes(p.isr.iter().map(|r| WireBrokerId(r.0)).collect())
                .with_offline_replicas(if version >= 5 { offline } else { Vec::new() })
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(topic.name.clone())))
        .with_topic_id(if version >= 10 { topic.topic_id.0 } else { uuid::Uuid::nil() })
        .with_is_internal(version >= 1 && topic.name.starts_with(INTERNAL_PREFIX))
        .with_partitions(partitions)
}

/// The active controller's id, -1 while there is none (an election is under way).
///
/// Metadata does not use it: as in KRaft, clients are told a live broker (this one) is the
/// controller, since every broker forwards controller requests to the active controller, so a
/// client never waits on the quorum's own failover to find where to send CreateTopics.
pub fn active_controller(apis: &super::KafkaApis) -> i32 {
    apis.controller.leader_id().map(|id| id as i32).unwrap_or(-1)
}
