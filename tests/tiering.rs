//! Tiered storage end to end, through the wire protocol against an in-process broker with the
//! local-directory store: segments go up, local retention keeps the partition small, old offsets
//! come back from remote with their content, across restarts and the loss of the local data;
//! remote retention, DeleteRecords and topic deletion reach the remote data; a store that is
//! down or returns corrupt data costs a retriable error, never the broker. Against S3
//! (`moto_server`, required: `scripts/install-test-deps.sh` installs it): a bucket behind a
//! custom endpoint is addressed in the path by default, and a bucket that does not exist keeps
//! the broker not ready with one line naming it and the endpoint.
//! (`tests/compat/test_tiering.py` runs the real-client suite against S3 via moto.)

mod common;
#[path = "tiering/hot_tail.rs"]
mod hot_tail;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{batch, decode, idempotent_batch_at, TestBroker};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteTopicsRequest, FetchRequest, InitProducerIdRequest,
    ListOffsetsRequest, ProduceRequest,
};
use kafka_protocol::records::Compression;
use strata::client::KafkaClient;
use strata::model::{LeaderEpoch, Offset, TopicPartition};
use strata::protocol::{str_bytes, topic_name};
use strata_tiering::RemoteStorage;

const RECORDS_PER_BATCH: usize = 10;

fn tiering_sets(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        ("remote.log.manager.task.interval.ms", "50"),
        ("remote.orphan.grace.ms", "0"),
    ];
    v.extend_from_slice(extra);
    v
}

/// A one-partition topic with `configs`.
async fn create_topic(c: &mut KafkaClient, name: &str, configs: &[(&str, &str)]) {
    common::kafka::create_topic(c, name, 1, configs).await;
}

fn value_for(offset: i64) -> String {
    format!(
        "record-{offset:08}-{}",
        "x".repeat(200 + (offset % 50) as usize)
    )
}

/// Produces `batches` batches; returns the next offset.
async fn produce(c: &mut KafkaClient, topic: &str, first_offset: i64, batches: usize) -> i64 {
    let mut next = first_offset;
    for _ in 0..batches {
        let values: Vec<String> = (0..RECORDS_PER_BATCH as i64)
            .map(|i| value_for(next + i))
            .collect();
        let recs: Vec<common::TestRecord> = values
            .iter()
            .map(|v| (Some("k"), Some(v.clone()), vec![]))
            .collect();
        assert_eq!(
            produce_batch(c, topic, batch(&recs, Compression::None)).await,
            (0, next)
        );
        next += RECORDS_PER_BATCH as i64;
    }
    next
}

/// Produces one batch with acks=all; returns (error code, base offset).
async fn produce_batch(c: &mut KafkaClient, topic: &str, records: Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let resp = c.send(&req, 9).await.expect("produce");
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn fetch_once(
    c: &mut KafkaClient,
    topic: &str,
    offset: i64,
    max_bytes: i32,
) -> (i16, Bytes, i64) {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(max_bytes)])]);
    let resp = c.send(&req, 12).await.expect("fetch");
    let p = &resp.responses[0].partitions[0];
    (
        p.error_code,
        p.records.clone().unwrap_or_default(),
        p.log_start_offset,
    )
}

/// Reads `[from, to)` and checks every record's offset and value.
async fn read_all_checked(c: &mut KafkaClient, topic: &str, from: i64, to: i64) {
    let mut next = from;
    while next < to {
        let (err, records, _) = fetch_once(c, topic, next, 64 * 1024).await;
        assert_eq!(err, 0, "fetch at {next}");
        let recs = decode(records);
        assert!(!recs.is_empty(), "no records at {next}");
        for r in recs {
            if r.offset < next {
                continue;
            }
            assert_eq!(r.offset, next, "offsets in order");
            assert_eq!(
                r.value.as_deref(),
                Some(value_for(next).as_bytes()),
                "content of {next}"
            );
            next += 1;
        }
    }
}

async fn list_offset(c: &mut KafkaClient, topic: &str, timestamp: i64) -> (i16, i64) {
    let req = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(timestamp)])]);
    let resp = c.send(&req, 8).await.expect("list offsets");
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset)
}

async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out
}

/// Bytes of segment data (`.log` files) in a partition directory; index files are preallocated
/// for the active segment, so their length says nothing about retention.
fn log_bytes(dir: &Path) -> u64 {
    files_under(dir, "log")
        .iter()
        .filter_map(|p| p.metadata().ok())
        .map(|m| m.len())
        .sum()
}

const TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("segment.bytes", "16384"),
    ("local.retention.bytes", "32768"),
    ("retention.ms", "-1"),
];

