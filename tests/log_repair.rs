//! A corrupt range restored by itself: a follower truncates its log to the corrupt batch and
//! copies it again from a healthy replica, bit for bit (whatever part of the batch rotted: its
//! records or its header); a tiered partition serves a corrupt local segment from the remote
//! copy, every record intact, and drops the local copy when it is the oldest segment.
//! (`tests/compat/test_disk_faults.py` runs both on a real cluster with powerfs bit flips.)

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::files::{flip_byte, segment_files};
use common::{batch, decode, TestBroker};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchRequest, ProduceRequest};
use kafka_protocol::records::Compression;
use strata::client::KafkaClient;
use strata::clock::{ManualClock, SharedClock};
use strata::log::{LogConfig, LogError, UnifiedLog};
use strata::model::{LeaderEpoch, Offset, TopicPartition};
use strata::protocol::record_batch::{build_batch, BatchIter};
use strata::protocol::topic_name;

const T0: i64 = 1_700_000_000_000;

fn open(dir: &Path) -> Arc<UnifiedLog> {
    let cfg = LogConfig {
        segment_bytes: 8192,
        index_interval_bytes: 512,
        segment_index_bytes: 4096,
        ..LogConfig::default()
    };
    let clock: SharedClock = ManualClock::new(T0);
    UnifiedLog::open(dir.to_path_buf(), cfg, clock).expect("open")
}

/// `n` one-record batches, as the log holds them (offsets assigned): what a healthy replica
/// would send.
fn fill(log: &UnifiedLog, n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            let v = format!("value-{i:05}-").repeat(10).into_bytes();
            let info = log
                .append_as_leader(
                    Bytes::from(build_batch(0, T0, None, &[(None, Some(&v[..]))])),
                    LeaderEpoch(0),
                )
                .expect("append");
            log.read(info.first_offset, 1 << 20, Offset(i64::MAX), true)
                .expect("read")
                .records
        })
        .collect()
}

/// A bit flipped on the disk.
fn flip(path: &Path, at: u64) {
    flip_byte(path, at, 0x10);
}

/// The batch holding `offset`, alone.
fn batch_at(log: &UnifiedLog, offset: i64) -> Result<Bytes, LogError> {
    let r = log.read(Offset(offset), 1 << 20, Offset(i64::MAX), true)?;
    let (pos, h) = BatchIter::new(&r.records)
        .next()
        .expect("one batch")
        .expect("valid");
    Ok(r.records.slice(pos..pos + h.total_size()))
}

#[test]
fn a_follower_truncates_to_a_corrupt_batch_and_copies_it_again_bit_identical() {
    // In the records (CRC mismatch), and in the header's length field (the batch cannot even be
    // walked over).
    for (what, at_in_batch) in [("records", 100u64), ("length", 10)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(dir.path());
        let healthy = fill(&log, 200);
        let segs = segment_files(dir.path());
        assert!(segs.len() > 2, "the second segment must be sealed");
        // Batch 3 of the second segment.
        let second_base = log.segment_base_offsets()[1].0;
        let batch_bytes = healthy[0].len() as u64;
        flip(&segs[1], 3 * batch_bytes + at_in_batch);
        let bad = second_base + 3;

        let err = batch_at(&log, bad).expect_err("not served");
        log.read_failed(Offset(bad), &err);
        let found = log.corrupt_batch().expect("located");
        assert_eq!(found.batch_base, Offset(bad), "{what}");
        assert_eq!(found.segment_base, Offset(second_base));
        assert_eq!(
            found.segment_last,
            Offset(log.segment_base_offsets()[2].0 - 1)
        );
        assert!(!found.oldest_local);

        // The repair as the fetcher runs it: truncate to the batch, then append what the
        // leader sends from there.
        log.request_repair_truncation(found.batch_base);
        assert_eq!(log.take_repair_truncation(), Some(Offset(bad)));
        assert_eq!(log.corrupt_batch(), None);
        log.truncate_to(Offset(bad)).expect("truncate");
        assert_eq!(log.log_end_offset(), Offset(bad), "{what}");
        assert_eq!(log.repair_refetched(), None, "not back yet");
        for b in &healthy[bad as usize..] {
            log.append_as_follower(b.clone()).expect("refetch");
        }
        assert_eq!(log.repair_refetched(), Some(found.refetch_until));
        assert_eq!(log.repair_refetched(), None, "counted once");
        for (i, want) in healthy.iter().enumerate() {
            assert_eq!(
                &batch_at(&log, i as i64).expect("intact"),
                want,
                "{what}: offset {i}"
            );
        }
        // And it stays so across a restart.
        log.close().expect("close");
        let log = open(dir.path());
        for (i, want) in healthy.iter().enumerate() {
            assert_eq!(&batch_at(&log, i as i64).expect("intact"), want);
        }
    }
}

const RECORDS_PER_BATCH: i64 = 10;

fn value_for(offset: i64) -> String {
    format!(
        "record-{offset:08}-{}",
        "y".repeat(200 + (offset % 37) as usize)
    )
}

