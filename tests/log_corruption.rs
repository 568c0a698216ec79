//! Corruption: torn or flipped bytes in the active segment are cut at reopen; flipped bytes in
//! a closed segment are an error on read, never returned; corrupt indexes and checkpoints are
//! rebuilt; a full disk is `DiskFull` and leaves the log readable.

#[path = "common/files.rs"]
mod files;
#[path = "common/skip.rs"]
mod skip;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use files::{flip_byte, segment_files};
use strata::clock::{ManualClock, SharedClock};
use strata::log::{LogConfig, LogError, UnifiedLog};
use strata::model::{LeaderEpoch, Offset};
use strata::protocol::record_batch::{build_batch, BatchIter};

const T0: i64 = 1_700_000_000_000;

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 8192,
        index_interval_bytes: 512,
        segment_index_bytes: 4096,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> Arc<UnifiedLog> {
    let clock: SharedClock = ManualClock::new(T0);
    UnifiedLog::open(dir.to_path_buf(), cfg(), clock).expect("open")
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i:05}-").repeat(10).into_bytes()
}

fn fill(log: &UnifiedLog, n: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    for i in 0..n {
        let v = value(i);
        let info = log
            .append_as_leader(
                Bytes::from(build_batch(0, T0, None, &[(None, Some(&v[..]))])),
                LeaderEpoch(0),
            )
            .expect("append");
        assert_eq!(info.first_offset, Offset(i as i64));
        let r = log
            .read(info.first_offset, 1 << 20, Offset(i64::MAX), true)
            .expect("read");
        out.push(r.records);
    }
    out
}

/// A bit flipped on the disk.
fn flip(path: &Path, at: u64) {
    flip_byte(path, at, 0x5a);
}

/// Reads every batch; returns them or the first error.
fn read_each(log: &UnifiedLog, n: usize) -> Vec<Result<Bytes, LogError>> {
    (0..n)
        .map(|i| {
            log.read(Offset(i as i64), 1 << 20, Offset(i64::MAX), true)
                .map(|r| {
                    let (pos, h) = BatchIter::new(&r.records)
                        .next()
                        .expect("one batch")
                        .expect("valid");
                    r.records.slice(pos..pos + h.total_size())
                })
        })
        .collect()
}

#[test]
fn torn_and_flipped_tail_of_active_segment_is_cut_at_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let originals = fill(&log, 100);
    drop(log); // crash: no clean close, so the active segment is rescanned
    let active = segment_files(dir.path()).pop().expect("active");
    let len = std::fs::metadata(&active).expect("meta").len();
    // Flip a byte inside the last batch's records.
    flip(&active, len - 5);
    let log = open(dir.path());
    assert_eq!(log.log_end_offset(), Offset(99), "last batch cut");
    for (i, r) in read_each(&log, 99).into_iter().enumerate() {
        assert_eq!(r.expect("intact"), originals[i]);
    }
    // A torn write: half a batch of garbage appended.
    let extra = build_batch(99, T0, None, &[(None, Some(&b"torn"[..]))]);
    drop(log);
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .expect("open");
    let len = f.metadata().expect("meta").len();
    f.write_all_at(&extra[..extra.len() / 2], len)
        .expect("write");
    let _ = std::fs::remove_file(dir.path().join("recovery-point-offset-checkpoint"));
    let log = open(dir.path());
    assert_eq!(log.log_end_offset(), Offset(99));
    // And the log takes appends again at the right offset.
    let info = log
        .append_as_leader(
            Bytes::from(build_batch(0, T0, None, &[(None, Some(&b"new"[..]))])),
            LeaderEpoch(0),
        )
        .expect("append");
    assert_eq!(info.first_offset, Offset(99));
}

#[test]
fn corruption_in_a_middle_segment_drops_later_segments_on_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    fill(&log, 200);
    drop(log);
    let _ = std::fs::remove_file(dir.path().join("recovery-point-offset-checkpoint"));
    let segs = segment_files(dir.path());
    assert!(segs.len() >= 4);
    flip(&segs[1], 200);
    let log = open(dir.path());
    assert_eq!(log.segment_count(), 2);
    let leo = log.log_end_offset().0;
    assert!(leo > 0 && leo < 200);
    for r in read_each(&log, leo as usize) {
        r.expect("everything left is intact");
    }
}