fn remote_end(b: &TestBroker, topic: &str) -> i64 {
    b.broker
        .remote
        .manifest(&TopicPartition::new(topic, 0))
        .and_then(|m| m.end_offset())
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_offsets_come_back_from_remote_across_restarts_and_lost_disks() {
    let b = TestBroker::start(&tiering_sets(&[])).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(&mut c, "tiered", TOPIC_CONFIGS).await;
    let end = produce(&mut c, "tiered", 0, 200).await; // ~500 KB, ~30 segments
    let part_dir = b.dir.path().join("data").join("tiered-0");
    let remote_dir = b.dir.path().join("data").join("remote");
    // Everything sealed goes up and local retention trims the partition to its bound.
    wait_for(
        "uploads and local retention",
        Duration::from_secs(30),
        || {
            let log = b
                .broker
                .replicas
                .get(&TopicPartition::new("tiered", 0))
                .expect("partition")
                .log()
                .clone();
            let sealed_end = log
                .sealed_segments()
                .last()
                .map(|s| s.last_offset.0)
                .unwrap_or(-1);
            remote_end(&b, "tiered") >= sealed_end && log.size_bytes() <= 32768 + 16384
        },
    )
    .await;
    let logs = files_under(&remote_dir, "log");
    assert!(logs.len() >= 25, "{} remote segments", logs.len());
    for ext in ["index", "timeindex", "epochs"] {
        assert_eq!(
            files_under(&remote_dir, ext).len(),
            logs.len(),
            "{ext} objects"
        );
    }
    // One partition manifest, and the topic manifest a restore reads.
    let json = files_under(&remote_dir, "json");
    let named = |n: &str| json.iter().filter(|p| p.ends_with(n)).count();
    assert_eq!(
        (json.len(), named("manifest.json"), named("topic.json")),
        (2, 1, 1),
        "{json:?}"
    );
    assert!(
        log_bytes(&part_dir) <= 32768 + 16384,
        "partition dir holds {} bytes of segments",
        log_bytes(&part_dir)
    );
    // The whole log is visible: earliest is 0, earliest-local is past it.
    assert_eq!(list_offset(&mut c, "tiered", -2).await, (0, 0));
    let (_, local_start) = list_offset(&mut c, "tiered", -4).await;
    assert!(local_start > 0);
    // By time: the records carry timestamps 1_700_000_000_000 + i within each batch.
    assert_eq!(
        list_offset(&mut c, "tiered", 1_700_000_000_005).await,
        (0, 5)
    );
    read_all_checked(&mut c, "tiered", 0, end).await;
    // A fetch into the middle of a remote segment starts at the batch holding the offset.
    read_all_checked(&mut c, "tiered", 123, 140).await;
    let m = b.broker.metrics.tiering.clone();
    assert!(m.uploaded_segments.get() >= 25 && m.upload_bytes.get() > 400_000);
    assert!(m.remote_fetch_bytes.get() > 0);
    b.broker.remote.sync_metrics();
    assert!(m.cache_misses.get() > 0);
    drop(c);

    // Restart: the manifest is read back; nothing is uploaded twice.
    let remote_before = files_under(&remote_dir, "log").len();
    let dir = b.stop().await;
    let b = TestBroker::start_in(dir, &tiering_sets(&[])).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    read_all_checked(&mut c, "tiered", 0, end).await;
    let end2 = produce(&mut c, "tiered", end, 20).await;
    // Once this run has uploaded the new segments, a lost manifest would have shown as a
    // second upload of an old base offset.
    wait_for(
        "this run's uploads of the new segments",
        Duration::from_secs(30),
        || {
            let log = b
                .broker
                .replicas
                .get(&TopicPartition::new("tiered", 0))
                .expect("partition")
                .log()
                .clone();
            let sealed_end = log
                .sealed_segments()
                .last()
                .map(|s| s.last_offset.0)
                .unwrap_or(-1);
            b.broker.metrics.tiering.uploaded_segments.get() > 0
                && remote_end(&b, "tiered") >= end
                && remote_end(&b, "tiered") >= sealed_end
        },
    )
    .await;
    let remote_after: Vec<PathBuf> = files_under(&remote_dir, "log");
    let bases: std::collections::BTreeSet<String> = remote_after
        .iter()
        .map(|p| p.file_name().and_then(|n| n.to_str()).unwrap_or("")[..20].to_string())
        .collect();
    assert_eq!(
        bases.len(),
        remote_after.len(),
        "a base offset uploaded twice"
    );
    assert!(remote_after.len() >= remote_before);
    drop(c);

    // The local disk is lost: the partition comes back with its remote log, and new writes
    // continue after the remote end.
    wait_for(
        "the new segments to upload",
        Duration::from_secs(20),
        || {
            let log = b
                .broker
                .replicas
                .get(&TopicPartition::new("tiered", 0))
                .expect("partition")
                .log()
                .clone();
            remote_end(&b, "tiered")
                >= log
                    .sealed_segments()
                    .last()
                    .map(|s| s.last_offset.0)
                    .unwrap_or(-1)
        },
    )
    .await;
    let uploaded_end = remote_end(&b, "tiered");
    let dir = b.stop().await;
    std::fs::remove_dir_all(dir.path().join("data").join("tiered-0")).expect("lose the disk");
    let b = TestBroker::start_in(dir, &tiering_sets(&[])).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    assert_eq!(
        list_offset(&mut c, "tiered", -1).await,
        (0, uploaded_end + 1)
    );
    assert_eq!(list_offset(&mut c, "tiered", -2).await, (0, 0));
    let first_new = uploaded_end + 1;
    let req_end = produce(&mut c, "tiered", first_new, 5).await;
    read_all_checked(&mut c, "tiered", 0, uploaded_end + 1).await;
    let (err, records, _) = fetch_once(&mut c, "tiered", first_new, 1 << 20).await;
    assert_eq!(err, 0);
    assert_eq!(decode(records).first().map(|r| r.offset), Some(first_new));
    assert!(req_end > end2 - 200);
    drop(c);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_delete_records_and_topic_deletion_reach_remote_data() {
    let b = TestBroker::start(&tiering_sets(&[])).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(&mut c, "expiring", TOPIC_CONFIGS).await;
    let end = produce(&mut c, "expiring", 0, 100).await;
    wait_for("uploads", Duration::from_secs(30), || {
        remote_end(&b, "expiring") > end / 2
    })
    .await;
    let remote_dir = b.dir.path().join("data").join("remote");

    // DeleteRecords below the local start moves the remote start.
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name("expiring"))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(105)])]);
    let resp = c.send(&req, 2).await.expect("delete records");
    let p = &resp.topics[0].partitions[0];
    assert_eq!((p.error_code, p.low_watermark), (0, 105));
    assert_eq!(list_offset(&mut c, "expiring", -2).await, (0, 105));
    let (err, _, _) = fetch_once(&mut c, "expiring", 50, 1 << 20).await;
    assert_eq!(err, 1, "OFFSET_OUT_OF_RANGE below the new start");
    read_all_checked(&mut c, "expiring", 105, end).await;
    wait_for(
        "remote segments below the start to go",
        Duration::from_secs(10),
        || {
            b.broker
                .remote
                .manifest(&TopicPartition::new("expiring", 0))
                .is_some_and(|m| m.segments.iter().all(|s| s.end_offset >= 105))
        },
    )
    .await;

    // Total retention by size expires remote segments too.
    let req =
        kafka_protocol::messages::IncrementalAlterConfigsRequest::default().with_resources(vec![
        kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource::default(
        )
        .with_resource_type(2)
        .with_resource_name(str_bytes("expiring"))
        .with_configs(vec![
            kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig::default()
                .with_name(str_bytes("retention.bytes"))
                .with_config_operation(0)
                .with_value(Some(str_bytes("65536"))),
        ]),
    ]);
    let resp = c.send(&req, 1).await.expect("alter");
    assert_eq!(resp.responses[0].error_code, 0);
    wait_for("remote retention", Duration::from_secs(10), || {
        b.broker
            .remote
            .manifest(&TopicPartition::new("expiring", 0))
            .is_some_and(|m| m.live_bytes() <= 65536)
    })
    .await;
    let (_, earliest) = list_offset(&mut c, "expiring", -2).await;
    assert!(earliest > 105);
    read_all_checked(&mut c, "expiring", earliest, end).await;
    assert!(b.broker.metrics.tiering.remote_deleted_segments.get() > 0);

    // Topic deletion removes every object of the partition.
    let prefix_exists = || {
        std::fs::read_dir(&remote_dir)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("expiring-"))
            })
            .unwrap_or(false)
    };
    assert!(prefix_exists());
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topic_names(vec![topic_name("expiring")]);
    let resp = c.send(&req, 4).await.expect("delete topic");
    assert_eq!(resp.responses[0].error_code, 0);
    wait_for(
        "remote data of the deleted topic to go",
        Duration::from_secs(10),
        || files_under(&remote_dir, "log").is_empty(),
    )
    .await;
    drop(c);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_keeps_local_segments_and_corrupt_remote_data_is_never_served() {
    // Nothing listens on port 1: every store call fails fast. Keys in the environment, so the
    // credential chain never looks beyond it (instance metadata).
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let b = TestBroker::start(&tiering_sets(&[
        ("remote.storage.uri", "s3://nowhere/p"),
        ("remote.storage.s3.endpoint", "http://127.0.0.1:1"),
        ("remote.storage.s3.path.style", "true"),
    ]))
    .await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(&mut c, "stuck", TOPIC_CONFIGS).await;
    let end = produce(&mut c, "stuck", 0, 60).await;
    wait_for("upload errors", Duration::from_secs(30), || {
        b.broker.metrics.tiering.upload_errors.get() > 0
    })
    .await;
    let log = b
        .broker
        .replicas
        .get(&TopicPartition::new("stuck", 0))
        .expect("partition")
        .log()
        .clone();
    log.delete_old_segments().expect("retention");
    assert_eq!(
        log.local_log_start_offset().0,
        0,
        "nothing deleted locally while nothing is uploaded"
    );
    read_all_checked(&mut c, "stuck", 0, end).await;
    drop(c);
    b.stop().await;

    // Local store; tier, restart (empty cache), then damage one remote segment.
    let b = TestBroker::start(&tiering_sets(&[])).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(&mut c, "damaged", TOPIC_CONFIGS).await;
    let end = produce(&mut c, "damaged", 0, 100).await;
    wait_for("local retention", Duration::from_secs(30), || {
        b.broker
            .replicas
            .get(&TopicPartition::new("damaged", 0))
            .is_some_and(|p| p.log().local_log_start_offset().0 > 100)
    })
    .await;
    drop(c);
    let dir = b.stop().await;
    let remote_dir = dir.path().join("data").join("remote");
    let mut logs = files_under(&remote_dir, "log");
    logs.sort();
    let first = logs.first().expect("a remote segment").clone();
    let mut data = std::fs::read(&first).expect("read");
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&first, &data).expect("write");
    let b = TestBroker::start_in(dir, &tiering_sets(&[])).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    let mut saw_storage_error = false;
    let mut next = 0;
    while next < 100 {
        let (err, records, _) = fetch_once(&mut c, "damaged", next, 4096).await;
        if err == 56 {
            saw_storage_error = true;
            break;
        }
        assert_eq!(err, 0);
        let recs = decode(records);
        for r in &recs {
            assert_eq!(
                r.value.as_deref(),
                Some(value_for(r.offset).as_bytes()),
                "a damaged record was served"
            );
        }
        next = recs.last().map(|r| r.offset + 1).unwrap_or(next + 1);
    }
    assert!(
        saw_storage_error,
        "KAFKA_STORAGE_ERROR for the damaged batch"
    );
    assert!(b.broker.metrics.tiering.remote_fetch_errors.get() > 0);
    // The broker is still up and serves the undamaged rest.
    let (_, local_start) = list_offset(&mut c, "damaged", -4).await;
    read_all_checked(&mut c, "damaged", local_start, end).await;
    drop(c);
    b.stop().await;
}

