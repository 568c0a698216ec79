//! Waiting fetches wake for their own partitions only, under paused time: a wait that is not
//! woken runs into its deadline, one that is woken finishes at the instant of the change.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::time::Instant;

use super::{DelayedFetch, FetchIsolation, Wake};
use crate::clock::ManualClock;
use crate::log::{FlushPolicy, LogConfig, UnifiedLog};
use crate::model::{BrokerId, LeaderEpoch, Offset, TopicId, TopicPartition};
use crate::replication::{Partition, PartitionState};

const LOCAL: BrokerId = BrokerId(1);
const FOLLOWER: BrokerId = BrokerId(2);
const WAIT: Duration = Duration::from_millis(500);

fn batch() -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 0,
        key: None,
        value: Some(Bytes::from_static(b"v")),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &[record], &options).expect("encode");
    buf.freeze()
}

fn state(replicas: &[BrokerId]) -> PartitionState {
    PartitionState {
        leader: LOCAL,
        leader_epoch: LeaderEpoch(0),
        replicas: replicas.to_vec(),
        isr: replicas.to_vec(),
        partition_epoch: 0,
    }
}

/// A partition led here, with `replicas` (this broker first).
fn partition(dir: &tempfile::TempDir, index: i32, replicas: &[BrokerId]) -> Arc<Partition> {
    let tp = TopicPartition::new("t", index);
    let config = LogConfig {
        flush_policy: FlushPolicy::Interval {
            messages: u64::MAX,
            ms: u64::MAX / 2,
        },
        ..LogConfig::default()
    };
    let clock = ManualClock::new(1_700_000_000_000);
    let log = UnifiedLog::open(dir.path().join(format!("t-{index}")), config, clock.clone())
        .expect("open log");
    Arc::new(Partition::new(
        tp,
        TopicId::random(),
        log,
        LOCAL,
        state(replicas),
        1,
        clock,
    ))
}

/// Starts waiting on `p`; resolves with how the wait ended and when.
fn wait_on(
    p: &Partition,
    isolation: FetchIsolation,
) -> tokio::task::JoinHandle<(Option<Wake>, Instant)> {
    let mut delayed = DelayedFetch::new(isolation, [p]);
    delayed.mark_seen();
    tokio::spawn(async move {
        let wake = tokio::time::timeout(WAIT, delayed.changed()).await.ok();
        (wake, Instant::now())
    })
}

/// Lets spawned waiters run up to their first wait.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_consumer_wakes_for_its_partition_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (partition(&dir, 0, &[LOCAL]), partition(&dir, 1, &[LOCAL]));
    let start = Instant::now();

    // Appends to B, committed at once (a lone replica), leave a waiter on A asleep until its
    // deadline.
    let waiter = wait_on(&a, FetchIsolation::HighWatermark);
    settle().await;
    for _ in 0..100 {
        b.append_as_leader(batch(), 1).expect("append to b");
    }
    assert_eq!(b.high_watermark(), Offset(100));
    let (wake, at) = waiter.await.expect("waiter");
    assert_eq!(wake, None, "an append to another partition woke the fetch");
    assert_eq!(at - start, WAIT);

    // An append to A wakes it at that instant.
    let waiter = wait_on(&a, FetchIsolation::HighWatermark);
    settle().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let appended_at = Instant::now();
    a.append_as_leader(batch(), 1).expect("append to a");
    let (wake, at) = waiter.await.expect("waiter");
    assert_eq!(wake, Some(Wake::Changed));
    assert_eq!(at, appended_at);
}

#[tokio::test(start_paused = true)]
async fn followers_wake_on_appends_and_consumers_on_the_high_watermark() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (
        partition(&dir, 0, &[LOCAL, FOLLOWER]),
        partition(&dir, 1, &[LOCAL, FOLLOWER]),
    );

    // Appends to B wake neither kind of waiter on A.
    let follower = wait_on(&a, FetchIsolation::LogEnd);
    let consumer = wait_on(&a, FetchIsolation::HighWatermark);
    settle().await;
    b.append_as_leader(batch(), 1).expect("append to b");
    assert_eq!(follower.await.expect("follower").0, None);
    assert_eq!(consumer.await.expect("consumer").0, None);

    // An append to A wakes its follower at once; the consumer sleeps on, as the record is not
    // committed until the follower has it.
    let follower = wait_on(&a, FetchIsolation::LogEnd);
    let consumer = wait_on(&a, FetchIsolation::HighWatermark);
    settle().await;
    let appended_at = Instant::now();
    a.append_as_leader(batch(), 1).expect("append to a");
    assert_eq!(a.high_watermark(), Offset(0));
    assert_eq!(
        follower.await.expect("follower"),
        (Some(Wake::Changed), appended_at)
    );
    settle().await;
    assert!(
        !consumer.is_finished(),
        "an uncommitted append woke a consumer"
    );

    // The follower's next fetch moves the high watermark: the consumer wakes then.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fetched_at = Instant::now();
    a.fetch_for_follower(FOLLOWER, Offset(1), LeaderEpoch(0), None, 1 << 20)
        .expect("follower fetch");
    assert_eq!(a.high_watermark(), Offset(1));
    assert_eq!(
        consumer.await.expect("consumer"),
        (Some(Wake::Changed), fetched_at)
    );
}

#[tokio::test(start_paused = true)]
async fn leadership_changes_truncation_and_removal_wake_every_waiter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = partition(&dir, 0, &[LOCAL, FOLLOWER]);

    let follower = wait_on(&a, FetchIsolation::LogEnd);
    let consumer = wait_on(&a, FetchIsolation::HighWatermark);
    settle().await;
    let moved_at = Instant::now();
    let new_leader = PartitionState {
        leader: FOLLOWER,
        leader_epoch: LeaderEpoch(1),
        ..state(&[LOCAL, FOLLOWER])
    };
    a.update_state(new_leader, 1);
    assert_eq!(
        follower.await.expect("follower"),
        (Some(Wake::Changed), moved_at)
    );
    assert_eq!(
        consumer.await.expect("consumer"),
        (Some(Wake::Changed), moved_at)
    );
    assert!(a.check_leader(LeaderEpoch::UNKNOWN).is_err());

    // Now a follower itself: truncation wakes (a fetch here would answer NOT_LEADER at once).
    a.append_as_follower(batch(), Offset(0))
        .expect("follower append");
    let consumer = wait_on(&a, FetchIsolation::HighWatermark);
    settle().await;
    a.truncate_to(Offset(0)).expect("truncate");
    assert_eq!(consumer.await.expect("consumer").0, Some(Wake::Changed));

    let consumer = wait_on(&a, FetchIsolation::HighWatermark);
    settle().await;
    drop(a);
    assert_eq!(consumer.await.expect("consumer").0, Some(Wake::Removed));
}
