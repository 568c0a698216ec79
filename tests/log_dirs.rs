//! AlterReplicaLogDirs on a broker with two log dirs: a partition moves while it is produced
//! to and keeps every record at its offset; a restart in the middle of a move resumes it; the
//! refusals are Kafka's.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::kafka::{create_topic, fetch, fetch_request, produce, records_of};
use common::{batch, wait, TestBroker};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_replica_log_dirs_request::{
    AlterReplicaLogDir, AlterReplicaLogDirTopic,
};
use kafka_protocol::messages::{
    AlterReplicaLogDirsRequest, DescribeLogDirsRequest, DescribeLogDirsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use strata::client::KafkaClient;
use strata::model::TopicPartition;
use strata::protocol::topic_name;

const TOPIC: &str = "moving";
const VALUE_BYTES: usize = 1000;

fn dirs(root: &Path) -> (PathBuf, PathBuf) {
    (root.join("a"), root.join("b"))
}

async fn start(root: tempfile::TempDir, extra: &[(&str, &str)]) -> TestBroker {
    let (a, b) = dirs(root.path());
    let log_dirs = format!("{},{}", a.display(), b.display());
    let mut sets = vec![("log.dirs", log_dirs.as_str())];
    sets.extend_from_slice(extra);
    TestBroker::start_in(root, &sets).await
}

fn value(i: i64) -> String {
    format!("{i:0>VALUE_BYTES$}")
}

/// Produces records `from..to`, ten to a batch; each record's value names its offset.
async fn produce_range(c: &mut KafkaClient, from: i64, to: i64) {
    let mut i = from;
    while i < to {
        let n = (to - i).min(10);
        let records: Vec<_> = (i..i + n).map(|j| (None, Some(value(j)), vec![])).collect();
        let (code, base) = produce(c, TOPIC, 0, batch(&records, Compression::None), -1).await;
        assert_eq!((code, base), (0, i), "produce at {i}");
        i += n;
    }
}

/// Reads the whole partition back: every offset below `end` holds the value written for it.
async fn assert_all_records(c: &mut KafkaClient, end: i64) {
    let mut next = 0;
    while next < end {
        let resp = fetch(c, &fetch_request(TOPIC, 0, next, 100, 1, 1 << 20)).await;
        assert_eq!(resp.responses[0].partitions[0].error_code, 0);
        let records = records_of(&resp);
        assert!(!records.is_empty(), "nothing at {next}");
        for r in records {
            assert_eq!(r.offset, next, "offsets stay dense and in order");
            let v = r.value.expect("a value");
            assert_eq!(v.as_ref(), value(next).as_bytes(), "record at {next}");
            next += 1;
        }
    }
    assert_eq!(next, end);
}

async fn alter(c: &mut KafkaClient, dir: &Path, partitions: Vec<i32>) -> Vec<(i32, i16)> {
    let req = AlterReplicaLogDirsRequest::default().with_dirs(vec![AlterReplicaLogDir::default()
        .with_path(StrBytes::from_string(dir.display().to_string()))
        .with_topics(vec![AlterReplicaLogDirTopic::default()
            .with_name(topic_name(TOPIC))
            .with_partitions(partitions)])]);
    let resp = c.send(&req, 2).await.expect("alter replica log dirs");
    resp.results
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.error_code))
        })
        .collect()
}

async fn describe(c: &mut KafkaClient) -> DescribeLogDirsResponse {
    let req = DescribeLogDirsRequest::default().with_topics(None);
    c.send(&req, 4).await.expect("describe log dirs")
}

fn tp() -> TopicPartition {
    TopicPartition::new(TOPIC, 0)
}

/// The log dir the partition's replica lives in.
fn dir_of(b: &TestBroker) -> PathBuf {
    let log = b.broker.replicas.logs().get(&tp()).expect("the replica");
    log.dir().parent().expect("a parent").to_path_buf()
}

