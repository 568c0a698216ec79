//! DescribeConfigs for topics and brokers.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::create_topics::source_of_default;
use super::authz::{message, TOPIC_AUTHORIZATION_FAILED};
use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use crate::config::defs::{node_key, NODE_KEYS};
use crate::handlers::errors::unknown_topic_or_partition;
use crate::protocol::str_bytes;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 4 };

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
/// DescribeConfigs' `ConfigSource` for a topic override.
const SOURCE_TOPIC: i8 = 1;

pub fn handle(ctx: RequestContext, req: DescribeConfigsRequest) -> Reply {
    let image = ctx.apis.image();
    let node = ctx.apis.node_config();
    let v3 = ctx.version() >= 3;
    let results = req
        .resources
        .into_iter()
        .map(|res| {
            let wanted = |k: &str| res.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|w| w.as_str() == k));
            let result = DescribeConfigsResult::default().with_resource_type(res.resource_type).with_resource_name(res.resource_name.clone());
            // Authorization: DESCRIBE_CONFIGS on the topic, or on the cluster for a broker.
            let refused = match res.resource_type {
                RESOURCE_TOPIC => (!ctx.authorize_in(&image, AclOperation::DescribeConfigs, &Resource::topic(&res.resource_name))).then_some(TOPIC_AUTHORIZATION_FAILED),
                RESOURCE_BROKER => ctx.authorize_cluster(AclOperation::DescribeConfigs).err(),
                _ => None,
            };
            if let Some(code) = refused {
                return result.with_error_code(code).with_error_message(Some(str_bytes(message(code))));
            }
            match res.resource_type {
                RESOURCE_TOPIC => {
                    let Some(topic) = image.topic_by_name(&res.resource_name) else {
                        return result
                            .with_error_code(unknown_topic_or_partition())
                            .with_error_message(Some(str_bytes(format!("unknown topic '{}'", &*res.resource_name))));
                    };
                    let configs = topic
                        .config
                        .describe(&node)
                        .into_iter()
                        .filter(|(k, ..)| wanted(k))
                        .map(|(key, value, is_override, kind, doc)| {
                            let default_source = source_of_default(&node, key);
                            let node_key = crate::config::defs::topic_key(key).map(|d| d.node_key).unwrap_or("");
                            let mut synonyms = Vec::new();
                            if req.include_synonyms {
                                if is_override {
                                    synonyms.push(DescribeConfigsSynonym::default().with_name(str_bytes(key)).with_value(Some(str_bytes(value.clone()))).with_source(SOURCE_TOPIC));
                                }
                                if !node_key.is_empty() {
                                    synonyms.push(
                                        DescribeConfigsSynonym::default()
                                            .with_name(str_bytes(node_key))
                                            .with_value(Some(str_bytes(node.get(node_key))))
                                            .with_source(default_source),
                                    );
                                }
                            }
                            DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(key))
                                .with_value(Some(str_bytes(value)))
                                .with_read_only(false)
                                .with_config_source(if is_override { SOURCE_TOPIC } else { default_source })
                                .with_is_sensitive(false)
                                .with_synonyms(synonyms)
                                .with_config_type(if v3 { kind.wire_type() } else { 0 })
                                .with_documentation((v3 && req.include_documentation).then(|| str_bytes(doc)))
                        })
                        .collect();
                    result.with_configs(configs)
                }
                RESOURCE_BROKER => {
                    let name = res.resource_name.as_str();
                    if !name.is_empty() && name != ctx.apis.node_id.to_string() {
                        return result
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(str_bytes(format!("this is broker {}, not '{name}'", ctx.apis.node_id))));
                    }
                    let configs = NODE_KEYS
                        .iter()
                        .filter(|d| wanted(d.name))
                        .map(|d| {
                            let source = node.source(d.name);
                            // Passwords are never sent, as Kafka sends none.
                            let sensitive = crate::config::is_sensitive(d.name);
                            let value = (!sensitive).then(|| str_bytes(node.get(d.name)));
                            let synonyms = if req.include_synonyms {
                                vec![DescribeConfigsSynonym::default()
                                    .with_name(str_bytes(d.name))
                                    .with_value(value.clone())
                                    .with_source(source.wire())]
                            } else {
                                vec![]
                            };
                            DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(d.name))
                                .with_value(value)
                                .with_is_sensitive(sensitive)
                                .with_read_only(!node_key(d.name).is_some_and(|k| k.dynamic))
                                .with_config_source(source.wire())
                                .with_synonyms(synonyms)
                                .with_config_type(if v3 { d.kind.wire_type() } else { 0 })
                                .with_documentation((v3 && req.include_documentation).then(|| str_bytes(d.doc)))
                        })
                        .collect();
                    result.with_configs(configs)
                }
                other => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(format!("unsupported resource type {other}")))),
            }
        })
        .collect();
    Reply::Now(ResponseKind::DescribeConfigs(DescribeConfigsResponse::default().with_results(results)))
}
