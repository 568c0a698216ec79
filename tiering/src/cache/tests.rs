//! Unit tests of the [`ChunkCache`](super::ChunkCache).

use super::*;
use crate::readahead::ReadAheadState;
use crate::storage::ObjectStorage;
use crate::unreliable::UnreliableStorage;

fn data(n: usize) -> Bytes {
    Bytes::from((0..n).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>())
}

#[tokio::test]
async fn reads_across_chunks_hit_after_miss_and_stay_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ObjectStorage::memory();
    let obj = data(100_000);
    store.put("a/b.log", obj.clone()).await.expect("put");
    let cache =
        ChunkCache::open(dir.path().join("c"), 3 * 8192, 8192, 0, Arc::new(store)).expect("open");
    let got = cache
        .read("a/b.log", 100_000, 5000..30_000)
        .await
        .expect("read");
    assert_eq!(got, obj.slice(5000..30_000));
    let misses = cache.stats.misses.load(Ordering::Relaxed);
    assert_eq!(misses, 4);
    let got = cache
        .read("a/b.log", 100_000, 20_000..24_000)
        .await
        .expect("read");
    assert_eq!(got, obj.slice(20_000..24_000));
    // The four chunks were fetched in parallel into room for three, so which one was
    // evicted depends on which GET finished last; a second read of the same range must hit.
    let hits = cache.stats.hits.load(Ordering::Relaxed);
    let got = cache
        .read("a/b.log", 100_000, 20_000..24_000)
        .await
        .expect("read");
    assert_eq!(got, obj.slice(20_000..24_000));
    assert!(cache.stats.hits.load(Ordering::Relaxed) > hits);
    assert!(cache.used_bytes() <= 3 * 8192, "{}", cache.used_bytes());
    let got = cache
        .read("a/b.log", 100_000, 90_000..100_000)
        .await
        .expect("read");
    assert_eq!(got, obj.slice(90_000..100_000));
    assert!(cache
        .read("a/b.log", 100_000, 90_000..100_001)
        .await
        .is_err());
    let files = std::fs::read_dir(dir.path().join("c"))
        .expect("dir")
        .count();
    assert!(files <= 3, "{files} chunk files");
}

