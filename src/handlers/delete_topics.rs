//! DeleteTopics: by name (all versions) or by topic id (v6+). The data is removed from disk when
//! the replicas apply the change, before the response is sent.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::{message, TOPIC_AUTHORIZATION_FAILED};
use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use crate::controller::{ControllerError, MetadataRecord};
use crate::model::TopicId;
use crate::handlers::errors::controller_error_code;
use crate::protocol::{str_bytes, topic_name};

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 6 };

pub fn handle(ctx: RequestContext, req: DeleteTopicsRequest) -> Reply {
    let targets: Vec<(Option<String>, uuid::Uuid)> = if ctx.version() >= 6 {
        req.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)).collect()
    } else {
        req.topic_names.iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect()
    };
    let version = ctx.version();
    Reply::later(async move {
        let mut results = Vec::with_capacity(targets.len());
        for (name, id) in targets {
            // Authorization: DELETE on the topic (an unknown topic id stays UNKNOWN_TOPIC_ID).
            let known = name.clone().or_else(|| ctx.apis.image().topic(&TopicId(id)).map(|t| t.name.clone()));
            if known.is_some_and(|n| !ctx.authorize(AclOperation::Delete, &Resource::topic(&n))) {
                results.push(
                    DeletableTopicResult::default()
                        .with_name(name.map(topic_name))
                        .with_topic_id(id)
                        .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                        .with_error_message((version >= 5).then(|| str_bytes(message(TOPIC_AUTHORIZATION_FAILED)))),
                );
                continue;
            }
            let outcome = ctx
                .apis
                .commit(|image| {
                    let topic = match &name {
                        Some(n) => image.topic_by_name(n).ok_or_else(|| ControllerError::UnknownTopic(n.clone()))?,
                        None => image.topic(&TopicId(id)).ok_or(ControllerError::UnknownTopicId(TopicId(id)))?,
                    };
                    let found = (topic.name.clone(), topic.topic_id);
                    Ok((found, vec![MetadataRecord::RemoveTopic { topic_id: topic.topic_id }]))
                })
                .await;
            let r = DeletableTopicResult::default();
            results.push(match outcome {
                Ok((n, tid)) => {
                    tracing::info!(topic = %n, topic_id = %tid, "deleted topic");
                    r.with_name(Some(topic_name(n))).with_topic_id(if version >= 6 { tid.0 } else { uuid::Uuid::nil() })
                }
                Err(e) => r
                    .with_name(name.map(topic_name))
                    .with_topic_id(id)
                    .with_error_code(controller_error_code(&e))
                    .with_error_message((version >= 5).then(|| str_bytes(e.to_string()))),
            });
        }
        ResponseKind::DeleteTopics(DeleteTopicsResponse::default().with_responses(results))
    })
}
