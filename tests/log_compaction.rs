//! Compaction: keyed updates and deletes across many segments (plain and compressed); after
//! cleaning exactly the newest value per live key remains at its original offset, tombstones
//! survive `delete.retention.ms` and then go, and an interrupted swap is completed on open.

#[path = "common/records.rs"]
mod records;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder};
use strata::clock::{Clock, ManualClock, SharedClock};
use strata::log::{CleanupPolicy, LogCleaner, LogConfig, UnifiedLog};
use strata::model::{LeaderEpoch, Offset};

const T0: i64 = 1_700_000_000_000;
const DELETE_RETENTION_MS: i64 = 60_000;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        segment_index_bytes: 4096,
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: DELETE_RETENTION_MS,
        min_cleanable_dirty_ratio: 0.5,
        ..LogConfig::default()
    }
}

fn keyed_batch(kvs: &[(String, Option<String>)], ts: i64, compression: Compression) -> Bytes {
    let records: Vec<Record> = kvs
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            records::record(
                i,
                ts,
                Some(Bytes::from(k.clone())),
                v.clone().map(Bytes::from),
            )
        })
        .collect();
    records::encode(&records, compression)
}

type Records = BTreeMap<i64, (String, Option<String>)>;

/// Every record in the log: offset -> (key, value), plus the compression codes seen.
fn contents(log: &UnifiedLog) -> (Records, Vec<i16>) {
    let mut out = BTreeMap::new();
    let mut codecs = Vec::new();
    for (h, mut one) in records::log_batches(log) {
        codecs.push(h.compression());
        let set = RecordBatchDecoder::decode(&mut one).expect("decode");
        for rec in set.records {
            let k = String::from_utf8(rec.key.expect("key").to_vec()).expect("utf8");
            let v = rec
                .value
                .map(|v| String::from_utf8(v.to_vec()).expect("utf8"));
            assert!(out.insert(rec.offset, (k, v)).is_none(), "offset twice");
        }
    }
    (out, codecs)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Writes updates and deletes; returns the model: key -> (offset, value) of the newest.
fn write(
    log: &UnifiedLog,
    clock: &ManualClock,
    compression: Compression,
) -> BTreeMap<String, (i64, Option<String>)> {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut model = BTreeMap::new();
    for round in 0..300 {
        let n = 1 + rng.next(3) as usize;
        let kvs: Vec<(String, Option<String>)> = (0..n)
            .map(|i| {
                let k = format!("key-{:03}", rng.next(40));
                let v = if rng.next(10) == 0 {
                    None
                } else {
                    Some(format!(
                        "value-{round}-{i}-{}",
                        "x".repeat(rng.next(60) as usize)
                    ))
                };
                (k, v)
            })
            .collect();
        let info = log
            .append_as_leader(
                keyed_batch(&kvs, clock.now_ms(), compression),
                LeaderEpoch(1),
            )
            .expect("append");
        for (i, (k, v)) in kvs.into_iter().enumerate() {
            model.insert(k, (info.first_offset.0 + i as i64, v));
        }
        clock.advance_ms(10);
    }
    log.roll().expect("roll");
    model
}

fn check(log: &UnifiedLog, model: &BTreeMap<String, (i64, Option<String>)>, tombstones: bool) {
    let (got, _) = contents(log);
    let mut expect = BTreeMap::new();
    for (k, (off, v)) in model {
        if v.is_some() || tombstones {
            expect.insert(*off, (k.clone(), v.clone()));
        }
    }
    assert_eq!(got, expect);
}

fn compaction_round_trip(compression: Compression) {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let c: SharedClock = clock.clone();
    let log = UnifiedLog::open(dir.path().to_path_buf(), config(), c.clone()).expect("open");
    let model = write(&log, &clock, compression);
    let segments_before = log.segment_count();
    assert!(segments_before > 5, "{segments_before} segments");
    let leo = log.log_end_offset();
    let size_before = log.size_bytes();

    let stats = LogCleaner::clean(&log).expect("clean").expect("due");
    assert!(stats.records_removed > 0);
    assert!(log.size_bytes() < size_before);
    assert_eq!(log.log_end_offset(), leo);
    // Tombstones stay within delete.retention.ms.
    check(&log, &model, true);
    // Nothing dirty: the ratio holds the next pass back.
    assert!(LogCleaner::clean(&log).expect("clean").is_none());

    // After delete.retention.ms, tombstones go.
    clock.advance_ms(DELETE_RETENTION_MS + 1);
    let mut cfg = log.config();
    cfg.min_cleanable_dirty_ratio = 0.0;
    log.update_config(cfg.clone());
    LogCleaner::clean(&log).expect("clean").expect("ran");
    check(&log, &model, false);
    let (_, codecs) = contents(&log);
    assert!(
        codecs.iter().all(|&c| c == compression as i16),
        "{codecs:?}"
    );

    // And it all survives a restart, checkpoint included.
    log.close().expect("close");
    let log = UnifiedLog::open(dir.path().to_path_buf(), cfg, c).expect("reopen");
    check(&log, &model, false);
    assert_eq!(log.log_end_offset(), leo);
    // The log still takes appends after the cleaned segments.
    let info = log
        .append_as_leader(
            keyed_batch(
                &[("k".into(), Some("v".into()))],
                clock.now_ms(),
                compression,
            ),
            LeaderEpoch(1),
        )
        .expect("append");
    assert_eq!(info.first_offset, leo);
}

#[test]
fn compacts_uncompressed() {
    compaction_round_trip(Compression::None);
}

#[test]
fn compacts_gzip() {
    compaction_round_trip(Compression::Gzip);
}

#[test]
fn compacts_zstd() {
    compaction_round_trip(Compression::Zstd);
}

#[test]
fn compacts_lz4_and_snappy() {
    compaction_round_trip(Compression::Lz4);
    compaction_round_trip(Compression::Snappy);
}

#[test]
fn min_compaction_lag_protects_recent_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let c: SharedClock = clock.clone();
    let cfg = LogConfig {
        min_compaction_lag_ms: 1_000_000,
        ..config()
    };
    let log = UnifiedLog::open(dir.path().to_path_buf(), cfg, c).expect("open");
    write(&log, &clock, Compression::None);
    assert!(LogCleaner::clean(&log).expect("clean").is_none());
    clock.advance_ms(1_000_001);
    assert!(LogCleaner::clean(&log).expect("clean").is_some());
}