#[tokio::test]
async fn concurrent_misses_share_one_get_and_corruption_is_refetched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ObjectStorage::memory();
    let obj = data(10_000);
    store.put("k", obj.clone()).await.expect("put");
    // Every distinct GET fails once: the cache's retry absorbs it.
    let store = UnreliableStorage::new(store, 1);
    let cache =
        ChunkCache::open(dir.path().join("c"), 1 << 20, 4096, 0, Arc::new(store)).expect("open");
    let reads = (0..8).map(|_| {
        let c = cache.clone();
        tokio::spawn(async move { c.read("k", 10_000, 0..4096).await })
    });
    for r in futures::future::join_all(reads).await {
        assert_eq!(r.expect("join").expect("read"), obj.slice(0..4096));
    }
    assert_eq!(cache.stats.misses.load(Ordering::Relaxed), 1);
    // Damage the chunk on disk: the next read notices and refetches.
    std::fs::write(cache.chunk_path("k", 0), b"garbage").expect("write");
    assert_eq!(
        cache.read("k", 10_000, 0..10).await.expect("read"),
        obj.slice(0..10)
    );
    assert_eq!(cache.stats.misses.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn the_cache_never_holds_more_bytes_than_its_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ObjectStorage::memory();
    let obj = data(200_000);
    for k in ["a", "b"] {
        store.put(k, obj.clone()).await.expect("put");
    }
    let cap = 5 * 4096 + 100;
    let config = ChunkCacheConfig {
        capacity_bytes: cap,
        chunk_bytes: 4096,
        read_ahead: ReadAheadPolicy {
            initial_chunks: 2,
            max_chunks: 8,
        },
        fetch_concurrency: 4,
        quota: Arc::new(RemoteReadQuota::unlimited()),
        memory_bytes: 0,
    };
    let cache = ChunkCache::open_with(dir.path().join("c"), config, Arc::new(store)).expect("open");
    // Two sequential readers at once, with read-ahead running beside them.
    let readers = ["a", "b"].map(|k| {
        let c = cache.clone();
        let obj = obj.clone();
        tokio::spawn(async move {
            for at in (0..200_000u64).step_by(10_000) {
                let got = c.read(k, 200_000, at..at + 10_000).await.expect("read");
                assert_eq!(got, obj.slice(at as usize..at as usize + 10_000));
                assert!(c.used_bytes() <= cap, "{} > {cap}", c.used_bytes());
            }
        })
    });
    for r in futures::future::join_all(readers).await {
        r.expect("reader");
    }
    for _ in 0..100 {
        if cache.index().prefetches == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(cache.used_bytes() <= cap);
    assert!(cache.stats.evictions.load(Ordering::Relaxed) > 0);
    // What the index counts is what is on disk.
    let on_disk: u64 = std::fs::read_dir(dir.path().join("c"))
        .expect("dir")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .sum();
    assert_eq!(on_disk, cache.used_bytes());
}

/// 4 KiB chunks in a 1 MiB cache on disk only, no quota, and the given read-ahead window
/// (initial and max chunks) and GETs in flight.
fn read_ahead_config(
    initial_chunks: u64,
    max_chunks: u64,
    fetch_concurrency: usize,
) -> ChunkCacheConfig {
    ChunkCacheConfig {
        capacity_bytes: 1 << 20,
        chunk_bytes: 4096,
        read_ahead: ReadAheadPolicy {
            initial_chunks,
            max_chunks,
        },
        fetch_concurrency,
        quota: Arc::new(RemoteReadQuota::unlimited()),
        memory_bytes: 0,
    }
}

/// The reader of `key` that read last.
fn newest_reader(cache: &ChunkCache, key: &str) -> ReadAheadState {
    cache.index().readers[key].iter().last().expect("a reader")
}

/// Waits until no read-ahead GET is in flight.
async fn settle(cache: &ChunkCache) {
    for _ in 0..200 {
        if cache.index().prefetches == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn two_readers_of_one_object_at_different_places_each_keep_their_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ObjectStorage::memory();
    let obj = data(100 * 4096);
    store.put("k", obj.clone()).await.expect("put");
    let config = read_ahead_config(1, 8, 16);
    let cache = ChunkCache::open_with(dir.path().join("c"), config, Arc::new(store)).expect("open");
    // Two consumers replaying one segment, one from its start and one from chunk 40, their
    // reads interleaved as their fetches arrive.
    for step in 0..4u64 {
        for chunk in [step, 40 + step] {
            let range = chunk * 4096..chunk * 4096 + 4096;
            let got = cache
                .read("k", 100 * 4096, range.clone())
                .await
                .expect("read");
            assert_eq!(got, obj.slice(range.start as usize..range.end as usize));
            settle(&cache).await;
        }
    }
    // Neither read is taken for the other's seek: both windows grew to 8 and each reader's
    // next 8 chunks are fetched ahead (the one starting at 40 fetched nothing ahead on its
    // first, unknown, read: windows 1, 2, 4, 8 from chunk 41 on).
    let readers: Vec<_> = cache.index().readers["k"].iter().collect();
    let mut at: Vec<_> = readers
        .iter()
        .map(|r| (r.next_chunk, r.window_chunks))
        .collect();
    at.sort_unstable();
    assert_eq!(at, vec![(4, 8), (44, 8)]);
    let mut cached: Vec<u64> = cache.index().entries.keys().map(|(_, c)| *c).collect();
    cached.sort_unstable();
    let expected: Vec<u64> = (0..12).chain(40..52).collect();
    assert_eq!(cached, expected);
    // A third and a fourth reader are tracked too; a fifth takes the least recently used
    // reader's place.
    for chunk in [70u64, 80, 90] {
        cache
            .read("k", 100 * 4096, chunk * 4096..chunk * 4096 + 10)
            .await
            .expect("read");
    }
    settle(&cache).await;
    let mut at: Vec<_> = cache.index().readers["k"]
        .iter()
        .map(|r| r.next_chunk)
        .collect();
    at.sort_unstable();
    assert_eq!(at, vec![44, 71, 81, 91]);
}

#[tokio::test]
async fn a_sequential_reader_gets_a_widening_read_ahead_and_a_seek_stops_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ObjectStorage::memory();
    store.put("k", data(400_000)).await.expect("put");
    let config = read_ahead_config(1, 8, 16);
    let cache = ChunkCache::open_with(dir.path().join("c"), config, Arc::new(store)).expect("open");
    for chunk in 0..4u64 {
        cache
            .read("k", 400_000, chunk * 4096..chunk * 4096 + 4096)
            .await
            .expect("read");
        settle(&cache).await;
    }
    // Windows 1, 2, 4, 8 after chunks 0..=3: everything up to chunk 3 + 8 is cached.
    assert_eq!(cache.index().entries.len(), 12);
    assert_eq!(newest_reader(&cache, "k").window_chunks, 8);
    // A seek far ahead: read, no read-ahead, window back to 1.
    let before = cache.index().entries.len();
    cache
        .read("k", 400_000, 80 * 4096..80 * 4096 + 10)
        .await
        .expect("read");
    settle(&cache).await;
    assert_eq!(cache.index().entries.len(), before + 1);
    assert_eq!(newest_reader(&cache, "k").window_chunks, 1);
}

#[tokio::test]
async fn reads_over_the_quota_are_delayed_not_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ObjectStorage::memory();
    let obj = data(80_000);
    store.put("k", obj.clone()).await.expect("put");
    let quota = Arc::new(RemoteReadQuota::new(40_000));
    let config = ChunkCacheConfig {
        capacity_bytes: 1 << 20,
        chunk_bytes: 4096,
        read_ahead: ReadAheadPolicy {
            initial_chunks: 0,
            max_chunks: 0,
        },
        fetch_concurrency: 4,
        quota: quota.clone(),
        memory_bytes: 0,
    };
    let cache = ChunkCache::open_with(dir.path().join("c"), config, Arc::new(store)).expect("open");
    let start = std::time::Instant::now();
    // 40,000 bytes of burst, then 40,000 more at 40,000 B/s: about a second.
    let got = cache.read("k", 80_000, 0..80_000).await.expect("read");
    assert_eq!(got, obj);
    let took = start.elapsed();
    assert!(took >= std::time::Duration::from_millis(900), "{took:?}");
    assert!(quota.throttled_ns.load(Ordering::Relaxed) > 0);
    // Cached now: no GET, no quota.
    let start = std::time::Instant::now();
    assert_eq!(cache.read("k", 80_000, 0..80_000).await.expect("read"), obj);
    assert!(start.elapsed() < std::time::Duration::from_millis(500));
}

