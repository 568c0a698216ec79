//! The store circuit breaker against the `unreliable` wrapper: a dead endpoint, `SlowDown`
//! answers, latency and one failing partition. Several partitions upload at once, each with
//! its own retry loop as the broker's upload task runs them; the checks are that nothing is
//! lost, that healthy partitions keep uploading, that a dead store is not hammered, and that
//! the log is not flooded (lines counted).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_tiering::breaker::BreakerPolicy;
use strata_tiering::{
    Backoff, BreakerState, BreakerStorage, Fault, ObjectStorage, PartitionPath, RemotePartition,
    RemoteStorage, RetryPolicy, SealedSegment, TieringError, UnreliableStorage,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const PARTITIONS: i32 = 6;
const SEGMENTS: i64 = 3;

fn sealed(dir: &Path, partition: i32, base: i64) -> SealedSegment {
    let f = |ext: &str, n: usize| {
        let p = dir.join(format!("{partition}-{base:020}.{ext}"));
        std::fs::write(&p, vec![base as u8; n]).expect("write");
        p
    };
    SealedSegment {
        base_offset: base,
        end_offset: base + 9,
        max_timestamp_ms: 1000 + base,
        size_bytes: 500,
        log_path: f("log", 500),
        index_path: f("index", 16),
        time_index_path: f("timeindex", 24),
        snapshot_path: Some(f("snapshot", 10)),
        txn_index_path: None,
        leader_epochs: vec![(0, base)],
    }
}

/// Log lines written while a test runs (the subscriber is the test thread's default).
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lines").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn count(&self, needle: &str) -> usize {
        let text = String::from_utf8_lossy(&self.0.lock().expect("lines")).to_string();
        text.lines().filter(|l| l.contains(needle)).count()
    }
}

struct Rig {
    flaky: Arc<UnreliableStorage<ObjectStorage>>,
    store: Arc<dyn RemoteStorage>,
    partitions: Vec<Arc<RemotePartition>>,
    dir: tempfile::TempDir,
    lines: Lines,
    _log: tracing::subscriber::DefaultGuard,
}

fn rig() -> Rig {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    let log = tracing::subscriber::set_default(subscriber);
    let flaky = Arc::new(UnreliableStorage::new(ObjectStorage::memory(), 0));
    let store: Arc<dyn RemoteStorage> = Arc::new(BreakerStorage::new(
        flaky.clone(),
        BreakerPolicy {
            failure_threshold: 4,
            min_failing_prefixes: 2,
            open_backoff: Backoff {
                base: Duration::from_millis(50),
                max: Duration::from_millis(400),
            },
            pace_step_ms: 5,
            pace_max_ms: 40,
        },
    ));
    let topic_id = Uuid::new_v4();
    let partitions = (0..PARTITIONS)
        .map(|p| {
            Arc::new(RemotePartition::new(
                PartitionPath::new("orders", topic_id, p),
                store.clone(),
                RetryPolicy {
                    backoff: Backoff {
                        base: Duration::from_millis(2),
                        max: Duration::from_millis(10),
                    },
                    max_attempts: 3,
                },
            ))
        })
        .collect();
    Rig {
        flaky,
        store,
        partitions,
        dir: tempfile::tempdir().expect("tempdir"),
        lines,
        _log: log,
    }
}

