//! DescribeGroups: state, protocol and members of groups this broker coordinates.

use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::GROUP_AUTHORIZATION_FAILED;
use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use crate::group::{GroupRequest, GroupResponse};
use crate::handlers::errors::coordinator_error_code;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 6 };

pub fn handle(ctx: RequestContext, req: DescribeGroupsRequest) -> Reply {
    let version = ctx.version();
    let include_operations = version >= 3 && req.include_authorized_operations;
    let pending: Vec<_> = req
        .groups
        .into_iter()
        .map(|g| {
            let id = g.0.to_string();
            if !ctx.authorize(AclOperation::Describe, &Resource::group(&id)) {
                return (g, Err(GROUP_AUTHORIZATION_FAILED));
            }
            let rx = ctx.apis.groups.call(&id, GroupRequest::Describe { group_id: id.clone() }).map_err(|e| coordinator_error_code(&e));
            (g, rx)
        })
        .collect();
    Reply::later(async move {
        let mut groups = Vec::new();
        for (g, rx) in pending {
            let described = match rx {
                Err(code) => DescribedGroup::default().with_group_id(g).with_error_code(code),
                Ok(rx) => match rx.await {
                    Ok(GroupResponse::Describe(d)) => d,
                    _ => DescribedGroup::default().with_group_id(g).with_error_code(kafka_protocol::error::ResponseError::NotCoordinator.code()),
                },
            };
            // v3+: the operations the principal may do on the group, when asked.
            let described = if include_operations {
                let ops = ctx.authorized_operations(&ctx.apis.image(), &Resource::group(described.group_id.0.as_str()));
                described.with_authorized_operations(ops)
            } else {
                described
            };
            groups.push(fit(described, version));
        }
        ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(groups))
    })
}

fn fit(mut g: DescribedGroup, version: i16) -> DescribedGroup {
    let not_found = kafka_protocol::error::ResponseError::GroupIdNotFound.code();
    if version < 6 {
        g.error_message = None;
        // Before v6 an unknown group is described as Dead, without an error.
        if g.error_code == not_found {
            g.error_code = 0;
        }
    } else if g.error_code == not_found && g.error_message.is_none() {
        g.error_message = Some(crate::protocol::str_bytes(format!("group {} not found", g.group_id.0.as_str())));
    }
    if version < 4 {
        for m in &mut g.members {
            m.group_instance_id = None;
        }
    }
    g
}
