//! KIP-951: a Produce or Fetch answer that says "not the leader" also says who is, so the
//! client moves to the new leader without a metadata round trip first.
//!
//! For every partition answered NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH, the partition's
//! `current_leader` is the leader and leader epoch in this broker's metadata image (-1 and -1
//! when the partition has none), and the response's `node_endpoints` carry the address of each
//! leader named (Produce v10+, Fetch v12+ for the leader and v16+ for the endpoints, as Kafka).

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    fetch_response, produce_response, BrokerId as WireBrokerId, FetchResponse, ProduceResponse,
};

use crate::controller::{BrokerRegistration, MetadataImage};
use crate::model::{BrokerId, PartitionIndex, TopicId};
use crate::protocol::str_bytes;

fn wants_hint(code: i16) -> bool {
    code == ResponseError::NotLeaderOrFollower.code()
        || code == ResponseError::FencedLeaderEpoch.code()
}

/// The image's leader and leader epoch of a partition, named by topic name or, when that is
/// empty, by topic id; `(-1, -1)` when the image knows no leader.
fn leader_of(
    image: &MetadataImage,
    name: &str,
    topic_id: uuid::Uuid,
    partition: i32,
) -> (BrokerId, i32) {
    let topic = if name.is_empty() {
        image.topic(&TopicId(topic_id))
    } else {
        image.topic_by_name(name)
    };
    topic
        .and_then(|t| t.partitions.get(&PartitionIndex(partition)))
        .filter(|p| p.leader.0 >= 0)
        .map(|p| (p.leader, p.leader_epoch.0))
        .unwrap_or((BrokerId(-1), -1))
}

/// The leaders' addresses on `listener`, the listener the client connected on.
fn endpoints<'a>(
    image: &'a MetadataImage,
    leaders: &BTreeSet<BrokerId>,
    listener: &'a str,
) -> impl Iterator<Item = (&'a BrokerRegistration, &'a str, u16)> + 'a {
    let leaders = leaders.clone();
    image
        .brokers
        .values()
        .filter(move |b| leaders.contains(&b.broker_id))
        .filter_map(move |b| b.endpoint(listener).map(|(host, port)| (b, host, port)))
}