async fn produce(c: &mut KafkaClient, topic: &str, batches: i64) {
    for n in 0..batches {
        let first = n * RECORDS_PER_BATCH;
        let values: Vec<String> = (first..first + RECORDS_PER_BATCH).map(value_for).collect();
        let recs: Vec<common::TestRecord> = values
            .iter()
            .map(|v| (Some("k"), Some(v.clone()), vec![]))
            .collect();
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(&recs, Compression::None)))])]);
        let resp = c.send(&req, 9).await.expect("produce");
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, first));
    }
}

/// Reads `[0, to)` with consumer fetches; every record's offset and value checked.
async fn read_all_checked(c: &mut KafkaClient, topic: &str, to: i64) {
    let mut next = 0;
    while next < to {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(64 * 1024)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(next)
                    .with_partition_max_bytes(64 * 1024)])]);
        let resp = c.send(&req, 12).await.expect("fetch");
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch at {next}");
        let recs = decode(p.records.clone().unwrap_or_default());
        assert!(!recs.is_empty(), "no records at {next}");
        let from = next;
        for r in recs.into_iter().filter(|r| r.offset >= from) {
            assert_eq!(r.offset, next, "offsets in order");
            assert_eq!(r.value.as_deref(), Some(value_for(next).as_bytes()));
            next += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiered_partition_serves_a_corrupt_segment_from_the_remote_copy() {
    let b = TestBroker::start(&[
        ("remote.log.manager.task.interval.ms", "50"),
        ("remote.orphan.grace.ms", "0"),
    ])
    .await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    let topic = "healed";
    common::kafka::create_topic(
        &mut c,
        topic,
        1,
        &[
            ("segment.bytes", "16384"),
            ("retention.ms", "-1"),
            ("remote.storage.enable", "true"),
        ],
    )
    .await;
    produce(&mut c, topic, 40).await; // ~100 KB: several sealed segments
    let end = 40 * RECORDS_PER_BATCH;
    let p = b
        .broker
        .replicas
        .get(&TopicPartition::new(topic, 0))
        .expect("partition");
    let log = p.log().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sealed_end = log.sealed_segments().last().map_or(-1, |s| s.last_offset.0);
        let remote_end = p
            .log_view()
            .highest_offset_in_remote_storage()
            .await
            .expect("remote end");
        if sealed_end > 0 && remote_end.0 >= sealed_end {
            break;
        }
        assert!(Instant::now() < deadline, "uploads");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 4, "{bases:?}");
    let dir = log.dir().to_path_buf();
    let name = |base: Offset| dir.join(format!("{:020}.log", base.0));
    // A bit rots in the records of the oldest local segment and of a middle one.
    flip(&name(bases[0]), 1000);
    flip(&name(bases[2]), 3000);
    let repaired = || {
        strata::log::metrics()
            .corrupt_ranges_repaired
            .with_label_values(&["remote"])
            .get()
    };
    let before = repaired();

    read_all_checked(&mut c, topic, end).await;
    // Both ranges were served remotely; the oldest local copy is gone (the local log starts
    // after it), the middle one stays on disk, its reads going remote.
    assert_eq!(repaired() - before, 2);
    assert_eq!(log.local_log_start_offset(), bases[1]);
    assert!(!name(bases[0]).exists());
    assert!(log.corrupt_range_served_remotely(bases[2]));
    read_all_checked(&mut c, topic, end).await;
    assert_eq!(repaired() - before, 2, "counted once per range");
    assert_eq!(log.corrupt_batch(), None, "nothing left to repair");
    drop(c);
    b.stop().await;
}

#[tokio::test]
async fn the_cleaner_meeting_a_corrupt_batch_locates_it_for_the_repair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock: SharedClock = ManualClock::new(T0);
    let cfg = LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        segment_index_bytes: 4096,
        cleanup_policy: strata::log::CleanupPolicy::Compact,
        ..LogConfig::default()
    };
    let mgr =
        strata::log::LogManager::open(vec![dir.path().to_path_buf()], clock, &|_| cfg.clone())
            .expect("open");
    let tp = TopicPartition::new("compacted", 0);
    let log = mgr.get_or_create(&tp, cfg.clone()).expect("create");
    let mut sizes = Vec::new();
    for i in 0..90 {
        let key = format!("key-{}", i % 4).into_bytes();
        let v = format!("value-{i:05}-").repeat(10).into_bytes();
        let info = log
            .append_as_leader(
                Bytes::from(build_batch(0, T0, None, &[(Some(&key[..]), Some(&v[..]))])),
                LeaderEpoch(0),
            )
            .expect("append");
        sizes.push(info.size_bytes);
    }
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 4, "{bases:?}");
    let segs = segment_files(&log.dir());
    flip(&segs[1], sizes[0] * 2 + 80); // batch 2 of the second segment
    assert_eq!(mgr.run_cleaner(), 0, "nothing cleaned past a corrupt batch");
    let found = log.corrupt_batch().expect("located");
    assert_eq!(found.segment_base, bases[1]);
    assert_eq!(found.batch_base, Offset(bases[1].0 + 2));
}
