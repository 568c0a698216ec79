//! OffsetDelete: remove a group's committed offsets for topics it no longer consumes.

use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::group_call::call;
use super::{Reply, RequestContext};
use crate::security::acl::AclOperation;
use crate::group::{GroupRequest, GroupResponse};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub fn handle(ctx: RequestContext, req: OffsetDeleteRequest) -> Reply {
    let group = req.group_id.0.to_string();
    call(&ctx, &group, AclOperation::Delete, GroupRequest::DeleteOffsets { req }, |r, code| {
        ResponseKind::OffsetDelete(match r {
            Some(GroupResponse::DeleteOffsets(resp)) => resp,
            _ => OffsetDeleteResponse::default().with_error_code(code),
        })
    })
}
