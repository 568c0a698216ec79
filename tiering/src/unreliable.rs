//! [`UnreliableStorage`]: a [`RemoteStorage`] wrapper that fails the first `attempts_to_fail`
//! attempts of each distinct call (operation and key), then lets it through — Neon's
//! `UnreliableWrapper`. Code that retries correctly makes progress against it; code that gives
//! up after one error, or that repeats a non-idempotent step, shows itself in tests.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Result, TieringError};
use crate::storage::{ObjectInfo, ObjectVersion, PutCondition, PutFileOutcome, RemoteStorage};

#[derive(Debug)]
pub struct UnreliableStorage<S> {
    inner: S,
    attempts_to_fail: u32,
    // Short section: count an attempt; never held across the inner call.
    attempts: Mutex<HashMap<(&'static str, String), u32>>,
}

impl<S: RemoteStorage> UnreliableStorage<S> {
    pub fn new(inner: S, attempts_to_fail: u32) -> UnreliableStorage<S> {
        UnreliableStorage {
            inner,
            attempts_to_fail,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Counts an attempt; fails it while the call has been tried fewer than N times.
    fn attempt(&self, op: &'static str, key: &str) -> Result<()> {
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
        self.attempt("put", key)?;
        self.inner.put(key, data).await
    }
    async fn put_file(&self, key: &str, path: &Path) -> Result<PutFileOutcome> {
        self.attempt("put_file", key)?;
        self.inner.put_file(key, path).await
    }
    async fn get(&self, key: &str) -> Result<Bytes> {
        self.attempt("get", key)?;
        self.inner.get(key).await
    }
    async fn get_versioned(&self, key: &str) -> Result<(Bytes, ObjectVersion)> {
        self.attempt("get", key)?;
        self.inner.get_versioned(key).await
    }
    async fn put_if(
        &self,
        key: &str,
        data: Bytes,
        expected: &PutCondition,
    ) -> Result<ObjectVersion> {
        self.attempt("put", key)?;
        self.inner.put_if(key, data, expected).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.attempt("get_range", &format!("{key}@{}-{}", range.start, range.end))?;
        self.inner.get_range(key, range).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.attempt("delete", key)?;
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.attempt("list", prefix)?;
        self.inner.list(prefix).await
    }
    fn describe(&self) -> String {
        format!("unreliable({})", self.inner.describe())
    }

    fn stats(&self) -> Option<std::sync::Arc<crate::stats::StoreStats>> {
        self.inner.stats()
    }
}
