//! The partition log's behaviour through its public API: append, read, roll, reopen,
//! idempotence, truncation, DeleteRecords, retention, epochs, timestamps, flushing.

#[path = "common/records.rs"]
mod records;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use strata::clock::{ManualClock, SharedClock};
use strata::log::{
    CleanupPolicy, FlushPolicy, LogConfig, LogError, TimestampType, UnifiedLog, EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP, MAX_TIMESTAMP,
};
use strata::model::{LeaderEpoch, Offset, ProducerId};
use strata::protocol::record_batch::{build_batch, BatchHeader, BatchIter};

const T0: i64 = 1_700_000_000_000;

fn batch(n: usize, value: &[u8], ts: i64) -> Bytes {
    let recs = vec![(None, Some(value)); n];
    Bytes::from(build_batch(0, ts, None, &recs))
}

fn idem(pid: i64, epoch: i16, seq: i32, n: usize) -> Bytes {
    let recs = vec![(None, Some(&b"idempotent"[..])); n];
    Bytes::from(build_batch(0, T0, Some((pid, epoch, seq)), &recs))
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        segment_index_bytes: 4096,
        ..LogConfig::default()
    }
}

fn open(dir: &std::path::Path, cfg: LogConfig, clock: &Arc<ManualClock>) -> Arc<UnifiedLog> {
    let c: SharedClock = clock.clone();
    UnifiedLog::open(dir.to_path_buf(), cfg, c).expect("open")
}

fn headers(b: &Bytes) -> Vec<BatchHeader> {
    BatchIter::new(b)
        .map(|r| r.expect("valid batch").1)
        .collect()
}

fn read_all(log: &UnifiedLog) -> Vec<BatchHeader> {
    records::log_batches(log)
        .into_iter()
        .map(|(h, _)| h)
        .collect()
}

#[test]
fn append_assigns_offsets_and_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), small_config(), &clock);
    let a = log
        .append_as_leader(batch(3, b"hello", T0), LeaderEpoch(1))
        .expect("append");
    assert_eq!(
        (a.first_offset, a.last_offset, a.record_count),
        (Offset(0), Offset(2), 3)
    );
    let b = log
        .append_as_leader(batch(2, b"world", T0), LeaderEpoch(1))
        .expect("append");
    assert_eq!((b.first_offset, b.last_offset), (Offset(3), Offset(4)));
    assert_eq!(log.log_end_offset(), Offset(5));
    // Reading from the middle of a batch returns the whole batch.
    let r = log
        .read(Offset(1), 1 << 20, Offset(5), false)
        .expect("read");
    let hs = headers(&r.records);
    assert_eq!(hs.len(), 2);
    assert_eq!(hs[0].base_offset, 0);
    assert_eq!(hs[0].partition_leader_epoch, 1);
    assert_eq!(hs[1].base_offset, 3);
    // max_offset (high watermark) excludes the second batch.
    let r = log
        .read(Offset(0), 1 << 20, Offset(3), false)
        .expect("read");
    assert_eq!(headers(&r.records).len(), 1);
    // max_bytes smaller than the first batch: nothing, unless min_one_batch.
    let r = log.read(Offset(0), 10, Offset(5), false).expect("read");
    assert!(r.records.is_empty());
    let r = log.read(Offset(0), 10, Offset(5), true).expect("read");
    assert_eq!(headers(&r.records).len(), 1);
    // At the end: empty; past it or below the start: out of range.
    assert!(log
        .read(Offset(5), 100, Offset(5), true)
        .expect("read")
        .records
        .is_empty());
    assert!(matches!(
        log.read(Offset(6), 100, Offset(9), true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(1)),
        Some((LeaderEpoch(1), Offset(5)))
    );
}

