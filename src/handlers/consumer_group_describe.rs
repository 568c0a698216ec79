//! ConsumerGroupDescribe (KIP-848): consumer groups with their epochs, assignor, members,
//! current and target assignments. Groups are asked of their coordinator shards in turn;
//! a group coordinated elsewhere answers NOT_COORDINATOR.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::consumer_group_heartbeat::topics_image;
use super::authz::GROUP_AUTHORIZATION_FAILED;
use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use crate::group::{GroupRequest, GroupResponse};
use crate::handlers::errors::coordinator_error_code;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

pub fn handle(ctx: RequestContext, req: ConsumerGroupDescribeRequest) -> Reply {
    let image = topics_image(&ctx);
    let version = ctx.version();
    let pending: Vec<_> = req
        .group_ids
        .iter()
        .map(|g| {
            let id = g.0.to_string();
            // Authorization: DESCRIBE on the group, as DescribeGroups.
            if !ctx.authorize(AclOperation::Describe, &Resource::group(&id)) {
                return (id, Err(GROUP_AUTHORIZATION_FAILED));
            }
            let rx = ctx
                .apis
                .groups
                .call(&id, GroupRequest::ConsumerDescribe { group_ids: vec![id.clone()], image: image.clone() })
                .map_err(|e| coordinator_error_code(&e));
            (id, rx)
        })
        .collect();
    Reply::later(async move {
        let mut groups = Vec::with_capacity(pending.len());
        for (id, rx) in pending {
            let failed = |code: i16| DescribedGroup::default().with_group_id(GroupId(crate::protocol::str_bytes(id.clone()))).with_error_code(code);
            match rx {
                Err(code) => groups.push(failed(code)),
                Ok(rx) => match rx.await {
                    Ok(GroupResponse::ConsumerDescribe(gs)) => groups.extend(gs),
                    _ => groups.push(failed(E::NotCoordinator.code())),
                },
            }
        }
        if version < 1 {
            for g in &mut groups {
                for m in &mut g.members {
                    m.member_type = -1;
                }
            }
        }
        ResponseKind::ConsumerGroupDescribe(ConsumerGroupDescribeResponse::default().with_groups(groups))
    })
}
