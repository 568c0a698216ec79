//! DescribeProducers (KIP-664): the idempotent producers each partition's leader tracks, from
//! its producer state, with the first offset of each one's open transaction (-1: none). The
//! coordinator epoch is not kept yet, so it is -1.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId as WireProducerId, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::TOPIC_AUTHORIZATION_FAILED;
use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use crate::model::{PartitionIndex, TopicPartition};
use crate::protocol::str_bytes;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub fn handle(ctx: RequestContext, req: DescribeProducersRequest) -> Reply {
    let image = ctx.apis.image();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let known = image.topic_by_name(&t.name);
            // Authorization: READ on the topic, as Kafka asks (checked before existence).
            let allowed = ctx.authorize_in(&image, AclOperation::Read, &Resource::topic(&t.name));
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let r = PartitionResponse::default().with_partition_index(index);
                    let tp = TopicPartition::new(t.name.0.to_string(), index);
                    let hosted = ctx.apis.replicas.get(&tp);
                    let exists = known.is_some_and(|k| k.partitions.contains_key(&PartitionIndex(index)));
                    match hosted {
                        _ if !allowed => r.with_error_code(TOPIC_AUTHORIZATION_FAILED),
                        _ if !exists => r.with_error_code(E::UnknownTopicOrPartition.code()),
                        Some(p) if p.check_leader(crate::model::LeaderEpoch::UNKNOWN).is_ok() => {
                            let producers = p.log().producer_states().into_iter().map(|s| {
                                ProducerState::default()
                                    .with_producer_id(WireProducerId(s.producer_id.0))
                                    .with_producer_epoch(s.producer_epoch.0 as i32)
                                    .with_last_sequence(s.last_sequence)
                                    .with_last_timestamp(s.last_timestamp_ms)
                                    .with_coordinator_epoch(s.coordinator_epoch)
                                    .with_current_txn_start_offset(s.current_txn_start_offset.map_or(-1, |o| o.0))
                            });
                            r.with_active_producers(producers.collect())
                        }
                        _ => r
                            .with_error_code(E::NotLeaderOrFollower.code())
                            .with_error_message(Some(str_bytes(format!("this broker does not lead {tp}")))),
                    }
                })
                .collect();
            TopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    Reply::Now(ResponseKind::DescribeProducers(DescribeProducersResponse::default().with_topics(topics)))
}