#[test]
fn rejects_bad_batches_and_leaves_log_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), small_config(), &clock);
    log.append_as_leader(batch(1, b"ok", T0), LeaderEpoch(0))
        .expect("append");
    let good = batch(2, b"payload", T0);
    let mut corrupt = good.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(matches!(
        log.append_as_leader(Bytes::from(corrupt), LeaderEpoch(0)),
        Err(LogError::CorruptBatch { .. })
    ));
    let mut magic = good.to_vec();
    magic[16] = 1;
    assert!(matches!(
        log.append_as_leader(Bytes::from(magic), LeaderEpoch(0)),
        Err(LogError::UnsupportedMagic { magic: 1 })
    ));
    // A valid batch followed by a torn one: nothing of the request is appended.
    let mut two = good.to_vec();
    two.extend_from_slice(&good[..30]);
    assert!(log
        .append_as_leader(Bytes::from(two), LeaderEpoch(0))
        .is_err());
    let big = batch(1, &vec![0u8; 2_000_000], T0);
    assert!(matches!(
        log.append_as_leader(big, LeaderEpoch(0)),
        Err(LogError::BatchTooLarge { .. })
    ));
    assert!(log.append_as_leader(Bytes::new(), LeaderEpoch(0)).is_err());
    assert_eq!(log.log_end_offset(), Offset(1));
    assert_eq!(read_all(&log).len(), 1);
}

#[test]
fn rolls_by_size_and_reopens_cleanly_and_after_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    {
        let log = open(dir.path(), small_config(), &clock);
        for i in 0..100 {
            log.append_as_leader(
                batch(2, format!("value-{i}").as_bytes(), T0 + i),
                LeaderEpoch(0),
            )
            .expect("append");
        }
        assert!(
            log.segment_count() >= 3,
            "segments: {}",
            log.segment_count()
        );
        assert_eq!(read_all(&log).len(), 100);
        log.close().expect("close");
        assert!(matches!(
            log.append_as_leader(batch(1, b"x", T0), LeaderEpoch(0)),
            Err(LogError::Closed)
        ));
    }
    let log = open(dir.path(), small_config(), &clock);
    assert_eq!(log.log_end_offset(), Offset(200));
    let all = read_all(&log);
    assert_eq!(all.len(), 100);
    for (i, h) in all.iter().enumerate() {
        assert_eq!(h.base_offset, 2 * i as i64);
    }
    // Random-access reads use the index.
    for o in [0, 1, 57, 120, 199] {
        let r = log.read(Offset(o), 100, Offset(200), true).expect("read");
        let h = headers(&r.records)[0];
        assert!(h.base_offset <= o && o <= h.last_offset());
    }
    // Simulate a crash: no close, drop the recovery point checkpoint; reopen rescans all.
    log.append_as_leader(batch(1, b"more", T0), LeaderEpoch(0))
        .expect("append");
    drop(log);
    std::fs::remove_file(dir.path().join("recovery-point-offset-checkpoint")).expect("rm");
    for e in std::fs::read_dir(dir.path()).expect("ls") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "index") {
            std::fs::remove_file(p).expect("rm index");
        }
    }
    let log = open(dir.path(), small_config(), &clock);
    assert_eq!(log.log_end_offset(), Offset(201));
    assert_eq!(read_all(&log).len(), 101);
}

/// Bytes of disk blocks a file holds, and its length.
fn allocated_and_len(p: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).expect("stat");
    (m.blocks() * 512, m.len())
}

fn log_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

