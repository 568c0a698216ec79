//! LogManager: discovery of partition dirs, creation, deletion, background retention.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata::clock::{ManualClock, SharedClock};
use strata::log::{LogConfig, LogManager};
use strata::model::{LeaderEpoch, TopicPartition};
use strata::protocol::record_batch::build_batch;

const T0: i64 = 1_700_000_000_000;

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        retention_ms: 1000,
        ..LogConfig::default()
    }
}

#[tokio::test]
async fn opens_creates_deletes_and_runs_retention() {
    let d1 = tempfile::tempdir().expect("tempdir");
    let d2 = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let c: SharedClock = clock.clone();
    let dirs = vec![d1.path().to_path_buf(), d2.path().to_path_buf()];
    let tp = TopicPartition::new("orders-eu", 3);
    {
        let mgr = LogManager::open(dirs.clone(), c.clone(), &|_| cfg()).expect("open");
        let log = mgr.get_or_create(&tp, cfg()).expect("create");
        let again = mgr.get_or_create(&tp, cfg()).expect("get");
        assert!(Arc::ptr_eq(&log, &again));
        for _ in 0..40 {
            log.append_as_leader(
                Bytes::from(build_batch(0, T0, None, &[(None, Some(&[7u8; 200][..]))])),
                LeaderEpoch(0),
            )
            .expect("append");
        }
        mgr.get_or_create(&TopicPartition::new("other", 0), cfg())
            .expect("create");
        mgr.shutdown().expect("shutdown");
    }
    // A half-deleted partition is cleaned up at startup.
    std::fs::create_dir(d1.path().join("gone-0-delete")).expect("mkdir");
    let mgr = Arc::new(LogManager::open(dirs, c, &|_| cfg()).expect("reopen"));
    assert!(!d1.path().join("gone-0-delete").exists());
    assert_eq!(mgr.all().len(), 2);
    let log = mgr.get(&tp).expect("found again");
    assert_eq!(log.log_end_offset().0, 40);
    let segments = log.segment_count();
    assert!(segments > 2);

    // Background retention with a short interval.
    mgr.retention_check_interval_ms.store(20, Ordering::Relaxed);
    let shutdown = tokio_util::sync::CancellationToken::new();
    mgr.start_background(shutdown.clone());
    clock.advance_ms(10_000);
    let mut waited = 0;
    while log.segment_count() > 1 && waited < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(log.segment_count(), 1);
    shutdown.cancel();

    let other = TopicPartition::new("other", 0);
    let dir = mgr.get(&other).expect("other").dir().to_path_buf();
    mgr.delete(&other).expect("delete");
    assert!(!dir.exists());
    assert!(mgr.get(&other).is_none());
    mgr.shutdown().expect("shutdown");
}

/// One of two log dirs goes offline (as a failed write or fsync takes it): every log in it
/// refuses appends and reads, the other dir's logs serve, new partitions go to the online dir,
/// and with both offline nothing can be created.
#[tokio::test]
async fn an_offline_log_dir_takes_all_its_partitions_and_only_them() {
    use strata::log::LogError;
    use strata::model::Offset;

    let d1 = tempfile::tempdir().expect("tempdir");
    let d2 = tempfile::tempdir().expect("tempdir");
    let c: SharedClock = ManualClock::new(T0);
    let dirs = vec![d1.path().to_path_buf(), d2.path().to_path_buf()];
    let mgr = LogManager::open(dirs, c, &|_| cfg()).expect("open");
    let tps: Vec<TopicPartition> = (0..4).map(|p| TopicPartition::new("t", p)).collect();
    let logs: Vec<_> = tps
        .iter()
        .map(|tp| mgr.get_or_create(tp, cfg()).expect("create"))
        .collect();
    let batch = || Bytes::from(build_batch(0, T0, None, &[(None, Some(&b"v"[..]))]));
    for log in &logs {
        log.append_as_leader(batch(), LeaderEpoch(0))
            .expect("append");
    }
    let mut changes = mgr.failures().subscribe();
    let failed = mgr.failures().dir_of(d2.path()).expect("a configured dir");
    let error = LogError::Io {
        path: d2.path().to_path_buf(),
        source: std::io::Error::from_raw_os_error(libc::EIO),
    };
    assert!(mgr.failures().mark_offline(failed, &error));
    assert!(!mgr.failures().mark_offline(failed, &error), "once");
    assert_eq!(*changes.borrow_and_update(), 1);
    let (offline, online): (Vec<_>, Vec<_>) =
        logs.iter().partition(|l| l.dir().starts_with(d2.path()));
    assert_eq!((offline.len(), online.len()), (2, 2));
    for log in offline {
        assert!(log.is_offline());
        let err = log
            .append_as_leader(batch(), LeaderEpoch(0))
            .expect_err("offline");
        assert!(matches!(err, LogError::LogDirOffline { .. }), "{err}");
        let err = log
            .read(Offset(0), 1024, Offset(i64::MAX), true)
            .expect_err("offline");
        assert!(matches!(err, LogError::LogDirOffline { .. }), "{err}");
    }
    for log in online {
        assert!(!log.is_offline());
        log.append_as_leader(batch(), LeaderEpoch(0))
            .expect("the other dir serves");
    }
    let new = mgr
        .get_or_create(&TopicPartition::new("t", 9), cfg())
        .expect("created in the online dir");
    assert!(new.dir().starts_with(d1.path()));
    assert!(!mgr.failures().all_offline());
    let other = mgr.failures().dir_of(d1.path()).expect("a configured dir");
    mgr.failures().mark_offline(other, &error);
    assert!(mgr.failures().all_offline());
    let err = mgr
        .get_or_create(&TopicPartition::new("t", 10), cfg())
        .expect_err("no dir left");
    assert!(matches!(err, LogError::LogDirOffline { .. }), "{err}");
}

