//! Read throughput of the partition log from the page cache (sequential, 1 MB fetches, CRC
//! verified), and offset-index lookups. Run: `cargo bench --bench log_read -- --quick`.

use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata::clock::SharedClock;
use strata::log::index::OffsetIndex;
use strata::log::{FlushPolicy, LogConfig, UnifiedLog};
use strata::model::{LeaderEpoch, Offset};
use strata::protocol::record_batch::build_batch;

const LOG_BYTES: usize = 256 << 20;

fn sequential_read(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(
        std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, Into::into),
    )
    .expect("tempdir");
    let clock: SharedClock = strata::clock::system();
    let cfg = LogConfig {
        segment_bytes: 64 << 20,
        flush_policy: FlushPolicy::Interval {
            messages: u64::MAX,
            ms: u64::MAX / 2,
        },
        ..LogConfig::default()
    };
    let log = UnifiedLog::open(dir.path().join("read-0"), cfg, clock).expect("open");
    let value = vec![b'r'; 1000];
    let b = Bytes::from(build_batch(0, 1, None, &vec![(None, Some(&value[..])); 16]));
    for _ in 0..LOG_BYTES / b.len() {
        log.append_as_leader(b.clone(), LeaderEpoch(0))
            .expect("append");
    }
    let leo = log.log_end_offset();
    let total = log.size_bytes();
    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Bytes(total));
    g.sample_size(10);
    g.bench_function("sequential_1MB_fetches_256MB_log", |bench| {
        bench.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let mut next = Offset(0);
                while next < leo {
                    let r = log.read(next, 1 << 20, leo, true).expect("read");
                    let last = strata::protocol::record_batch::BatchIter::new(&r.records)
                        .last()
                        .expect("batch")
                        .expect("valid")
                        .1;
                    next = Offset(last.next_offset());
                }
            }
            start.elapsed()
        })
    });
    // Baselines for the same bytes: the raw page-cache copy (pread of 1 MB chunks, no parsing
    // or CRC) and CRC-32C alone, to show what verification on read costs.
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path().join("read-0"))
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    g.bench_function("baseline_pread_1MB_chunks_256MB", |bench| {
        use std::os::unix::fs::FileExt;
        bench.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for p in &files {
                    let f = std::fs::File::open(p).expect("open");
                    let len = f.metadata().expect("meta").len();
                    let mut pos = 0;
                    while pos < len {
                        let n = (1u64 << 20).min(len - pos) as usize;
                        let mut buf = vec![0u8; n];
                        f.read_exact_at(&mut buf, pos).expect("read");
                        std::hint::black_box(&buf);
                        pos += n as u64;
                    }
                }
            }
            start.elapsed()
        })
    });
    g.finish();
    let mb = vec![0x5au8; 1 << 20];
    let mut g = c.benchmark_group("crc32c");
    g.throughput(Throughput::Bytes(mb.len() as u64));
    g.bench_function("crc32c_1MB", |b| {
        b.iter(|| crc32c::crc32c(std::hint::black_box(&mb)))
    });
    g.finish();
}

fn index_lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut idx = OffsetIndex::open(dir.path().join("0.index"), 0).expect("index");
    idx.extend(10 << 20).expect("extend");
    for i in 1..=1_000_000i64 {
        idx.append(i * 7, i as u64 * 4096);
    }
    let mut x = 12345u64;
    c.bench_function("offset_index_lookup_1M_entries", |b| {
        b.iter(|| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            idx.lookup((x % 7_000_000) as i64)
        })
    });
}

criterion_group!(benches, sequential_read, index_lookup);
criterion_main!(benches);