async fn init_producer(c: &mut KafkaClient) -> (i64, i16) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let init = c.send(&req, 4).await.expect("init producer id");
    assert_eq!(init.error_code, 0);
    (init.producer_id.0, init.producer_epoch)
}

/// Produces one idempotent batch of `RECORDS_PER_BATCH` records with timestamps from
/// `base_timestamp_ms`; returns (error code, base offset).
async fn produce_idempotent(
    c: &mut KafkaClient,
    topic: &str,
    (pid, epoch): (i64, i16),
    base_sequence: i32,
    base_timestamp_ms: i64,
) -> (i16, i64) {
    let recs: Vec<common::TestRecord> = (0..RECORDS_PER_BATCH)
        .map(|i| {
            (
                Some("k"),
                Some(format!("s{base_sequence}-{i}-{}", "x".repeat(200))),
                vec![],
            )
        })
        .collect();
    let records = idempotent_batch_at(
        &recs,
        Compression::None,
        pid,
        epoch,
        base_sequence,
        base_timestamp_ms,
    );
    produce_batch(c, topic, records).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_timestamp_sees_remote_and_a_lost_disk_keeps_producer_state_and_epochs() {
    const BATCHES: i32 = 100;
    const MAX_BATCH: i32 = 50;
    const T0: i64 = 1_700_000_000_000;
    let ts_of = |k: i32| {
        if k == MAX_BATCH {
            1_750_000_000_000
        } else {
            T0 + k as i64 * 100
        }
    };
    let b = TestBroker::start(&tiering_sets(&[])).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(&mut c, "idem", TOPIC_CONFIGS).await;
    let producer = init_producer(&mut c).await;
    let per_batch = RECORDS_PER_BATCH as i32;
    for k in 0..BATCHES {
        assert_eq!(
            produce_idempotent(&mut c, "idem", producer, k * per_batch, ts_of(k)).await,
            (0, (k * per_batch) as i64)
        );
    }
    let end = (BATCHES * per_batch) as i64;
    let tp = TopicPartition::new("idem", 0);
    let log = b.broker.replicas.get(&tp).expect("partition").log().clone();
    log.roll().expect("roll");
    wait_for(
        "every segment uploaded and local retention",
        Duration::from_secs(30),
        || remote_end(&b, "idem") == end - 1 && log.local_log_start_offset().0 > 600,
    )
    .await;

    // KIP-734: the greatest timestamp is in a segment held only remotely; the first record
    // carrying it is the last of its batch.
    let max_offset = (MAX_BATCH * per_batch + per_batch - 1) as i64;
    assert_eq!(list_offset(&mut c, "idem", -3).await, (0, max_offset));
    // By time, into the remote part.
    assert_eq!(list_offset(&mut c, "idem", T0 + 2000).await, (0, 200));

    let epochs_before = log.epoch_entries();
    assert!(!epochs_before.is_empty());
    drop(c);
    let dir = b.stop().await;
    std::fs::remove_dir_all(dir.path().join("data").join("idem-0")).expect("lose the disk");
    let b = TestBroker::start_in(dir, &tiering_sets(&[])).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    let log = b.broker.replicas.get(&tp).expect("partition").log().clone();
    assert_eq!(log.local_log_start_offset().0, end);
    // The local cache was trimmed to the local log start; the restored one covers the whole
    // log from the remote start.
    let epochs_after = log.epoch_entries();
    let epoch_numbers =
        |v: &[(LeaderEpoch, Offset)]| v.iter().map(|(e, _)| e.0).collect::<Vec<_>>();
    assert_eq!(
        epoch_numbers(&epochs_after).get(..epochs_before.len()),
        Some(&epoch_numbers(&epochs_before)[..]),
        "leader epochs restored from the remote log: {epochs_after:?}"
    );
    assert_eq!(epochs_after.first().map(|(_, o)| o.0), Some(0));
    // The producer resumes: a retry of its last batch gets its original offset, a gap is
    // refused, the next batch follows.
    let last = BATCHES - 1;
    assert_eq!(
        produce_idempotent(&mut c, "idem", producer, last * per_batch, ts_of(last)).await,
        (0, (last * per_batch) as i64)
    );
    assert_eq!(
        produce_idempotent(&mut c, "idem", producer, (BATCHES + 1) * per_batch, T0)
            .await
            .0,
        kafka_protocol::ResponseError::OutOfOrderSequenceNumber.code()
    );
    assert_eq!(
        produce_idempotent(&mut c, "idem", producer, BATCHES * per_batch, T0).await,
        (0, end)
    );
    assert_eq!(
        list_offset(&mut c, "idem", -1).await,
        (0, end + RECORDS_PER_BATCH as i64)
    );
    // Still the remote maximum.
    assert_eq!(list_offset(&mut c, "idem", -3).await, (0, max_offset));
    drop(c);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_swept_periodically() {
    let b = TestBroker::start(&tiering_sets(&[("remote.orphan.sweep.interval.ms", "200")])).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(&mut c, "swept", TOPIC_CONFIGS).await;
    produce(&mut c, "swept", 0, 30).await;
    wait_for("an upload", Duration::from_secs(30), || {
        remote_end(&b, "swept") >= 0
    })
    .await;
    let remote_dir = b.dir.path().join("data").join("remote");
    let uploaded = files_under(&remote_dir, "log");
    let partition_dir = uploaded[0].parent().expect("partition dir").to_path_buf();
    // Long after the first sweep: what an upload interrupted by a crash leaves behind.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let orphan = partition_dir.join(format!("{:020}-0-{}.log", 99_999, uuid::Uuid::new_v4()));
    std::fs::write(&orphan, b"left by an interrupted upload").expect("plant an orphan");
    wait_for("the next sweep", Duration::from_secs(10), || {
        !orphan.exists()
    })
    .await;
    // Named objects stay.
    assert!(uploaded.iter().all(|p| p.exists()));
    drop(c);
    b.stop().await;
}

/// A `moto_server` (S3-compatible) process on a free port, killed on drop.
struct MotoServer {
    child: std::process::Child,
    port: u16,
}

impl MotoServer {
    /// Starts `moto_server`; panics, saying how to install it, when it is not on the `PATH`.
    fn start() -> MotoServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto_server ({e}): the S3 tests need it on the PATH; \
                     install it with scripts/install-test-deps.sh \
                     (python3 -m pip install 'moto[server]>=5,<6')"
                )
            });
        let server = MotoServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Keys in the environment, so the credential chain never looks beyond it; moto
        // accepts any. Every test here sets the same values.
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        server
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// PUT /bucket; an existing one is fine.
    fn create_bucket(&self, bucket: &str) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        write!(
            s,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("create bucket");
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        assert!(
            resp.starts_with("HTTP/1.1 200") || resp.contains("BucketAlready"),
            "{resp}"
        );
    }

    /// A store on `bucket` under `prefix`, endpoint set, addressing style by default.
    fn storage(&self, bucket: &str, prefix: &str) -> strata_tiering::ObjectStorage {
        strata_tiering::StorageConfig::parse(
            &format!("s3://{bucket}/{prefix}"),
            Path::new("/unused"),
            &self.endpoint(),
            "us-east-1",
            None,
        )
        .and_then(|c| c.build())
        .expect("s3 store")
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `s3://{bucket}/c1` behind moto's endpoint, the addressing style left to its default.
fn s3_sets(moto: &MotoServer, bucket: &str) -> Vec<(&'static str, String)> {
    vec![
        ("remote.log.manager.task.interval.ms", "50".into()),
        ("remote.storage.uri", format!("s3://{bucket}/c1")),
        ("remote.storage.s3.endpoint", moto.endpoint()),
        ("remote.storage.s3.region", "us-east-1".into()),
    ]
}

async fn start_with(sets: &[(&'static str, String)]) -> TestBroker {
    let sets: Vec<(&str, &str)> = sets.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestBroker::start(&sets).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_reach_an_s3_bucket_behind_a_custom_endpoint_by_default() {
    let moto = MotoServer::start();
    moto.create_bucket("segments");
    let b = start_with(&s3_sets(&moto, "segments")).await;
    wait_for("the store probe", Duration::from_secs(30), || {
        b.broker.readiness().is_ok()
    })
    .await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(&mut c, "on-s3", TOPIC_CONFIGS).await;
    let end = produce(&mut c, "on-s3", 0, 30).await;
    wait_for("an upload to S3", Duration::from_secs(30), || {
        remote_end(&b, "on-s3") >= 0
    })
    .await;
    // In bucket `segments` under `c1/` (not in a bucket named `c1`), and nothing else there:
    // the probe's marker is gone.
    let objects = moto.storage("segments", "c1").list("").await.expect("list");
    assert!(
        objects.iter().any(|o| o.key.ends_with("/manifest.json"))
            && objects.iter().any(|o| o.key.ends_with(".log")),
        "{objects:?}"
    );
    assert!(
        objects.iter().all(|o| o.key.starts_with("on-s3-")),
        "{objects:?}"
    );
    read_all_checked(&mut c, "on-s3", 0, end).await;
    drop(c);
    b.stop().await;
}

/// `GET /ready` against `serve_http` answering from `b`; returns (status line, body).
async fn get_ready(b: &TestBroker) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let broker = b.broker.clone();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(strata::metrics::serve_http(
        listener,
        move || broker.readiness(),
        || async { String::new() },
        stop.clone(),
    ));
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.expect("read");
    stop.cancel();
    let (head, body) = resp.split_once("\r\n\r\n").expect("response");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_keeps_the_broker_not_ready_and_says_so_in_one_line() {
    let moto = MotoServer::start();
    let b = start_with(&s3_sets(&moto, "never-created")).await;
    let expected = format!(
        "tiered storage: bucket \"never-created\" at {} does not exist (NoSuchBucket)",
        moto.endpoint()
    );
    wait_for("the probe's verdict", Duration::from_secs(30), || {
        b.broker.remote_store.failure().is_some()
    })
    .await;
    assert_eq!(b.broker.readiness(), Err(expected.clone()));
    let (status, body) = get_ready(&b).await;
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(body, format!("{expected}\n"));
    // The broker still serves its local data.
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(&mut c, "local-only", TOPIC_CONFIGS).await;
    let end = produce(&mut c, "local-only", 0, 5).await;
    read_all_checked(&mut c, "local-only", 0, end).await;
    // Creating the bucket heals it without a restart, at the next probe.
    moto.create_bucket("never-created");
    wait_for("the store to pass a probe", Duration::from_secs(30), || {
        b.broker.readiness().is_ok()
    })
    .await;
    assert_eq!(get_ready(&b).await.0, "HTTP/1.1 200 OK");
    drop(c);
    b.stop().await;
}

fn replay_value(partition: i32, offset: i64) -> String {
    format!("p{partition}-{}", value_for(offset))
}

/// Produces `batches` batches of `RECORDS_PER_BATCH` to `partition`, from offset 0.
async fn produce_to(c: &mut KafkaClient, topic: &str, partition: i32, batches: usize) -> i64 {
    let mut next = 0i64;
    for _ in 0..batches {
        let recs: Vec<common::TestRecord> = (0..RECORDS_PER_BATCH as i64)
            .map(|i| (Some("k"), Some(replay_value(partition, next + i)), vec![]))
            .collect();
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch(&recs, Compression::None)))])]);
        let resp = c.send(&req, 9).await.expect("produce");
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, next));
        next += RECORDS_PER_BATCH as i64;
    }
    next
}

