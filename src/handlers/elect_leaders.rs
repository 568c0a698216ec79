//! ElectLeaders (KIP-183, KIP-460): preferred or unclean leader election for the partitions
//! named, or for every partition (null list: then only the partitions that needed an election
//! are answered, as Kafka does). Decided by `controller::elections::decide_elect_leader`
//! against one image, committed in one write. Needs ALTER on the cluster.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::message;
use super::errors::controller_error_code;
use super::{Reply, RequestContext};
use crate::controller::elections::{decide_elect_leader, ElectionType};
use crate::controller::ControllerError;
use crate::model::PartitionIndex;
use crate::protocol::{str_bytes, topic_name};
use crate::security::acl::AclOperation;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// One partition's answer: its topic, index, and error (if any).
type Outcome = (String, i32, Result<(), ControllerError>);
/// One partition's answer on the wire: its topic, index, and error code and message (if any).
type Answer = (String, i32, Result<(), (i16, String)>);

pub fn handle(ctx: RequestContext, req: ElectLeadersRequest) -> Reply {
    let asked: Option<Vec<(String, i32)>> = req.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .collect()
    });
    // Authorization: ALTER on the cluster; every partition asked for answers the refusal.
    if let Err(code) = ctx.authorize_cluster(AclOperation::Alter) {
        let refused = asked
            .unwrap_or_default()
            .into_iter()
            .map(|(t, p)| (t, p, Err((code, message(code)))))
            .collect();
        return Reply::Now(response(&ctx, code, refused));
    }
    // v0 has no election type: it is a preferred election.
    let election = match (ctx.version(), req.election_type) {
        (0, _) | (_, 0) => ElectionType::Preferred,
        (_, 1) => ElectionType::Unclean,
        _ => {
            let code = ResponseError::InvalidRequest.code();
            let refused = asked
                .unwrap_or_default()
                .into_iter()
                .map(|(t, p)| (t, p, Err((code, format!("unknown election type {}", req.election_type)))))
                .collect();
            return Reply::Now(response(&ctx, code, refused));
        }
    };
    Reply::later(async move {
        let decided = ctx
            .apis
            .commit(|image| {
                let mut outcomes: Vec<Outcome> = Vec::new();
                let mut records = Vec::new();
                let all = asked.is_none();
                let names: Vec<(String, i32)> = match &asked {
                    Some(a) => a.clone(),
                    None => image
                        .topics
                        .values()
                        .flat_map(|t| t.partitions.keys().map(|i| (t.name.clone(), i.0)))
                        .collect(),
                };
                for (name, index) in names {
                    let outcome = match image.topic_by_name(&name) {
                        None => Err(ControllerError::UnknownTopic(name.clone())),
                        Some(topic) => {
                            decide_elect_leader(image, topic, PartitionIndex(index), election)
                                .map(|r| records.push(r))
                        }
                    };
                    let skip = all && matches!(outcome, Err(ControllerError::ElectionNotNeeded(_)));
                    if !skip {
                        outcomes.push((name, index, outcome));
                    }
                }
                Ok((outcomes, records))
            })
            .await;
        match decided {
            Ok(outcomes) => {
                let answered = outcomes
                    .into_iter()
                    .map(|(t, p, o)| (t, p, o.map_err(|e| (controller_error_code(&e), e.to_string()))))
                    .collect();
                response(&ctx, 0, answered)
            }
            Err(e) => {
                let code = controller_error_code(&e);
                let refused = asked
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(t, p)| (t, p, Err((code, e.to_string()))))
                    .collect();
                response(&ctx, code, refused)
            }
        }
    })
}

fn response(
    ctx: &RequestContext,
    top_level: i16,
    outcomes: Vec<Answer>,
) -> ResponseKind {
    let mut results: Vec<ReplicaElectionResult> = Vec::new();
    for (topic, partition, outcome) in outcomes {
        if results.last().is_none_or(|r| r.topic.0.as_str() != topic) {
            results.push(ReplicaElectionResult::default().with_topic(topic_name(&topic)));
        }
        let r = PartitionResult::default().with_partition_id(partition);
        let r = match outcome {
            Ok(()) => r,
            Err((code, text)) => r.with_error_code(code).with_error_message(Some(str_bytes(text))),
        };
        if let Some(last) = results.last_mut() {
            last.partition_result.push(r);
        }
    }
    let resp = ElectLeadersResponse::default().with_replica_election_results(results);
    // v0 has no top-level error code: a refusal shows in every partition.
    let resp = if ctx.version() >= 1 {
        resp.with_error_code(top_level)
    } else {
        resp
    };
    ResponseKind::ElectLeaders(resp)
}
