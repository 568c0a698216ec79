//! Strata's own admin API for restores (key [`STRATA_RESTORE_TOPICS_API_KEY`], v0): creates
//! topics under the ids their objects in the tiered-storage bucket are keyed by, which
//! CreateTopics cannot (Kafka assigns ids itself). `strata restore` reads the bucket and sends
//! this; the leaders of the new partitions then find their remote logs and start after their
//! ends (`log::remote`). JSON bodies after a request header v1 and before a response header
//! v0, like StrataMirrorLinks. Needs CREATE on the CLUSTER resource.
//!
//! A topic that already exists under the same name and id is answered as restored (the
//! request is repeatable); under another id it is TOPIC_ALREADY_EXISTS. The cluster's next
//! producer id is first moved past the old cluster's, so that no new producer takes the id of
//! one whose state the restored partitions carry.
//!
//! [`STRATA_RESTORE_TOPICS_API_KEY`]: crate::protocol::STRATA_RESTORE_TOPICS_API_KEY

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;
use serde::{Deserialize, Serialize};

use super::authz::CLUSTER_AUTHORIZATION_FAILED;
use super::errors::controller_error_code;
use super::RequestContext;
use crate::controller::{decide_create_topic_with_id, MetadataRecord, NewTopic, TopicDefaults};
use crate::model::TopicId;
use crate::security::acl::{AclOperation, Resource};

/// One topic to re-create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreTopicSpec {
    pub name: String,
    pub topic_id: uuid::Uuid,
    pub partitions: i32,
    /// -1: the broker default.
    pub replication_factor: i16,
    #[serde(default)]
    pub configs: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreTopicsRequest {
    pub topics: Vec<RestoreTopicSpec>,
    /// Producer ids below it were used by the old cluster (the highest `next_producer_id`
    /// of the topic manifests): the fresh cluster hands out ids from here on.
    #[serde(default)]
    pub next_producer_id: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreTopicResult {
    pub name: String,
    /// A Kafka error code; 0 when the topic exists now with the requested id.
    pub error_code: i16,
    #[serde(default)]
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestoreTopicsResponse {
    pub error_code: i16,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub topics: Vec<RestoreTopicResult>,
}

/// Answers one request; the future yields the JSON response body.
pub fn handle(ctx: RequestContext, body: Bytes) -> Pin<Box<dyn Future<Output = Bytes> + Send>> {
    Box::pin(async move {
        let resp = match serde_json::from_slice::<RestoreTopicsRequest>(&body) {
            Ok(req) => answer(&ctx, req).await,
            Err(e) => RestoreTopicsResponse {
                error_code: E::InvalidRequest.code(),
                error_message: Some(format!("not a restore request: {e}")),
                topics: Vec::new(),
            },
        };
        Bytes::from(serde_json::to_vec(&resp).unwrap_or_default())
    })
}

async fn answer(ctx: &RequestContext, req: RestoreTopicsRequest) -> RestoreTopicsResponse {
    if !ctx.authorize(AclOperation::Create, &Resource::cluster()) {
        return RestoreTopicsResponse {
            error_code: CLUSTER_AUTHORIZATION_FAILED,
            error_message: Some("CREATE on the CLUSTER resource is required to restore".into()),
            topics: Vec::new(),
        };
    }
    let node = ctx.apis.node_config();
    let defaults = TopicDefaults {
        num_partitions: node.get_i32("num.partitions"),
        replication_factor: node.get_i32("default.replication.factor") as i16,
    };
    if req.next_producer_id > ctx.apis.image().next_producer_id {
        let next = req.next_producer_id;
        let broker_id = ctx.apis.node_id;
        // Applied as a maximum, so repeating it (or racing an allocation) never moves it back.
        let r = ctx
            .apis
            .commit(|_| {
                Ok((
                    (),
                    vec![MetadataRecord::ProducerIds {
                        broker_id,
                        next_producer_id: next,
                    }],
                ))
            })
            .await;
        if let Err(e) = r {
            return RestoreTopicsResponse {
                error_code: controller_error_code(&e),
                error_message: Some(format!("moving the next producer id: {e}")),
                topics: Vec::new(),
            };
        }
    }
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let id = TopicId(t.topic_id);
        let existing = ctx.apis.image().topic_by_name(&t.name).map(|e| e.topic_id);
        let (error_code, error_message) = match existing {
            Some(e) if e == id => (0, None),
            Some(e) => (
                E::TopicAlreadyExists.code(),
                Some(format!("'{}' exists with another id ({})", t.name, e.0)),
            ),
            None => {
                let topic = NewTopic {
                    name: t.name.clone(),
                    num_partitions: t.partitions,
                    replication_factor: t.replication_factor,
                    assignments: Vec::new(),
                    configs: t
                        .configs
                        .iter()
                        .map(|(k, v)| (k.clone(), Some(v.clone())))
                        .collect(),
                };
                match ctx
                    .apis
                    .commit(|image| decide_create_topic_with_id(image, &topic, defaults, id))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(topic = %t.name, topic_id = %t.topic_id, partitions = t.partitions, "restored a topic from the object store");
                        (0, None)
                    }
                    Err(e) => (controller_error_code(&e), Some(e.to_string())),
                }
            }
        };
        topics.push(RestoreTopicResult {
            name: t.name,
            error_code,
            error_message,
        });
    }
    RestoreTopicsResponse {
        topics,
        ..Default::default()
    }
}
