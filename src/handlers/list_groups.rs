//! ListGroups: the groups this broker coordinates, filtered by state (v4+) and type (v5+).

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use crate::group::{GroupRequest, GroupResponse};
use crate::handlers::errors::coordinator_error_code;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

pub fn handle(ctx: RequestContext, req: ListGroupsRequest) -> Reply {
    let version = ctx.version();
    let receivers = match ctx.apis.groups.call_all(GroupRequest::List) {
        Ok(r) => r,
        Err(e) => return Reply::Now(ResponseKind::ListGroups(ListGroupsResponse::default().with_error_code(coordinator_error_code(&e)))),
    };
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    Reply::later(async move {
        let mut groups = Vec::new();
        let mut error = 0;
        for rx in receivers {
            match rx.await {
                Ok(GroupResponse::List(l)) => groups.extend(l),
                _ => error = E::CoordinatorNotAvailable.code(),
            }
        }
        // Authorization: DESCRIBE on the cluster lists every group; otherwise only the groups
        // the principal may DESCRIBE.
        let image = ctx.apis.image();
        if !ctx.may_list(&image, AclOperation::Describe, &Resource::cluster()) {
            groups.retain(|g| ctx.may_list(&image, AclOperation::Describe, &Resource::group(g.group_id.0.as_str())));
        }
        groups.retain(|g| {
            (states.is_empty() || states.contains(&g.group_state.to_lowercase())) && (types.is_empty() || types.contains(&g.group_type.to_lowercase()))
        });
        for g in &mut groups {
            if version < 4 {
                g.group_state = Default::default();
            }
            if version < 5 {
                g.group_type = Default::default();
            }
        }
        ResponseKind::ListGroups(ListGroupsResponse::default().with_error_code(error).with_groups(groups))
    })
}