/// One fetch of several partitions of `topic` at their offsets: (partition, error, records).
async fn fetch_partitions(
    c: &mut KafkaClient,
    topic: &str,
    at: &[(i32, i64)],
    partition_max_bytes: i32,
    max_bytes: i32,
) -> Vec<(i32, i16, Bytes)> {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(
                at.iter()
                    .map(|&(p, o)| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(o)
                            .with_partition_max_bytes(partition_max_bytes)
                    })
                    .collect(),
            )]);
    let resp = c.send(&req, 12).await.expect("fetch");
    resp.responses[0]
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.error_code,
                p.records.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// Checks that `records` (a fetch's answer at `offset` of `partition`) start with the batch
/// holding `offset` and run on in order with the values written; returns the next offset.
fn check_records(partition: i32, offset: i64, records: Bytes) -> i64 {
    let recs = decode(records);
    let first = recs.first().map(|r| r.offset);
    assert!(
        first.is_some_and(|f| f <= offset && f > offset - RECORDS_PER_BATCH as i64),
        "p{partition} at {offset}: first record {first:?}"
    );
    let mut next = first.unwrap_or(offset);
    for r in recs {
        assert_eq!(r.offset, next, "p{partition}: offsets in order");
        assert_eq!(
            r.value.as_deref(),
            Some(replay_value(partition, next).as_bytes()),
            "p{partition}: content of {next}"
        );
        next += 1;
    }
    next
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_segment_remote_log_reads_back_exactly_in_order_and_at_random_offsets() {
    // Small chunks, so one fetch spans several ranged GETs and read-ahead runs ahead of it.
    let b = TestBroker::start(&tiering_sets(&[
        ("remote.cache.chunk.bytes", "4096"),
        ("remote.cache.readahead.chunks", "1"),
        ("remote.fetch.read.ahead.max.chunks", "4"),
        ("remote.fetch.concurrency", "2"),
    ]))
    .await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    common::kafka::create_topic(&mut c, "replay", 3, TOPIC_CONFIGS).await;
    let mut ends = vec![];
    for p in 0..3 {
        ends.push(produce_to(&mut c, "replay", p, 40 + 10 * p as usize).await); // ~100-140 KB
    }
    let logs: Vec<_> = (0..3)
        .map(|p| {
            b.broker
                .replicas
                .get(&TopicPartition::new("replay", p))
                .expect("partition")
                .log()
                .clone()
        })
        .collect();
    wait_for(
        "uploads and local retention",
        Duration::from_secs(30),
        || {
            (0..3).all(|p| {
                let log = &logs[p as usize];
                let sealed_end = log.sealed_segments().last().map_or(-1, |s| s.last_offset.0);
                let uploaded = b
                    .broker
                    .remote
                    .manifest(&TopicPartition::new("replay", p))
                    .and_then(|m| m.end_offset())
                    .unwrap_or(-1);
                uploaded >= sealed_end && log.local_log_start_offset().0 > 100
            })
        },
    )
    .await;
    // In order, all three partitions in each fetch, from offset 0 to the end (remote, then
    // local).
    let mut at: Vec<(i32, i64)> = (0..3).map(|p| (p, 0)).collect();
    while at.iter().any(|&(p, o)| o < ends[p as usize]) {
        let ask: Vec<(i32, i64)> = at
            .iter()
            .copied()
            .filter(|&(p, o)| o < ends[p as usize])
            .collect();
        for (p, err, records) in fetch_partitions(&mut c, "replay", &ask, 6000, 20_000).await {
            assert_eq!(err, 0, "p{p}");
            let slot = &mut at[p as usize];
            if records.is_empty() {
                continue;
            }
            slot.1 = check_records(p, slot.1, records);
        }
    }
    assert_eq!(at, vec![(0, ends[0]), (1, ends[1]), (2, ends[2])]);
    // At random offsets (a fixed LCG, so a failure replays), with budgets from one byte (one
    // whole batch, KIP-74) to several chunks.
    let mut x: u64 = 0x5eed;
    for _ in 0..60 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let p = ((x >> 33) % 3) as i32;
        let offset = ((x >> 20) % ends[p as usize] as u64) as i64;
        let budget = 1 + ((x >> 8) % 20_000) as i32;
        let got = fetch_partitions(&mut c, "replay", &[(p, offset)], budget, budget).await;
        let (_, err, records) = got.into_iter().next().expect("one partition");
        assert_eq!(err, 0, "p{p} at {offset}");
        let next = check_records(p, offset, records);
        assert!(next > offset, "p{p} at {offset}: nothing past the offset");
    }
    // The store counted its GETs, and read-ahead fetched some of them.
    b.broker.remote.sync_metrics();
    let m = &b.broker.metrics.tiering;
    let gets = m.store_requests.with_label_values(&["get"]).get();
    assert!(gets > 30, "{gets} GETs");
    assert!(m.store_bytes.with_label_values(&["get"]).get() >= 4096 * 30);
    assert!(m.store_requests.with_label_values(&["put"]).get() > 0);
    assert!(m.cache_prefetched.get() > 0);
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The newest value of every key in `records` (a tombstone removes the key).
fn fold(
    into: &mut std::collections::BTreeMap<String, String>,
    records: &[kafka_protocol::records::Record],
) {
    for r in records {
        let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
        match &r.value {
            Some(v) => {
                into.insert(key, String::from_utf8_lossy(v).into_owned());
            }
            None => {
                into.remove(&key);
            }
        }
    }
}

/// A compacted topic with `remote.storage.enable=true`: updates over many keys and deletions
/// are cleaned, uploaded and compacted in the bucket, which then holds each key at most once
/// and no deleted key; a consumer from offset 0 reads the newest value of every key across the
/// sparse remote segments and the local log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_is_tiered_and_compacted_in_the_bucket() {
    let b = TestBroker::start(&tiering_sets(&[
        ("log.cleaner.backoff.ms", "50"),
        ("remote.compaction.interval.ms", "100"),
    ]))
    .await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    let topic = "tiered-compacted";
    create_topic(
        &mut c,
        topic,
        &[
            ("cleanup.policy", "compact"),
            ("remote.storage.enable", "true"),
            ("segment.bytes", "16384"),
            ("local.retention.bytes", "32768"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "0"),
            ("file.delete.delay.ms", "0"),
        ],
    )
    .await;
    const KEYS: usize = 300;
    const ROUNDS: usize = 8;
    let mut expected = std::collections::BTreeMap::new();
    let mut next = 0i64;
    fn send(next: &mut i64, recs: Vec<common::TestRecord>) -> (i64, Bytes) {
        let at = *next;
        *next += recs.len() as i64;
        (at, batch(&recs, Compression::None))
    }
    let mut batches = Vec::new();
    for round in 0..ROUNDS {
        for chunk in (0..KEYS).collect::<Vec<_>>().chunks(10) {
            let recs: Vec<common::TestRecord> = chunk
                .iter()
                .map(|k| {
                    let v = format!("v{round}-{k}-{}", "x".repeat(80));
                    expected.insert(format!("key-{k:04}"), v.clone());
                    (Some(leak(format!("key-{k:04}"))), Some(v), vec![])
                })
                .collect();
            batches.push(send(&mut next, recs));
        }
    }
    // Every seventh key is deleted.
    let deleted: Vec<usize> = (0..KEYS).step_by(7).collect();
    for chunk in deleted.chunks(10) {
        let recs: Vec<common::TestRecord> = chunk
            .iter()
            .map(|k| {
                expected.remove(&format!("key-{k:04}"));
                (Some(leak(format!("key-{k:04}"))), None, vec![])
            })
            .collect();
        batches.push(send(&mut next, recs));
    }
    let last_update = next - 1;
    // Keys written once, enough to roll the segments holding the updates.
    for chunk in (0..200).collect::<Vec<_>>().chunks(10) {
        let recs: Vec<common::TestRecord> = chunk
            .iter()
            .map(|i| {
                let v = format!("filler-{i}-{}", "y".repeat(80));
                expected.insert(format!("filler-{i:04}"), v.clone());
                (Some(leak(format!("filler-{i:04}"))), Some(v), vec![])
            })
            .collect();
        batches.push(send(&mut next, recs));
    }
    let end = next;
    for (at, records) in batches {
        assert_eq!(produce_batch(&mut c, topic, records).await, (0, at));
    }
    let tp = TopicPartition::new(topic, 0);
    let manifest = || b.broker.remote.manifest(&tp).expect("manifest loaded");
    wait_for(
        "the updates to be uploaded and compacted remotely",
        Duration::from_secs(60),
        || {
            b.broker.remote.manifest(&tp).is_some_and(|m| {
                m.end_offset().is_some_and(|e| e >= last_update)
                    && m.compacted_end_offset == m.end_offset()
                    && m.segments.iter().all(|s| {
                        s.state == strata_tiering::RemoteLogSegmentState::CopySegmentFinished
                    })
            })
        },
    )
    .await;
    let m = manifest();
    let local_start = b
        .broker
        .replicas
        .logs()
        .get(&tp)
        .expect("log")
        .local_log_start_offset()
        .0;
    assert!(local_start > 0, "local retention dropped uploaded segments");

    // The bucket holds each key at most once, and no deleted key.
    let path = strata_tiering::PartitionPath::new(topic, m.topic_id, 0);
    let mut in_bucket: std::collections::HashMap<String, usize> = Default::default();
    let mut remote_records = 0;
    for s in m.live_segments() {
        let data = b
            .broker
            .remote
            .storage()
            .get(&path.segment_key(s, strata_tiering::SegmentFileKind::Log))
            .await
            .expect("segment object");
        for r in decode(data) {
            assert!(r.offset >= s.base_offset && r.offset <= s.end_offset);
            let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
            *in_bucket.entry(key).or_default() += 1;
            remote_records += 1;
        }
    }
    let produced = (KEYS * ROUNDS + deleted.len()) as i64;
    assert!(
        remote_records <= expected.len(),
        "{remote_records} records in the bucket for {} live keys (of {produced} written)",
        expected.len()
    );
    assert!(remote_records > 0, "the bucket holds the newest values");
    for (key, n) in &in_bucket {
        assert_eq!(*n, 1, "{key} is in the bucket {n} times");
        assert!(expected.contains_key(key), "deleted {key} is in the bucket");
    }

    // Offsets the cleaner emptied before upload are gaps: the log still starts at 0.
    assert_eq!(list_offset(&mut c, topic, -2).await, (0, 0));
    // A consumer from offset 0 reads the newest value of every key and no deleted key.
    let mut seen = std::collections::BTreeMap::new();
    let mut offset = 0;
    let mut from_remote = 0;
    while offset < end {
        let (err, records, log_start) = fetch_once(&mut c, topic, offset, 64 * 1024).await;
        assert_eq!((err, log_start), (0, 0), "fetch at {offset}");
        let recs: Vec<_> = decode(records)
            .into_iter()
            .filter(|r| r.offset >= offset)
            .collect();
        let Some(last) = recs.last() else {
            panic!("no records at {offset} (end {end})");
        };
        assert!(recs.windows(2).all(|w| w[0].offset < w[1].offset));
        if offset < local_start {
            from_remote += recs.len();
        }
        offset = last.offset + 1;
        fold(&mut seen, &recs);
    }
    assert!(from_remote > 0, "part of the read came from the bucket");
    assert_eq!(seen, expected);
}
