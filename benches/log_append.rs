//! Append throughput of the partition log: 1 KB and 16 KB batches without fsync, and with
//! group commit (fdatasync) under 4 concurrent writers. Each sample writes into a fresh log so
//! disk use stays bounded. Run: `cargo bench --bench log_append -- --quick`.
//! `BENCH_PREALLOCATE_BYTES` overrides `log.preallocate.bytes` (0 turns reservations off).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata::clock::SharedClock;
use strata::log::{FlushPolicy, LogConfig, UnifiedLog};
use strata::model::{LeaderEpoch, Offset};
use strata::protocol::record_batch::build_batch;

fn batch(bytes: usize) -> Bytes {
    // One batch of 1 KB records adding up to `bytes`.
    let value = vec![b'x'; 1000];
    let n = (bytes / 1024).max(1);
    Bytes::from(build_batch(0, 1, None, &vec![(None, Some(&value[..])); n]))
}

fn open(policy: FlushPolicy) -> (tempfile::TempDir, Arc<UnifiedLog>) {
    let dir = tempfile::tempdir_in(
        std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, Into::into),
    )
    .expect("tempdir");
    let clock: SharedClock = strata::clock::system();
    let mut cfg = LogConfig {
        flush_policy: policy,
        ..LogConfig::default()
    };
    if let Ok(v) = std::env::var("BENCH_PREALLOCATE_BYTES") {
        cfg.preallocate_bytes = v.parse().expect("BENCH_PREALLOCATE_BYTES: a byte count");
    }
    let log = UnifiedLog::open(dir.path().join("bench-0"), cfg, clock).expect("open");
    (dir, log)
}

fn no_fsync(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_no_fsync");
    for size in [1024usize, 16 * 1024] {
        let b = batch(size);
        g.throughput(Throughput::Bytes(b.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &b, |bench, b| {
            bench.iter_custom(|iters| {
                let (_dir, log) = open(FlushPolicy::Interval {
                    messages: u64::MAX,
                    ms: u64::MAX / 2,
                });
                let start = Instant::now();
                for _ in 0..iters {
                    log.append_as_leader(b.clone(), LeaderEpoch(0))
                        .expect("append");
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

fn group_commit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("append_group_commit_4_writers");
    g.measurement_time(Duration::from_secs(5));
    for size in [1024usize, 16 * 1024] {
        let b = batch(size);
        g.throughput(Throughput::Bytes(b.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &b, |bench, b| {
            bench.iter_custom(|iters| {
                let (_dir, log) = open(FlushPolicy::GroupCommit);
                let per_writer = iters.div_ceil(4);
                let start = Instant::now();
                rt.block_on(async {
                    let mut tasks = Vec::new();
                    for _ in 0..4 {
                        let log = log.clone();
                        let b = b.clone();
                        tasks.push(tokio::spawn(async move {
                            for _ in 0..per_writer {
                                let info = log
                                    .append_as_leader(b.clone(), LeaderEpoch(0))
                                    .expect("append");
                                log.wait_durable(Offset(info.last_offset.0 + 1))
                                    .await
                                    .expect("durable");
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.expect("join");
                    }
                });
                start.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, no_fsync, group_commit);
criterion_main!(benches);
