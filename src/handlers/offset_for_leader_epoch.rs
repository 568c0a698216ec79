//! OffsetForLeaderEpoch: for each partition, the end offset of the requested leader epoch (the
//! start of the next epoch, or the log end for the newest), so a consumer or replica can tell
//! whether its log diverged after a leader change. An epoch older than every epoch the log still
//! knows answers epoch -1 and offset -1 (UNDEFINED), as Kafka does.

use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::TOPIC_AUTHORIZATION_FAILED;
use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use crate::model::{LeaderEpoch, TopicPartition};
use crate::handlers::errors::{partition_error_code, unknown_topic_or_partition};

/// v2 adds the current leader epoch (fencing), v3 the replica id, v4 flexible encoding. v0 and
/// v1 were removed in Kafka 4.0 (KIP-896), whose range this is.
pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 4 };

pub fn handle(ctx: RequestContext, req: OffsetForLeaderEpochRequest) -> Reply {
    // Authorization: CLUSTER_ACTION on the cluster (a follower) covers every topic; otherwise
    // DESCRIBE on each topic.
    let image = ctx.apis.image();
    let replica = ctx.may_list(&image, AclOperation::ClusterAction, &Resource::cluster());
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let allowed = replica || ctx.authorize_in(&image, AclOperation::Describe, &Resource::topic(t.topic.0.as_str()));
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let r = EpochEndOffset::default().with_partition(p.partition);
            if !allowed {
                partitions.push(r.with_error_code(TOPIC_AUTHORIZATION_FAILED).with_end_offset(-1).with_leader_epoch(-1));
                continue;
            }
            let (code, epoch, end) = match ctx.apis.replicas.get(&TopicPartition::new(t.topic.0.to_string(), p.partition)) {
                None => (unknown_topic_or_partition(), -1, -1),
                Some(partition) => match partition.check_leader(LeaderEpoch(p.current_leader_epoch)) {
                    Err(e) => (partition_error_code(&e), -1, -1),
                    Ok(_) => match partition.log().end_offset_for_epoch(LeaderEpoch(p.leader_epoch)) {
                        Some((epoch, end)) => (0, epoch.0, end.0),
                        None => (0, -1, -1),
                    },
                },
            };
            partitions.push(r.with_error_code(code).with_end_offset(end).with_leader_epoch(epoch));
        }
        topics.push(OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(partitions));
    }
    Reply::Now(ResponseKind::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default().with_topics(topics)))
}
