//! OffsetDelete: remove a group's committed offsets for topics it no longer consumes.

use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::TOPIC_AUTHORIZATION_FAILED;
use super::group_call::call;
use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use crate::group::{GroupRequest, GroupResponse};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub fn handle(ctx: RequestContext, mut req: OffsetDeleteRequest) -> Reply {
    let group = req.group_id.0.to_string();
    // Authorization: DELETE on the group (in `call`), and READ on each topic, whose partitions
    // answer TOPIC_AUTHORIZATION_FAILED otherwise. Topics are checked only for an allowed group,
    // so a refused group is one refusal.
    let image = ctx.apis.image();
    let mut refused: Vec<OffsetDeleteResponseTopic> = Vec::new();
    if ctx.may_list(&image, AclOperation::Delete, &Resource::group(&group)) {
        req.topics.retain(|t| {
            let allowed = ctx.authorize_in(&image, AclOperation::Read, &Resource::topic(t.name.0.as_str()));
            if !allowed {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| OffsetDeleteResponsePartition::default().with_partition_index(p.partition_index).with_error_code(TOPIC_AUTHORIZATION_FAILED))
                    .collect();
                refused.push(OffsetDeleteResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions));
            }
            allowed
        });
    }
    call(&ctx, &group, AclOperation::Delete, GroupRequest::DeleteOffsets { req }, move |r, code| {
        ResponseKind::OffsetDelete(match r {
            Some(GroupResponse::DeleteOffsets(mut resp)) => {
                if resp.error_code == 0 {
                    resp.topics.extend(refused.iter().cloned());
                }
                resp
            }
            _ => OffsetDeleteResponse::default().with_error_code(code),
        })
    })
}
