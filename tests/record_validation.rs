//! What a leader checks and rewrites in produced batches, over the wire: record-level errors
//! (KIP-467) for keyless records on compacted topics and out-of-range timestamps, batch-level
//! errors, LogAppendTime stamping, broker-side recompression (`compression.type`), and the
//! topic configs Kafka 4.x refuses.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::kafka::{create_topic, fetch, fetch_request, produce, records_of};
use common::{batch, idempotent_batch_at, TestBroker, TestRecord};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{CreateTopicsRequest, ProduceRequest};
use kafka_protocol::records::Compression;
use strata::client::KafkaClient;
use strata::protocol::record_batch::{self, BatchIter};
use strata::protocol::{str_bytes, topic_name};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

async fn connect(b: &TestBroker) -> KafkaClient {
    strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect")
}

fn keyed(n: usize, keyless_every: usize) -> Vec<TestRecord> {
    (0..n)
        .map(|i| {
            let key = if i % keyless_every == keyless_every - 1 {
                None
            } else {
                Some("k")
            };
            (key, Some(format!("v{i}")), vec![])
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_records_on_a_compacted_topic_fail_the_batch_and_are_named() {
    let b = TestBroker::start(&[]).await;
    let mut c = connect(&b).await;
    create_topic(&mut c, "compacted", 2, &[("cleanup.policy", "compact")]).await;
    // One request: partition 0 gets records 2 and 5 keyless, partition 1 only keyed ones.
    let part = |index, records| {
        PartitionProduceData::default()
            .with_index(index)
            .with_records(Some(records))
    };
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name("compacted"))
            .with_partition_data(vec![
                part(0, batch(&keyed(6, 3), Compression::Gzip)),
                part(1, batch(&keyed(4, 100), Compression::None)),
            ])]);
    let resp = c.send(&req, 9).await.expect("produce");
    let ps = &resp.responses[0].partition_responses;
    assert_eq!(ps[0].error_code, ResponseError::InvalidRecord.code());
    assert_eq!(ps[0].base_offset, -1);
    let indexes: Vec<i32> = ps[0].record_errors.iter().map(|e| e.batch_index).collect();
    assert_eq!(indexes, [2, 5]);
    assert_eq!(
        ps[0].record_errors[0].batch_index_error_message.as_deref(),
        Some("Compacted topic cannot accept message without key in topic partition compacted-0.")
    );
    let message = ps[0].error_message.as_deref().expect("a message");
    assert!(
        message
            .starts_with("One or more records have been rejected due to 2 record errors in total"),
        "{message}"
    );
    assert_eq!((ps[1].error_code, ps[1].base_offset), (0, 0));
    // Nothing of the refused batch was appended; the other partition has all of its records.
    assert!(
        records_of(&fetch(&mut c, &fetch_request("compacted", 0, 0, 0, 1, 1 << 20)).await)
            .is_empty()
    );
    assert_eq!(
        records_of(&fetch(&mut c, &fetch_request("compacted", 1, 0, 0, 1, 1 << 20)).await).len(),
        4
    );
    // Before v8 the answer has no record list, but the same error.
    let old = c.send(&req, 7).await.expect("produce v7");
    assert_eq!(
        old.responses[0].partition_responses[0].error_code,
        ResponseError::InvalidRecord.code()
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_outside_the_topic_bounds_are_invalid_timestamp() {
    let b = TestBroker::start(&[]).await;
    let mut c = connect(&b).await;
    create_topic(
        &mut c,
        "recent",
        1,
        &[("message.timestamp.before.max.ms", "60000")],
    )
    .await;
    let values: Vec<TestRecord> = (0..3)
        .map(|i| (None, Some(format!("v{i}")), vec![]))
        .collect();
    let at = |ts| idempotent_batch_at(&values, Compression::Lz4, -1, -1, -1, ts);

    let req = common::kafka::produce_request("recent", 0, at(now_ms() - 3_600_000), 1);
    let resp = c.send(&req, 9).await.expect("produce");
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ResponseError::InvalidTimestamp.code());
    assert_eq!(
        p.record_errors
            .iter()
            .map(|e| e.batch_index)
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(
        p.error_message.as_deref(),
        Some("One or more records have been rejected due to invalid timestamp")
    );
    let m = p.record_errors[0]
        .batch_index_error_message
        .as_deref()
        .expect("message");
    assert!(
        m.contains("is out of range. The timestamp should be within ["),
        "{m}"
    );

    // The default bound: at most an hour ahead (Kafka 4.x's message.timestamp.after.max.ms).
    create_topic(&mut c, "plain", 1, &[]).await;
    assert_eq!(
        produce(&mut c, "plain", 0, at(now_ms() + 2 * 3_600_000), 1)
            .await
            .0,
        ResponseError::InvalidTimestamp.code()
    );
    assert_eq!(produce(&mut c, "plain", 0, at(now_ms()), 1).await, (0, 0));
    assert_eq!(produce(&mut c, "recent", 0, at(now_ms()), 1).await, (0, 0));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_level_errors_refuse_the_whole_batch() {
    let b = TestBroker::start(&[]).await;
    let mut c = connect(&b).await;
    create_topic(&mut c, "t", 1, &[]).await;
    let good = batch(
        &[
            (None, Some("v".into()), vec![]),
            (None, Some("w".into()), vec![]),
        ],
        Compression::None,
    );
    // lastOffsetDelta that disagrees with the record count: Kafka's INVALID_RECORD.
    let mut bad = good.to_vec();
    bad[23..27].copy_from_slice(&7i32.to_be_bytes());
    record_batch::refresh_crc(&mut bad);
    let resp = c
        .send(&common::kafka::produce_request("t", 0, bad.into(), 1), 9)
        .await
        .expect("produce");
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ResponseError::InvalidRecord.code());
    assert!(p.record_errors.is_empty());
    assert!(p
        .error_message
        .as_deref()
        .is_some_and(|m| m.starts_with("Inconsistent batch offset range")));
    // A bad CRC: CORRUPT_MESSAGE.
    let mut bad = good.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        produce(&mut c, "t", 0, bad.into(), 1).await.0,
        ResponseError::CorruptMessage.code()
    );
    assert_eq!(produce(&mut c, "t", 0, good, 1).await, (0, 0));
    b.stop().await;
}

/// The codec of every batch in a fetched record set.
fn codecs(records: &bytes::Bytes) -> Vec<i16> {
    BatchIter::new(records)
        .map(|b| b.expect("batch").1.compression())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zstd_topic_stores_every_batch_as_zstd_with_the_same_records() {
    let b = TestBroker::start(&[]).await;
    let mut c = connect(&b).await;
    create_topic(
        &mut c,
        "z",
        1,
        &[
            ("compression.type", "zstd"),
            ("compression.zstd.level", "9"),
        ],
    )
    .await;
    let sent: Vec<TestRecord> = (0..20)
        .map(|i| {
            (
                Some("key"),
                Some(format!("value {i} ").repeat(20)),
                vec![("h1", "x"), ("h2", "y")],
            )
        })
        .collect();
    let mut expected = Vec::new();
    for (chunk, compression) in sent.chunks(5).zip([
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Zstd,
    ]) {
        let (code, _) = produce(&mut c, "z", 0, batch(chunk, compression), -1).await;
        assert_eq!(code, 0, "{compression:?}");
        expected.extend_from_slice(chunk);
    }
    let resp = fetch(&mut c, &fetch_request("z", 0, 0, 0, 1, 1 << 20)).await;
    let raw = resp.responses[0].partitions[0]
        .records
        .clone()
        .expect("records");
    assert_eq!(codecs(&raw), [4, 4, 4, 4]);
    let got = records_of(&resp);
    assert_eq!(got.len(), expected.len());
    for (i, (r, (k, v, h))) in got.iter().zip(&expected).enumerate() {
        assert_eq!(r.offset, i as i64);
        assert_eq!(r.key.as_deref(), k.map(|k| k.as_bytes()));
        assert_eq!(r.value.as_deref(), v.as_deref().map(str::as_bytes));
        assert_eq!(r.timestamp, 1_700_000_000_000 + (i % 5) as i64);
        let headers: Vec<(&str, Option<&[u8]>)> = r
            .headers
            .iter()
            .map(|(k, v)| (&**k, v.as_deref()))
            .collect();
        let want: Vec<(&str, Option<&[u8]>)> =
            h.iter().map(|(k, v)| (*k, Some(v.as_bytes()))).collect();
        assert_eq!(headers, want);
    }

    // Back to uncompressed on a topic that says so.
    create_topic(&mut c, "u", 1, &[("compression.type", "uncompressed")]).await;
    assert_eq!(
        produce(&mut c, "u", 0, batch(&sent[..3], Compression::Lz4), -1).await,
        (0, 0)
    );
    let resp = fetch(&mut c, &fetch_request("u", 0, 0, 0, 1, 1 << 20)).await;
    assert_eq!(
        codecs(
            &resp.responses[0].partitions[0]
                .records
                .clone()
                .expect("records")
        ),
        [0]
    );
    assert_eq!(records_of(&resp).len(), 3);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_topics_stamp_the_broker_time() {
    let b = TestBroker::start(&[]).await;
    let mut c = connect(&b).await;
    create_topic(
        &mut c,
        "lat",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    let before = now_ms();
    // A timestamp far in the future is no error here: the broker's time replaces it.
    let far = idempotent_batch_at(
        &[(None, Some("v".into()), vec![])],
        Compression::Gzip,
        -1,
        -1,
        -1,
        before + 100 * 3_600_000,
    );
    assert_eq!(produce(&mut c, "lat", 0, far, 1).await, (0, 0));
    let resp = fetch(&mut c, &fetch_request("lat", 0, 0, 0, 1, 1 << 20)).await;
    let raw = resp.responses[0].partitions[0]
        .records
        .clone()
        .expect("records");
    let (_, h) = BatchIter::new(&raw)
        .next()
        .expect("a batch")
        .expect("valid");
    assert!(h.is_log_append_time());
    assert!(
        (before..=now_ms()).contains(&h.max_timestamp),
        "{}",
        h.max_timestamp
    );
    b.stop().await;
}

/// CreateTopics with one config; returns (error code, message).
async fn create_with(
    c: &mut KafkaClient,
    name: &str,
    key: &str,
    value: &str,
) -> (i16, Option<String>) {
    let topic = CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(str_bytes(key))
            .with_value(Some(str_bytes(value)))]);
    let resp = c
        .send(&CreateTopicsRequest::default().with_topics(vec![topic]), 7)
        .await
        .expect("create");
    let t = &resp.topics[0];
    (
        t.error_code,
        t.error_message.as_ref().map(|m| m.to_string()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_kafka_4_refuses_are_refused_with_its_messages() {
    let b = TestBroker::start(&[]).await;
    let mut c = connect(&b).await;
    let invalid = ResponseError::InvalidConfig.code();
    for key in strata::config::defs::REMOVED_TOPIC_KEYS {
        assert_eq!(
            create_with(&mut c, "removed", key, "1").await,
            (invalid, Some(format!("Unknown topic config name: {key}")))
        );
    }
    assert_eq!(
        create_with(&mut c, "levels", "compression.gzip.level", "0").await,
        (
            invalid,
            Some("Invalid value 0 for configuration compression.gzip.level: Value must be between 1 and 9 or equal to -1".into())
        )
    );
    assert_eq!(
        create_with(&mut c, "levels", "compression.type", "none").await,
        (
            invalid,
            Some("Invalid value none for configuration compression.type: String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer".into())
        )
    );
    assert_eq!(
        create_with(&mut c, "levels", "compression.lz4.level", "18").await.1.as_deref(),
        Some("Invalid value 18 for configuration compression.lz4.level: Value must be no more than 17")
    );
    // Accepted (and stored) though not acted on.
    assert_eq!(
        create_with(&mut c, "ignored", "segment.jitter.ms", "100")
            .await
            .0,
        0
    );
    b.stop().await;
}
