//! [`StoreStats`]: requests and bytes per object-store operation, so the store's bill can be
//! estimated from the metrics (S3 prices PUT/COPY/POST/LIST requests in one class, GET and
//! HEAD in a cheaper one, DELETE free; transfer out by bytes).
//!
//! Counted where [`ObjectStorage`](crate::ObjectStorage) issues a call: a multipart upload is
//! its create, each part and its completion (all PUT-class requests). The HTTP client's own
//! quick retries of a failed call (at most two, `RetryConfig` in `storage.rs`) are not seen
//! here; a throttled answer (`SlowDown`, 503, 429) that reaches this layer is counted in
//! `throttled`.

use std::sync::atomic::{AtomicU64, Ordering};

/// The operations a bill is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Put,
    Get,
    List,
    Delete,
    Head,
}

impl StoreOp {
    pub const ALL: [StoreOp; 5] = [
        StoreOp::Put,
        StoreOp::Get,
        StoreOp::List,
        StoreOp::Delete,
        StoreOp::Head,
    ];

    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            StoreOp::Put => "put",
            StoreOp::Get => "get",
            StoreOp::List => "list",
            StoreOp::Delete => "delete",
            StoreOp::Head => "head",
        }
    }
}

/// See the module documentation. Monotonic counters; the broker copies them into its metrics.
#[derive(Debug, Default)]
pub struct StoreStats {
    requests: [AtomicU64; 5],
    bytes: [AtomicU64; 5],
    pub throttled: AtomicU64,
}

impl StoreStats {
    /// One request of `op` that moved `bytes` (sent for PUT, received for GET).
    pub fn record(&self, op: StoreOp, bytes: u64) {
        self.requests[op as usize].fetch_add(1, Ordering::Relaxed);
        self.bytes[op as usize].fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn requests(&self, op: StoreOp) -> u64 {
        self.requests[op as usize].load(Ordering::Relaxed)
    }

    pub fn bytes(&self, op: StoreOp) -> u64 {
        self.bytes[op as usize].load(Ordering::Relaxed)
    }
}
