//! IncrementalAlterConfigs: set, delete, append to and subtract from config values.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::authz::{message, TOPIC_AUTHORIZATION_FAILED};
use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use crate::controller::{decide_broker_configs, decide_topic_configs, ConfigOp};
use crate::handlers::errors::controller_error_code;
use crate::protocol::str_bytes;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

pub fn handle(ctx: RequestContext, req: IncrementalAlterConfigsRequest) -> Reply {
    Reply::later(async move {
        let mut responses = Vec::with_capacity(req.resources.len());
        for res in req.resources {
            let ops: Result<Vec<ConfigOp>, String> = res
                .configs
                .iter()
                .map(|c| {
                    let key = c.name.to_string();
                    let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                    match c.config_operation {
                        0 => Ok(ConfigOp::Set(key, value)),
                        1 => Ok(ConfigOp::Delete(key)),
                        2 => Ok(ConfigOp::Append(key, value)),
                        3 => Ok(ConfigOp::Subtract(key, value)),
                        other => Err(format!("unknown config operation {other}")),
                    }
                })
                .collect();
            let outcome = match ops {
                Ok(ops) => apply(&ctx, res.resource_type, res.resource_name.as_str(), ops, req.validate_only).await,
                Err(m) => Err((ResponseError::InvalidRequest.code(), m)),
            };
            let r = AlterConfigsResourceResponse::default().with_resource_type(res.resource_type).with_resource_name(res.resource_name);
            responses.push(match outcome {
                Ok(()) => r,
                Err((code, message)) => r.with_error_code(code).with_error_message(Some(str_bytes(message))),
            });
        }
        ResponseKind::IncrementalAlterConfigs(IncrementalAlterConfigsResponse::default().with_responses(responses))
    })
}

/// Decides and (unless `validate_only`) commits config changes on one resource.
pub(super) async fn apply(
    ctx: &RequestContext,
    resource_type: i8,
    name: &str,
    ops: Vec<ConfigOp>,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    // Authorization: ALTER_CONFIGS on the topic, or on the cluster for a broker.
    let refused = match resource_type {
        RESOURCE_TOPIC => (!ctx.authorize(AclOperation::AlterConfigs, &Resource::topic(name))).then_some(TOPIC_AUTHORIZATION_FAILED),
        RESOURCE_BROKER => ctx.authorize_cluster(AclOperation::AlterConfigs).err(),
        _ => None,
    };
    if let Some(code) = refused {
        return Err((code, message(code)));
    }
    let decide = |image: &crate::controller::MetadataImage| match resource_type {
        RESOURCE_TOPIC => decide_topic_configs(image, name, &ops),
        _ => decide_broker_configs(image, &ops),
    };
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER if name.is_empty() || name == ctx.apis.node_id.to_string() => {}
        RESOURCE_BROKER => return Err((ResponseError::InvalidRequest.code(), format!("this is broker {}, not '{name}'", ctx.apis.node_id))),
        other => return Err((ResponseError::InvalidRequest.code(), format!("unsupported resource type {other}"))),
    }
    let result = if validate_only {
        decide(&ctx.apis.image()).map(|_| ())
    } else {
        ctx.apis.commit(|image| Ok(((), decide(image)?))).await
    };
    result.map_err(|e| (controller_error_code(&e), e.to_string()))
}
