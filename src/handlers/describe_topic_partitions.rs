//! DescribeTopicPartitions (KIP-966): topics and their partitions from the metadata image, in
//! topic-name order, at most `response_partition_limit` partitions a response (capped by
//! `max.request.partition.size.limit`), with a cursor to continue from. Kafka's admin client
//! describes topics with it.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{BrokerId as WireBrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::errors::unknown_topic_or_partition;
use super::authz::TOPIC_AUTHORIZATION_FAILED;
use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use crate::controller::{validate_topic_name, MetadataImage, TopicImage};
use crate::protocol::topic_name;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub fn handle(ctx: RequestContext, req: DescribeTopicPartitionsRequest) -> Reply {
    let image = ctx.apis.image();
    let cap = ctx.apis.node_config().get_i32("max.request.partition.size.limit").max(1);
    let limit = if req.response_partition_limit > 0 { req.response_partition_limit.min(cap) } else { cap } as usize;
    // Authorization: a listing leaves out topics the principal may not DESCRIBE; a topic
    // asked for by name is TOPIC_AUTHORIZATION_FAILED.
    let mut refused = std::collections::HashSet::new();
    let mut names: Vec<String> = if req.topics.is_empty() {
        image.topics.values().filter(|t| ctx.may_list(&image, AclOperation::Describe, &Resource::topic(&t.name))).map(|t| t.name.clone()).collect()
    } else {
        let names: Vec<String> = req.topics.iter().map(|t| t.name.0.to_string()).collect();
        refused = names.iter().filter(|n| !ctx.authorize_in(&image, AclOperation::Describe, &Resource::topic(n))).cloned().collect();
        names
    };
    names.sort();
    names.dedup();
    let cursor = req.cursor.as_ref().map(|c| (c.topic_name.0.to_string(), c.partition_index.max(0)));
    if let Some((topic, _)) = &cursor {
        if !req.topics.is_empty() && !names.contains(topic) {
            let response = DescribeTopicPartitionsResponse::default();
            return Reply::Now(ResponseKind::DescribeTopicPartitions(response.with_topics(vec![
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topic_name(topic.clone())))
                    .with_error_code(ResponseError::InvalidRequest.code()),
            ])));
        }
    }
    let mut response = describe(&image, &names, &refused, cursor, limit);
    // The operations the principal may do on each topic described.
    for t in response.topics.iter_mut().filter(|t| t.error_code == 0) {
        if let Some(name) = &t.name {
            t.topic_authorized_operations = ctx.authorized_operations(&image, &Resource::topic(name.0.as_str()));
        }
    }
    Reply::Now(ResponseKind::DescribeTopicPartitions(response))
}

/// Describes `names` (sorted) from `cursor` on, stopping after `limit` partitions.
fn describe(image: &MetadataImage, names: &[String], refused: &std::collections::HashSet<String>, cursor: Option<(String, i32)>, limit: usize) -> DescribeTopicPartitionsResponse {
    let mut topics = Vec::new();
    let mut left = limit;
    let mut next_cursor = None;
    for name in names {
        if let Some((from, _)) = &cursor {
            if name < from {
                continue;
            }
        }
        if left == 0 {
            next_cursor = Some(Cursor::default().with_topic_name(topic_name(name.clone())).with_partition_index(0));
            break;
        }
        if refused.contains(name) {
            topics.push(DescribeTopicPartitionsResponseTopic::default().with_name(Some(topic_name(name.clone()))).with_error_code(TOPIC_AUTHORIZATION_FAILED));
            continue;
        }
        let Some(topic) = image.topic_by_name(name) else {
            let code = if validate_topic_name(name).is_ok() { unknown_topic_or_partition() } else { ResponseError::InvalidTopicException.code() };
            topics.push(DescribeTopicPartitionsResponseTopic::default().with_name(Some(topic_name(name.clone()))).with_error_code(code));
            continue;
        };
        let first = match &cursor {
            Some((from, index)) if from == name => *index,
            _ => 0,
        };
        let (response, next) = describe_topic(image, topic, first, &mut left);
        topics.push(response);
        if let Some(index) = next {
            next_cursor = Some(Cursor::default().with_topic_name(topic_name(name.clone())).with_partition_index(index));
            break;
        }
    }
    DescribeTopicPartitionsResponse::default().with_topics(topics).with_next_cursor(next_cursor)
}

