//! Errors of the tiering layer, shaped like `object_store::Error`: structured fields (the key,
//! the operation) and the source, with retriable and fatal kinds told apart.

use std::path::PathBuf;

/// What went wrong talking to object storage or with what it returned.
#[derive(Debug, thiserror::Error)]
pub enum TieringError {
    /// The store failed an operation; `retriable` says whether trying again may help (network,
    /// throttling, a server error) or not (access denied, a bad request).
    #[error("object store {op} {key}: {source}")]
    Store {
        op: &'static str,
        key: String,
        retriable: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A conditional write found the object changed since it was read (or present when it
    /// was expected absent): another writer got there first. Not retriable as it stands: the
    /// caller re-reads and decides.
    #[error("object {key} was changed by another writer")]
    PreconditionFailed { key: String },
    /// Another writer changed the partition's manifest since this broker read it; this
    /// broker's step was not written, and the stored manifest is now the published one.
    #[error("remote manifest {key} was changed by another writer; the step was not applied")]
    ManifestConflict { key: String },
    #[error("object {key} not found")]
    NotFound { key: String },
    /// The bucket itself is wrong, not the object: S3 answered `NoSuchBucket` or
    /// `InvalidBucketName` (the code is kept in `code`). Told apart from [`Self::NotFound`]
    /// because a missing bucket must never read as a missing manifest ("nothing uploaded
    /// yet"). Not retriable: nothing under the bucket succeeds until the configuration or the
    /// bucket is fixed.
    #[error("object store {op} {key}: {code}: {source}")]
    Bucket {
        op: &'static str,
        key: String,
        code: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Data read back does not match what the manifest or the batch CRC says: never served.
    #[error("remote object {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("remote manifest {key} cannot be decoded: {reason}")]
    Manifest { key: String, reason: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid remote storage configuration: {0}")]
    Config(String),
    /// The store's circuit breaker is open ([`crate::breaker`]): the call was not made.
    /// Retriable: the breaker lets a probe through in `retry_in_ms`.
    #[error("object store {op} {key}: not attempted, the store's circuit breaker is open (next probe in {retry_in_ms} ms)")]
    CircuitOpen {
        op: &'static str,
        key: String,
        retry_in_ms: u64,
    },
    /// Not an error of the store: the broker is stopping (a typed outcome, STYLE 10).
    #[error("shutting down")]
    ShuttingDown,
}

impl TieringError {
    /// Whether the same operation may succeed later (Kafka's `RetriableRemoteStorageException`).
    pub fn is_retriable(&self) -> bool {
        match self {
            TieringError::Store { retriable, .. } => *retriable,
            // A local cache file, or a file of a segment being uploaded: transient at worst.
            TieringError::Io { .. } => true,
            // A corrupt chunk is evicted from the cache and fetched again next time.
            TieringError::Corrupt { .. } => true,
            TieringError::CircuitOpen { .. } => true,
            TieringError::NotFound { .. }
            | TieringError::Bucket { .. }
            | TieringError::PreconditionFailed { .. }
            | TieringError::ManifestConflict { .. }
            | TieringError::Manifest { .. }
            | TieringError::Config(_)
            | TieringError::ShuttingDown => false,
        }
    }

    /// The store asked us to slow down (S3 `SlowDown`, HTTP 503 or 429) even after the HTTP
    /// client's own quick retries: the caller must back off longer than for a blip.
    pub fn is_throttled(&self) -> bool {
        let TieringError::Store { source, .. } = self else {
            return false;
        };
        if s3_error_code(source.as_ref()).is_some_and(|c| THROTTLE_CODES.contains(&c.as_str())) {
            return true;
        }
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
        while let Some(err) = next {
            let text = err.to_string();
            if text.contains("503 Service Unavailable") || text.contains("429 Too Many Requests") {
                return true;
            }
            next = err.source();
        }
        false
    }

    pub(crate) fn from_store(op: &'static str, key: &str, e: object_store::Error) -> TieringError {
        use object_store::Error as E;
        if let Some(code) = s3_error_code(&e).filter(|c| BUCKET_ERROR_CODES.contains(&c.as_str())) {
            return TieringError::Bucket {
                op,
                key: key.to_string(),
                code,
                source: Box::new(e),
            };
        }
        let retriable = match &e {
            E::NotFound { .. } => {
                return TieringError::NotFound {
                    key: key.to_string(),
                }
            }
            E::Generic { .. } | E::JoinError { .. } => true,
            E::Precondition { .. } | E::AlreadyExists { .. } => {
                return TieringError::PreconditionFailed {
                    key: key.to_string(),
                }
            }
            E::NotModified { .. } => false,
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => false,
            E::InvalidPath { .. } | E::NotSupported { .. } | E::NotImplemented { .. } => false,
            E::UnknownConfigurationKey { .. } => false,
            _ => true,
        };
        TieringError::Store {
            op,
            key: key.to_string(),
            retriable,
            source: Box::new(e),
        }
    }
}

/// S3 error codes that ask the client to slow down.
const THROTTLE_CODES: [&str; 3] = ["SlowDown", "RequestLimitExceeded", "ThrottlingException"];

/// S3 error codes that are about the bucket rather than the object.
const BUCKET_ERROR_CODES: [&str; 2] = ["NoSuchBucket", "InvalidBucketName"];

/// The S3 error code (`<Code>NoSuchBucket</Code>` in the XML body) somewhere in `e`'s chain:
/// `object_store` keeps the response body in its error text, not in a field.
pub(crate) fn s3_error_code(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if let Some((_, rest)) = text.split_once("<Code>") {
            if let Some((code, _)) = rest.split_once("</Code>") {
                return Some(code.trim().to_string());
            }
        }
        next = err.source();
    }
    None
}

pub type Result<T, E = TieringError> = std::result::Result<T, E>;
