//! Kafka requests as the wire-protocol tests send them: one topic, one partition per request,
//! each at the API version the tests were written against.

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse,
};
use kafka_protocol::records::Record;
use strata::client::KafkaClient;
use strata::protocol::{str_bytes, topic_name};

/// Creates `name` (replication factor 1) with `configs`; the broker must answer NONE.
pub async fn create_topic(
    client: &mut KafkaClient,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let topic = CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(str_bytes(*k))
                        .with_value(Some(str_bytes(*v)))
                })
                .collect(),
        );
    let resp = client
        .send(&CreateTopicsRequest::default().with_topics(vec![topic]), 7)
        .await
        .expect("create");
    assert_eq!(
        resp.topics[0].error_code, 0,
        "{:?}",
        resp.topics[0].error_message
    );
}

/// A produce of `records` (encoded batches) to one partition.
pub fn produce_request(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// The whole produce response, for what the partition's answer does not carry (throttling).
pub async fn produce_response(
    client: &mut KafkaClient,
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> ProduceResponse {
    let req = produce_request(topic, partition, records, acks);
    client.send(&req, 9).await.expect("produce")
}

/// Produces `records` to one partition; returns (error code, base offset).
pub async fn produce(
    client: &mut KafkaClient,
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> (i16, i64) {
    let resp = produce_response(client, topic, partition, records, acks).await;
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// A fetch of one partition from `offset`, outside any fetch session.
pub fn fetch_request(
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
    partition_max_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(50 * 1024 * 1024)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(partition_max_bytes)])])
}

pub async fn fetch(client: &mut KafkaClient, req: &FetchRequest) -> FetchResponse {
    client.send(req, 12).await.expect("fetch")
}

/// Every record of the first partition in a fetch response.
pub fn records_of(resp: &FetchResponse) -> Vec<Record> {
    super::decode(
        resp.responses[0].partitions[0]
            .records
            .clone()
            .unwrap_or_default(),
    )
}
