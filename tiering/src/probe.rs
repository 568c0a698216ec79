//! The startup check of the store: can this broker write under its prefix at all?
//!
//! Tiering fails per segment, and each failure is retriable from the upload loop's point of
//! view, so a store that cannot work (a bucket that does not exist, a wrong endpoint) would
//! otherwise show as a warning per round on a broker that looks healthy. [`probe_store`] puts a
//! small marker object under the prefix and deletes it again, with a bounded timeout per
//! attempt and a few attempts, and says in one line what is wrong and where
//! ([`StoreProbeError`]). [`watch_store`] runs it at startup until it passes and keeps the
//! outcome in a [`StoreHealth`], which the broker's readiness reports.
//!
//! The marker key ([`PROBE_KEY`]) is fixed rather than unique: brokers probing at once only
//! overwrite and delete the same small object, and a probe interrupted between its put and its
//! delete leaves one object, not one per start. No partition prefix can be named like it (those
//! are `{topic}-{topic_id}/`), so listings and orphan sweeps never see it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::error::TieringError;
use crate::storage::{RemoteStorage, StoreLocation};

/// The marker object the probe writes and deletes, under the store's prefix.
pub const PROBE_KEY: &str = "strata-probe";

/// How hard one probe tries before it reports the store unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbePolicy {
    /// Bound on one attempt (put and delete); the HTTP client's own retries run inside it.
    pub attempt_timeout: Duration,
    pub attempts: u32,
    /// Wait before attempt `n + 1` is `n` times this.
    pub backoff: Duration,
}