#[test]
fn flipped_byte_in_closed_segment_is_an_error_on_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let originals = fill(&log, 200);
    log.close().expect("close");
    let segs = segment_files(dir.path());
    assert!(segs.len() >= 4);
    let target = &segs[1];
    let seg_len = std::fs::metadata(target).expect("meta").len();
    // Walk every CRC-covered byte position class: flip, reopen, check, restore.
    let data = std::fs::read(target).expect("read");
    let mut positions = Vec::new();
    for item in BatchIter::new(&data) {
        let (pos, h) = item.expect("valid");
        // baseOffset and partitionLeaderEpoch sit outside the CRC by design.
        for rel in [
            8usize,
            16,
            17,
            21,
            23,
            30,
            40,
            50,
            57,
            61,
            h.total_size() - 1,
        ] {
            positions.push((pos + rel) as u64);
        }
    }
    assert!(seg_len > 0);
    let mut errors = 0;
    for &at in positions.iter().step_by(7) {
        flip(target, at);
        let log = open(dir.path());
        for (i, r) in read_each(&log, 200).into_iter().enumerate() {
            match r {
                Ok(b) => assert_eq!(b, originals[i], "offset {i}: corrupt bytes returned"),
                Err(LogError::CorruptSegment { .. }) => errors += 1,
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        log.close().expect("close");
        flip(target, at); // restore
    }
    assert!(errors > 0);
    // Restored: all good again.
    let log = open(dir.path());
    for (i, r) in read_each(&log, 200).into_iter().enumerate() {
        assert_eq!(r.expect("intact"), originals[i]);
    }
}

#[test]
fn corrupt_indexes_and_checkpoints_are_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let originals = fill(&log, 150);
    log.close().expect("close");
    for e in std::fs::read_dir(dir.path()).expect("ls") {
        let p = e.expect("entry").path();
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext == "index" || ext == "timeindex" {
            let len = std::fs::metadata(&p).expect("meta").len();
            if len > 0 {
                // Scramble the entries.
                std::fs::write(&p, vec![0xffu8; len as usize]).expect("write");
            }
        }
    }
    for name in [
        "recovery-point-offset-checkpoint",
        "log-start-offset-checkpoint",
        "leader-epoch-checkpoint",
    ] {
        let p = dir.path().join(name);
        let mut t = std::fs::read_to_string(&p).expect("read");
        t.insert(2, '7');
        std::fs::write(&p, t).expect("write");
    }
    let log = open(dir.path());
    assert_eq!(log.log_end_offset(), Offset(150));
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(0)));
    for (i, r) in read_each(&log, 150).into_iter().enumerate() {
        assert_eq!(r.expect("intact"), originals[i]);
    }
}

#[test]
fn disk_full_is_typed_and_leaves_log_readable() {
    if !Path::new("/dev/full").exists() {
        skip::unavailable("/dev/full is missing: nothing here fails writes with ENOSPC");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    fill(&log, 3);
    log.roll().expect("roll");
    log.close().expect("close");
    // Replace the (empty) active segment by a file whose writes fail with ENOSPC.
    let active = segment_files(dir.path()).pop().expect("active");
    assert_eq!(std::fs::metadata(&active).expect("meta").len(), 0);
    std::fs::remove_file(&active).expect("rm");
    std::os::unix::fs::symlink("/dev/full", &active).expect("symlink");
    let log = open(dir.path());
    let err = log
        .append_as_leader(
            Bytes::from(build_batch(0, T0, None, &[(None, Some(&b"x"[..]))])),
            LeaderEpoch(0),
        )
        .expect_err("disk full");
    assert!(matches!(err, LogError::DiskFull { .. }), "{err}");
    assert_eq!(log.log_end_offset(), Offset(3));
    for r in read_each(&log, 3) {
        r.expect("still readable");
    }
}

/// A bit rots in a sealed segment while the broker runs: a read never returns the bad batch.
/// A read that reaches it stops before it; one that starts at it fails (KAFKA_STORAGE_ERROR);
/// reads past it are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn crc_mismatch_in_a_sealed_segment_is_not_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let batches = fill(&log, 200);
    let first = segment_files(dir.path())[0].clone();
    assert!(
        segment_files(dir.path()).len() > 1,
        "the first segment must be sealed"
    );
    let batch_bytes = batches[0].len() as u64;
    flip(&first, 3 * batch_bytes + 100);
    let view = strata::log::PartitionLog::new(Arc::clone(&log));
    let read = |at: i64| {
        let view = &view;
        async move { view.read(Offset(at), 1 << 20, Offset(i64::MAX), true).await }
    };
    let upto = read(0).await.expect("read before the bad batch");
    let offsets: Vec<i64> = BatchIter::new(&upto.records)
        .map(|b| b.expect("whole").1.base_offset)
        .collect();
    assert_eq!(offsets, vec![0, 1, 2]);
    let err = read(3).await.expect_err("the bad batch is not served");
    assert!(err.to_string().contains("CRC"), "{err}");
    let after = read(4).await.expect("read past it");
    assert_eq!(after.records.slice(..batches[4].len()), batches[4]);
}
