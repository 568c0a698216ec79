//! AlterPartitionReassignments (KIP-455): start, replace or cancel (null replicas) the
//! reassignment of partitions. Decided by `controller::reassignment` against one image and
//! committed in one write; each partition answers its own error. Needs ALTER on the cluster.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ResponseKind,
};
use kafka_protocol::protocol::VersionRange;

use super::authz::message;
use super::errors::controller_error_code;
use super::{Reply, RequestContext};
use crate::controller::balancer::move_throttles;
use crate::controller::reassignment::{decide_reassignments, ReassignmentRequest};
use crate::model::{BrokerId, PartitionIndex};
use crate::protocol::str_bytes;
use crate::security::acl::AclOperation;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

pub fn handle(ctx: RequestContext, req: AlterPartitionReassignmentsRequest) -> Reply {
    // v0 has no flag and always allowed changing the replication factor (KIP-860).
    let allow_rf_change = ctx.version() < 1 || req.allow_replication_factor_change;
    let resp = AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change);
    // Authorization: ALTER on the cluster.
    if let Err(code) = ctx.authorize_cluster(AclOperation::Alter) {
        let resp = resp
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message(code))));
        return Reply::Now(ResponseKind::AlterPartitionReassignments(resp));
    }
    let requests: Vec<ReassignmentRequest> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| ReassignmentRequest {
                topic: t.name.0.to_string(),
                partition: PartitionIndex(p.partition_index),
                target: p
                    .replicas
                    .as_ref()
                    .map(|r| r.iter().map(|b| BrokerId(b.0)).collect()),
            })
        })
        .collect();
    Reply::later(async move {
        let settings = ctx.apis.controller.settings();
        let unclean = settings.unclean_leader_election;
        let outcome = ctx
            .apis
            .commit(|image| {
                let (outcomes, mut records) =
                    decide_reassignments(image, &requests, allow_rf_change, unclean);
                // With strata.balancer.throttle.bytes.per.second set, a move starts throttled.
                let throttles = move_throttles(image, &records, &settings.balancer.effective(image));
                records.extend(throttles);
                Ok((outcomes, records))
            })
            .await;
        let outcomes = match outcome {
            Ok(o) => o,
            Err(e) => {
                let resp = resp
                    .with_error_code(controller_error_code(&e))
                    .with_error_message(Some(str_bytes(e.to_string())));
                return ResponseKind::AlterPartitionReassignments(resp);
            }
        };
        let mut outcomes = outcomes.into_iter();
        let responses = req
            .topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let r = ReassignablePartitionResponse::default()
                            .with_partition_index(p.partition_index);
                        match outcomes.next() {
                            Some(Err(e)) => r
                                .with_error_code(controller_error_code(&e))
                                .with_error_message(Some(str_bytes(e.to_string()))),
                            _ => r,
                        }
                    })
                    .collect();
                ReassignableTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect();
        ResponseKind::AlterPartitionReassignments(resp.with_responses(responses))
    })
}