fn other(b: &TestBroker, root: &Path) -> PathBuf {
    let (a, bb) = dirs(root);
    if dir_of(b) == a {
        bb
    } else {
        a
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_moves_to_another_log_dir_while_it_is_produced_to() {
    // Throttled, so the move is still copying while the producer writes.
    let b = start(
        tempfile::tempdir().expect("tempdir"),
        &[("replica.alter.log.dirs.io.max.bytes.per.second", "1000000")],
    )
    .await;
    let root = b.dir.path().to_path_buf();
    let mut c = b.client("admin").await;
    create_topic(&mut c, TOPIC, 1, &[("segment.bytes", "100000")]).await;
    produce_range(&mut c, 0, 1000).await;
    let (from, to) = (dir_of(&b), other(&b, &root));
    assert_eq!(alter(&mut c, &to, vec![0]).await, vec![(0, 0)]);
    // Asked again while it moves: still NONE.
    assert_eq!(alter(&mut c, &to, vec![0]).await, vec![(0, 0)]);

    let d = describe(&mut c).await;
    let future: Vec<_> = d
        .results
        .iter()
        .filter(|r| r.log_dir.as_str() == to.display().to_string())
        .flat_map(|r| r.topics.iter().flat_map(|t| t.partitions.iter()))
        .collect();
    assert_eq!(future.len(), 1, "{d:?}");
    assert!(future[0].is_future_key, "{d:?}");
    assert!(future[0].offset_lag > 0, "{d:?}");

    // A producer goes on through the move, slower than the move's rate (else it never
    // catches up, as in Kafka).
    let stop = Arc::new(AtomicBool::new(false));
    let mut pc = b.client("producer").await;
    let producing = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut end = 1000;
            while !stop.load(Ordering::Relaxed) || end < 1100 {
                produce_range(&mut pc, end, end + 5).await;
                end += 5;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            end
        })
    };
    let logs = Arc::clone(b.broker.replicas.logs());
    let to2 = to.clone();
    let mut end_at_swap = 0;
    wait::until("the swap", Duration::from_secs(30), || {
        let log = logs.get(&tp()).expect("the log");
        end_at_swap = log.log_end_offset().0;
        log.dir().parent() == Some(&to2)
    })
    .await;
    assert!(end_at_swap > 1000, "records were appended during the move");
    stop.store(true, Ordering::Relaxed);
    let end = producing.await.expect("producer");
    produce_range(&mut c, end, end + 20).await;
    assert_all_records(&mut c, end + 20).await;

    // Files only in the new dir; DescribeLogDirs lists it there alone, as current.
    let old = from.join(tp().dir_name());
    wait::until("the old copy removed", Duration::from_secs(10), || {
        !old.exists()
    })
    .await;
    let new = to.join(tp().dir_name());
    assert!(!new.join("future-replica").exists());
    assert!(std::fs::read_dir(&new)
        .expect("new dir")
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().ends_with(".log")));
    let d = describe(&mut c).await;
    for r in &d.results {
        let held: Vec<_> = r.topics.iter().flat_map(|t| t.partitions.iter()).collect();
        if r.log_dir.as_str() == to.display().to_string() {
            assert_eq!(held.len(), 1);
            assert!(!held[0].is_future_key);
        } else {
            assert!(held.is_empty(), "{r:?}");
        }
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restarted_in_the_middle_of_a_move_resumes_it() {
    let b = start(
        tempfile::tempdir().expect("tempdir"),
        &[("replica.alter.log.dirs.io.max.bytes.per.second", "50000")],
    )
    .await;
    let root = b.dir.path().to_path_buf();
    let mut c = b.client("admin").await;
    create_topic(&mut c, TOPIC, 1, &[("segment.bytes", "100000")]).await;
    produce_range(&mut c, 0, 400).await;
    let (from, to) = (dir_of(&b), other(&b, &root));
    assert_eq!(alter(&mut c, &to, vec![0]).await, vec![(0, 0)]);
    let future = to.join(tp().dir_name());
    wait::until("the copy under way", Duration::from_secs(10), || {
        b.broker
            .replicas
            .logs()
            .alter_dirs()
            .get(&tp())
            .is_some_and(|m| m.future.log_end_offset().0 > 0)
    })
    .await;
    drop(c);
    let root_dir = b.stop().await;
    assert!(
        future.join("future-replica").exists(),
        "the future dir records the move"
    );
    assert!(from.join(tp().dir_name()).exists());

    let b = start(root_dir, &[]).await;
    let logs = Arc::clone(b.broker.replicas.logs());
    let to2 = to.clone();
    wait::until("the resumed move's swap", Duration::from_secs(30), || {
        logs.get(&tp())
            .is_some_and(|l| l.dir().parent() == Some(&to2))
    })
    .await;
    let mut c = b.client("admin").await;
    produce_range(&mut c, 400, 410).await;
    assert_all_records(&mut c, 410).await;
    let old = from.join(tp().dir_name());
    wait::until("the old copy removed", Duration::from_secs(10), || {
        !old.exists()
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn alter_replica_log_dirs_answers_as_kafka() {
    let b = start(tempfile::tempdir().expect("tempdir"), &[]).await;
    let root = b.dir.path().to_path_buf();
    let (a, bb) = dirs(&root);
    let mut c = b.client("admin").await;
    // Not here yet: REPLICA_NOT_AVAILABLE, and the replica is created in that dir when it
    // comes (a new partition would otherwise go to the emptier dir, `a`: both are empty).
    assert_eq!(
        alter(&mut c, &bb, vec![0]).await,
        vec![(0, ResponseError::ReplicaNotAvailable.code())]
    );
    create_topic(&mut c, TOPIC, 1, &[]).await;
    assert_eq!(dir_of(&b), bb);
    // Already there: NONE, nothing moves.
    assert_eq!(alter(&mut c, &bb, vec![0]).await, vec![(0, 0)]);
    assert!(b.broker.replicas.logs().alter_dirs().get(&tp()).is_none());
    assert!(!a.join(tp().dir_name()).exists());
    // Not one of log.dirs.
    assert_eq!(
        alter(&mut c, &root.join("c"), vec![0]).await,
        vec![(0, ResponseError::LogDirNotFound.code())]
    );
    b.stop().await;
}

mod manager {
    //! The move inside the `LogManager`, without a broker: what the swap carries over.

    use super::*;
    use bytes::Bytes;
    use strata::log::alter_log_dirs::AlterLogDirOutcome;
    use strata::log::{LogConfig, LogManager};
    use strata::model::{LeaderEpoch, Offset, ProducerId};
    use strata::protocol::record_batch::build_batch;

    const T0: i64 = 1_700_000_000_000;

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    fn cfg() -> LogConfig {
        LogConfig {
            segment_bytes: 2048,
            ..LogConfig::default()
        }
    }

    fn plain() -> Bytes {
        Bytes::from(build_batch(0, T0, None, &[(None, Some(&[7u8; 200][..]))]))
    }

    fn idempotent(seq: i32) -> Bytes {
        Bytes::from(build_batch(
            0,
            T0,
            Some((7, 0, seq)),
            &[(None, Some(&b"a"[..])), (None, Some(&b"b"[..]))],
        ))
    }

    /// A log whose start moved past its first segments (as a tiered partition's local log
    /// does) moves with its start, leader epochs and producer state, including a producer whose
    /// only batch lies below the start, which the copy never sees.
    #[tokio::test]
    async fn a_moved_log_keeps_its_start_epochs_and_producers() {
        let (d1, d2) = (tempdir(), tempdir());
        let dirs = vec![d1.path().to_path_buf(), d2.path().to_path_buf()];
        let mgr = LogManager::open(dirs, strata::clock::system(), &|_| cfg()).expect("open");
        let tp = TopicPartition::new("t", 0);
        let log = mgr.get_or_create(&tp, cfg()).expect("create");
        assert!(log.dir().starts_with(d1.path()));
        log.append_as_leader(idempotent(0), LeaderEpoch(1))
            .expect("append");
        for _ in 0..30 {
            log.append_as_leader(plain(), LeaderEpoch(2))
                .expect("append");
        }
        log.delete_records(Offset(12)).expect("delete records");
        let start = log.local_log_start_offset();
        assert!(start.0 > 2, "the producer's batch is below the start");
        let (leo, epochs) = (log.log_end_offset(), log.epoch_entries());
        let producer = log.producer_state(ProducerId(7)).expect("the producer");
        let bytes = log.read(start, 1 << 20, leo, true).expect("read").records;

        let to = d2.path();
        assert_eq!(
            mgr.alter_log_dir(&tp, to).expect("alter"),
            AlterLogDirOutcome::Moving
        );
        let l = Arc::clone(&log);
        wait::until("the swap", Duration::from_secs(10), || {
            l.dir().parent() == Some(to)
        })
        .await;
        assert!(Arc::ptr_eq(&log, &mgr.get(&tp).expect("the log")));
        let alter_dirs = Arc::clone(mgr.alter_dirs());
        wait::until("the move ended", Duration::from_secs(10), || {
            alter_dirs.get(&tp).is_none()
        })
        .await;
        let metrics = strata::log::metrics();
        assert!(metrics.log_dir_moves.with_label_values(&["moved"]).get() >= 1);
        assert!(metrics.log_dir_move_bytes.get() >= bytes.len() as u64);
        assert_eq!(
            (log.local_log_start_offset(), log.log_end_offset()),
            (start, leo)
        );
        assert_eq!(log.epoch_entries(), epochs);
        assert_eq!(log.producer_state(ProducerId(7)), Some(producer));
        assert_eq!(
            log.read(start, 1 << 20, leo, true).expect("read").records,
            bytes
        );
        // The producer goes on where it was: a retry is a duplicate, the next sequence fits.
        let retry = log
            .append_as_leader(idempotent(0), LeaderEpoch(2))
            .expect("retry");
        assert!(retry.duplicate);
        log.append_as_leader(idempotent(2), LeaderEpoch(2))
            .expect("next sequence");
        let old = d1.path().join(tp.dir_name());
        wait::until("the old copy removed", Duration::from_secs(10), || {
            !old.exists()
        })
        .await;
        mgr.shutdown().expect("shutdown");

        // Reopened: the log is in the new dir, with everything.
        let dirs = vec![d1.path().to_path_buf(), d2.path().to_path_buf()];
        let mgr = LogManager::open(dirs, strata::clock::system(), &|_| cfg()).expect("reopen");
        let log = mgr.get(&tp).expect("the log");
        assert!(log.dir().starts_with(to));
        assert_eq!(log.local_log_start_offset(), start);
        assert_eq!(log.log_end_offset().0, leo.0 + 2);
        assert_eq!(
            log.producer_state(ProducerId(7)).map(|p| p.last_sequence),
            Some(3)
        );
        mgr.shutdown().expect("shutdown");
    }

    /// Moving a replica back to the dir it is in cancels its move and deletes the copy.
    #[tokio::test]
    async fn moving_back_cancels_a_move() {
        let (d1, d2) = (tempdir(), tempdir());
        let dirs = vec![d1.path().to_path_buf(), d2.path().to_path_buf()];
        let mgr = LogManager::open(dirs, strata::clock::system(), &|_| cfg()).expect("open");
        // One byte a second: the copy is still on its first batches when cancelled.
        mgr.alter_dirs().set_rate(1);
        let tp = TopicPartition::new("t", 0);
        let log = mgr.get_or_create(&tp, cfg()).expect("create");
        for _ in 0..30 {
            log.append_as_leader(plain(), LeaderEpoch(0))
                .expect("append");
        }
        let future = d2.path().join(tp.dir_name());
        assert_eq!(
            mgr.alter_log_dir(&tp, d2.path()).expect("alter"),
            AlterLogDirOutcome::Moving
        );
        assert!(future.join("future-replica").exists());
        // The same dir by another path.
        let d1_again = d1
            .path()
            .join("..")
            .join(d1.path().file_name().expect("a name"));
        assert_eq!(
            mgr.alter_log_dir(&tp, &d1_again).expect("alter back"),
            AlterLogDirOutcome::AlreadyThere
        );
        assert!(mgr.alter_dirs().get(&tp).is_none());
        assert!(!future.exists());
        assert!(log.dir().starts_with(d1.path()));
        assert_eq!(log.log_end_offset(), Offset(30));
        mgr.shutdown().expect("shutdown");
    }

    /// A target dir that goes offline during the move fails the move; the partition stays in
    /// its dir and takes appends.
    #[tokio::test]
    async fn an_offline_target_dir_fails_the_move_not_the_partition() {
        let (d1, d2) = (tempdir(), tempdir());
        let dirs = vec![d1.path().to_path_buf(), d2.path().to_path_buf()];
        let mgr = LogManager::open(dirs, strata::clock::system(), &|_| cfg()).expect("open");
        mgr.alter_dirs().set_rate(2000);
        let tp = TopicPartition::new("t", 0);
        let log = mgr.get_or_create(&tp, cfg()).expect("create");
        for _ in 0..30 {
            log.append_as_leader(plain(), LeaderEpoch(0))
                .expect("append");
        }
        assert_eq!(
            mgr.alter_log_dir(&tp, d2.path()).expect("alter"),
            AlterLogDirOutcome::Moving
        );
        let index = mgr.failures().dir_of(d2.path()).expect("a log dir");
        let error = strata::log::LogError::Io {
            path: d2.path().to_path_buf(),
            source: std::io::Error::from_raw_os_error(libc::EIO),
        };
        mgr.failures().mark_offline(index, &error);
        let alter_dirs = Arc::clone(mgr.alter_dirs());
        wait::until("the move failed", Duration::from_secs(10), || {
            alter_dirs.get(&tp).is_none()
        })
        .await;
        assert!(log.dir().starts_with(d1.path()));
        let failed = strata::log::metrics()
            .log_dir_moves
            .with_label_values(&["failed"]);
        assert!(failed.get() >= 1);
        log.append_as_leader(plain(), LeaderEpoch(0))
            .expect("append after the failed move");
        assert_eq!(log.log_end_offset(), Offset(31));
        assert!(matches!(
            mgr.alter_log_dir(&tp, d2.path()),
            Err(strata::log::alter_log_dirs::AlterLogDirError::LogDirOffline { .. })
        ));
        mgr.shutdown().expect("shutdown");
    }

    /// A crash after the swap's commit point (the old copy marked `replica-moved`, the new one
    /// still marked `future-replica`): the next start deletes the old copy and the new one is
    /// the replica.
    #[tokio::test]
    async fn a_crash_after_the_commit_point_finishes_the_move_at_open() {
        let (d1, d2) = (tempdir(), tempdir());
        let dirs = vec![d1.path().to_path_buf(), d2.path().to_path_buf()];
        let tp = TopicPartition::new("t", 0);
        let (old, new) = (d1.path().join(tp.dir_name()), d2.path().join(tp.dir_name()));
        {
            let mgr =
                LogManager::open(dirs.clone(), strata::clock::system(), &|_| cfg()).expect("open");
            let log = mgr.get_or_create(&tp, cfg()).expect("create");
            for _ in 0..10 {
                log.append_as_leader(plain(), LeaderEpoch(0))
                    .expect("append");
            }
            mgr.shutdown().expect("shutdown");
        }
        std::fs::create_dir(&new).expect("mkdir");
        for f in std::fs::read_dir(&old).expect("old copy") {
            let f = f.expect("entry").path();
            std::fs::copy(&f, new.join(f.file_name().expect("name"))).expect("copy");
        }
        std::fs::write(new.join("future-replica"), b"").expect("marker");
        std::fs::write(old.join("replica-moved"), b"").expect("marker");

        let mgr = LogManager::open(dirs, strata::clock::system(), &|_| cfg()).expect("reopen");
        let log = mgr.get(&tp).expect("the log");
        assert!(log.dir().starts_with(d2.path()));
        assert_eq!(log.log_end_offset(), Offset(10));
        assert!(!old.exists());
        assert!(!new.join("future-replica").exists());
        assert!(mgr.alter_dirs().futures().is_empty());
        mgr.shutdown().expect("shutdown");
    }

    fn txn_batch(pid: i64, values: &[&str]) -> Bytes {
        use strata::protocol::record_batch::{set_covered_fields, TRANSACTIONAL_BIT};
        let recs: Vec<_> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
        let mut b = build_batch(0, T0, Some((pid, 0, 0)), &recs);
        set_covered_fields(&mut b, TRANSACTIONAL_BIT, T0 + values.len() as i64 - 1, 0);
        Bytes::from(b)
    }

    /// Transactions move with the log: the aborted-transaction index and an open transaction
    /// (so the last stable offset), which its commit then closes in the new dir.
    #[tokio::test]
    async fn transactions_move_with_the_log() {
        use strata::model::ProducerEpoch;
        use strata::protocol::control::{EndTransactionMarker, TransactionResult};

        let (d1, d2) = (tempdir(), tempdir());
        let dirs = vec![d1.path().to_path_buf(), d2.path().to_path_buf()];
        let mgr = LogManager::open(dirs, strata::clock::system(), &|_| cfg()).expect("open");
        let tp = TopicPartition::new("t", 0);
        let log = mgr.get_or_create(&tp, cfg()).expect("create");
        let marker = |result| EndTransactionMarker {
            result,
            coordinator_epoch: 1,
        };
        log.append_as_leader(txn_batch(9, &["x", "y"]), LeaderEpoch(0))
            .expect("txn");
        log.append_as_leader(plain(), LeaderEpoch(0))
            .expect("append");
        log.append_txn_marker(
            ProducerId(9),
            ProducerEpoch(0),
            marker(TransactionResult::Abort),
            LeaderEpoch(0),
        )
        .expect("abort");
        let open_at = log.log_end_offset();
        log.append_as_leader(txn_batch(11, &["z"]), LeaderEpoch(0))
            .expect("open txn");
        for _ in 0..10 {
            log.append_as_leader(plain(), LeaderEpoch(0))
                .expect("append");
        }
        let leo = log.log_end_offset();
        let aborted = log.collect_aborted_txns(Offset(0), leo);
        assert_eq!(aborted.len(), 1);
        assert_eq!(log.first_unstable_offset(), Some(open_at));

        assert_eq!(
            mgr.alter_log_dir(&tp, d2.path()).expect("alter"),
            AlterLogDirOutcome::Moving
        );
        let l = Arc::clone(&log);
        let to = d2.path().to_path_buf();
        wait::until("the swap", Duration::from_secs(10), || {
            l.dir().parent() == Some(to.as_path())
        })
        .await;
        assert_eq!(log.collect_aborted_txns(Offset(0), leo), aborted);
        assert_eq!(log.first_unstable_offset(), Some(open_at));
        log.append_txn_marker(
            ProducerId(11),
            ProducerEpoch(0),
            marker(TransactionResult::Commit),
            LeaderEpoch(0),
        )
        .expect("commit");
        assert_eq!(log.first_unstable_offset(), None);
        mgr.shutdown().expect("shutdown");
    }
}
