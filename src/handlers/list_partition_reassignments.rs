//! ListPartitionReassignments: the partitions being moved, with their replicas and the
//! replicas being added and removed, all of them or those asked for. Needs DESCRIBE on the
//! cluster. A partition asked for that is not moving is left out, as Kafka does; an unknown
//! topic or partition too.

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId as WireBrokerId, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::VersionRange;

use super::authz::message;
use super::{Reply, RequestContext};
use crate::controller::reassignment::ongoing_reassignments;
use crate::controller::PartitionRegistration;
use crate::model::{BrokerId, PartitionIndex};
use crate::protocol::{str_bytes, topic_name};
use crate::security::acl::AclOperation;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

fn wire(ids: &[BrokerId]) -> Vec<WireBrokerId> {
    ids.iter().map(|b| WireBrokerId(b.0)).collect()
}

fn ongoing(index: PartitionIndex, p: &PartitionRegistration) -> OngoingPartitionReassignment {
    OngoingPartitionReassignment::default()
        .with_partition_index(index.0)
        .with_replicas(wire(&p.replicas))
        .with_adding_replicas(wire(&p.adding_replicas))
        .with_removing_replicas(wire(&p.removing_replicas))
}

pub fn handle(ctx: RequestContext, req: ListPartitionReassignmentsRequest) -> Reply {
    let resp = ListPartitionReassignmentsResponse::default();
    // Authorization: DESCRIBE on the cluster.
    if let Err(code) = ctx.authorize_cluster(AclOperation::Describe) {
        let resp = resp
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message(code))));
        return Reply::Now(ResponseKind::ListPartitionReassignments(resp));
    }
    let image = ctx.apis.image();
    let topics: Vec<OngoingTopicReassignment> = match &req.topics {
        None => {
            let mut by_topic: Vec<OngoingTopicReassignment> = Vec::new();
            for (name, index, p) in ongoing_reassignments(&image) {
                if by_topic.last().is_none_or(|t| t.name.0.as_str() != name) {
                    by_topic.push(OngoingTopicReassignment::default().with_name(topic_name(name)));
                }
                if let Some(t) = by_topic.last_mut() {
                    t.partitions.push(ongoing(index, p));
                }
            }
            by_topic
        }
        Some(asked) => asked
            .iter()
            .filter_map(|t| {
                let topic = image.topic_by_name(t.name.0.as_str())?;
                let partitions: Vec<_> = t
                    .partition_indexes
                    .iter()
                    .filter_map(|i| {
                        let index = PartitionIndex(*i);
                        let p = topic.partitions.get(&index)?;
                        p.is_reassigning().then(|| ongoing(index, p))
                    })
                    .collect();
                (!partitions.is_empty()).then(|| {
                    OngoingTopicReassignment::default()
                        .with_name(TopicName(t.name.0.clone()))
                        .with_partitions(partitions)
                })
            })
            .collect(),
    };
    Reply::Now(ResponseKind::ListPartitionReassignments(
        resp.with_topics(topics),
    ))
}
