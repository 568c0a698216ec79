//! Heartbeat: a member is alive; the reply says whether a rebalance is under way.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::group_call::call;
use super::{Reply, RequestContext};
use crate::security::acl::AclOperation;
use crate::group::{GroupRequest, GroupResponse};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

pub fn handle(ctx: RequestContext, req: HeartbeatRequest) -> Reply {
    let group = req.group_id.0.to_string();
    call(&ctx, &group, AclOperation::Read, GroupRequest::Heartbeat { req }, |r, code| {
        ResponseKind::Heartbeat(match r {
            Some(GroupResponse::Heartbeat(resp)) => resp,
            _ => HeartbeatResponse::default().with_error_code(code),
        })
    })
}
