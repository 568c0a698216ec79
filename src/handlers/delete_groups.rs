//! DeleteGroups: remove empty groups and their committed offsets (tombstones in the log).

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::GROUP_AUTHORIZATION_FAILED;
use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use crate::group::{GroupRequest, GroupResponse};
use crate::handlers::errors::coordinator_error_code;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

pub fn handle(ctx: RequestContext, req: DeleteGroupsRequest) -> Reply {
    let pending: Vec<_> = req
        .groups_names
        .into_iter()
        .map(|g| {
            let id = g.0.to_string();
            if !ctx.authorize(AclOperation::Delete, &Resource::group(&id)) {
                return (g, Err(GROUP_AUTHORIZATION_FAILED));
            }
            let rx = ctx.apis.groups.call(&id, GroupRequest::Delete { group_id: id.clone() }).map_err(|e| coordinator_error_code(&e));
            (g, rx)
        })
        .collect();
    Reply::later(async move {
        let mut results = Vec::new();
        for (g, rx) in pending {
            let code = match rx {
                Err(code) => code,
                Ok(rx) => match rx.await {
                    Ok(GroupResponse::Delete(c)) => c,
                    _ => E::NotCoordinator.code(),
                },
            };
            results.push(DeletableGroupResult::default().with_group_id(g).with_error_code(code));
        }
        ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results))
    })
}
