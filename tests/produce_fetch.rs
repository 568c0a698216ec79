//! Produce and fetch through the wire protocol against an in-process broker: contents, offsets,
//! limits, long-poll, errors, idempotence, and config changes that take effect live.

mod common;

use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::kafka::{create_topic, fetch, fetch_request, produce, records_of};
use common::{batch, TestBroker};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiVersionsRequest, DeleteRecordsRequest, IncrementalAlterConfigsRequest,
    InitProducerIdRequest, ListOffsetsRequest,
};
use kafka_protocol::records::Compression;
use strata::client::KafkaClient;
use strata::protocol::{str_bytes, topic_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produced_records_come_back_with_keys_headers_and_offsets() {
    let b = TestBroker::start(&[]).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(&mut c, "t", 1, &[]).await;
    let first: Vec<common::TestRecord> = (0..10)
        .map(|i| (Some("k"), Some(format!("v{i}")), vec![("h", "1")]))
        .collect();
    assert_eq!(
        produce(&mut c, "t", 0, batch(&first, Compression::None), -1).await,
        (0, 0)
    );
    let second: Vec<common::TestRecord> = vec![
        (None, None, vec![]),
        (Some("k2"), Some("x".repeat(1000)), vec![]),
    ];
    assert_eq!(
        produce(&mut c, "t", 0, batch(&second, Compression::Zstd), 1).await,
        (0, 10)
    );

    let resp = fetch(&mut c, &fetch_request("t", 0, 0, 0, 1, 1 << 20)).await;
    let p = &resp.responses[0].partitions[0];
    assert_eq!(
        (p.error_code, p.high_watermark, p.log_start_offset),
        (0, 12, 0)
    );
    let got = records_of(&resp);
    assert_eq!(got.len(), 12);
    for (i, r) in got.iter().enumerate().take(10) {
        assert_eq!(r.offset, i as i64);
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value.as_deref(), Some(format!("v{i}").as_bytes()));
        assert_eq!(
            r.headers.get(&str_bytes("h")).cloned().flatten().as_deref(),
            Some(&b"1"[..])
        );
    }
    assert_eq!(
        (
            got[10].offset,
            got[10].key.is_none(),
            got[10].value.is_none()
        ),
        (10, true, true)
    );
    assert_eq!(got[11].value.as_deref(), Some("x".repeat(1000).as_bytes()));

    // A fetch from the middle of a batch returns the whole batch; the client skips ahead.
    let got = records_of(&fetch(&mut c, &fetch_request("t", 0, 5, 0, 1, 1 << 20)).await);
    assert_eq!(got.first().map(|r| r.offset), Some(0));
    // A partition limit smaller than one batch still returns the first batch (KIP-74).
    let got = records_of(&fetch(&mut c, &fetch_request("t", 0, 0, 0, 1, 10)).await);
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    // Past the end: OFFSET_OUT_OF_RANGE; at the end: empty.
    let resp = fetch(&mut c, &fetch_request("t", 0, 13, 0, 1, 1 << 20)).await;
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        ResponseError::OffsetOutOfRange.code()
    );
    let resp = fetch(&mut c, &fetch_request("t", 0, 12, 0, 1, 1 << 20)).await;
    assert_eq!(resp.responses[0].partitions[0].error_code, 0);
    assert!(records_of(&resp).is_empty());
    // Unknown partition.
    let resp = fetch(&mut c, &fetch_request("t", 3, 0, 0, 1, 1 << 20)).await;
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        produce(&mut c, "t", 3, batch(&first, Compression::None), 1)
            .await
            .0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_answers_when_data_arrives_not_at_the_deadline() {
    let b = TestBroker::start(&[]).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(&mut c, "lp", 1, &[]).await;
    let addr = b.bootstrap();
    let producer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut p = strata::admin::connect(&addr).await.expect("connect");
        produce(
            &mut p,
            "lp",
            0,
            batch(&[(Some("a"), Some("b".into()), vec![])], Compression::None),
            1,
        )
        .await
    });
    let started = Instant::now();
    let resp = fetch(&mut c, &fetch_request("lp", 0, 0, 10_000, 1, 1 << 20)).await;
    let waited = started.elapsed();
    assert_eq!(producer.await.expect("producer"), (0, 0));
    assert_eq!(records_of(&resp).len(), 1);
    assert!(
        waited < Duration::from_secs(5),
        "long-poll waited {waited:?} instead of waking on the append"
    );
    assert!(
        waited >= Duration::from_millis(250),
        "answered before any data existed: {waited:?}"
    );

    // Nothing arrives: the answer comes at the deadline, empty.
    let started = Instant::now();
    let resp = fetch(&mut c, &fetch_request("lp", 0, 1, 400, 1, 1 << 20)).await;
    assert!(started.elapsed() >= Duration::from_millis(380));
    assert!(records_of(&resp).is_empty());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_batch_is_refused_and_the_log_is_unchanged() {
    let b = TestBroker::start(&[]).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(&mut c, "c", 1, &[]).await;
    let good = batch(&[(Some("k"), Some("v".into()), vec![])], Compression::None);
    assert_eq!(produce(&mut c, "c", 0, good.clone(), 1).await, (0, 0));
    let mut bad = BytesMut::from(&good[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert_eq!(
        produce(&mut c, "c", 0, bad.freeze(), 1).await.0,
        ResponseError::CorruptMessage.code()
    );
    assert_eq!(produce(&mut c, "c", 0, good, 1).await, (0, 1));
    let got = records_of(&fetch(&mut c, &fetch_request("c", 0, 0, 0, 1, 1 << 20)).await);
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![0, 1]);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_get_their_original_offsets_and_gaps_are_refused() {
    let b = TestBroker::start(&[]).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(&mut c, "i", 1, &[]).await;
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let init = c.send(&req, 4).await.expect("init");
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    let idempotent = |seq: i32, n: usize| {
        let records: Vec<common::TestRecord> = (0..n)
            .map(|i| (Some("k"), Some(format!("s{seq}-{i}")), vec![]))
            .collect();
        common::idempotent_batch(&records, Compression::None, pid, epoch, seq)
    };
    assert_eq!(produce(&mut c, "i", 0, idempotent(0, 3), -1).await, (0, 0));
    assert_eq!(produce(&mut c, "i", 0, idempotent(3, 2), -1).await, (0, 3));
    // A retry of the first batch is answered with its original offset and not written again.
    assert_eq!(produce(&mut c, "i", 0, idempotent(0, 3), -1).await, (0, 0));
    assert_eq!(
        produce(&mut c, "i", 0, idempotent(9, 1), -1).await.0,
        ResponseError::OutOfOrderSequenceNumber.code()
    );
    let got = records_of(&fetch(&mut c, &fetch_request("i", 0, 0, 0, 1, 1 << 20)).await);
    assert_eq!(got.len(), 5);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_start_and_retention_changes_apply_live() {
    let b = TestBroker::start(&[("log.retention.check.interval.ms", "100")]).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(
        &mut c,
        "r",
        1,
        &[("segment.bytes", "1024"), ("retention.ms", "-1")],
    )
    .await;
    for i in 0..20 {
        let records: Vec<common::TestRecord> =
            vec![(Some("k"), Some(format!("{i}:{}", "x".repeat(200))), vec![])];
        assert_eq!(
            produce(&mut c, "r", 0, batch(&records, Compression::None), 1).await,
            (0, i)
        );
    }
    let req = DeleteRecordsRequest::default().with_topics(vec![
        kafka_protocol::messages::delete_records_request::DeleteRecordsTopic::default()
            .with_name(topic_name("r"))
            .with_partitions(vec![
                kafka_protocol::messages::delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(5),
            ]),
    ]);
    let resp = c.send(&req, 2).await.expect("delete records");
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
    assert_eq!(resp.topics[0].partitions[0].low_watermark, 5);
    let resp = fetch(&mut c, &fetch_request("r", 0, 2, 0, 1, 1 << 20)).await;
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        ResponseError::OffsetOutOfRange.code()
    );
    assert_eq!(list_offset(&mut c, "r", -2).await, 5);
    assert_eq!(list_offset(&mut c, "r", -1).await, 20);

    // The records carry 2023 timestamps: a one-day retention makes every closed segment expire.
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(str_bytes("r"))
            .with_configs(vec![AlterableConfig::default()
                .with_name(str_bytes("retention.ms"))
                .with_config_operation(0)
                .with_value(Some(str_bytes("86400000")))]),
    ]);
    let resp = c.send(&req, 1).await.expect("alter");
    assert_eq!(
        resp.responses[0].error_code, 0,
        "{:?}",
        resp.responses[0].error_message
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let start = list_offset(&mut c, "r", -2).await;
        if start > 5 {
            assert!(start <= 20);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention.ms change did not take effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.stop().await;
}

async fn list_offset(c: &mut KafkaClient, topic: &str, timestamp: i64) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(timestamp)])]);
    let resp = c.send(&req, 7).await.expect("list offsets");
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_connection() {
    let b = TestBroker::start(&[("socket.request.max.bytes", "1048576")]).await;
    let mut good = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");

    // An ApiVersions newer than ours gets UNSUPPORTED_VERSION and our table, at v0.
    let resp = good
        .send(&ApiVersionsRequest::default(), 3)
        .await
        .expect("api versions");
    assert_eq!(resp.error_code, 0);
    assert!(resp
        .api_keys
        .iter()
        .any(|k| k.api_key == 0 && k.max_version >= 9));

    for frame in [
        {
            let mut f = BytesMut::new();
            f.put_i32(2_000_000_000);
            f.freeze()
        },
        {
            let mut f = BytesMut::new();
            f.put_i32(12);
            f.put_slice(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8]);
            f.freeze()
        },
    ] {
        let mut raw = tokio::net::TcpStream::connect(b.addr)
            .await
            .expect("connect");
        raw.write_all(&frame).await.expect("write");
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0, "the broker answered a bad frame instead of closing");
    }
    create_topic(&mut good, "still-up", 1, &[]).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_producer_state_survive_a_restart() {
    let b = TestBroker::start(&[]).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(&mut c, "p", 2, &[]).await;
    for i in 0..5 {
        assert_eq!(
            produce(
                &mut c,
                "p",
                i % 2,
                batch(
                    &[(Some("k"), Some(format!("{i}")), vec![])],
                    Compression::Lz4
                ),
                -1
            )
            .await
            .0,
            0
        );
    }
    drop(c);
    let dir = b.stop().await;
    let b = TestBroker::start_in(dir, &[]).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    let p0: Vec<String> =
        records_of(&fetch(&mut c, &fetch_request("p", 0, 0, 0, 1, 1 << 20)).await)
            .iter()
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
            .collect();
    assert_eq!(p0, vec!["0", "2", "4"]);
    assert_eq!(
        produce(
            &mut c,
            "p",
            1,
            batch(&[(None, Some("z".into()), vec![])], Compression::Gzip),
            1
        )
        .await,
        (0, 2)
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_for_leader_epoch_answers_the_end_of_the_epoch() {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::OffsetForLeaderEpochRequest;
    let b = TestBroker::start(&[]).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(&mut c, "epochs", 1, &[]).await;
    for i in 0..3 {
        let one = batch(&[(None, Some(format!("{i}")), vec![])], Compression::None);
        assert_eq!(produce(&mut c, "epochs", 0, one, 1).await, (0, i));
    }
    let ask = |current: i32, epoch: i32| {
        OffsetForLeaderEpochRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(topic_name("epochs"))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(current)
                    .with_leader_epoch(epoch)])])
    };
    for version in [2, 4] {
        let r = c
            .send(&ask(0, 0), version)
            .await
            .expect("offset for leader epoch");
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.leader_epoch, p.end_offset), (0, 0, 3));
        // A client that knows of a newer leader epoch than this broker is told so.
        let r = c
            .send(&ask(7, 0), version)
            .await
            .expect("offset for leader epoch");
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            ResponseError::UnknownLeaderEpoch.code()
        );
    }
    // An unknown partition is an error, not a guess.
    let mut bad = ask(0, 0);
    bad.topics[0].topic = topic_name("no-such-topic");
    let r = c.send(&bad, 4).await.expect("offset for leader epoch");
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    b.stop().await;
}