/// A log dir that fails at startup starts offline, as in Kafka: the others serve, the
/// partitions found in it are reported offline and never created anew elsewhere (an empty copy
/// could be elected and lose their data); one that cannot even be listed stops all creation.
#[test]
fn a_log_dir_failing_at_startup_starts_offline_and_the_others_serve() {
    let (d1, d2) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let c: SharedClock = ManualClock::new(T0);
    let dirs = vec![d1.path().to_path_buf(), d2.path().to_path_buf()];
    let (good, bad) = (
        TopicPartition::new("good", 0),
        TopicPartition::new("bad", 0),
    );
    {
        let mgr = LogManager::open(dirs.clone(), c.clone(), &|_| cfg()).expect("open");
        for tp in [&good, &bad] {
            let log = mgr.get_or_create(tp, cfg()).expect("create");
            log.append_as_leader(
                Bytes::from(build_batch(0, T0, None, &[(None, Some(&b"v"[..]))])),
                LeaderEpoch(0),
            )
            .expect("append");
            log.close().expect("close");
        }
    }
    // `bad`'s segment can no longer be read (a directory where its file was).
    let bad_dir = dirs
        .iter()
        .map(|d| d.join("bad-0"))
        .find(|p| p.exists())
        .expect("bad-0");
    let seg = bad_dir.join("00000000000000000000.log");
    std::fs::remove_file(&seg).expect("rm");
    std::fs::create_dir(&seg).expect("mkdir");
    let mgr = LogManager::open(dirs.clone(), c.clone(), &|_| cfg()).expect("opens without it");
    let failed_dir = bad_dir.parent().expect("parent").to_path_buf();
    assert_eq!(mgr.failures().offline_dirs(), vec![failed_dir.clone()]);
    let mut offline = mgr.offline_partitions();
    offline.sort_by(|a, b| a.topic.cmp(&b.topic));
    let in_failed = |tp: &TopicPartition| failed_dir.join(tp.dir_name()).exists();
    let mut expected: Vec<TopicPartition> = [&bad, &good]
        .into_iter()
        .filter(|tp| in_failed(tp))
        .cloned()
        .collect();
    expected.sort_by(|a, b| a.topic.cmp(&b.topic));
    assert_eq!(offline, expected);
    assert!(
        mgr.get_or_create(&bad, cfg()).is_err(),
        "not created elsewhere"
    );
    let new = TopicPartition::new("new", 0);
    let log = mgr
        .get_or_create(&new, cfg())
        .expect("created in the good dir");
    assert!(!log.dir().starts_with(&failed_dir));
    drop(mgr);

    // The other dir cannot be listed at all (a file where the dir was): nothing is created.
    let other = dirs
        .iter()
        .find(|d| **d != failed_dir)
        .expect("other")
        .clone();
    std::fs::remove_dir_all(&failed_dir).expect("rm");
    std::fs::write(&failed_dir, b"not a dir").expect("write");
    let mgr = LogManager::open(dirs.clone(), c.clone(), &|_| cfg()).expect("opens without it");
    assert_eq!(mgr.failures().offline_dirs(), vec![failed_dir.clone()]);
    let fresh = TopicPartition::new("fresh", 0);
    assert!(mgr.get_or_create(&fresh, cfg()).is_err());
    assert!(mgr.offline_partitions().contains(&fresh));
    assert!(!other.join("fresh-0").exists());
    drop(mgr);
    // Every dir failing: the broker does not start.
    std::fs::remove_dir_all(&other).expect("rm");
    std::fs::write(&other, b"not a dir").expect("write");
    assert!(LogManager::open(dirs, c, &|_| cfg()).is_err());
}