#[test]
fn preallocation_is_invisible_and_released_when_a_segment_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let cfg = LogConfig {
        segment_bytes: 64 * 1024,
        preallocate_bytes: 256 * 1024,
        ..LogConfig::default()
    };
    let value = vec![b'v'; 1000];
    let log = open(dir.path(), cfg.clone(), &clock);
    for _ in 0..100 {
        log.append_as_leader(batch(4, &value, T0), LeaderEpoch(0))
            .expect("append");
    }
    let files = log_files(dir.path());
    assert!(files.len() >= 2, "segments: {files:?}");
    let (active_alloc, active_len) = allocated_and_len(files.last().expect("active"));
    // The filesystem under the test may not support reservations; where it does, the active
    // segment holds more blocks than its length and its length is exactly the data.
    let supported = active_alloc > active_len.next_multiple_of(4096);
    for closed in &files[..files.len() - 1] {
        let (alloc, len) = allocated_and_len(closed);
        assert!(len > 0 && len <= 64 * 1024, "{closed:?}: {len}");
        assert!(
            alloc <= len.next_multiple_of(4096),
            "{closed:?} keeps {alloc} for {len}"
        );
    }
    // A crash leaves the reservation behind: reopening sees only the data, and rolling releases it.
    drop(log);
    let log = open(dir.path(), cfg.clone(), &clock);
    assert_eq!(log.log_end_offset(), Offset(400));
    let all = read_all(&log);
    assert_eq!(all.len(), 100);
    for (i, h) in all.iter().enumerate() {
        assert_eq!((h.base_offset, h.records_count), (4 * i as i64, 4));
    }
    let last = files.last().expect("active").clone();
    if supported {
        assert!(allocated_and_len(&last).0 > allocated_and_len(&last).1.next_multiple_of(4096));
    }
    log.roll().expect("roll");
    let (alloc, len) = allocated_and_len(&last);
    assert_eq!(len, active_len);
    assert!(
        alloc <= len.next_multiple_of(4096),
        "kept {alloc} for {len}"
    );
    log.close().expect("close");
    let log = open(dir.path(), cfg, &clock);
    assert_eq!(read_all(&log).len(), 100);
}

fn recovery_point_on_disk(dir: &std::path::Path) -> Option<i64> {
    strata::log::checkpoint::read(dir, strata::log::checkpoint::RECOVERY_POINT_FILE)
        .expect("read checkpoint")
        .map(|rows| rows[0][0])
}

#[test]
fn recovery_point_is_written_only_when_it_moves_and_follows_truncation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), small_config(), &clock);
    for i in 0..10 {
        log.append_as_leader(batch(1, b"r", T0 + i), LeaderEpoch(0))
            .expect("append");
    }
    log.flush().expect("flush");
    log.checkpoint().expect("checkpoint");
    assert_eq!(recovery_point_on_disk(dir.path()), Some(10));
    // Unchanged: nothing is written (the periodic pass costs no fsync on an idle partition).
    std::fs::remove_file(
        dir.path()
            .join(strata::log::checkpoint::RECOVERY_POINT_FILE),
    )
    .expect("rm");
    log.checkpoint().expect("checkpoint");
    assert_eq!(recovery_point_on_disk(dir.path()), None);
    // A truncation lowers it on disk at once; a later pass does not raise it back.
    log.truncate_to(Offset(4)).expect("truncate");
    assert_eq!(recovery_point_on_disk(dir.path()), Some(4));
    log.checkpoint().expect("checkpoint");
    assert_eq!(recovery_point_on_disk(dir.path()), Some(4));
    log.append_as_leader(batch(1, b"r", T0), LeaderEpoch(0))
        .expect("append");
    log.flush().expect("flush");
    log.checkpoint().expect("checkpoint");
    assert_eq!(recovery_point_on_disk(dir.path()), Some(5));
}

#[test]
fn rolls_by_time_with_the_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let cfg = LogConfig {
        segment_ms: 1000,
        ..LogConfig::default()
    };
    let log = open(dir.path(), cfg, &clock);
    log.append_as_leader(batch(1, b"a", T0), LeaderEpoch(0))
        .expect("append");
    clock.advance_ms(500);
    log.append_as_leader(batch(1, b"b", T0 + 500), LeaderEpoch(0))
        .expect("append");
    assert_eq!(log.segment_count(), 1);
    clock.advance_ms(600);
    log.append_as_leader(batch(1, b"c", T0 + 1100), LeaderEpoch(0))
        .expect("append");
    assert_eq!(log.segment_count(), 2);
}

