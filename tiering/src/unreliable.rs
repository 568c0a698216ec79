//! [`UnreliableStorage`]: a [`RemoteStorage`] wrapper that fails the first `attempts_to_fail`
//! attempts of each distinct call (operation and key), then lets it through — Neon's
//! `UnreliableWrapper`. Code that retries correctly makes progress against it; code that gives
//! up after one error, or that repeats a non-idempotent step, shows itself in tests.
//!
//! A [`Fault`] set at run time adds a store-wide failure on top: a dead endpoint, `SlowDown`
//! answers, latency, or one failing partition prefix.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Result, TieringError};
use crate::storage::{ObjectInfo, ObjectVersion, PutCondition, PutFileOutcome, RemoteStorage};

/// A failure injected into every call until changed ([`UnreliableStorage::set_fault`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// Every call fails as against an endpoint that refuses connections.
    Down,
    /// Every call is answered 503 `SlowDown`.
    SlowDown,
    /// Every call is delayed this long before it goes through.
    Latency(std::time::Duration),
    /// Calls whose key starts with this prefix fail (one partition's objects).
    FailingPrefix(String),
}

#[derive(Debug)]
pub struct UnreliableStorage<S> {
    inner: S,
    attempts_to_fail: u32,
    // Short section: read or swap the fault.
    fault: Mutex<Fault>,
    /// Every call that reached this wrapper (what a breaker above it let through).
    pub calls: std::sync::atomic::AtomicU64,
    // Short section: count an attempt; never held across the inner call.
    attempts: Mutex<HashMap<(&'static str, String), u32>>,
}

impl<S: RemoteStorage> UnreliableStorage<S> {
    pub fn new(inner: S, attempts_to_fail: u32) -> UnreliableStorage<S> {
        UnreliableStorage {
            inner,
            attempts_to_fail,
            fault: Mutex::new(Fault::None),
            calls: std::sync::atomic::AtomicU64::new(0),
            attempts: Mutex::new(HashMap::new()),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn set_fault(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// Counts an attempt; applies the fault; fails it while the call has been tried fewer
    /// than N times.
    async fn attempt(&self, op: &'static str, key: &str) -> Result<()> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let fault = self.fault.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let injected = |text: &str| TieringError::Store {
            op,
            key: key.to_string(),
            retriable: true,
            source: text.to_string().into(),
        };
        match fault {
            Fault::None => {}
            Fault::Down => return Err(injected("error sending request: Connection refused")),
            Fault::SlowDown => {
                return Err(injected(
                    "Server returned non-2xx status code: 503 Service Unavailable: \
                     <Error><Code>SlowDown</Code><Message>Please reduce your request rate.\
                     </Message></Error>",
                ))
            }
            Fault::Latency(d) => tokio::time::sleep(d).await,
            Fault::FailingPrefix(p) if key.starts_with(&p) => {
                return Err(injected("injected failure of this prefix"))
            }
            Fault::FailingPrefix(_) => {}
        }
        self.count_attempt(op, key)
    }

    fn count_attempt(&self, op: &'static str, key: &str) -> Result<()> {
        let mut m = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry((op, key.to_string())).or_insert(0);
        *n += 1;
        if *n <= self.attempts_to_fail {
            return Err(TieringError::Store {
                op,
                key: key.to_string(),
                retriable: true,
                source: format!("injected failure {} of {}", n, self.attempts_to_fail).into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl<S: RemoteStorage> RemoteStorage for UnreliableStorage<S> {
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.attempt("put", key).await?;
        self.inner.put(key, data).await
    }
    async fn put_file(&self, key: &str, path: &Path) -> Result<PutFileOutcome> {
        self.attempt("put_file", key).await?;
        self.inner.put_file(key, path).await
    }
    async fn get(&self, key: &str) -> Result<Bytes> {
        self.attempt("get", key).await?;
        self.inner.get(key).await
    }
    async fn get_versioned(&self, key: &str) -> Result<(Bytes, ObjectVersion)> {
        self.attempt("get", key).await?;
        self.inner.get_versioned(key).await
    }
    async fn put_if(
        &self,
        key: &str,
        data: Bytes,
        expected: &PutCondition,
    ) -> Result<ObjectVersion> {
        self.attempt("put", key).await?;
        self.inner.put_if(key, data, expected).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.attempt("get_range", &format!("{key}@{}-{}", range.start, range.end))
            .await?;
        self.inner.get_range(key, range).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.attempt("delete", key).await?;
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.attempt("list", prefix).await?;
        self.inner.list(prefix).await
    }
    fn describe(&self) -> String {
        format!("unreliable({})", self.inner.describe())
    }

    fn stats(&self) -> Option<std::sync::Arc<crate::stats::StoreStats>> {
        self.inner.stats()
    }

    fn breaker(&self) -> Option<std::sync::Arc<crate::breaker::StoreBreaker>> {
        self.inner.breaker()
    }
}
