//! CreateTopics: validated by the controller's decision function, committed to the metadata log.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::{message, TOPIC_AUTHORIZATION_FAILED};
use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use crate::config::ConfigSource;
use crate::controller::{decide_create_topic, NewTopic, TopicDefaults};
use crate::model::BrokerId;
use crate::handlers::errors::controller_error_code;
use crate::protocol::str_bytes;

pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 7 };

pub fn handle(ctx: RequestContext, req: CreateTopicsRequest) -> Reply {
    Reply::later(async move {
        let node = ctx.apis.node_config();
        let defaults = TopicDefaults {
            num_partitions: node.get_i32("num.partitions"),
            replication_factor: node.get_i32("default.replication.factor") as i16,
        };
        let mut names = std::collections::HashMap::new();
        for t in &req.topics {
            *names.entry(t.name.0.to_string()).or_insert(0) += 1;
        }
        let mut results = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let name = t.name.0.to_string();
            let result = CreatableTopicResult::default().with_name(t.name.clone());
            if names.get(&name).copied().unwrap_or(0) > 1 {
                results.push(
                    result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(str_bytes("topic appears more than once in the request"))),
                );
                continue;
            }
            // Authorization: CREATE on the cluster or on the topic.
            let image = ctx.apis.image();
            if !ctx.may_list(&image, AclOperation::Create, &Resource::cluster()) && !ctx.authorize_in(&image, AclOperation::Create, &Resource::topic(&name)) {
                results.push(
                    result
                        .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                        .with_error_message(Some(str_bytes(message(TOPIC_AUTHORIZATION_FAILED))))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1),
                );
                continue;
            }
            let topic = NewTopic {
                name: name.clone(),
                num_partitions: t.num_partitions,
                replication_factor: t.replication_factor,
                assignments: t.assignments.iter().map(|a| a.broker_ids.iter().map(|b| BrokerId(b.0)).collect()).collect(),
                configs: t.configs.iter().map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()))).collect(),
            };
            let outcome = if req.validate_only {
                let image = ctx.apis.image();
                decide_create_topic(&image, &topic, defaults).map(|(id, records)| (id, records, image))
            } else {
                match ctx.apis.commit(|image| decide_create_topic(image, &topic, defaults).map(|(id, r)| (id, r))).await {
                    Ok(id) => Ok((id, vec![], ctx.apis.image())),
                    Err(e) => Err(e),
                }
            };
            match outcome {
                Ok((id, records, image)) => {
                    // With validate_only the topic is described from the records it would write.
                    let mut preview = (*image).clone();
                    for r in &records {
                        preview.apply(preview.offset, r);
                    }
                    let Some(created) = preview.topic(&id) else {
                        results.push(result.with_error_code(ResponseError::UnknownServerError.code()));
                        continue;
                    };
                    let rf = created.partitions.values().next().map(|p| p.replicas.len()).unwrap_or(0);
                    let configs = created
                        .config
                        .describe(&node)
                        .into_iter()
                        .map(|(key, value, is_override, _, _)| {
                            let source = if is_override { 1 } else { source_of_default(&node, key) };
                            CreatableTopicConfigs::default()
                                .with_name(str_bytes(key))
                                .with_value(Some(str_bytes(value)))
                                .with_config_source(source)
                        })
                        .collect();
                    results.push(
                        result
                            .with_topic_id(if ctx.version() >= 7 { id.0 } else { uuid::Uuid::nil() })
                            .with_num_partitions(created.partitions.len() as i32)
                            .with_replication_factor(rf as i16)
                            .with_configs(Some(configs)),
                    );
                    if !req.validate_only {
                        tracing::info!(topic = %name, topic_id = %id, "created topic");
                    }
                }
                Err(e) => results.push(
                    result
                        .with_error_code(controller_error_code(&e))
                        .with_error_message(Some(str_bytes(e.to_string())))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1),
                ),
            }
        }
        ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(results))
    })
}

/// DescribeConfigs' source for a topic key that is not overridden: where its node default came from.
pub fn source_of_default(node: &crate::config::NodeConfig, topic_key: &str) -> i8 {
    let node_key = crate::config::defs::topic_key(topic_key).map(|d| d.node_key).unwrap_or("");
    match node.source(node_key) {
        ConfigSource::Default => 5,
        ConfigSource::Dynamic => 3,
        _ => 4,
    }
}
