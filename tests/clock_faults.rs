//! Wall-clock jumps (forward and back) while the broker runs, through the injected clock
//! (`ManualClock::jump_ms` moves the wall clock alone, as `date -s` or a resumed VM does):
//! time indexes stay monotonic, retention deletes what Kafka would after a jump forward and
//! does not stall for the length of a jump back, and timeouts (replica lag) run on the
//! monotonic clock.

#[path = "common/records.rs"]
mod records;

use std::sync::Arc;

use bytes::Bytes;
use strata::clock::{Clock, ManualClock, SharedClock};
use strata::log::{LogConfig, TimestampType, UnifiedLog, MAX_TIMESTAMP};
use strata::model::{BrokerId, LeaderEpoch, TopicId, TopicPartition};
use strata::protocol::record_batch::build_batch;
use strata::replication::{Partition, PartitionState};

const T0: i64 = 1_700_000_000_000;
const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;

fn batch(n: usize, ts: i64) -> Bytes {
    let recs = vec![(None, Some(&b"clock"[..])); n];
    Bytes::from(build_batch(0, ts, None, &recs))
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 1,
        segment_index_bytes: 4096,
        ..LogConfig::default()
    }
}

fn open(dir: &std::path::Path, cfg: LogConfig, clock: &Arc<ManualClock>) -> Arc<UnifiedLog> {
    let c: SharedClock = clock.clone();
    UnifiedLog::open(dir.join("t-0"), cfg, c).expect("open")
}

fn lookup(log: &UnifiedLog, ts: i64) -> Option<(i64, i64)> {
    log.fetch_offset_by_timestamp(ts)
        .expect("lookup")
        .map(|t| (t.timestamp_ms, t.offset.0))
}

#[test]
fn clock_jump_forward_then_back_keeps_time_indexes_monotonic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let cfg = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..small_config()
    };
    let log = open(dir.path(), cfg, &clock);
    let epoch = LeaderEpoch(0);
    // Offsets 0-9 at T0, 10-19 an hour ahead, 20-39 an hour behind T0.
    for i in 0..10 {
        log.append_as_leader(batch(1, 0), epoch).expect("append");
        clock.advance_ms(i);
    }
    clock.jump_ms(HOUR_MS);
    for _ in 0..10 {
        log.append_as_leader(batch(1, 0), epoch).expect("append");
        clock.advance_ms(1);
    }
    clock.jump_ms(-2 * HOUR_MS);
    for _ in 0..20 {
        log.append_as_leader(batch(1, 0), epoch).expect("append");
    }
    assert!(log.segment_count() > 1, "the jumps must span segments");
    // Records keep the time they were stamped with, as Kafka keeps LogAppendTime.
    let stamps: Vec<i64> = records::log_batches(&log)
        .iter()
        .map(|(h, _)| h.max_timestamp)
        .collect();
    assert_eq!(stamps.len(), 40);
    assert!(stamps[10..20].iter().all(|t| *t >= T0 + HOUR_MS));
    assert!(stamps[20..].iter().all(|t| *t < T0));
    // Lookups answer the first offset at or after the time, over the whole log: the index
    // never went back, so nothing stamped after the jump back hides the hour-ahead records.
    assert_eq!(lookup(&log, T0 + HOUR_MS).map(|x| x.1), Some(10));
    assert_eq!(lookup(&log, T0 - 2 * HOUR_MS).map(|x| x.1), Some(0));
    assert_eq!(lookup(&log, T0 + 2 * HOUR_MS), None);
    let max = lookup(&log, MAX_TIMESTAMP).expect("max timestamp");
    assert_eq!(
        max.1, 19,
        "the largest timestamp is the last record of the hour ahead"
    );
    // Reopening rebuilds or reads the indexes and answers the same.
    drop(log);
    let log = open(
        dir.path(),
        LogConfig {
            timestamp_type: TimestampType::LogAppendTime,
            ..small_config()
        },
        &clock,
    );
    assert_eq!(lookup(&log, T0 + HOUR_MS).map(|x| x.1), Some(10));
    assert_eq!(lookup(&log, MAX_TIMESTAMP).map(|x| x.1), Some(19));
}

/// Four closed segments and an active one, written at T0 under `retention.ms` = 10 minutes.
fn retained_log(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Arc<UnifiedLog> {
    let cfg = LogConfig {
        retention_ms: 10 * MINUTE_MS,
        ..small_config()
    };
    let log = open(dir, cfg, clock);
    while log.segment_count() < 5 {
        log.append_as_leader(batch(20, clock.now_ms()), LeaderEpoch(0))
            .expect("append");
    }
    log
}

#[test]
fn clock_jump_forward_deletes_only_what_kafka_would() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = retained_log(dir.path(), &clock);
    let closed = log.segment_count() - 1;
    // A jump shorter than retention.ms: every segment is still younger than that.
    clock.jump_ms(9 * MINUTE_MS);
    assert_eq!(log.delete_old_segments().expect("retention"), 0);
    // Past it, Kafka compares each segment's largest timestamp with the (wall) clock: the
    // closed segments go, the active one stays.
    clock.jump_ms(2 * MINUTE_MS);
    assert_eq!(log.delete_old_segments().expect("retention"), closed);
    assert_eq!(log.segment_count(), 1);
}

#[test]
fn clock_jump_back_does_not_stall_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = retained_log(dir.path(), &clock);
    let closed = log.segment_count() - 1;
    // The wall clock goes back a day, then real time passes: by the wall clock the segments
    // are from the future, by the monotonic one they are 11 minutes old.
    clock.jump_ms(-24 * HOUR_MS);
    clock.advance_ms(5 * MINUTE_MS);
    assert_eq!(log.delete_old_segments().expect("retention"), 0);
    clock.advance_ms(6 * MINUTE_MS);
    assert_eq!(log.delete_old_segments().expect("retention"), closed);
}

#[test]
fn clock_jump_forward_does_not_drop_a_replica_from_the_isr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let c: SharedClock = clock.clone();
    let log = UnifiedLog::open(dir.path().join("t-0"), small_config(), c.clone()).expect("open");
    let (leader, follower) = (BrokerId(1), BrokerId(2));
    let state = PartitionState {
        leader,
        leader_epoch: LeaderEpoch(0),
        replicas: vec![leader, follower],
        isr: vec![leader, follower],
        partition_epoch: 0,
    };
    let p = Partition::new(
        TopicPartition::new("t", 0),
        TopicId::random(),
        log,
        leader,
        state,
        1,
        c,
    );
    // The leadership starts now: the follower has `lag_max_ms` to show up.
    let lag_max_ms = 30_000;
    // An hour passes on the wall clock alone: the follower has not fallen behind in time.
    clock.jump_ms(HOUR_MS);
    assert_eq!(p.propose_isr_change(lag_max_ms).map(|c| c.new_isr), None);
    // Real time passes and it never fetched: now it leaves the ISR.
    clock.advance_ms(lag_max_ms + 1);
    assert_eq!(
        p.propose_isr_change(lag_max_ms).map(|c| c.new_isr),
        Some(vec![leader])
    );
}
