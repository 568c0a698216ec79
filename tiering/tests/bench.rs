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