/// A fetch in a session: `partitions` (index, offset) of `topic` sent, `forgotten` dropped.
fn session_fetch(
    session_id: i32,
    epoch: i32,
    topic: &str,
    partitions: &[(i32, i64)],
    forgotten: &[i32],
    max_wait_ms: i32,
) -> kafka_protocol::messages::FetchRequest {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
    let sent = partitions
        .iter()
        .map(|&(p, offset)| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)
        })
        .collect::<Vec<_>>();
    let topics = if sent.is_empty() {
        vec![]
    } else {
        vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(sent)]
    };
    let forgotten = if forgotten.is_empty() {
        vec![]
    } else {
        vec![ForgottenTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(forgotten.to_vec())]
    };
    kafka_protocol::messages::FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten)
}

/// (partition, high watermark, values of its records) of every partition in a response.
fn answered(resp: &kafka_protocol::messages::FetchResponse) -> Vec<(i32, i64, Vec<String>)> {
    resp.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            assert_eq!(p.error_code, 0, "partition {}", p.partition_index);
            let values = common::decode(p.records.clone().unwrap_or_default())
                .iter()
                .map(|r| {
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
                })
                .collect();
            (p.partition_index, p.high_watermark, values)
        })
        .collect()
}

async fn produce_one(c: &mut KafkaClient, topic: &str, partition: i32, value: &str) {
    let records = batch(&[(None, Some(value.into()), vec![])], Compression::None);
    assert_eq!(produce(c, topic, partition, records, 1).await.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_fetch_answers_only_partitions_with_news() {
    let b = TestBroker::start(&[]).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(&mut c, "s", 3, &[]).await;
    produce_one(&mut c, "s", 0, "a0").await;
    produce_one(&mut c, "s", 1, "b0").await;
    let metrics = &b.broker.metrics.fetch_sessions;

    // Full: every partition, and a session.
    let all = [(0, 0), (1, 0), (2, 0)];
    let resp = fetch(&mut c, &session_fetch(0, 0, "s", &all, &[], 0)).await;
    let id = resp.session_id;
    assert!(id > 0, "no session created");
    assert_eq!(
        answered(&resp),
        vec![
            (0, 1, vec!["a0".into()]),
            (1, 1, vec!["b0".into()]),
            (2, 0, vec![])
        ]
    );
    assert_eq!(metrics.sessions.with_label_values(&["consumer"]).get(), 1);
    assert_eq!(metrics.partitions.get(), 3);

    // The consumer moved on in 0 and 1; nothing else changed: an empty answer.
    let resp = fetch(
        &mut c,
        &session_fetch(id, 1, "s", &[(0, 1), (1, 1)], &[], 0),
    )
    .await;
    assert_eq!((resp.error_code, resp.session_id), (0, id));
    assert_eq!(answered(&resp), vec![]);

    // A record in 2, which this request does not name: the session reads it.
    produce_one(&mut c, "s", 2, "c0").await;
    let resp = fetch(&mut c, &session_fetch(id, 2, "s", &[], &[], 0)).await;
    assert_eq!(answered(&resp), vec![(2, 1, vec!["c0".into()])]);

    // Forget 0: records there are no longer answered; 2 moves on.
    produce_one(&mut c, "s", 0, "a1").await;
    let resp = fetch(&mut c, &session_fetch(id, 3, "s", &[(2, 1)], &[0], 0)).await;
    assert_eq!(answered(&resp), vec![]);
    assert_eq!(metrics.partitions.get(), 2);

    // A long poll waits on the session's partitions: a record in 1 wakes it.
    let addr = b.bootstrap();
    let producer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut p = strata::admin::connect(&addr).await.expect("connect");
        produce_one(&mut p, "s", 1, "b1").await;
    });
    let started = Instant::now();
    let resp = fetch(&mut c, &session_fetch(id, 4, "s", &[], &[], 10_000)).await;
    producer.await.expect("producer");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the append did not wake the session's fetch"
    );
    assert_eq!(answered(&resp), vec![(1, 2, vec!["b1".into()])]);

    // A repeated epoch, an unknown session, a v13 request in a session made without topic ids:
    // each is refused whole, and none of them moves the session on.
    let refused = |resp: &kafka_protocol::messages::FetchResponse, code: ResponseError| {
        assert_eq!(
            (resp.error_code, resp.session_id, resp.responses.len()),
            (code.code(), 0, 0)
        );
    };
    refused(
        &fetch(&mut c, &session_fetch(id, 4, "s", &[], &[], 0)).await,
        ResponseError::InvalidFetchSessionEpoch,
    );
    refused(
        &fetch(&mut c, &session_fetch(id ^ 1, 5, "s", &[], &[], 0)).await,
        ResponseError::FetchSessionIdNotFound,
    );
    let v13 = c
        .send(&session_fetch(id, 5, "s", &[], &[], 0), 13)
        .await
        .expect("fetch");
    refused(&v13, ResponseError::FetchSessionTopicIdError);
    let resp = fetch(&mut c, &session_fetch(id, 5, "s", &[(1, 2)], &[], 0)).await;
    assert_eq!(
        (resp.error_code, resp.session_id, answered(&resp)),
        (0, id, vec![])
    );

    // A sessionless fetch (epoch -1) naming the session closes it.
    let resp = fetch(&mut c, &session_fetch(id, -1, "s", &[(0, 0)], &[], 0)).await;
    assert_eq!(resp.session_id, 0);
    assert_eq!(
        answered(&resp),
        vec![(0, 2, vec!["a0".into(), "a1".into()])]
    );
    refused(
        &fetch(&mut c, &session_fetch(id, 6, "s", &[], &[], 0)).await,
        ResponseError::FetchSessionIdNotFound,
    );
    assert_eq!(metrics.sessions.with_label_values(&["consumer"]).get(), 0);
    assert_eq!(
        metrics
            .requests
            .with_label_values(&["consumer", "incremental"])
            .get(),
        5
    );
    assert_eq!(
        metrics
            .requests
            .with_label_values(&["consumer", "error"])
            .get(),
        4
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_sessions_by_topic_id_and_a_full_cache() {
    let b = TestBroker::start(&[("max.incremental.fetch.session.cache.slots", "1")]).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(&mut c, "ids", 2, &[]).await;
    produce_one(&mut c, "ids", 1, "x").await;
    let topic_id = b
        .broker
        .apis
        .image()
        .topic_by_name("ids")
        .expect("topic")
        .topic_id
        .0;
    let by_id = |session_id: i32, epoch: i32, partitions: &[(i32, i64)]| {
        let mut req = session_fetch(session_id, epoch, "ids", partitions, &[], 0);
        for t in &mut req.topics {
            t.topic_id = topic_id;
        }
        req
    };
    let resp = c
        .send(&by_id(0, 0, &[(0, 0), (1, 0)]), 13)
        .await
        .expect("fetch");
    let id = resp.session_id;
    assert!(id > 0);
    assert_eq!(resp.responses[0].topic_id, topic_id);
    assert_eq!(
        answered(&resp),
        vec![(0, 0, vec![]), (1, 1, vec!["x".into()])]
    );
    produce_one(&mut c, "ids", 0, "y").await;
    let resp = c.send(&by_id(id, 1, &[(1, 1)]), 13).await.expect("fetch");
    assert_eq!(resp.responses[0].topic_id, topic_id);
    assert_eq!(answered(&resp), vec![(0, 1, vec!["y".into()])]);
    // Continued without topic ids: refused.
    let v12 = fetch(&mut c, &session_fetch(id, 2, "ids", &[], &[], 0)).await;
    assert_eq!(
        v12.error_code,
        ResponseError::FetchSessionTopicIdError.code()
    );

    // The one slot is taken by a young session of the same size: no session for another
    // consumer, which is still answered in full.
    let mut other = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    let resp = fetch(
        &mut other,
        &session_fetch(0, 0, "ids", &[(0, 0), (1, 0)], &[], 0),
    )
    .await;
    assert_eq!(resp.session_id, 0);
    assert_eq!(answered(&resp).len(), 2);
    assert_eq!(b.broker.metrics.fetch_sessions.evictions.get(), 0);
    // The first session goes on.
    let resp = c.send(&by_id(id, 2, &[]), 13).await.expect("fetch");
    assert_eq!((resp.error_code, resp.session_id), (0, id));
    b.stop().await;
}
