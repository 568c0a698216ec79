//! JoinGroup: a member joins (or rejoins) a group; answered when the rebalance completes.

use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::consumer_group_heartbeat::topics_image;
use super::group_call::{call, client_host, client_id};
use super::{Reply, RequestContext};
use crate::security::acl::AclOperation;
use crate::group::{GroupRequest, GroupResponse};
use crate::protocol::str_bytes;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 9 };

pub fn handle(ctx: RequestContext, req: JoinGroupRequest) -> Reply {
    let version = ctx.version();
    let group = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    // The topics of the image serve a classic member joining a consumer group (a mixed group).
    let image = Some(topics_image(&ctx));
    let request = GroupRequest::Join { version, client_id: client_id(&ctx), client_host: client_host(&ctx), req, image };
    call(&ctx, &group, AclOperation::Read, request, move |r, code| {
        let resp = match r {
            Some(GroupResponse::Join(resp)) => resp,
            _ => JoinGroupResponse::default().with_error_code(code).with_generation_id(-1).with_member_id(str_bytes(member_id.clone())),
        };
        ResponseKind::JoinGroup(fit(resp, version))
    })
}

/// Fields older versions cannot carry.
fn fit(mut resp: JoinGroupResponse, version: i16) -> JoinGroupResponse {
    if version < 9 {
        resp.skip_assignment = false;
    }
    if version < 7 && resp.protocol_name.is_none() {
        // Non-nullable before v7.
        resp.protocol_name = Some(str_bytes(""));
    }
    resp
}
