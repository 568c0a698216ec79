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
/// server, with every GET's issue and completion time. Needs a server with a bucket `bench`:
/// `STRATA_BENCH_S3=http://127.0.0.1:19900` (and AWS credentials in the environment).
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
    let size: u64 = 64 << 20;
    let objects = 4;
    let data = bytes::Bytes::from(
        (0..size as usize)
            .map(|i| (i * 131 % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    for o in 0..objects {
        storage
            .put(&format!("o{o}"), data.clone())
            .await
            .expect("put");
    }
    let t = Instant::now();
    let jobs: Vec<(String, u64)> = (0..objects)
        .flat_map(|o| {
            (0..size)
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
    println!(
        "A 8 x 8 MiB ranged GETs: {:.1} MB/s",
        got as f64 / t.elapsed().as_secs_f64() / 1e6
    );
    let chunk: u64 = std::env::var("CHUNK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 20);
    let conc: usize = std::env::var("CONC")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let window: u64 = std::env::var("WINDOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
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
        },
        storage.clone(),
    )
    .expect("cache");
    let t = Instant::now();
    let mut read = 0u64;
    let mut waited = std::time::Duration::ZERO;
    for o in 0..objects {
        let key = format!("o{o}");
        let mut pos = 0;
        while pos < size {
            let end = (pos + READ_BYTES).min(size);
            let w = Instant::now();
            read += cache.read(&key, size, pos..end).await.expect("read").len() as u64;
            waited += w.elapsed();
            pos = end;
            // A consumer's round trip between fetches.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        if o + 1 < objects {
            cache.prefetch_next_object(&format!("o{}", o + 1), size, &key);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    // The last object again, now cached: the cost of a read that waits on no GET.
    let key = format!("o{}", objects - 1);
    let w = Instant::now();
    for pos in (size / 2..size).step_by(READ_BYTES as usize) {
        cache.read(&key, size, pos..pos + READ_BYTES).await.expect("read");
    }
    println!("warm: {:.2} ms per 1 MiB read", w.elapsed().as_secs_f64() * 1e3 / (size / 2 / READ_BYTES) as f64);
    println!(
        "B one reader, {chunk} B chunks, {conc} GETs, window {window}: {:.1} MB/s, in reads {:.2} s of {secs:.2} s",
        read as f64 / secs / 1e6,
        waited.as_secs_f64()
    );
}