#[test]
fn interrupted_swap_is_completed_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let c: SharedClock = clock.clone();
    let log = UnifiedLog::open(dir.path().to_path_buf(), config(), c.clone()).expect("open");
    write(&log, &clock, Compression::None);
    let (before, _) = contents(&log);
    let bases = log.segment_base_offsets();
    log.close().expect("close");
    // A swap that replaced segments 0 and 1 by their concatenation got as far as the rename
    // to .swap; the crash came before the old files were removed.
    let p = |b: Offset| dir.path().join(format!("{:020}.log", b.0));
    let mut joined = std::fs::read(p(bases[0])).expect("read");
    joined.extend(std::fs::read(p(bases[1])).expect("read"));
    std::fs::write(
        dir.path().join(format!("{:020}.log.swap", bases[0].0)),
        joined,
    )
    .expect("w");
    strata::log::checkpoint::write(
        dir.path(),
        &format!("{:020}.swap-end", bases[0].0),
        &[vec![bases[2].0]],
    )
    .expect("marker");
    // And a stale .cleaned file from another, unfinished pass.
    std::fs::write(
        dir.path().join(format!("{:020}.log.cleaned", bases[3].0)),
        b"junk",
    )
    .expect("w");
    let log = UnifiedLog::open(dir.path().to_path_buf(), config(), c).expect("reopen");
    assert_eq!(log.segment_count(), bases.len() - 1);
    let (after, _) = contents(&log);
    assert_eq!(before, after);
    assert!(!dir
        .path()
        .join(format!("{:020}.log.cleaned", bases[3].0))
        .exists());
    let _ = Arc::clone(&log);
}

