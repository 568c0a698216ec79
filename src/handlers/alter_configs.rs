//! AlterConfigs (the legacy, whole-set form): a resource's overrides become exactly the given
//! set. Changes reach the logs when the replicas apply the new image, without a restart.

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::controller::ConfigOp;
use crate::protocol::str_bytes;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

pub fn handle(ctx: RequestContext, req: AlterConfigsRequest) -> Reply {
    Reply::later(async move {
        let mut responses = Vec::with_capacity(req.resources.len());
        for res in req.resources {
            let image = ctx.apis.image();
            let existing: Vec<String> = match res.resource_type {
                super::describe_configs::RESOURCE_TOPIC => {
                    image.topic_by_name(&res.resource_name).map(|t| t.config.overrides.keys().cloned().collect()).unwrap_or_default()
                }
                _ => image.broker_configs.keys().cloned().collect(),
            };
            let given: Vec<(String, Option<String>)> = res.configs.iter().map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()))).collect();
            let mut ops: Vec<ConfigOp> =
                existing.into_iter().filter(|k| !given.iter().any(|(g, _)| g == k)).map(ConfigOp::Delete).collect();
            ops.extend(given.into_iter().map(|(k, v)| match v {
                Some(v) => ConfigOp::Set(k, v),
                None => ConfigOp::Delete(k),
            }));
            let outcome =
                super::incremental_alter_configs::apply(&ctx, res.resource_type, res.resource_name.as_str(), ops, req.validate_only).await;
            let r = AlterConfigsResourceResponse::default().with_resource_type(res.resource_type).with_resource_name(res.resource_name);
            responses.push(match outcome {
                Ok(()) => r,
                Err((code, message)) => r.with_error_code(code).with_error_message(Some(str_bytes(message))),
            });
        }
        ResponseKind::AlterConfigs(AlterConfigsResponse::default().with_responses(responses))
    })
}