impl Default for ProbePolicy {
    fn default() -> ProbePolicy {
        ProbePolicy {
            attempt_timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

/// Why the store cannot be used, in one line naming the bucket and endpoint (or directory).
#[derive(Debug, thiserror::Error)]
pub enum StoreProbeError {
    /// The server says the bucket is not there (S3 `NoSuchBucket`, or a 404 on a put).
    #[error("tiered storage: {location} does not exist ({code})")]
    NoSuchBucket {
        location: StoreLocation,
        code: String,
        #[source]
        source: TieringError,
    },
    /// The server refuses the bucket's name or address (S3 `InvalidBucketName`): most often a
    /// bucket addressed in the wrong style.
    #[error("tiered storage: {location} is refused by the server ({code}); check remote.storage.s3.path.style")]
    InvalidBucket {
        location: StoreLocation,
        code: String,
        #[source]
        source: TieringError,
    },
    /// Credentials missing or not allowed to write under the prefix.
    #[error("tiered storage: {location} refused access: {reason}")]
    AccessDenied {
        location: StoreLocation,
        reason: String,
        #[source]
        source: TieringError,
    },
    /// Every attempt failed in a way that may pass (no connection, a timeout, a server error).
    #[error("tiered storage: {location} cannot be reached ({attempts} attempts): {reason}")]
    Unreachable {
        location: StoreLocation,
        attempts: u32,
        /// The last attempt's failure, on one line.
        reason: String,
    },
    /// Any other failure that retrying will not cure.
    #[error("tiered storage: {location} cannot be written: {reason}")]
    Failed {
        location: StoreLocation,
        reason: String,
        #[source]
        source: TieringError,
    },
}

impl StoreProbeError {
    pub fn location(&self) -> &StoreLocation {
        match self {
            StoreProbeError::NoSuchBucket { location, .. }
            | StoreProbeError::InvalidBucket { location, .. }
            | StoreProbeError::AccessDenied { location, .. }
            | StoreProbeError::Unreachable { location, .. }
            | StoreProbeError::Failed { location, .. } => location,
        }
    }
}

/// An error's text on one line: `object_store` errors can carry an XML response body.
fn one_line(e: &TieringError) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a failed attempt means: a verdict now, or worth another attempt.
fn classify(location: &StoreLocation, e: TieringError) -> Result<StoreProbeError, String> {
    let location = location.clone();
    match e {
        TieringError::Bucket { ref code, .. } if code == "NoSuchBucket" => {
            Ok(StoreProbeError::NoSuchBucket {
                location,
                code: code.clone(),
                source: e,
            })
        }
        TieringError::Bucket { ref code, .. } => Ok(StoreProbeError::InvalidBucket {
            location,
            code: code.clone(),
            source: e,
        }),
        // A put cannot miss its object: a 404 to it is the bucket's.
        TieringError::NotFound { .. } => Ok(StoreProbeError::NoSuchBucket {
            location,
            code: "404 Not Found".into(),
            source: e,
        }),
        TieringError::Store { ref source, .. }
            if source
                .downcast_ref::<object_store::Error>()
                .is_some_and(|s| {
                    matches!(
                        s,
                        object_store::Error::PermissionDenied { .. }
                            | object_store::Error::Unauthenticated { .. }
                    )
                }) =>
        {
            Ok(StoreProbeError::AccessDenied {
                location,
                reason: one_line(&e),
                source: e,
            })
        }
        e if e.is_retriable() => Err(one_line(&e)),
        e => Ok(StoreProbeError::Failed {
            location,
            reason: one_line(&e),
            source: e,
        }),
    }
}

async fn write_and_delete(storage: &dyn RemoteStorage) -> Result<(), TieringError> {
    storage
        .put(
            PROBE_KEY,
            Bytes::from_static(b"written by a broker checking it can write here\n"),
        )
        .await?;
    storage.delete(PROBE_KEY).await
}

/// Writes and deletes [`PROBE_KEY`] under the store's prefix. A failure that retrying cannot
/// cure (no such bucket, access denied) is reported at once; others after `policy.attempts`.
pub async fn probe_store(
    storage: &dyn RemoteStorage,
    location: &StoreLocation,
    policy: &ProbePolicy,
) -> Result<(), StoreProbeError> {
    let attempts = policy.attempts.max(1);
    let mut reason = String::new();
    for attempt in 1..=attempts {
        match tokio::time::timeout(policy.attempt_timeout, write_and_delete(storage)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => match classify(location, e) {
                Ok(verdict) => return Err(verdict),
                Err(r) => reason = r,
            },
            Err(_) => {
                reason = format!("no answer within {:?}", policy.attempt_timeout);
            }
        }
        if attempt < attempts {
            tokio::time::sleep(policy.backoff * attempt).await;
        }
    }
    Err(StoreProbeError::Unreachable {
        location: location.clone(),
        attempts,
        reason,
    })
}

/// The outcome of the startup probe, as readiness reports it.
#[derive(Debug)]
pub struct StoreHealth {
    location: StoreLocation,
    // Short section: read or replace the state; never held across an await.
    state: Mutex<ProbeState>,
}

#[derive(Debug, Clone)]
enum ProbeState {
    Probing,
    Passed,
    /// The last probe's verdict, shared with readers.
    Failed(Arc<StoreProbeError>),
}

impl StoreHealth {
    pub fn new(location: StoreLocation) -> StoreHealth {
        StoreHealth {
            location,
            state: Mutex::new(ProbeState::Probing),
        }
    }

    /// `Ok` once the store passed a probe; otherwise the reason, on one line.
    pub fn readiness(&self) -> Result<(), String> {
        match self.get() {
            ProbeState::Passed => Ok(()),
            ProbeState::Probing => Err(format!("tiered storage: checking {}", self.location)),
            ProbeState::Failed(e) => Err(e.to_string()),
        }
    }

    /// The last probe's failure, while the store has not passed one.
    pub fn failure(&self) -> Option<Arc<StoreProbeError>> {
        match self.get() {
            ProbeState::Failed(e) => Some(e),
            _ => None,
        }
    }

    fn get(&self) -> ProbeState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, state: ProbeState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }
}

/// How long [`watch_store`] waits between probes of a failing store, doubling up to the cap.
const RECHECK_FIRST: Duration = Duration::from_secs(5);
const RECHECK_MAX: Duration = Duration::from_secs(60);

/// Probes the store until it passes, keeping the outcome in `health`. A failure is logged once
/// (again only when the reason changes), not once per probe; the pass after a failure is
/// logged too. Ends at the first pass or when `shutdown` is cancelled: later outages show as
/// upload errors, which the tiering metrics count.
pub async fn watch_store(
    storage: Arc<dyn RemoteStorage>,
    health: Arc<StoreHealth>,
    policy: ProbePolicy,
    shutdown: CancellationToken,
) {
    let mut wait = RECHECK_FIRST;
    let mut logged: Option<String> = None;
    loop {
        let probe = probe_store(&*storage, &health.location, &policy);
        let outcome = tokio::select! {
            r = probe => r,
            () = shutdown.cancelled() => return,
        };
        match outcome {
            Ok(()) => {
                if logged.is_some() {
                    tracing::info!(store = %health.location, "tiered storage: the store is usable now");
                }
                health.set(ProbeState::Passed);
                return;
            }
            Err(e) => {
                let line = e.to_string();
                if logged.as_deref() != Some(line.as_str()) {
                    tracing::error!("{line}");
                    logged = Some(line);
                }
                health.set(ProbeState::Failed(Arc::new(e)));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
        wait = (wait * 2).min(RECHECK_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::ObjectStorage;
    use crate::unreliable::UnreliableStorage;

    fn quick() -> ProbePolicy {
        ProbePolicy {
            attempt_timeout: Duration::from_secs(1),
            attempts: 3,
            backoff: Duration::from_millis(1),
        }
    }

    #[tokio::test]
    async fn a_writable_store_passes_and_keeps_no_marker() {
        let s = ObjectStorage::memory();
        probe_store(&s, s.location(), &quick())
            .await
            .expect("probe");
        assert!(s.list("").await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn transient_failures_are_retried_within_the_attempts() {
        // The put fails once, then the delete once: the third attempt passes.
        let s = UnreliableStorage::new(ObjectStorage::memory(), 1);
        probe_store(&s, &StoreLocation::Memory, &quick())
            .await
            .expect("third attempt passes");
        let s = UnreliableStorage::new(ObjectStorage::memory(), 2);
        let e = probe_store(&s, &StoreLocation::Memory, &quick())
            .await
            .expect_err("every attempt fails");
        assert!(
            matches!(e, StoreProbeError::Unreachable { attempts: 3, .. }),
            "{e}"
        );
        assert!(!e.to_string().contains('\n'));
    }

    #[tokio::test]
    async fn health_reports_the_verdict_on_one_line() {
        let location = StoreLocation::S3 {
            bucket: "b".into(),
            endpoint: "http://127.0.0.1:9000".into(),
            region: String::new(),
        };
        let health = StoreHealth::new(location.clone());
        assert!(health.readiness().is_err());
        health.set(ProbeState::Failed(Arc::new(
            StoreProbeError::NoSuchBucket {
                location,
                code: "NoSuchBucket".into(),
                source: TieringError::NotFound {
                    key: PROBE_KEY.into(),
                },
            },
        )));
        assert_eq!(
            health.readiness(),
            Err(r#"tiered storage: bucket "b" at http://127.0.0.1:9000 does not exist (NoSuchBucket)"#.to_string())
        );
        health.set(ProbeState::Passed);
        assert_eq!(health.readiness(), Ok(()));
    }
}
