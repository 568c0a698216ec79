//! [`TieringMetrics`]: what tiered storage counts, registered by the process's metrics.

use std::sync::atomic::Ordering;

use prometheus::{
    Counter, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use strata_tiering::{ChunkCache, StoreBreaker, StoreOp, StoreStats};

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("metric definition is valid");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("metric definition is valid");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

/// A counter per store operation, every label present from the start so a fresh broker
/// exports them all.
fn per_op(r: &Registry, name: &str, help: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &["op"]).expect("metric definition is valid");
    for op in StoreOp::ALL {
        c.with_label_values(&[op.name()]);
    }
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn delta(seen: &mut u64, now: u64) -> u64 {
    let d = now.saturating_sub(*seen);
    *seen = now;
    d
}

/// The store and cache counters as last copied into the metrics (they only go up by deltas).
#[derive(Debug, Default)]
pub(super) struct SeenStore {
    requests: [u64; 5],
    bytes: [u64; 5],
    throttled: u64,
    prefetched: u64,
    memory_hits: u64,
    quota_ns: u64,
    breaker_rejected: u64,
    breaker_opened: u64,
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric definition is valid");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

/// Tiered storage: uploads, remote reads, the chunk cache, remote retention.
#[derive(Debug, Clone)]
pub struct TieringMetrics {
    pub upload_bytes: IntCounter,
    pub uploaded_segments: IntCounter,
    pub upload_errors: IntCounter,
    pub upload_latency: Histogram,
    /// Sealed segments (and their bytes) waiting for upload on partitions this broker leads.
    pub upload_lag_bytes: IntGauge,
    pub upload_lag_segments: IntGauge,
    pub remote_fetch_bytes: IntCounter,
    pub remote_fetch_errors: IntCounter,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub cache_bytes: IntGauge,
    pub remote_deleted_segments: IntCounter,
    pub delete_errors: IntCounter,
    pub remote_log_bytes: IntGaugeVec,
    /// Object-store requests and bytes per operation (put, get, list, delete, head).
    pub store_requests: IntCounterVec,
    pub store_bytes: IntCounterVec,
    pub store_throttled: IntCounter,
    pub cache_prefetched: IntCounter,
    pub cache_memory_hits: IntCounter,
    pub remote_fetch_throttle_seconds: Counter,
    /// The store's circuit breaker: 0 closed, 1 open, 2 half-open.
    pub store_breaker_state: IntGauge,
    pub store_breaker_rejected: IntCounter,
    pub store_breaker_opened: IntCounter,
    /// Remote compaction passes that swapped rewritten segments in, and the records they left out.
    pub remote_compactions: IntCounter,
    pub remote_compaction_removed_records: IntCounter,
}

impl TieringMetrics {
    pub fn new(r: &Registry) -> TieringMetrics {
        let upload_latency = Histogram::with_opts(
            HistogramOpts::new(
                "strata_tiering_upload_latency_seconds",
                "Time to upload one segment (all its objects and the manifest).",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
            ]),
        )
        .expect("metric definition is valid");
        r.register(Box::new(upload_latency.clone()))
            .expect("metric registered once");
        TieringMetrics {
            upload_bytes: counter(r, "strata_tiering_upload_bytes_total", "Bytes uploaded to object storage (segments, indexes, snapshots)."),
            uploaded_segments: counter(r, "strata_tiering_uploaded_segments_total", "Segments uploaded and recorded in their manifest."),
            upload_errors: counter(r, "strata_tiering_upload_errors_total", "Tiering rounds that failed (the partition backs off and keeps its local segments)."),
            upload_latency,
            upload_lag_bytes: gauge(r, "strata_tiering_upload_lag_bytes", "Bytes of sealed segments not yet uploaded, on led partitions."),
            upload_lag_segments: gauge(r, "strata_tiering_upload_lag_segments", "Sealed segments not yet uploaded, on led partitions."),
            remote_fetch_bytes: counter(r, "strata_tiering_remote_fetch_bytes_total", "Record bytes served to fetchers from remote segments."),
            remote_fetch_errors: counter(r, "strata_tiering_remote_fetch_errors_total", "Fetches from remote segments that failed (answered with a retriable error)."),
            cache_hits: counter(r, "strata_tiering_cache_hits_total", "Remote chunk reads served from the local cache."),
            cache_misses: counter(r, "strata_tiering_cache_misses_total", "Remote chunk reads that went to object storage."),
            cache_bytes: gauge(r, "strata_tiering_cache_bytes", "Bytes in the remote chunk cache."),
            remote_deleted_segments: counter(r, "strata_tiering_remote_deleted_segments_total", "Remote segments deleted by retention or DeleteRecords."),
            delete_errors: counter(r, "strata_tiering_delete_errors_total", "Deletions of a deleted topic's remote data that failed."),
            remote_log_bytes: gauge_vec(r, "strata_tiering_remote_log_bytes", "Bytes of live remote segments, by topic.", &["topic"]),
            store_requests: per_op(r, "strata_tiering_store_requests_total", "Object-store requests by operation (multipart parts count as puts; the HTTP client's quick retries are not seen)."),
            store_bytes: per_op(r, "strata_tiering_store_bytes_total", "Bytes sent (put) or received (get) by object-store operation."),
            store_throttled: counter(r, "strata_tiering_store_throttled_total", "Object-store calls answered SlowDown, 503 or 429 after the HTTP client's own retries (backed off)."),
            cache_prefetched: counter(r, "strata_tiering_cache_prefetched_chunks_total", "Remote chunks fetched by read-ahead."),
            cache_memory_hits: counter(r, "strata_tiering_cache_memory_hits_total", "Chunk cache hits served from memory (remote.cache.memory.bytes) rather than the cache's files."),
            remote_fetch_throttle_seconds: {
                let c = Counter::new("strata_tiering_remote_fetch_throttle_seconds_total", "Time remote reads were delayed by remote.log.manager.fetch.max.bytes.per.second.").expect("metric definition is valid");
                r.register(Box::new(c.clone())).expect("metric registered once");
                c
            },
            store_breaker_state: gauge(r, "strata_tiering_store_breaker_state", "The object store's circuit breaker: 0 closed, 1 open (calls refused), 2 half-open (one probe in flight)."),
            store_breaker_rejected: counter(r, "strata_tiering_store_breaker_rejected_total", "Object-store calls refused by the open circuit breaker, without reaching the store."),
            store_breaker_opened: counter(r, "strata_tiering_store_breaker_opened_total", "Times the object store's circuit breaker opened (a failed probe opens it again)."),
            remote_compactions: counter(r, "strata_tiering_remote_compactions_total", "Remote compaction passes of compacted topics that swapped rewritten segments into the manifest."),
            remote_compaction_removed_records: counter(r, "strata_tiering_remote_compaction_removed_records_total", "Records (shadowed values, expired tombstones, aborted data, empty markers) that remote compaction left out."),
        }
    }

    /// Copies the breaker's state and counters since the last call.
    pub(super) fn sync_breaker(&self, seen: &mut SeenStore, breaker: &StoreBreaker) {
        self.store_breaker_state.set(breaker.state().gauge());
        self.store_breaker_rejected.inc_by(delta(
            &mut seen.breaker_rejected,
            breaker.rejected_calls.load(Ordering::Relaxed),
        ));
        self.store_breaker_opened.inc_by(delta(
            &mut seen.breaker_opened,
            breaker.opened.load(Ordering::Relaxed),
        ));
    }

    /// Copies what the store and the cache counted since the last call.
    pub(super) fn sync_store(
        &self,
        seen: &mut SeenStore,
        store: Option<&StoreStats>,
        cache: &ChunkCache,
    ) {
        if let Some(s) = store {
            for (i, op) in StoreOp::ALL.into_iter().enumerate() {
                let label = [op.name()];
                self.store_requests
                    .with_label_values(&label)
                    .inc_by(delta(&mut seen.requests[i], s.requests(op)));
                self.store_bytes
                    .with_label_values(&label)
                    .inc_by(delta(&mut seen.bytes[i], s.bytes(op)));
            }
            self.store_throttled.inc_by(delta(
                &mut seen.throttled,
                s.throttled.load(Ordering::Relaxed),
            ));
        }
        self.cache_prefetched.inc_by(delta(
            &mut seen.prefetched,
            cache.stats.prefetched.load(Ordering::Relaxed),
        ));
        self.cache_memory_hits.inc_by(delta(
            &mut seen.memory_hits,
            cache.stats.memory_hits.load(Ordering::Relaxed),
        ));
        let ns = delta(
            &mut seen.quota_ns,
            cache.quota().throttled_ns.load(Ordering::Relaxed),
        );
        self.remote_fetch_throttle_seconds.inc_by(ns as f64 / 1e9);
    }
}