#[test]
fn idempotent_producer_dedup_fencing_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    {
        let log = open(dir.path(), small_config(), &clock);
        let a = log
            .append_as_leader(idem(7, 0, 0, 3), LeaderEpoch(0))
            .expect("a");
        let b = log
            .append_as_leader(idem(7, 0, 3, 2), LeaderEpoch(0))
            .expect("b");
        let dup = log
            .append_as_leader(idem(7, 0, 0, 3), LeaderEpoch(0))
            .expect("dup");
        assert!(dup.duplicate);
        assert_eq!(
            (dup.first_offset, dup.last_offset),
            (a.first_offset, a.last_offset)
        );
        assert_eq!(log.log_end_offset(), Offset(5));
        assert!(matches!(
            log.append_as_leader(idem(7, 0, 9, 1), LeaderEpoch(0)),
            Err(LogError::OutOfOrderSequence { expected: 5, .. })
        ));
        log.append_as_leader(idem(7, 1, 0, 1), LeaderEpoch(0))
            .expect("new epoch");
        assert!(matches!(
            log.append_as_leader(idem(7, 0, 5, 1), LeaderEpoch(0)),
            Err(LogError::ProducerFenced { .. })
        ));
        // A new producer may start at any sequence.
        log.append_as_leader(idem(8, 0, 42, 1), LeaderEpoch(0))
            .expect("new producer");
        assert_eq!(b.last_offset, Offset(4));
        let st = log.producer_state(ProducerId(7)).expect("state");
        assert_eq!(
            (st.producer_epoch.0, st.last_sequence, st.last_offset),
            (1, 0, Offset(5))
        );
        log.close().expect("close");
    }
    // Producer state survives a clean restart (snapshot) ...
    {
        let log = open(dir.path(), small_config(), &clock);
        let dup = log
            .append_as_leader(idem(8, 0, 42, 1), LeaderEpoch(0))
            .expect("dup");
        assert!(dup.duplicate);
        assert_eq!(dup.first_offset, Offset(6));
        log.append_as_leader(idem(7, 1, 1, 1), LeaderEpoch(0))
            .expect("next seq");
        drop(log); // crash: no snapshot at the end
    }
    // ... and a crash (replay from the log).
    let log = open(dir.path(), small_config(), &clock);
    let dup = log
        .append_as_leader(idem(7, 1, 1, 1), LeaderEpoch(0))
        .expect("dup");
    assert!(dup.duplicate);
    assert_eq!(dup.first_offset, Offset(7));
}

#[test]
fn log_append_time_is_stamped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let cfg = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let log = open(dir.path(), cfg, &clock);
    let info = log
        .append_as_leader(batch(2, b"x", 5), LeaderEpoch(0))
        .expect("append");
    assert_eq!(info.log_append_time_ms, T0);
    let r = log.read(Offset(0), 1000, Offset(10), true).expect("read");
    let h = headers(&r.records)[0];
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, T0);
    strata::protocol::record_batch::validate_batch(&r.records).expect("crc still valid");
}

#[test]
fn truncate_to_removes_suffix_and_epochs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), small_config(), &clock);
    for i in 0..50 {
        let epoch = if i < 25 { 1 } else { 2 };
        log.append_as_leader(batch(2, b"0123456789", T0 + i), LeaderEpoch(epoch))
            .expect("append");
    }
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(1)),
        Some((LeaderEpoch(1), Offset(50)))
    );
    log.truncate_to(Offset(40)).expect("truncate");
    assert_eq!(log.log_end_offset(), Offset(40));
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(1)));
    assert_eq!(read_all(&log).len(), 20);
    log.append_as_leader(batch(1, b"after", T0), LeaderEpoch(3))
        .expect("append");
    assert_eq!(log.log_end_offset(), Offset(41));
    log.truncate_to(Offset(3))
        .expect("truncate into first segment");
    assert_eq!(log.log_end_offset(), Offset(2));
    assert_eq!(log.segment_count(), 1);
    drop(log);
    let log = open(dir.path(), small_config(), &clock);
    assert_eq!(log.log_end_offset(), Offset(2));
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(5)),
        Some((LeaderEpoch(1), Offset(2)))
    );
}

