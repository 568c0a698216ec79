//! SyncGroup: the leader hands in the assignment; every member gets its part.

use kafka_protocol::messages::{ResponseKind, SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::VersionRange;

use super::group_call::call;
use super::{Reply, RequestContext};
use crate::security::acl::AclOperation;
use crate::group::{GroupRequest, GroupResponse};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

pub fn handle(ctx: RequestContext, req: SyncGroupRequest) -> Reply {
    let group = req.group_id.0.to_string();
    call(&ctx, &group, AclOperation::Read, GroupRequest::Sync { req }, |r, code| {
        ResponseKind::SyncGroup(match r {
            Some(GroupResponse::Sync(resp)) => resp,
            _ => SyncGroupResponse::default().with_error_code(code),
        })
    })
}