/// One topic's partitions from `first`, taking from `left`; the index to continue at when
/// `left` ran out before the topic did.
fn describe_topic(image: &MetadataImage, topic: &TopicImage, first: i32, left: &mut usize) -> (DescribeTopicPartitionsResponseTopic, Option<i32>) {
    let mut partitions = Vec::new();
    let mut next = None;
    for (index, p) in topic.partitions.range(crate::model::PartitionIndex(first)..) {
        if *left == 0 {
            next = Some(index.0);
            break;
        }
        *left -= 1;
        let offline = p.replicas.iter().filter(|r| image.brokers.get(r).is_none_or(|b| b.fenced)).map(|r| WireBrokerId(r.0)).collect();
        let error_code = if p.leader.0 < 0 { ResponseError::LeaderNotAvailable.code() } else { 0 };
        partitions.push(
            DescribeTopicPartitionsResponsePartition::default()
                .with_error_code(error_code)
                .with_partition_index(index.0)
                .with_leader_id(WireBrokerId(p.leader.0))
                .with_leader_epoch(p.leader_epoch.0)
                .with_replica_nodes(p.replicas.iter().map(|r| WireBrokerId(r.0)).collect())
                .with_isr_nodes(p.isr.iter().map(|r| WireBrokerId(r.0)).collect())
                // No eligible leader replicas (KIP-966's ELR) are kept: empty, as a Kafka
                // cluster without ELR answers.
                .with_eligible_leader_replicas(Some(Vec::new()))
                .with_last_known_elr(Some(Vec::new()))
                .with_offline_replicas(offline),
        );
    }
    let response = DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(topic_name(topic.name.clone())))
        .with_topic_id(topic.topic_id.0)
        .with_is_internal(topic.name.starts_with("__"))
        .with_partitions(partitions);
    (response, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::MetadataRecord;
    use crate::model::{BrokerId, LeaderEpoch, PartitionIndex, TopicId};

    /// Topics "a" (3 partitions), "b" (2), "c" (1), all led by broker 1.
    fn image() -> MetadataImage {
        let mut records = vec![MetadataRecord::RegisterBroker {
            broker_id: BrokerId(1),
            incarnation: uuid::Uuid::new_v4(),
            host: "h".into(),
            port: 1,
            rack: None,
            endpoints: vec![],
        }];
        for (name, count) in [("c", 1), ("a", 3), ("b", 2)] {
            let topic_id = TopicId::random();
            records.push(MetadataRecord::Topic { name: name.into(), topic_id });
            for p in 0..count {
                records.push(MetadataRecord::Partition {
                    topic_id,
                    partition: PartitionIndex(p),
                    replicas: vec![BrokerId(1)],
                    isr: vec![BrokerId(1)],
                    leader: BrokerId(1),
                    leader_epoch: LeaderEpoch(p),
                    partition_epoch: 0,
                    adding_replicas: vec![],
                    removing_replicas: vec![],
                });
            }
        }
        let mut image = MetadataImage::default();
        for (i, r) in records.iter().enumerate() {
            image.apply(i as u64 + 1, r);
        }
        image
    }

    fn pages(image: &MetadataImage, names: &[String], limit: usize) -> Vec<Vec<(String, Vec<i32>)>> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let r = describe(image, names, &Default::default(), cursor, limit);
            out.push(
                r.topics
                    .iter()
                    .map(|t| (t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(), t.partitions.iter().map(|p| p.partition_index).collect()))
                    .collect(),
            );
            match r.next_cursor {
                Some(c) => cursor = Some((c.topic_name.0.to_string(), c.partition_index)),
                None => return out,
            }
            assert!(out.len() < 10, "the cursor must move on");
        }
    }

    fn names(of: &[&str]) -> Vec<String> {
        of.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pages_cover_every_partition_once_in_name_order() {
        let image = image();
        let all = names(&["a", "b", "c"]);
        let p = |t: &str, ps: &[i32]| (t.to_string(), ps.to_vec());
        assert_eq!(pages(&image, &all, 100), vec![vec![p("a", &[0, 1, 2]), p("b", &[0, 1]), p("c", &[0])]]);
        assert_eq!(
            pages(&image, &all, 2),
            vec![vec![p("a", &[0, 1])], vec![p("a", &[2]), p("b", &[0])], vec![p("b", &[1]), p("c", &[0])]]
        );
        // A page that ends exactly at a topic's end continues with the next topic.
        assert_eq!(pages(&image, &all, 3), vec![vec![p("a", &[0, 1, 2])], vec![p("b", &[0, 1]), p("c", &[0])]]);
    }

    #[test]
    fn an_unknown_topic_is_answered_by_name() {
        let image = image();
        let r = describe(&image, &names(&["b", "nope"]), &Default::default(), None, 10);
        let got: Vec<_> = r.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.error_code, t.partitions.len())).collect();
        assert_eq!(got, vec![(Some("b".into()), 0, 2), (Some("nope".into()), unknown_topic_or_partition(), 0)]);
        let b = &r.topics[0].partitions[1];
        assert_eq!((b.leader_id.0, b.leader_epoch, b.replica_nodes.len(), b.isr_nodes.len()), (1, 1, 1, 1));
    }
}