#[test]
fn delete_records_and_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let cfg = LogConfig {
        retention_ms: 10_000,
        ..small_config()
    };
    let log = open(dir.path(), cfg.clone(), &clock);
    for i in 0..60 {
        log.append_as_leader(batch(1, &[b'x'; 200], T0 + i * 100), LeaderEpoch(0))
            .expect("append");
    }
    let segs = log.segment_count();
    assert!(segs >= 4);
    assert_eq!(log.delete_records(Offset(25)).expect("delete"), Offset(25));
    assert!(log.segment_count() < segs);
    assert!(matches!(
        log.read(Offset(24), 100, Offset(60), true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(log.delete_records(Offset(61)).is_err());
    drop(log);
    let log = open(dir.path(), cfg, &clock);
    assert_eq!(
        log.local_log_start_offset(),
        Offset(25),
        "checkpoint persisted"
    );
    // Nothing old enough yet.
    assert_eq!(log.delete_old_segments().expect("retention"), 0);
    // The guard holds segments back until allowed.
    let allowed = Arc::new(AtomicUsize::new(0));
    let a2 = allowed.clone();
    log.set_retention_guard(Arc::new(move |_b, _l| a2.load(Ordering::SeqCst) > 0));
    clock.advance_ms(100_000);
    assert_eq!(log.delete_old_segments().expect("retention"), 0);
    allowed.store(1, Ordering::SeqCst);
    let deleted = log.delete_old_segments().expect("retention");
    assert!(deleted > 0);
    assert_eq!(log.segment_count(), 1, "everything but the active segment");
    assert!(log.local_log_start_offset() > Offset(25));
}

#[test]
fn retention_by_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let cfg = LogConfig {
        retention_bytes: 8192,
        retention_ms: -1,
        ..small_config()
    };
    let log = open(dir.path(), cfg, &clock);
    for _ in 0..100 {
        log.append_as_leader(batch(1, &[b'y'; 300], T0), LeaderEpoch(0))
            .expect("append");
    }
    log.delete_old_segments().expect("retention");
    let size = log.size_bytes();
    assert!((8192..8192 + 4096 + 400).contains(&size), "size {size}");
    // compact-only topics are not size-retained.
    let mut c = log.config();
    c.cleanup_policy = CleanupPolicy::Compact;
    c.retention_bytes = 0;
    log.update_config(c);
    assert_eq!(log.delete_old_segments().expect("retention"), 0);
}

#[test]
fn offsets_by_timestamp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), small_config(), &clock);
    for i in 0..40 {
        log.append_as_leader(batch(3, b"tsv", T0 + i * 10), LeaderEpoch(2))
            .expect("append");
    }
    // Records of batch i have timestamps T0+10i, +1, +2 at offsets 3i..3i+2.
    let r = log
        .fetch_offset_by_timestamp(T0 + 101)
        .expect("ok")
        .expect("found");
    assert_eq!((r.offset, r.timestamp_ms), (Offset(31), T0 + 101));
    let r = log
        .fetch_offset_by_timestamp(T0 + 105)
        .expect("ok")
        .expect("found");
    assert_eq!(r.offset, Offset(33));
    assert_eq!(r.leader_epoch, Some(LeaderEpoch(2)));
    assert!(log
        .fetch_offset_by_timestamp(T0 + 1000)
        .expect("ok")
        .is_none());
    let e = log
        .fetch_offset_by_timestamp(EARLIEST_TIMESTAMP)
        .expect("ok")
        .expect("e");
    assert_eq!(e.offset, Offset(0));
    let l = log
        .fetch_offset_by_timestamp(LATEST_TIMESTAMP)
        .expect("ok")
        .expect("l");
    assert_eq!(l.offset, Offset(120));
    let m = log
        .fetch_offset_by_timestamp(MAX_TIMESTAMP)
        .expect("ok")
        .expect("m");
    assert_eq!((m.timestamp_ms, m.offset), (T0 + 392, Offset(119)));
}