#[tokio::test]
async fn sequential_reads_prefetch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ObjectStorage::memory();
    store.put("k", data(40_000)).await.expect("put");
    let cache =
        ChunkCache::open(dir.path().join("c"), 1 << 20, 4096, 2, Arc::new(store)).expect("open");
    cache.read("k", 40_000, 0..4096).await.expect("read");
    for _ in 0..100 {
        if cache.index().entries.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The chunk read and at least the first window (two chunks) ahead of it.
    assert!(
        cache.index().entries.len() >= 3,
        "{}",
        cache.index().entries.len()
    );
    // The next sequential read is served from what read-ahead fetched (its own read-ahead
    // may start more GETs meanwhile, so count hits, not misses).
    let before = cache.stats.hits.load(Ordering::Relaxed);
    let got = cache.read("k", 40_000, 4096..8192).await.expect("read");
    assert_eq!(got, data(40_000).slice(4096..8192));
    assert_eq!(cache.stats.hits.load(Ordering::Relaxed), before + 1);
}

#[tokio::test]
async fn reads_inside_a_chunk_come_from_memory_within_its_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ObjectStorage::memory();
    let obj = data(64 * 1024);
    store.put("k", obj.clone()).await.expect("put");
    let config = ChunkCacheConfig {
        capacity_bytes: 1 << 20,
        chunk_bytes: 16 * 1024,
        read_ahead: ReadAheadPolicy {
            initial_chunks: 0,
            max_chunks: 0,
        },
        fetch_concurrency: 4,
        quota: Arc::new(RemoteReadQuota::unlimited()),
        memory_bytes: 2 * 16 * 1024,
    };
    let cache = ChunkCache::open_with(dir.path().join("c"), config, Arc::new(store)).expect("open");
    // Four reads inside chunk 0: one GET, then three hits from memory, not from its file.
    for at in (0..16 * 1024u64).step_by(4096) {
        let got = cache
            .read("k", 64 * 1024, at..at + 4096)
            .await
            .expect("read");
        assert_eq!(got, obj.slice(at as usize..at as usize + 4096));
    }
    assert_eq!(cache.stats.misses.load(Ordering::Relaxed), 1);
    assert_eq!(cache.stats.memory_hits.load(Ordering::Relaxed), 3);
    // Damaging the file does not matter while the chunk is in memory: memory never held
    // the damaged bytes.
    std::fs::write(cache.chunk_path("k", 0), b"garbage").expect("write");
    assert_eq!(
        cache.read("k", 64 * 1024, 0..10).await.expect("read"),
        obj.slice(0..10)
    );
    // Reading the whole object keeps at most two chunks in memory.
    let got = cache
        .read("k", 64 * 1024, 0..64 * 1024)
        .await
        .expect("read");
    assert_eq!(got, obj);
    assert!(cache.index().memory_used_bytes <= 2 * 16 * 1024);
    assert_eq!(cache.index().memory.len(), 2);
    // A deleted object leaves memory too.
    cache.invalidate("k");
    assert_eq!(cache.index().memory_used_bytes, 0);
}

#[tokio::test]
async fn read_ahead_keeps_its_window_in_flight_between_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ObjectStorage::memory();
    store.put("k", data(64 * 4096)).await.expect("put");
    // One read-ahead GET at a time: only completions refilling the window can fetch more
    // than one chunk ahead of a reader that does not read again.
    let config = read_ahead_config(4, 8, 1);
    let cache = ChunkCache::open_with(dir.path().join("c"), config, Arc::new(store)).expect("open");
    cache.read("k", 64 * 4096, 0..4096).await.expect("read");
    for _ in 0..200 {
        if cache.index().entries.len() >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    // Chunk 0 and the whole first window (chunks 1..=4), and nothing past it.
    let mut cached: Vec<u64> = cache.index().entries.keys().map(|(_, c)| *c).collect();
    cached.sort_unstable();
    assert_eq!(cached, vec![0, 1, 2, 3, 4]);
    // The next chunk read moves the window on (doubled to 8): refills fetch up to chunk 10.
    cache.read("k", 64 * 4096, 4096..8192).await.expect("read");
    for _ in 0..200 {
        if cache.index().entries.len() >= 10 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mut cached: Vec<u64> = cache.index().entries.keys().map(|(_, c)| *c).collect();
    cached.sort_unstable();
    assert_eq!(cached, (0..=9).collect::<Vec<u64>>());
}
