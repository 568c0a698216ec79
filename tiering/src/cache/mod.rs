//! [`ChunkCache`]: remote objects read in fixed-size chunks through ranged GETs, kept in files on
//! local disk, bounded by `remote.cache.bytes`.
//!
//! - Chunk `i` of an object covers bytes `[i * chunk_bytes, (i + 1) * chunk_bytes)`; the last
//!   one may be short. A chunk file is `{dir}/{key with '/' as '%'}.{i}`, written to a temp file
//!   and renamed, with its CRC-32C kept in memory and checked on every read: a chunk that
//!   changed on disk is dropped and fetched again, never served.
//! - The chunks fetched or read last are also kept in memory, least-recently-used, bounded by
//!   `memory_bytes`: a sequential reader takes the chunks read-ahead fetched for it, and its
//!   several reads inside one chunk, from there, without reading the chunk's file back and
//!   checking its CRC once per read (with chunks larger than a consumer's fetch that was
//!   several times the bytes served). Memory copies never touched the disk, so they need no
//!   check.
//! - Concurrent reads of one missing chunk share one GET (the in-flight map holds a shared
//!   future; its last step removes it).
//! - Eviction is least-recently-used, by bytes, after each insert. The directory is emptied
//!   when the cache opens: the in-memory index is the only record of what is valid.
//! - The chunks one read needs are fetched concurrently (ranged GETs in parallel), at most
//!   `fetch_concurrency` GETs at once for reads that someone waits on.
//! - Read-ahead: [`decide_read_ahead`] (pure) tracks each reader of an object (a few per
//!   object, [`ObjectReaders`], told apart by where they read); while one moves
//!   sequentially the window of chunks fetched ahead in the background doubles up to its max,
//!   and a seek resets it. Each read-ahead GET that completes tops the reader's window up
//!   again ([`refill_range`]), so a sequential reader keeps its window of GETs in flight while
//!   the consumer is between fetches instead of refilling it only when the next fetch arrives;
//!   a reader that moves into the next object keeps its window. At most `fetch_concurrency`
//!   read-ahead GETs are in flight across all objects; a chunk that would pass that is left
//!   for a later completion or read to ask again. The window never covers more than half the
//!   cache, so chunks fetched ahead are not evicted before they are read.
//! - Every GET takes its bytes from the broker's [`RemoteReadQuota`] first and waits when it
//!   is spent: reads slow down to the quota, they do not fail.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt, Shared};

use crate::error::{Result, TieringError};
use crate::quota::RemoteReadQuota;
use crate::readahead::{
    continue_into_next_object, decide_read_ahead, refill_range, ObjectReaders, ReadAheadPolicy,
};
use crate::retry::Backoff;
use crate::storage::RemoteStorage;

/// Objects whose last read position is remembered for read-ahead detection.
const MAX_TRACKED_READERS: usize = 4096;

type ChunkKey = (String, u64);
type SharedFetch = Shared<BoxFuture<'static, Result<Bytes, Arc<TieringError>>>>;

#[derive(Debug)]
struct Entry {
    size: u64,
    crc32c: u32,
    last_used: u64,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<ChunkKey, Entry>,
    used_bytes: u64,
    tick: u64,
    /// Object key → its readers' positions and read-ahead windows.
    readers: HashMap<String, ObjectReaders>,
    inflight: HashMap<ChunkKey, SharedFetch>,
    prefetches: usize,
    /// Chunks held in memory, with their last use, within `memory_bytes`.
    memory: HashMap<ChunkKey, (Bytes, u64)>,
    memory_used_bytes: u64,
}

/// Counters of the cache, read by the broker's metrics.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub fetched_bytes: AtomicU64,
    pub evictions: AtomicU64,
    /// Chunks fetched by read-ahead (each also counts as a miss).
    pub prefetched: AtomicU64,
    /// Hits served from memory (each also counts as a hit).
    pub memory_hits: AtomicU64,
}

/// How a [`ChunkCache`] reads: see the module documentation.
#[derive(Debug, Clone)]
pub struct ChunkCacheConfig {
    /// `remote.cache.bytes`.
    pub capacity_bytes: u64,
    /// `remote.cache.chunk.bytes`; at least 4 KiB.
    pub chunk_bytes: u64,
    pub read_ahead: ReadAheadPolicy,
    /// `remote.fetch.concurrency`: ranged GETs in flight for waiting reads, and as many for
    /// read-ahead.
    pub fetch_concurrency: usize,
    pub quota: Arc<RemoteReadQuota>,
    /// `remote.cache.memory.bytes`: chunks also kept in memory; 0 serves every hit from disk.
    pub memory_bytes: u64,
}