#[test]
fn follower_append_keeps_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), small_config(), &clock);
    let mut b = build_batch(0, T0, None, &[(None, Some(&b"f"[..])); 2]);
    strata::protocol::record_batch::set_partition_leader_epoch(&mut b, 4);
    log.append_as_follower(Bytes::from(b.clone()))
        .expect("append");
    // Going backwards is refused.
    assert!(log.append_as_follower(Bytes::from(b.clone())).is_err());
    strata::protocol::record_batch::set_base_offset(&mut b, 10);
    log.append_as_follower(Bytes::from(b)).expect("gap is fine");
    assert_eq!(log.log_end_offset(), Offset(12));
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(4)));
}

#[test]
fn mirror_append_keeps_offsets_and_bytes_and_stamps_the_local_epoch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), small_config(), &clock);
    // A source batch at offset 40 written by the source's leader in epoch 9.
    let mut b = build_batch(40, T0 + 5, None, &[(Some(&b"k"[..]), Some(&b"v"[..])); 3]);
    strata::protocol::record_batch::set_partition_leader_epoch(&mut b, 9);
    log.truncate_fully_and_start_at(Offset(40)).expect("start");
    log.append_as_mirror(Bytes::from(b.clone()), LeaderEpoch(2))
        .expect("append");
    assert!(
        log.append_as_mirror(Bytes::from(b.clone()), LeaderEpoch(2))
            .is_err(),
        "offsets never go backwards"
    );
    let stored = records::log_batches(&log);
    assert_eq!(stored.len(), 1);
    let (h, bytes) = &stored[0];
    assert_eq!((h.base_offset, h.partition_leader_epoch), (40, 2));
    // Everything but the partition-leader-epoch field (bytes 12..16, outside the CRC) is the
    // source's, and the CRC still holds.
    assert_eq!(&bytes[..12], &b[..12]);
    assert_eq!(&bytes[16..], &b[16..]);
    assert_eq!(log.log_end_offset(), Offset(43));
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_shares_fsyncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), small_config(), &clock);
    let mut tasks = Vec::new();
    for w in 0..4 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let info = log
                    .append_as_leader(batch(1, format!("{w}-{i}").as_bytes(), T0), LeaderEpoch(0))
                    .expect("append");
                log.wait_durable(Offset(info.last_offset.0 + 1))
                    .await
                    .expect("durable");
                assert!(log.durable_offset() > info.last_offset);
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    assert_eq!(log.durable_offset(), Offset(200));
}

#[test]
fn interval_flush_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let cfg = LogConfig {
        flush_policy: FlushPolicy::Interval {
            messages: 5,
            ms: 1000,
        },
        ..LogConfig::default()
    };
    let log = open(dir.path(), cfg, &clock);
    log.append_as_leader(batch(3, b"a", T0), LeaderEpoch(0))
        .expect("append");
    assert_eq!(log.durable_offset(), Offset(0));
    log.append_as_leader(batch(3, b"a", T0), LeaderEpoch(0))
        .expect("append");
    assert_eq!(log.durable_offset(), Offset(6), "flush.messages reached");
    log.append_as_leader(batch(1, b"a", T0), LeaderEpoch(0))
        .expect("append");
    assert!(!log.flush_if_due().expect("flush"));
    clock.advance_ms(1000);
    assert!(log.flush_if_due().expect("flush"));
    assert_eq!(log.durable_offset(), Offset(7));
}

/// Reads of the active segment stay on the calling task; reads that start in an older segment
/// are told apart so the partition log can move them off the async workers.
#[test]
fn the_active_segment_is_told_from_older_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), small_config(), &clock);
    log.append_as_leader(batch(3, b"old", T0), LeaderEpoch(1))
        .expect("append");
    assert!(log.in_active_segment(Offset(0)));
    log.roll().expect("roll");
    log.append_as_leader(batch(2, b"new", T0), LeaderEpoch(1))
        .expect("append");
    assert!(
        !log.in_active_segment(Offset(0)),
        "offset 0 is in the rolled segment"
    );
    assert!(!log.in_active_segment(Offset(2)));
    assert!(
        log.in_active_segment(Offset(3)),
        "the first offset of the new active segment"
    );
    assert!(log.in_active_segment(Offset(5)), "the log end");
}