/// Adds the leader hints to a Produce response at `version`; `image` is read only when some
/// partition needs a hint, so an answer without errors costs nothing more.
pub(super) fn produce(
    image: impl FnOnce() -> Arc<MetadataImage>,
    listener: &str,
    version: i16,
    response: &mut ProduceResponse,
) {
    let wanted = response
        .responses
        .iter()
        .flat_map(|t| &t.partition_responses)
        .any(|p| wants_hint(p.error_code));
    if version < 10 || !wanted {
        return;
    }
    let image = &*image();
    let mut leaders = BTreeSet::new();
    for t in &mut response.responses {
        for p in &mut t.partition_responses {
            if wants_hint(p.error_code) {
                let (leader, epoch) = leader_of(image, &t.name.0, t.topic_id, p.index);
                p.current_leader = produce_response::LeaderIdAndEpoch::default()
                    .with_leader_id(WireBrokerId(leader.0))
                    .with_leader_epoch(epoch);
                if leader.0 >= 0 {
                    leaders.insert(leader);
                }
            }
        }
    }
    response.node_endpoints = endpoints(image, &leaders, listener)
        .map(|(b, host, port)| {
            produce_response::NodeEndpoint::default()
                .with_node_id(WireBrokerId(b.broker_id.0))
                .with_host(str_bytes(host.to_string()))
                .with_port(i32::from(port))
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect();
}

/// Adds the leader hints to a Fetch response at `version`; `image` is read only when some
/// partition needs a hint.
pub(super) fn fetch(
    image: impl FnOnce() -> Arc<MetadataImage>,
    listener: &str,
    version: i16,
    response: &mut FetchResponse,
) {
    let wanted = response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .any(|p| wants_hint(p.error_code));
    if version < 12 || !wanted {
        return;
    }
    let image = &*image();
    let mut leaders = BTreeSet::new();
    for t in &mut response.responses {
        for p in &mut t.partitions {
            if wants_hint(p.error_code) {
                let (leader, epoch) = leader_of(image, &t.topic.0, t.topic_id, p.partition_index);
                p.current_leader = fetch_response::LeaderIdAndEpoch::default()
                    .with_leader_id(WireBrokerId(leader.0))
                    .with_leader_epoch(epoch);
                if leader.0 >= 0 {
                    leaders.insert(leader);
                }
            }
        }
    }
    if version >= 16 {
        response.node_endpoints = endpoints(image, &leaders, listener)
            .map(|(b, host, port)| {
                fetch_response::NodeEndpoint::default()
                    .with_node_id(WireBrokerId(b.broker_id.0))
                    .with_host(str_bytes(host.to_string()))
                    .with_port(i32::from(port))
                    .with_rack(b.rack.clone().map(str_bytes))
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::messages::{fetch_response, produce_response, TopicName};
    use kafka_protocol::protocol::{Decodable, Encodable};

    use super::*;
    use crate::controller::MetadataRecord;
    use crate::model::LeaderEpoch;

    /// Brokers 1 and 2 (2 in rack "r2"); topic "t" with partition 0 led by 2 at epoch 7 and
    /// partition 1 without a leader.
    fn image() -> (Arc<MetadataImage>, TopicId) {
        let mut image = MetadataImage::default();
        let topic_id = TopicId::random();
        let mut records = vec![];
        for (id, rack) in [(1, None), (2, Some("r2".to_string()))] {
            records.push(MetadataRecord::RegisterBroker {
                broker_id: BrokerId(id),
                incarnation: uuid::Uuid::new_v4(),
                host: format!("host{id}"),
                port: 9000 + id as u16,
                rack,
                endpoints: vec![],
            });
        }
        records.push(MetadataRecord::Topic {
            name: "t".into(),
            topic_id,
        });
        for (partition, leader, epoch) in [(0, 2, 7), (1, -1, 3)] {
            records.push(MetadataRecord::Partition {
                topic_id,
                partition: PartitionIndex(partition),
                replicas: vec![BrokerId(1), BrokerId(2)],
                isr: vec![BrokerId(1), BrokerId(2)],
                leader: BrokerId(leader),
                leader_epoch: LeaderEpoch(epoch),
                partition_epoch: 1,
                adding_replicas: vec![],
                removing_replicas: vec![],
            });
        }
        for (i, r) in records.iter().enumerate() {
            image.apply(i as u64 + 1, r);
        }
        (Arc::new(image), topic_id)
    }

    fn produce_response(topic_id: uuid::Uuid, by_id: bool) -> ProduceResponse {
        let partitions = [
            (0, ResponseError::NotLeaderOrFollower.code()),
            (1, ResponseError::FencedLeaderEpoch.code()),
            (2, 0),
        ]
        .into_iter()
        .map(|(i, code)| {
            produce_response::PartitionProduceResponse::default()
                .with_index(i)
                .with_error_code(code)
        })
        .collect();
        let topic =
            produce_response::TopicProduceResponse::default().with_partition_responses(partitions);
        let topic = if by_id {
            topic.with_topic_id(topic_id)
        } else {
            topic.with_name(TopicName(str_bytes("t")))
        };
        ProduceResponse::default().with_responses(vec![topic])
    }

    #[test]
    fn produce_names_the_new_leader_and_its_endpoint() {
        let (image, topic_id) = image();
        for version in 3..=13 {
            let mut r = produce_response(topic_id.0, version >= 13);
            produce(|| image.clone(), "PLAINTEXT", version, &mut r);
            let parts = &r.responses[0].partition_responses;
            let leaders: Vec<_> = parts
                .iter()
                .map(|p| (p.current_leader.leader_id.0, p.current_leader.leader_epoch))
                .collect();
            if version < 10 {
                assert!(r.node_endpoints.is_empty(), "v{version}");
                assert_eq!(
                    leaders,
                    vec![(-1, -1); 3],
                    "v{version}: the defaults, which the version cannot carry"
                );
            } else {
                // Led by 2 at epoch 7; no leader; no error, so no hint.
                assert_eq!(leaders, vec![(2, 7), (-1, -1), (-1, -1)], "v{version}");
                let endpoints: Vec<_> = r
                    .node_endpoints
                    .iter()
                    .map(|e| {
                        (
                            e.node_id.0,
                            e.host.to_string(),
                            e.port,
                            e.rack.as_ref().map(|r| r.to_string()),
                        )
                    })
                    .collect();
                assert_eq!(
                    endpoints,
                    vec![(2, "host2".to_string(), 9002, Some("r2".to_string()))],
                    "v{version}"
                );
            }
            // Whatever the version, the response encodes and decodes to itself.
            let mut buf = BytesMut::new();
            r.encode(&mut buf, version)
                .unwrap_or_else(|e| panic!("v{version}: {e}"));
            assert_eq!(
                ProduceResponse::decode(&mut buf.freeze(), version).expect("decodes"),
                r,
                "v{version}"
            );
        }
    }

    #[test]
    fn fetch_names_the_new_leader_from_v12_and_its_endpoint_from_v16() {
        let (image, topic_id) = image();
        for version in 4..=18 {
            let partitions = [(0, ResponseError::NotLeaderOrFollower.code()), (1, 0)]
                .into_iter()
                .map(|(i, code)| {
                    fetch_response::PartitionData::default()
                        .with_partition_index(i)
                        .with_error_code(code)
                })
                .collect();
            let topic =
                fetch_response::FetchableTopicResponse::default().with_partitions(partitions);
            let topic = if version >= 13 {
                topic.with_topic_id(topic_id.0)
            } else {
                topic.with_topic(TopicName(str_bytes("t")))
            };
            let mut r = FetchResponse::default().with_responses(vec![topic]);
            fetch(|| image.clone(), "PLAINTEXT", version, &mut r);
            let p = &r.responses[0].partitions;
            let expected = if version >= 12 { (2, 7) } else { (-1, -1) };
            assert_eq!(
                (
                    p[0].current_leader.leader_id.0,
                    p[0].current_leader.leader_epoch
                ),
                expected,
                "v{version}"
            );
            assert_eq!(
                (
                    p[1].current_leader.leader_id.0,
                    p[1].current_leader.leader_epoch
                ),
                (-1, -1),
                "v{version}"
            );
            assert_eq!(
                r.node_endpoints.len(),
                usize::from(version >= 16),
                "v{version}"
            );
            let mut buf = BytesMut::new();
            r.encode(&mut buf, version)
                .unwrap_or_else(|e| panic!("v{version}: {e}"));
            assert_eq!(
                FetchResponse::decode(&mut buf.freeze(), version).expect("decodes"),
                r,
                "v{version}"
            );
        }
    }
}