/// See the module documentation.
pub struct ChunkCache {
    dir: PathBuf,
    capacity_bytes: u64,
    chunk_bytes: u64,
    memory_bytes: u64,
    read_ahead: ReadAheadPolicy,
    max_prefetches: usize,
    /// Bounds the GETs that reads wait on.
    gets: tokio::sync::Semaphore,
    quota: Arc<RemoteReadQuota>,
    storage: Arc<dyn RemoteStorage>,
    // Short sections only (lookups, inserts, eviction bookkeeping); file I/O and GETs happen
    // outside it.
    index: Mutex<Index>,
    pub stats: CacheStats,
}

impl std::fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCache")
            .field("dir", &self.dir)
            .field("capacity_bytes", &self.capacity_bytes)
            .field("chunk_bytes", &self.chunk_bytes)
            .finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TieringError + '_ {
    move |source| TieringError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ChunkCache {
    /// Opens (and empties) the cache directory, with a fixed read-ahead of `readahead_chunks`,
    /// 8 GETs at once and no quota.
    pub fn open(
        dir: PathBuf,
        capacity_bytes: u64,
        chunk_bytes: u64,
        readahead_chunks: u64,
        storage: Arc<dyn RemoteStorage>,
    ) -> Result<Arc<ChunkCache>> {
        let config = ChunkCacheConfig {
            capacity_bytes,
            chunk_bytes,
            read_ahead: ReadAheadPolicy {
                initial_chunks: readahead_chunks,
                max_chunks: readahead_chunks,
            },
            fetch_concurrency: 8,
            quota: Arc::new(RemoteReadQuota::unlimited()),
            memory_bytes: 0,
        };
        ChunkCache::open_with(dir, config, storage)
    }

    /// Opens (and empties) the cache directory.
    pub fn open_with(
        dir: PathBuf,
        config: ChunkCacheConfig,
        storage: Arc<dyn RemoteStorage>,
    ) -> Result<Arc<ChunkCache>> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let concurrency = config.fetch_concurrency.max(1);
        let chunk_bytes = config.chunk_bytes.max(4096);
        // Chunks fetched ahead must still be cached when their reader gets there.
        let fits = (config.capacity_bytes / 2 / chunk_bytes).max(1);
        let read_ahead = ReadAheadPolicy {
            initial_chunks: config.read_ahead.initial_chunks.min(fits),
            max_chunks: config.read_ahead.max_chunks.min(fits),
        };
        Ok(Arc::new(ChunkCache {
            dir,
            capacity_bytes: config.capacity_bytes,
            chunk_bytes,
            memory_bytes: config.memory_bytes,
            read_ahead,
            max_prefetches: concurrency,
            gets: tokio::sync::Semaphore::new(concurrency),
            quota: config.quota,
            storage,
            index: Mutex::new(Index::default()),
            stats: CacheStats::default(),
        }))
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn used_bytes(&self) -> u64 {
        self.index().used_bytes
    }

    /// The remote-read quota every GET of this cache takes its bytes from.
    pub fn quota(&self) -> &RemoteReadQuota {
        &self.quota
    }

    pub fn chunk_bytes(&self) -> u64 {
        self.chunk_bytes
    }

    fn chunk_path(&self, key: &str, chunk: u64) -> PathBuf {
        self.dir.join(format!("{}.{chunk}", key.replace('/', "%")))
    }

    /// Reads `range` of the object `key` (of `object_size` bytes) through the cache.
    pub async fn read(
        self: &Arc<Self>,
        key: &str,
        object_size: u64,
        range: Range<u64>,
    ) -> Result<Bytes> {
        if range.end > object_size || range.start > range.end {
            return Err(TieringError::Corrupt {
                key: key.to_string(),
                reason: format!("range {range:?} outside an object of {object_size} bytes"),
            });
        }
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let first = range.start / self.chunk_bytes;
        let last = (range.end - 1) / self.chunk_bytes;
        let total_chunks = object_size.div_ceil(self.chunk_bytes);
        let ahead = {
            let mut ix = self.index();
            if !ix.readers.contains_key(key) && ix.readers.len() >= MAX_TRACKED_READERS {
                ix.readers.clear();
            }
            let readers = ix.readers.entry(key.to_string()).or_default();
            let reader = readers.continued_by(first);
            let state = reader.and_then(|r| readers.get(r));
            let (state, ahead) =
                decide_read_ahead(self.read_ahead, state, first, last, total_chunks);
            readers.put(reader, state);
            ahead
        };
        // Ahead first: those GETs run while this read's own are under way.
        let asked_to = self.prefetch_chunks(key, object_size, ahead);
        self.note_requested(key, last + 1, asked_to);
        let chunks =
            futures::future::try_join_all((first..=last).map(|c| self.chunk(key, object_size, c)))
                .await?;
        let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
        for (chunk, data) in (first..).zip(chunks) {
            let chunk_start = chunk * self.chunk_bytes;
            let from = range.start.max(chunk_start) - chunk_start;
            let to = range.end.min(chunk_start + data.len() as u64) - chunk_start;
            if to > data.len() as u64 || from > to {
                return Err(TieringError::Corrupt {
                    key: key.to_string(),
                    reason: format!("chunk {chunk} holds {} bytes", data.len()),
                });
            }
            out.extend_from_slice(&data[from as usize..to as usize]);
        }
        Ok(out.freeze())
    }

    /// Fetches the chunks under `range` of `key` into the cache (concurrently), without
    /// reading them out or moving the object's reader: a later [`read`](Self::read) of the
    /// range finds them and counts as the reader's own step.
    pub async fn warm(
        self: &Arc<Self>,
        key: &str,
        object_size: u64,
        range: Range<u64>,
    ) -> Result<()> {
        let range = range.start.min(object_size)..range.end.min(object_size);
        if range.is_empty() {
            return Ok(());
        }
        let first = range.start / self.chunk_bytes;
        let last = (range.end - 1) / self.chunk_bytes;
        futures::future::try_join_all((first..=last).map(|c| self.chunk(key, object_size, c)))
            .await?;
        Ok(())
    }

    /// A reader of `previous` (the one furthest into it) is about to move on into `key`:
    /// starts fetching the first chunks of `key` in the background, as far as the reader's
    /// window went in `previous` (the initial window for a reader not reading ahead). A reader
    /// already at the start of `key` keeps its own state.
    pub fn prefetch_next_object(self: &Arc<Self>, key: &str, object_size: u64, previous: &str) {
        let state = {
            let mut ix = self.index();
            let furthest = ix.readers.get(previous).and_then(ObjectReaders::furthest);
            let carried = continue_into_next_object(self.read_ahead, furthest);
            if !ix.readers.contains_key(key) && ix.readers.len() >= MAX_TRACKED_READERS {
                ix.readers.clear();
            }
            let readers = ix.readers.entry(key.to_string()).or_default();
            match readers.continued_by(0).and_then(|r| readers.get(r)) {
                Some(at_start) => at_start,
                None => {
                    readers.put(None, carried);
                    carried
                }
            }
        };
        let chunks = object_size.div_ceil(self.chunk_bytes);
        let asked_to = self.prefetch_chunks(key, object_size, refill_range(state, chunks));
        self.note_requested(key, state.next_chunk, asked_to);
    }

    /// Tops the windows of `key`'s readers up after one of its read-ahead GETs completed
    /// (chunks already cached, in flight or asked for are skipped).
    fn refill(self: &Arc<Self>, key: &str, object_size: u64) {
        let readers: Vec<_> = match self.index().readers.get(key) {
            Some(readers) => readers.iter().collect(),
            None => return,
        };
        let chunks = object_size.div_ceil(self.chunk_bytes);
        for state in readers {
            let asked_to = self.prefetch_chunks(key, object_size, refill_range(state, chunks));
            self.note_requested(key, state.next_chunk, asked_to);
        }
    }

    /// Records that the reader of `key` now at `next_chunk` asked for the chunks before
    /// `requested_to`.
    fn note_requested(&self, key: &str, next_chunk: u64, requested_to: u64) {
        if let Some(readers) = self.index().readers.get_mut(key) {
            readers.note_requested(next_chunk, requested_to);
        }
    }

    /// Starts fetching `chunks` of `key` in the background, skipping those cached or in flight
    /// and any past the read-ahead bound. Returns the end of the chunks it handled.
    fn prefetch_chunks(self: &Arc<Self>, key: &str, object_size: u64, chunks: Range<u64>) -> u64 {
        let end = chunks.end;
        for chunk in chunks {
            {
                let mut ix = self.index();
                let k = (key.to_string(), chunk);
                if ix.prefetches >= self.max_prefetches {
                    return chunk;
                }
                if ix.entries.contains_key(&k) || ix.inflight.contains_key(&k) {
                    continue;
                }
                ix.prefetches += 1;
            }
            let this = Arc::clone(self);
            let key = key.to_string();
            tokio::spawn(async move {
                let ok = match this.fetch_shared(&key, object_size, chunk, true).await {
                    Ok(_) => {
                        this.stats.prefetched.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                    Err(e) => {
                        tracing::debug!(key = %key, chunk, error = %e, "read-ahead failed");
                        false
                    }
                };
                this.index().prefetches -= 1;
                // A failed GET is not repeated here: the next read asks again (and the
                // breaker sees it), rather than read-ahead retrying a failing store.
                if ok {
                    this.refill(&key, object_size);
                }
            });
        }
        end
    }

    /// Keeps `data` in memory as chunk `k`, evicting the least recently used chunks over
    /// `memory_bytes`.
    fn remember(&self, k: &ChunkKey, data: &Bytes) {
        if data.len() as u64 > self.memory_bytes {
            return;
        }
        let mut ix = self.index();
        ix.tick += 1;
        let tick = ix.tick;
        if let Some((old, _)) = ix.memory.insert(k.clone(), (data.clone(), tick)) {
            ix.memory_used_bytes -= old.len() as u64;
        }
        ix.memory_used_bytes += data.len() as u64;
        while ix.memory_used_bytes > self.memory_bytes {
            let Some(victim) = ix
                .memory
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some((d, _)) = ix.memory.remove(&victim) {
                ix.memory_used_bytes -= d.len() as u64;
            }
        }
    }

    /// One chunk: from memory, else from disk if cached and intact, else fetched (once, however
    /// many ask).
    async fn chunk(self: &Arc<Self>, key: &str, object_size: u64, chunk: u64) -> Result<Bytes> {
        let k: ChunkKey = (key.to_string(), chunk);
        let (in_memory, cached) = {
            let mut ix = self.index();
            ix.tick += 1;
            let tick = ix.tick;
            let in_memory = ix.memory.get_mut(&k).map(|(data, used)| {
                *used = tick;
                data.clone()
            });
            let cached = ix.entries.get_mut(&k).map(|e| {
                e.last_used = tick;
                (e.size, e.crc32c)
            });
            (in_memory, cached)
        };
        if let Some(data) = in_memory {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(data);
        }
        if let Some((size, crc)) = cached {
            let path = self.chunk_path(key, chunk);
            match tokio::fs::read(&path).await {
                Ok(data) if data.len() as u64 == size && crc32c::crc32c(&data) == crc => {
                    self.stats.hits.fetch_add(1, Ordering::Relaxed);
                    let data = Bytes::from(data);
                    self.remember(&k, &data);
                    return Ok(data);
                }
                Ok(_) => {
                    tracing::warn!(path = %path.display(), "cached chunk changed on disk; fetching it again")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cached chunk unreadable; fetching it again")
                }
            }
            self.forget(&k);
        }
        self.fetch_shared(key, object_size, chunk, false).await
    }

    /// The chunk fetched from the store, sharing a GET already in flight for it. Read-ahead
    /// GETs (`ahead`) are bounded by the caller, those a read waits on by `gets`.
    async fn fetch_shared(
        self: &Arc<Self>,
        key: &str,
        object_size: u64,
        chunk: u64,
        ahead: bool,
    ) -> Result<Bytes> {
        let k: ChunkKey = (key.to_string(), chunk);
        let fetch = {
            let mut ix = self.index();
            if let Some(f) = ix.inflight.get(&k) {
                f.clone()
            } else {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                let this = Arc::clone(self);
                let k2 = k.clone();
                let f = async move {
                    let r = this
                        .fetch_and_store(&k2, object_size, ahead)
                        .await
                        .map_err(Arc::new);
                    this.index().inflight.remove(&k2);
                    r
                }
                .boxed()
                .shared();
                ix.inflight.insert(k.clone(), f.clone());
                f
            }
        };
        fetch.await.map_err(|e| match Arc::try_unwrap(e) {
            Ok(e) => e,
            Err(shared) => TieringError::Store {
                op: "get_range",
                key: key.to_string(),
                retriable: shared.is_retriable(),
                source: shared.to_string().into(),
            },
        })
    }

    async fn fetch_and_store(&self, k: &ChunkKey, object_size: u64, ahead: bool) -> Result<Bytes> {
        let (key, chunk) = (&k.0, k.1);
        let start = chunk * self.chunk_bytes;
        let end = (start + self.chunk_bytes).min(object_size);
        // The quota before the slot, so a throttled read does not hold a GET slot idle.
        self.quota.acquire(end.saturating_sub(start)).await;
        let _slot = if ahead {
            None
        } else {
            Some(
                self.gets
                    .acquire()
                    .await
                    .map_err(|_| TieringError::ShuttingDown)?,
            )
        };
        let cancel = tokio_util::sync::CancellationToken::new();
        let backoff = Backoff {
            base: std::time::Duration::from_millis(50),
            max: std::time::Duration::from_millis(500),
        };
        let data = crate::retry::retry(backoff, 3, &cancel, || {
            self.storage.get_range(key, start..end)
        })
        .await?;
        self.stats
            .fetched_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        // In memory first: a reader waiting for this chunk finds it there from now on.
        self.remember(k, &data);
        let crc = crc32c::crc32c(&data);
        let path = self.chunk_path(key, chunk);
        let tmp = path.with_extension(format!("{chunk}.tmp"));
        let write = async {
            tokio::fs::write(&tmp, &data).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        if let Err(e) = write.await {
            // A full or failing cache disk does not stop reads: serve the bytes uncached.
            tracing::warn!(path = %path.display(), error = %e, "cannot cache a remote chunk");
            let _ = tokio::fs::remove_file(&tmp).await;
            return Ok(data);
        }
        let evicted = {
            let mut ix = self.index();
            ix.tick += 1;
            let tick = ix.tick;
            if let Some(old) = ix.entries.insert(
                k.clone(),
                Entry {
                    size: data.len() as u64,
                    crc32c: crc,
                    last_used: tick,
                },
            ) {
                ix.used_bytes -= old.size;
            }
            ix.used_bytes += data.len() as u64;
            let mut evicted = Vec::new();
            while ix.used_bytes > self.capacity_bytes && ix.entries.len() > 1 {
                let victim = ix
                    .entries
                    .iter()
                    .filter(|(key, _)| *key != k)
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(key, _)| key.clone());
                let Some(victim) = victim else { break };
                if let Some(e) = ix.entries.remove(&victim) {
                    ix.used_bytes -= e.size;
                    evicted.push(victim);
                }
            }
            evicted
        };
        for (key, chunk) in evicted {
            self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            let _ = std::fs::remove_file(self.chunk_path(&key, chunk));
        }
        Ok(data)
    }

    fn forget(&self, k: &ChunkKey) {
        let mut ix = self.index();
        if let Some(e) = ix.entries.remove(k) {
            ix.used_bytes -= e.size;
        }
    }

    /// Drops every cached chunk of `key` (its remote segment was deleted).
    pub fn invalidate(&self, key: &str) {
        let doomed: Vec<ChunkKey> = {
            let mut ix = self.index();
            let doomed: Vec<ChunkKey> = ix
                .entries
                .keys()
                .filter(|(k, _)| k == key)
                .cloned()
                .collect();
            for d in &doomed {
                if let Some(e) = ix.entries.remove(d) {
                    ix.used_bytes -= e.size;
                }
            }
            let in_memory: Vec<ChunkKey> = ix
                .memory
                .keys()
                .filter(|(k, _)| k == key)
                .cloned()
                .collect();
            for d in in_memory {
                if let Some((data, _)) = ix.memory.remove(&d) {
                    ix.memory_used_bytes -= data.len() as u64;
                }
            }
            ix.readers.remove(key);
            doomed
        };
        for (k, c) in doomed {
            let _ = std::fs::remove_file(self.chunk_path(&k, c));
        }
    }
}

#[cfg(test)]
mod tests;
