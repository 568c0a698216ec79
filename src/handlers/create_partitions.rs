//! CreatePartitions: grows a topic's partition count.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::{message, TOPIC_AUTHORIZATION_FAILED};
use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use crate::controller::decide_create_partitions;
use crate::model::BrokerId;
use crate::handlers::errors::controller_error_code;
use crate::protocol::str_bytes;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 3 };

pub fn handle(ctx: RequestContext, req: CreatePartitionsRequest) -> Reply {
    Reply::later(async move {
        let mut results = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let name = t.name.0.to_string();
            // Authorization: ALTER on the topic.
            if !ctx.authorize(AclOperation::Alter, &Resource::topic(&name)) {
                let code = TOPIC_AUTHORIZATION_FAILED;
                results.push(CreatePartitionsTopicResult::default().with_name(t.name).with_error_code(code).with_error_message(Some(str_bytes(message(code)))));
                continue;
            }
            let assignments: Option<Vec<Vec<BrokerId>>> =
                t.assignments.as_ref().map(|a| a.iter().map(|x| x.broker_ids.iter().map(|b| BrokerId(b.0)).collect()).collect());
            let outcome = if req.validate_only {
                decide_create_partitions(&ctx.apis.image(), &name, t.count, assignments.as_deref()).map(|_| ())
            } else {
                ctx.apis.commit(|image| Ok(((), decide_create_partitions(image, &name, t.count, assignments.as_deref())?))).await
            };
            let r = CreatePartitionsTopicResult::default().with_name(t.name);
            results.push(match outcome {
                Ok(()) => r,
                Err(e) => r.with_error_code(controller_error_code(&e)).with_error_message(Some(str_bytes(e.to_string()))),
            });
        }
        ResponseKind::CreatePartitions(CreatePartitionsResponse::default().with_results(results))
    })
}
