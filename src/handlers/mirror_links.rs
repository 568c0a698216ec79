//! Strata's own admin API for mirror links (key [`STRATA_MIRROR_LINKS_API_KEY`], v0): create,
//! alter, list, describe, pause, resume, promote, fail over, reverse and delete links. Kafka has no
//! public API for this, so the request and response bodies are JSON documents
//! ([`MirrorLinksRequest`], [`MirrorLinksResponse`]) after a Kafka request header v1 and before
//! a response header v0. Changes need ALTER on the CLUSTER resource, reads DESCRIBE on it.
//!
//! [`STRATA_MIRROR_LINKS_API_KEY`]: crate::protocol::STRATA_MIRROR_LINKS_API_KEY

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;
use serde::{Deserialize, Serialize};

use super::authz::CLUSTER_AUTHORIZATION_FAILED;
use super::errors::controller_error_code;
use super::RequestContext;
use crate::controller::mirror::{
    decide_alter_link, decide_create_link, decide_delete_link, decide_failover, decide_link_state,
    decide_promote, decide_reverse, DivergentTail, LinkState, MirrorLinkSpec, MirrorTopicState,
};
use crate::controller::{ControllerError, MetadataImage, MetadataRecord};
use crate::security::acl::{AclOperation, Resource};

/// One operation on links, tagged by `op`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MirrorLinksRequest {
    Create {
        spec: MirrorLinkSpec,
    },
    Alter {
        spec: MirrorLinkSpec,
    },
    List,
    Describe {
        name: String,
    },
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
    /// Makes the named mirror topics writable.
    Promote {
        topics: Vec<String>,
        /// The caller already ran `CatchUp` on every broker: no second wait here.
        #[serde(default)]
        caught_up: bool,
    },
    /// Promotes every topic of the link.
    Failover {
        name: String,
        #[serde(default)]
        caught_up: bool,
    },
    Delete {
        name: String,
    },
    /// A final catch-up of the named mirror topics' partitions led by the answering broker;
    /// `strata mirror` sends it to every broker before promote and failover, so that the
    /// catch-up covers every partition, whoever leads it.
    CatchUp {
        topics: Vec<String>,
    },
    /// Failback: this cluster's topics that `spec` selects become mirrors of the cluster it
    /// names, each partition's divergent tail removed and kept.
    Reverse {
        spec: MirrorLinkSpec,
    },
}

/// A reversed partition's divergent tail as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DivergentTailDescription {
    pub topic: String,
    pub partition: i32,
    pub link: String,
    #[serde(flatten)]
    pub tail: DivergentTail,
}

/// A link as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkDescription {
    pub spec: MirrorLinkSpec,
    pub state: LinkState,
}

/// A mirror topic as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MirrorTopicDescription {
    pub topic: String,
    pub link: String,
    pub state: MirrorTopicState,
    pub partitions: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MirrorLinksResponse {
    /// A Kafka error code; 0 on success.
    pub error_code: i16,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub links: Vec<LinkDescription>,
    #[serde(default)]
    pub topics: Vec<MirrorTopicDescription>,
    /// The divergent tails reported by reversed partitions of the links described.
    #[serde(default)]
    pub divergent_tails: Vec<DivergentTailDescription>,
    /// After a catch-up: the partitions led here still behind the source, with their gap.
    #[serde(default)]
    pub behind: Vec<PartitionBehind>,
}

/// A mirror partition that a final catch-up left behind the source's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionBehind {
    pub topic: String,
    pub partition: i32,
    pub records: i64,
}

impl MirrorLinksResponse {
    fn error(code: i16, message: impl Into<String>) -> MirrorLinksResponse {
        MirrorLinksResponse {
            error_code: code,
            error_message: Some(message.into()),
            ..Default::default()
        }
    }
}

/// Answers one request; the future yields the JSON response body.
pub fn handle(ctx: RequestContext, body: Bytes) -> Pin<Box<dyn Future<Output = Bytes> + Send>> {
    Box::pin(async move {
        let resp = match serde_json::from_slice::<MirrorLinksRequest>(&body) {
            Ok(req) => answer(&ctx, req).await,
            Err(e) => MirrorLinksResponse::error(
                E::InvalidRequest.code(),
                format!("not a mirror links request: {e}"),
            ),
        };
        Bytes::from(serde_json::to_vec(&resp).unwrap_or_default())
    })
}

