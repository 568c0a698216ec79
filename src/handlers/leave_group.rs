//! LeaveGroup: members leave (one before v3, a batch from v3).

use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::group_call::call;
use super::{Reply, RequestContext};
use crate::security::acl::AclOperation;
use crate::group::{GroupRequest, GroupResponse};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

pub fn handle(ctx: RequestContext, req: LeaveGroupRequest) -> Reply {
    let version = ctx.version();
    let group = req.group_id.0.to_string();
    call(&ctx, &group, AclOperation::Read, GroupRequest::Leave { version, req }, move |r, code| {
        let mut resp = match r {
            Some(GroupResponse::Leave(resp)) => resp,
            _ => LeaveGroupResponse::default().with_error_code(code),
        };
        if version < 3 {
            resp.members.clear();
        }
        ResponseKind::LeaveGroup(resp)
    })
}