impl Rig {
    /// Starts one upload loop per partition, shaped like the broker's: each failed round
    /// backs off on its own (and says so in a warning); a round stopped by the open breaker
    /// waits for the probe time and logs nothing.
    fn start_uploads(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let p = p.clone();
                let segs: Vec<SealedSegment> = (0..SEGMENTS)
                    .map(|s| sealed(self.dir.path(), i as i32, s * 10))
                    .collect();
                tokio::spawn(async move {
                    let cancel = CancellationToken::new();
                    let mut failures = 0u32;
                    for seg in &segs {
                        loop {
                            let r = match p.load(&cancel).await {
                                Ok(_) => p.upload(seg, 1, 0, &cancel).await.map(|_| ()),
                                Err(e) => Err(e),
                            };
                            match r {
                                Ok(()) => {
                                    failures = 0;
                                    break;
                                }
                                Err(TieringError::CircuitOpen { retry_in_ms, .. }) => {
                                    tokio::time::sleep(Duration::from_millis(retry_in_ms.max(1)))
                                        .await;
                                }
                                Err(e) => {
                                    failures += 1;
                                    tracing::warn!(partition = i, error = %e, "tiering round failed");
                                    let wait = Backoff {
                                        base: Duration::from_millis(5),
                                        max: Duration::from_millis(50),
                                    }
                                    .delay(failures - 1);
                                    tokio::time::sleep(wait).await;
                                }
                            }
                        }
                    }
                })
            })
            .collect()
    }

    fn uploaded(&self, i: usize) -> usize {
        self.partitions[i]
            .manifest()
            .map(|m| m.segments.len())
            .unwrap_or(0)
    }

    async fn check_everything_uploaded(&self, tasks: Vec<tokio::task::JoinHandle<()>>) {
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("uploads finish once the store is back")
                .expect("task");
        }
        // Read back through a fresh view of each partition: every segment is named and its
        // log object holds what was written.
        for (i, p) in self.partitions.iter().enumerate() {
            let fresh =
                RemotePartition::new(p.path().clone(), self.store.clone(), RetryPolicy::default());
            let m = fresh
                .load(&CancellationToken::new())
                .await
                .expect("manifest");
            let bases: Vec<i64> = m.segments.iter().map(|s| s.base_offset).collect();
            assert_eq!(bases, vec![0, 10, 20], "partition {i}");
            for s in &m.segments {
                let key = p
                    .path()
                    .segment_key(s, strata_tiering::SegmentFileKind::Log);
                let data = self.store.get(&key).await.expect("segment object");
                assert_eq!(data.as_ref(), vec![s.base_offset as u8; 500].as_slice());
            }
        }
    }

    fn breaker_state(&self) -> BreakerState {
        self.store.breaker().expect("breaker").state()
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_dead_store_is_probed_not_hammered_and_nothing_is_lost() {
    let rig = rig();
    rig.flaky.set_fault(Fault::Down);
    let tasks = rig.start_uploads();
    let breaker = rig.store.breaker().expect("breaker");
    wait_for("the breaker opens", || {
        breaker.opened.load(Ordering::Relaxed) > 0
    })
    .await;
    let at_open = rig.flaky.calls.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = rig.flaky.calls.load(Ordering::Relaxed) - at_open;
    // Open 50, 100, 200, 400, 400 ms...: a handful of probes in 1.5 s, one call each, where six
    // partitions retrying every few milliseconds would make hundreds.
    assert!(
        during <= 10,
        "{during} calls reached a dead store while open"
    );
    assert!(breaker.rejected_calls.load(Ordering::Relaxed) > 0);
    assert!(matches!(
        rig.breaker_state(),
        BreakerState::Open { .. } | BreakerState::HalfOpen
    ));
    assert_eq!((0..6).map(|i| rig.uploaded(i)).sum::<usize>(), 0);
    let warnings = rig.lines.count("tiering round failed");
    let opened_lines = rig.lines.count("circuit breaker open");
    assert_eq!(opened_lines, 1, "one warning when it opens");
    assert!(
        warnings <= 30,
        "{warnings} failure lines for a dead store in 1.5 s"
    );

    rig.flaky.set_fault(Fault::None);
    rig.check_everything_uploaded(tasks).await;
    assert_eq!(rig.breaker_state(), BreakerState::Closed);
    assert_eq!(rig.lines.count("circuit breaker closed"), 1);
}

#[tokio::test]
async fn one_failing_partition_does_not_stop_the_others() {
    let rig = rig();
    let bad = rig.partitions[0].path().prefix();
    rig.flaky.set_fault(Fault::FailingPrefix(bad));
    let tasks = rig.start_uploads();
    wait_for("the healthy partitions upload everything", || {
        (1..6).all(|i| rig.uploaded(i) == SEGMENTS as usize)
    })
    .await;
    assert_eq!(rig.uploaded(0), 0);
    let breaker = rig.store.breaker().expect("breaker");
    assert_eq!(breaker.opened.load(Ordering::Relaxed), 0);
    assert_eq!(breaker.rejected_calls.load(Ordering::Relaxed), 0);
    assert_eq!(rig.breaker_state(), BreakerState::Closed);

    rig.flaky.set_fault(Fault::None);
    rig.check_everything_uploaded(tasks).await;
}

#[tokio::test]
async fn slow_down_and_latency_are_ridden_out() {
    let rig = rig();
    rig.flaky
        .set_fault(Fault::Latency(Duration::from_millis(20)));
    let tasks = rig.start_uploads();
    tokio::time::sleep(Duration::from_millis(100)).await;
    rig.flaky.set_fault(Fault::SlowDown);
    let breaker = rig.store.breaker().expect("breaker");
    wait_for("the breaker opens on SlowDown", || {
        breaker.opened.load(Ordering::Relaxed) > 0
    })
    .await;
    let at_open = rig.flaky.calls.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = rig.flaky.calls.load(Ordering::Relaxed) - at_open;
    assert!(
        during <= 6,
        "{during} calls while the store asked to slow down"
    );
    rig.flaky
        .set_fault(Fault::Latency(Duration::from_millis(5)));
    rig.check_everything_uploaded(tasks).await;
    assert_eq!(rig.breaker_state(), BreakerState::Closed);
}
