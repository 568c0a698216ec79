//! Throughput of the tiering layer, for `docs/BENCHMARKS.md` (ignored by default):
//!
//! ```text
//! cargo test -p strata-tiering --test bench -- --ignored --nocapture
//! ```
//!
//! Uploads `SEGMENTS` segments of `SEGMENT_BYTES` through [`RemotePartition::upload`] (log,
//! indexes, snapshot, epochs, then the manifest), then reads every segment back sequentially in
//! 1 MiB reads through a [`ChunkCache`] twice: cold (empty cache, every chunk a ranged GET) and
//! warm (every chunk from the cache's disk files). Against the local-directory store and S3 through
//! `moto_server`.

mod common;

use std::sync::Arc;

use futures::StreamExt;
use std::time::Instant;

use strata_tiering::{
    ChunkCache, PartitionPath, RemotePartition, RemoteStorage, RetryPolicy, SealedSegment,
    SegmentFileKind,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SEGMENTS: usize = 4;
const SEGMENT_BYTES: usize = 16 * 1024 * 1024;
const READ_BYTES: u64 = 1024 * 1024;

async fn run(name: &str, storage: Arc<dyn RemoteStorage>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data: Vec<u8> = (0..SEGMENT_BYTES).map(|i| (i * 131 % 251) as u8).collect();
    let segs: Vec<SealedSegment> = (0..SEGMENTS)
        .map(|n| {
            let base = (n * 1000) as i64;
            let f = |ext: &str, bytes: &[u8]| {
                let p = dir.path().join(format!("{base:020}.{ext}"));
                std::fs::write(&p, bytes).expect("write");
                p
            };
            SealedSegment {
                base_offset: base,
                end_offset: base + 999,
                max_timestamp_ms: 0,
                size_bytes: SEGMENT_BYTES as u64,
                log_path: f("log", &data),
                index_path: f("index", &[0u8; 4096]),
                time_index_path: f("timeindex", &[0u8; 6144]),
                snapshot_path: None,
                txn_index_path: None,
                leader_epochs: vec![(0, base)],
            }
        })
        .collect();
    let cancel = CancellationToken::new();
    let path = PartitionPath::new("bench", Uuid::new_v4(), 0);
    let p = RemotePartition::new(path.clone(), storage.clone(), RetryPolicy::default());
    p.load(&cancel).await.expect("load");
    let t = Instant::now();
    let mut bytes = 0;
    for s in &segs {
        bytes += p.upload(s, 0, 0, &cancel).await.expect("upload").bytes;
    }
    let up = t.elapsed().as_secs_f64();
    let m = p.manifest().expect("manifest");
    let cache = ChunkCache::open(
        dir.path().join("cache"),
        1 << 30,
        1 << 20,
        2,
        storage.clone(),
    )
    .expect("cache");
    let pass = |label: &'static str| {
        let cache = cache.clone();
        let m = m.clone();
        let path = path.clone();
        async move {
            let t = Instant::now();
            let mut read = 0u64;
            for s in &m.segments {
                let key = path.segment_key(s, SegmentFileKind::Log);
                let mut pos = 0;
                while pos < s.segment_bytes {
                    let end = (pos + READ_BYTES).min(s.segment_bytes);
                    read += cache
                        .read(&key, s.segment_bytes, pos..end)
                        .await
                        .expect("read")
                        .len() as u64;
                    pos = end;
                }
            }
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{name}: remote read, {label} cache: {:.1} MB/s ({read} bytes in {secs:.2} s)",
                read as f64 / secs / 1e6
            );
        }
    };
    pass("cold").await;
    pass("warm").await;
    println!(
        "{name}: upload: {:.1} MB/s ({bytes} bytes in {up:.2} s)",
        bytes as f64 / up / 1e6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with --ignored --nocapture"]
async fn tiering_throughput() {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = strata_tiering::ObjectStorage::local(&dir.path().join("store")).expect("local");
    run("local directory store", Arc::new(local)).await;
    let moto = common::MotoServer::start();
    run("S3 (moto_server)", Arc::new(moto.storage("bench", "b"))).await;
}

/// One sequential reader through a [`ChunkCache`] against the ranged-GET rate of the same S3
/// server, alternating: A (8 concurrent 8 MiB ranged GETs), then B (one reader, 1 MiB reads
/// with a 1 ms pause between them for a consumer's round trip) for each cache setting in
/// `REPLAY_CONFIGS` (`chunk_bytes:fetch_concurrency:max_window_chunks`, comma separated).
/// With `READERS=N`, B is N readers at once of the same objects, each starting a further
/// 1/N of an object in (B is then their total rate).
/// Needs an S3 server with a bucket `bench` at `STRATA_BENCH_S3` (and AWS credentials in the
/// environment):
///
/// ```text
/// STRATA_BENCH_S3=http://127.0.0.1:19900 REPLAY_CONFIGS=1048576:8:16,4194304:16:16 \
///   cargo test -p strata-tiering --test bench replay_against_s3 -- --ignored --nocapture
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with --ignored --nocapture"]
async fn replay_against_s3() {
    let Ok(endpoint) = std::env::var("STRATA_BENCH_S3") else {
        return;
    };
    let config = strata_tiering::StorageConfig::parse(
        "s3://bench/replay",
        std::path::Path::new("/unused"),
        &endpoint,
        "us-east-1",
        None,
    )
    .expect("config");
    let storage: Arc<dyn RemoteStorage> = Arc::new(config.build().expect("store"));
    const SIZE: u64 = 64 << 20;
    const OBJECTS: u64 = 4;
    let data = bytes::Bytes::from(
        (0..SIZE as usize)
            .map(|i| (i * 131 % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    for o in 0..OBJECTS {
        storage
            .put(&format!("o{o}"), data.clone())
            .await
            .expect("put");
    }
    let configs = std::env::var("REPLAY_CONFIGS").unwrap_or_else(|_| "1048576:8:16".into());
    let readers: u64 = std::env::var("READERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for round in 0..2 {
        for c in configs.split(',') {
            let v: Vec<u64> = c.split(':').map(|x| x.parse().expect("number")).collect();
            let (chunk, conc, window) = (v[0], v[1] as usize, v[2]);
            let t = Instant::now();
            let jobs: Vec<(String, u64)> = (0..OBJECTS)
                .flat_map(|o| {
                    (0..SIZE)
                        .step_by(8 << 20)
                        .map(move |a| (format!("o{o}"), a))
                })
                .collect();
            let s = storage.clone();
            let got: u64 = futures::stream::iter(jobs)
                .map(|(k, a)| {
                    let s = s.clone();
                    async move { s.get_range(&k, a..a + (8 << 20)).await.expect("get").len() as u64 }
                })
                .buffer_unordered(8)
                .fold(0, |a, b| async move { a + b })
                .await;
            let a_rate = got as f64 / t.elapsed().as_secs_f64() / 1e6;
            let dir = tempfile::tempdir().expect("tempdir");
            let cache = ChunkCache::open_with(
                dir.path().join("cache"),
                strata_tiering::ChunkCacheConfig {
                    capacity_bytes: 128 << 20,
                    chunk_bytes: chunk,
                    read_ahead: strata_tiering::ReadAheadPolicy {
                        initial_chunks: 2,
                        max_chunks: window,
                    },
                    fetch_concurrency: conc,
                    quota: Arc::new(strata_tiering::RemoteReadQuota::unlimited()),
                    memory_bytes: std::env::var("MEMORY")
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(64 << 20),
                },
                storage.clone(),
            )
            .expect("cache");
            let t = Instant::now();
            // Reader r starts r / READERS of an object in, as consumers of one partition
            // that replay it from different offsets.
            let replays = (0..readers).map(|r| replay(&cache, OBJECTS, SIZE, r * SIZE / readers));
            let (read, waited) = futures::future::join_all(replays)
                .await
                .into_iter()
                .fold((0, std::time::Duration::ZERO), |(a, w), (b, v)| {
                    (a + b, w + v)
                });
            let secs = t.elapsed().as_secs_f64();
            let b_rate = read as f64 / secs / 1e6;
            println!(
                "round {round} chunk {chunk} GETs {conc} window {window} readers {readers}: A {a_rate:.1} MB/s, B {b_rate:.1} MB/s ({:.0} %), reads waited {:.2} of {secs:.2} s",
                b_rate / a_rate * 100.0,
                waited.as_secs_f64()
            );
        }
    }
}

/// A consumer replaying `objects` objects of `size` bytes through `cache`, from `from` bytes
/// into the first one: 1 MiB reads with a 1 ms pause between them for a consumer's round trip.
/// The bytes read and the time spent waiting on reads.
async fn replay(
    cache: &Arc<ChunkCache>,
    objects: u64,
    size: u64,
    from: u64,
) -> (u64, std::time::Duration) {
    let mut read = 0u64;
    let mut waited = std::time::Duration::ZERO;
    for o in 0..objects {
        let key = format!("o{o}");
        let start = if o == 0 { from } else { 0 };
        for pos in (start..size).step_by(READ_BYTES as usize) {
            let w = Instant::now();
            let end = (pos + READ_BYTES).min(size);
            read += cache.read(&key, size, pos..end).await.expect("read").len() as u64;
            waited += w.elapsed();
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        if o + 1 < objects {
            cache.prefetch_next_object(&format!("o{}", o + 1), size, &key);
        }
    }
    (read, waited)
}