async fn answer(ctx: &RequestContext, req: MirrorLinksRequest) -> MirrorLinksResponse {
    let read_only = matches!(
        req,
        MirrorLinksRequest::List | MirrorLinksRequest::Describe { .. }
    );
    let operation = if read_only {
        AclOperation::Describe
    } else {
        AclOperation::Alter
    };
    if !ctx.authorize(operation, &Resource::cluster()) {
        return MirrorLinksResponse::error(
            CLUSTER_AUTHORIZATION_FAILED,
            format!("{operation:?} on the CLUSTER resource is required for mirror links"),
        );
    }
    let changed = match req {
        MirrorLinksRequest::List => return describe(&ctx.apis.image(), None),
        MirrorLinksRequest::Describe { name } => {
            let image = ctx.apis.image();
            if !image.mirrors.links.contains_key(&name) {
                return MirrorLinksResponse::error(
                    E::ResourceNotFound.code(),
                    format!("unknown mirror link '{name}'"),
                );
            }
            return describe(&image, Some(&name));
        }
        MirrorLinksRequest::Create { spec } => commit(ctx, |i| decide_create_link(i, &spec)).await,
        MirrorLinksRequest::Alter { spec } => commit(ctx, |i| decide_alter_link(i, &spec)).await,
        MirrorLinksRequest::Pause { name } => {
            commit(ctx, |i| decide_link_state(i, &name, LinkState::Paused)).await
        }
        MirrorLinksRequest::Resume { name } => {
            commit(ctx, |i| decide_link_state(i, &name, LinkState::Active)).await
        }
        MirrorLinksRequest::Promote { topics, caught_up } => {
            if !caught_up {
                let _ = catch_up(ctx, &topics).await;
            }
            commit(ctx, |i| decide_promote(i, &topics)).await
        }
        MirrorLinksRequest::Failover { name, caught_up } => {
            if let (false, Ok((topics, _))) = (caught_up, decide_failover(&ctx.apis.image(), &name))
            {
                let _ = catch_up(ctx, &topics).await;
            }
            commit(ctx, |i| decide_failover(i, &name).map(|(_, r)| r)).await
        }
        MirrorLinksRequest::Delete { name } => commit(ctx, |i| decide_delete_link(i, &name)).await,
        MirrorLinksRequest::CatchUp { topics } => {
            return MirrorLinksResponse {
                behind: catch_up(ctx, &topics).await,
                ..Default::default()
            };
        }
        MirrorLinksRequest::Reverse { spec } => {
            commit(ctx, |i| decide_reverse(i, &spec).map(|(_, r)| r)).await
        }
    };
    match changed {
        Ok(()) => describe(&ctx.apis.image(), None),
        Err(e) => MirrorLinksResponse::error(controller_error_code(&e), e.to_string()),
    }
}

/// How long a promotion waits for a final catch-up with a source that answers.
const CATCH_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Topics caught up at once (each asks the source for its ends on its own connections).
const CATCH_UP_TOPICS_IN_FLIGHT: usize = 8;

/// A final catch-up of the mirror partitions this broker leads, several topics at once, so that a
/// promotion while the source is reachable loses nothing it had committed. Partitions led by
/// other brokers catch up when asked (`CatchUp`, which `strata mirror` sends to every broker
/// first); otherwise they are promoted at the end they reached.
async fn catch_up(ctx: &RequestContext, topics: &[String]) -> Vec<PartitionBehind> {
    let mut out = Vec::new();
    for chunk in topics.chunks(CATCH_UP_TOPICS_IN_FLIGHT) {
        let waits = chunk.iter().map(|topic| async move {
            let behind = ctx
                .apis
                .replicas
                .mirror_catch_up(topic, CATCH_UP_TIMEOUT)
                .await;
            if !behind.is_empty() {
                tracing::warn!(%topic, ?behind, "promoting before the mirror caught up with the source");
            }
            behind
        });
        for (tp, records) in futures::future::join_all(waits).await.into_iter().flatten() {
            out.push(PartitionBehind {
                topic: tp.topic,
                partition: tp.partition.0,
                records,
            });
        }
    }
    out
}

async fn commit(
    ctx: &RequestContext,
    mut decide: impl FnMut(&MetadataImage) -> Result<Vec<MetadataRecord>, ControllerError>,
) -> Result<(), ControllerError> {
    ctx.apis.commit(|image| Ok(((), decide(image)?))).await
}

fn describe(image: &MetadataImage, only: Option<&str>) -> MirrorLinksResponse {
    let wanted = |link: &str| only.is_none_or(|o| o == link);
    MirrorLinksResponse {
        links: image
            .mirrors
            .links
            .values()
            .filter(|l| wanted(&l.spec.name))
            .map(|l| LinkDescription {
                spec: l.spec.clone(),
                state: l.state,
            })
            .collect(),
        topics: image
            .mirrors
            .topics
            .iter()
            .filter(|(_, t)| wanted(&t.link))
            .map(|(name, t)| MirrorTopicDescription {
                topic: name.clone(),
                link: t.link.clone(),
                state: t.state.clone(),
                partitions: image.topic_by_name(name).map_or(0, |t| t.partitions.len()),
            })
            .collect(),
        divergent_tails: image
            .mirrors
            .divergent_tails
            .iter()
            .filter_map(|(topic, tails)| Some((topic, tails, image.mirrors.topic(topic)?)))
            .filter(|(_, _, m)| wanted(&m.link))
            .flat_map(|(topic, tails, m)| {
                tails.iter().map(|(p, tail)| DivergentTailDescription {
                    topic: topic.clone(),
                    partition: *p,
                    link: m.link.clone(),
                    tail: tail.clone(),
                })
            })
            .collect(),
        ..Default::default()
    }
}
