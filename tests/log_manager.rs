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
