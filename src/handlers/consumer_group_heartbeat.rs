//! ConsumerGroupHeartbeat (KIP-848): a consumer-protocol member joins, stays alive, reports
//! its partitions and learns its assignment; decided by the group's coordinator shard with the
//! topics of the metadata image as they are now.

use std::sync::Arc;

use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::group_call::{call, client_host, client_id};
use super::{Reply, RequestContext};
use crate::group::consumer::{TopicMeta, TopicsImage};
use crate::group::state::ConsumerHeartbeat;
use crate::group::{GroupRequest, GroupResponse};
use crate::security::acl::AclOperation;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

/// The topics of the image as a consumer group sees them. Built per request: the cost is one
/// pass over the topics, every heartbeat interval per member.
pub(super) fn topics_image(ctx: &RequestContext) -> Arc<TopicsImage> {
    let image = ctx.apis.image();
    Arc::new(TopicsImage {
        version: image.offset,
        by_name: image
            .topics
            .values()
            .map(|t| (t.name.clone(), TopicMeta { id: t.topic_id.0, partitions: t.partitions.len() as i32 }))
            .collect(),
    })
}

pub fn handle(ctx: RequestContext, req: ConsumerGroupHeartbeatRequest) -> Reply {
    let group = req.group_id.0.to_string();
    let hb = ConsumerHeartbeat {
        version: ctx.version(),
        client_id: client_id(&ctx),
        client_host: client_host(&ctx),
        new_member_id: uuid::Uuid::new_v4().simple().to_string(),
        image: topics_image(&ctx),
        req,
    };
    // Authorization: READ on the group, as JoinGroup and Heartbeat.
    call(&ctx, &group, AclOperation::Read, GroupRequest::ConsumerHeartbeat(Box::new(hb)), |r, code| {
        ResponseKind::ConsumerGroupHeartbeat(match r {
            Some(GroupResponse::ConsumerHeartbeat(resp)) => resp,
            _ => ConsumerGroupHeartbeatResponse::default().with_error_code(code),
        })
    })
}