/// Transactions: records of an aborted transaction are removed (and never shadow the committed
/// value of their key); the abort marker stays while the pass that drops its data runs, then,
/// once past `delete.retention.ms` with no data left, goes with its `.txnindex` entry. A commit
/// marker whose transaction still has data stays.
#[test]
fn compaction_removes_aborted_transactions_then_their_markers() {
    use strata::model::{ProducerEpoch, ProducerId};
    use strata::protocol::control::{EndTransactionMarker, TransactionResult};
    use strata::protocol::record_batch::{build_batch, set_covered_fields, TRANSACTIONAL_BIT};
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let c: SharedClock = clock.clone();
    let cfg = LogConfig {
        min_cleanable_dirty_ratio: 0.0,
        ..config()
    };
    let log = UnifiedLog::open(dir.path().to_path_buf(), cfg, c).expect("open");
    let epoch = LeaderEpoch(0);
    let txn = |pid: i64, kvs: &[(&str, &str)]| {
        let recs: Vec<_> = kvs
            .iter()
            .map(|(k, v)| (Some(k.as_bytes()), Some(v.as_bytes())))
            .collect();
        let mut b = build_batch(0, T0, Some((pid, 0, 0)), &recs);
        set_covered_fields(&mut b, TRANSACTIONAL_BIT, T0, 0);
        Bytes::from(b)
    };
    let end = |pid: i64, result| {
        let m = EndTransactionMarker {
            result,
            coordinator_epoch: 0,
        };
        log.append_txn_marker(ProducerId(pid), ProducerEpoch(0), m, epoch)
            .expect("marker")
    };
    log.append_as_leader(txn(1, &[("k", "committed")]), epoch)
        .expect("0");
    end(1, TransactionResult::Commit); // 1
    log.append_as_leader(txn(2, &[("k", "aborted"), ("j", "aborted")]), epoch)
        .expect("2..=3");
    end(2, TransactionResult::Abort); // 4
    log.roll().expect("roll");
    log.append_as_leader(
        keyed_batch(&[("x".into(), Some("x".into()))], T0, Compression::None),
        epoch,
    )
    .expect("5");
    log.roll().expect("roll");
    let batches = |log: &UnifiedLog| -> Vec<(i64, bool, Vec<String>)> {
        records::log_batches(log)
            .into_iter()
            .map(|(h, mut one)| {
                let set = RecordBatchDecoder::decode(&mut one).expect("decode");
                let values = set
                    .records
                    .iter()
                    .filter(|_| !h.is_control())
                    .map(|r| {
                        String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
                    })
                    .collect();
                (h.base_offset, h.is_control(), values)
            })
            .collect()
    };
    let aborted = |log: &UnifiedLog| log.collect_aborted_txns(Offset(0), Offset(i64::MAX)).len();
    assert_eq!(aborted(&log), 1);

    LogCleaner::clean(&log).expect("clean").expect("a pass");
    assert_eq!(
        batches(&log),
        vec![
            (0, false, vec!["committed".to_string()]),
            (1, true, vec![]),
            (4, true, vec![]),
            (5, false, vec!["x".to_string()]),
        ],
        "the aborted batch went; the abort marker stays this pass"
    );
    assert_eq!(aborted(&log), 1);

    // Within delete.retention.ms a second pass keeps the marker; past it, the marker goes.
    LogCleaner::clean(&log).expect("clean").expect("a pass");
    assert!(batches(&log).iter().any(|b| b.0 == 4));
    clock.advance_ms(DELETE_RETENTION_MS + 1);
    LogCleaner::clean(&log).expect("clean").expect("a pass");
    let offsets: Vec<(i64, bool)> = batches(&log).iter().map(|b| (b.0, b.1)).collect();
    assert_eq!(offsets, vec![(0, false), (1, true), (5, false)]);
    assert_eq!(aborted(&log), 0, "the entry went with its marker");
    // And stays gone after a restart (the file was rewritten too).
    log.close().expect("close");
    let c: SharedClock = clock.clone();
    let log = UnifiedLog::open(dir.path().to_path_buf(), config(), c).expect("reopen");
    assert_eq!(aborted(&log), 0);
    assert_eq!(batches(&log).len(), 3);
}
