//! ConsumerGroupDescribe of one consumer group: epochs, assignor, and per member its
//! subscription, current assignment and target assignment, topics named from the image.

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as WireAssignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{GroupId, TopicName};

use super::records::Assignment;
use super::{ConsumerGroup, TopicsImage};
use crate::protocol::str_bytes;

/// Kafka's `authorizedOperations` when not asked for.
const OPERATIONS_NOT_ASKED: i32 = i32::MIN;

fn to_wire(a: &Assignment, image: &TopicsImage) -> WireAssignment {
    WireAssignment::default().with_topic_partitions(
        a.iter()
            .map(|(t, ps)| {
                TopicPartitions::default()
                    .with_topic_id(*t)
                    .with_topic_name(TopicName(str_bytes(
                        image.name_of(t).unwrap_or_default().to_string(),
                    )))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

impl ConsumerGroup {
    pub fn describe(&self, image: &TopicsImage) -> DescribedGroup {
        DescribedGroup::default()
            .with_group_id(GroupId(str_bytes(self.group_id.clone())))
            .with_group_state(str_bytes(self.state_name()))
            .with_group_epoch(self.epoch)
            .with_assignment_epoch(self.assignment_epoch)
            .with_assignor_name(str_bytes(self.assignor.name()))
            .with_authorized_operations(OPERATIONS_NOT_ASKED)
            .with_members(
                self.members
                    .values()
                    .map(|m| {
                        Member::default()
                            .with_member_id(str_bytes(m.member_id.clone()))
                            .with_instance_id(m.meta.instance_id.clone().map(str_bytes))
                            .with_rack_id(m.meta.rack_id.clone().map(str_bytes))
                            .with_member_epoch(m.member_epoch)
                            .with_client_id(str_bytes(m.meta.client_id.clone()))
                            .with_client_host(str_bytes(m.meta.client_host.clone()))
                            .with_subscribed_topic_names(
                                m.meta
                                    .subscribed_topic_names
                                    .iter()
                                    .map(|n| TopicName(str_bytes(n.clone())))
                                    .collect(),
                            )
                            .with_subscribed_topic_regex(
                                m.meta.subscribed_topic_regex.clone().map(str_bytes),
                            )
                            .with_assignment(to_wire(&m.assigned, image))
                            .with_target_assignment(to_wire(
                                &self.target.get(&m.member_id).cloned().unwrap_or_default(),
                                image,
                            ))
                            // 1: the member speaks the consumer protocol, 0 the classic one.
                            .with_member_type(if m.uses_classic() { 0 } else { 1 })
                    })
                    .collect(),
            )
    }
}
