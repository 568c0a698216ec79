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

/// Disk usage as a test sets it: `other_bytes` (what else fills the disk) plus the bytes of
/// the logs it watches, over a fixed size.
#[derive(Debug)]
struct FakeUsage {
    total_bytes: u64,
    other_bytes: std::sync::atomic::AtomicU64,
    logs: std::sync::Mutex<Vec<Arc<strata::log::UnifiedLog>>>,
}

impl strata::log::disk_pressure::DiskUsageSource for FakeUsage {
    fn usage(
        &self,
        _dir: &std::path::Path,
    ) -> std::io::Result<strata::log::disk_pressure::DiskUsage> {
        let logs: u64 = self
            .logs
            .lock()
            .expect("lock")
            .iter()
            .map(|l| l.size_bytes())
            .sum();
        let used = self.other_bytes.load(Ordering::SeqCst) + logs;
        Ok(strata::log::disk_pressure::DiskUsage {
            total_bytes: self.total_bytes,
            available_bytes: self.total_bytes.saturating_sub(used),
        })
    }
}

/// A log dir past its high watermark loses the local copies of uploaded segments, oldest first,
/// just enough to get below its low watermark, and keeps serving produce; past its refuse mark
/// with nothing uploaded left to delete, produce is refused (nothing written) while reads go
/// on, until the disk is below the low watermark again. Not-yet-uploaded data is never deleted.
#[tokio::test]
async fn disk_pressure_deletes_uploaded_segments_then_refuses_produce_until_the_low_watermark() {
    use std::sync::atomic::AtomicI64;
    use strata::log::disk_pressure::{metrics, PressureState};
    use strata::log::LogError;
    use strata::model::Offset;

    let d = tempfile::tempdir().expect("tempdir");
    let c: SharedClock = ManualClock::new(T0);
    let tiered = || LogConfig {
        segment_bytes: 2048,
        retention_ms: -1,
        remote_storage_enable: true,
        preallocate_bytes: 0,
        ..LogConfig::default()
    };
    let mgr = LogManager::open(vec![d.path().to_path_buf()], c, &|_| tiered()).expect("open");
    let log = mgr
        .get_or_create(&TopicPartition::new("tiered", 0), tiered())
        .expect("create");
    // Uploads reached `uploaded_below`: the guard lets go only the segments wholly below it.
    let uploaded_below = Arc::new(AtomicI64::new(0));
    let u = Arc::clone(&uploaded_below);
    log.set_retention_guard(Arc::new(move |_base, last| {
        last.0 < u.load(Ordering::SeqCst)
    }));
    let batch = |i: u8| {
        Bytes::from(build_batch(
            0,
            T0 + i64::from(i),
            None,
            &[(None, Some(&[i; 200][..]))],
        ))
    };
    for i in 0..40 {
        log.append_as_leader(batch(i), LeaderEpoch(0))
            .expect("append");
    }
    let usage = Arc::new(FakeUsage {
        total_bytes: 20_000,
        other_bytes: Default::default(),
        logs: std::sync::Mutex::new(vec![Arc::clone(&log)]),
    });
    mgr.disk_pressure().set_usage_source(usage.clone());
    let label = d.path().display().to_string();
    let gauge = || metrics().state.with_label_values(&[&label]).get();

    // 0.905 used, everything closed uploaded: the oldest segments go until 2100 bytes are free.
    let closed = log.segment_count() - 1;
    uploaded_below.store(log.log_end_offset().0, Ordering::SeqCst);
    let uploaded = log.uploaded_segments();
    assert_eq!(uploaded.len(), closed);
    usage
        .other_bytes
        .store(18_100 - log.size_bytes(), Ordering::SeqCst);
    let mut freed = 0;
    let expect = uploaded
        .iter()
        .take_while(|s| {
            let more = freed < 2_100;
            freed += s.size_bytes;
            more
        })
        .count();
    assert!(expect >= 1 && expect < closed, "{expect} of {closed}");
    assert_eq!(mgr.run_disk_pressure(), expect);
    assert_eq!(
        log.local_log_start_offset(),
        uploaded[expect - 1].next_offset
    );
    assert_eq!(log.segment_count(), closed + 1 - expect);
    // Read again after deleting: below the low watermark, normal; produce was never refused.
    assert_eq!(mgr.disk_pressure().state(0), PressureState::Normal);
    assert_eq!(gauge(), 0);
    log.check_disk_pressure().expect("served");

    // 0.97 used and nothing more uploaded: nothing can go, produce is refused (and counted).
    let start = log.local_log_start_offset();
    uploaded_below.store(start.0, Ordering::SeqCst);
    usage
        .other_bytes
        .store(19_400 - log.size_bytes(), Ordering::SeqCst);
    let refused = metrics().produce_refused.with_label_values(&[&label]).get();
    assert_eq!(mgr.run_disk_pressure(), 0);
    assert_eq!(mgr.disk_pressure().state(0), PressureState::Refusing);
    assert_eq!(gauge(), 2);
    let end = log.log_end_offset();
    assert!(matches!(
        log.check_disk_pressure(),
        Err(LogError::DiskPressure { .. })
    ));
    assert_eq!(
        metrics().produce_refused.with_label_values(&[&label]).get(),
        refused + 1
    );
    assert_eq!(
        (log.local_log_start_offset(), log.log_end_offset()),
        (start, end)
    );
    // Reads are served meanwhile, from the local log start to the end.
    let read = log
        .read(start, 1 << 20, Offset(i64::MAX), true)
        .expect("read");
    assert!(!read.records.is_empty());

    // Below the refuse mark but above the low watermark: still refusing (no flapping).
    usage
        .other_bytes
        .store(17_000 - log.size_bytes(), Ordering::SeqCst);
    mgr.run_disk_pressure();
    assert_eq!(mgr.disk_pressure().state(0), PressureState::Refusing);
    // Space freed elsewhere: below the low watermark, produce resumes by itself.
    usage
        .other_bytes
        .store(15_000 - log.size_bytes(), Ordering::SeqCst);
    assert_eq!(mgr.run_disk_pressure(), 0);
    assert_eq!(mgr.disk_pressure().state(0), PressureState::Normal);
    log.check_disk_pressure().expect("served again");
    log.append_as_leader(batch(40), LeaderEpoch(0))
        .expect("append");
    assert_eq!(log.log_end_offset().0, end.0 + 1);
    // Configuring reads the usage at once: a broker starting on a full disk refuses at once.
    usage
        .other_bytes
        .store(19_500 - log.size_bytes(), Ordering::SeqCst);
    mgr.set_disk_pressure(strata::log::disk_pressure::DiskPressureConfig::default());
    assert_eq!(mgr.disk_pressure().state(0), PressureState::Refusing);
    mgr.shutdown().expect("shutdown");
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
