//! [`RemoteStorage`]: the narrow object-store seam the rest of the crate uses, and
//! [`ObjectStorage`], its implementation over the `object_store` crate (local directory, S3,
//! in memory).
//!
//! Keys are `/`-separated strings relative to the store's root (the bucket plus the configured
//! prefix for S3; the directory for the local store).
//!
//! # To ensure correctness
//! An implementation must guarantee:
//! - `put` and `put_file` are atomic: a reader sees the whole new object or none of it (S3 puts
//!   and completed multipart uploads are; the local store writes a temp file and renames it);
//!   a second put of the same key replaces the object whole.
//! - `get_range` returns exactly the bytes asked for, or an error; a range past the end is an
//!   error, never a short read.
//! - `put_if` writes only when the object is as expected (absent, or the version read) and
//!   otherwise fails with `PreconditionFailed`, writing nothing; the check and the write are
//!   one atomic step against every writer the store serves (see `ConditionalPuts` for the local
//!   directory, which guarantees this only within one process).
//! - `delete` of a missing key succeeds (deletion steps are repeated after a crash).
//! - `list` returns every object under the prefix that existed before the call began.
//! - Errors say whether retrying may help ([`TieringError::is_retriable`]).
//!
//! `tests/conformance.rs` runs one suite against every implementation.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncReadExt;

use crate::credentials::AwsChainCredentials;
use crate::error::{Result, TieringError};

/// One object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size_bytes: u64,
    /// Milliseconds since the Unix epoch.
    pub last_modified_ms: i64,
}

/// What an upload of a local file produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutFileOutcome {
    pub size_bytes: u64,
    /// CRC-32C of the whole file, computed from the bytes actually sent.
    pub crc32c: u32,
    /// Whether it went up in parts.
    pub multipart: bool,
}

/// See the module documentation for what an implementation must guarantee.
#[async_trait]
pub trait RemoteStorage: Send + Sync + std::fmt::Debug + 'static {
    async fn put(&self, key: &str, data: Bytes) -> Result<()>;
    /// Uploads a local file, in parts when it is large.
    async fn put_file(&self, key: &str, path: &Path) -> Result<PutFileOutcome>;
    async fn get(&self, key: &str) -> Result<Bytes>;
    /// Like `get`, with the version a later [`put_if`](Self::put_if) can expect.
    async fn get_versioned(&self, key: &str) -> Result<(Bytes, ObjectVersion)>;
    /// Writes `data` only if the object is as `expected` says (absent, or still the version
    /// read); otherwise fails with [`TieringError::PreconditionFailed`] and writes nothing.
    /// Returns the new version.
    async fn put_if(
        &self,
        key: &str,
        data: Bytes,
        expected: &PutCondition,
    ) -> Result<ObjectVersion>;
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;
    async fn delete(&self, key: &str) -> Result<()>;
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
    /// A short description for logs (`s3://bucket/prefix`, `file:///dir`).
    fn describe(&self) -> String;
}

/// The version of a stored object, as a conditional write expects it (its ETag, and the
/// store's version id where it has one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectVersion {
    pub e_tag: Option<String>,
    pub version: Option<String>,
}

/// What a conditional write expects to find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutCondition {
    /// No object under the key (`PutMode::Create`).
    Absent,
    /// The object as it was read (`PutMode::Update`).
    Version(ObjectVersion),
}

/// How a store carries out [`RemoteStorage::put_if`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConditionalPuts {
    /// `PutMode::Create` and `PutMode::Update` by the store itself (S3 with `If-None-Match` /
    /// `If-Match`, the in-memory store): safe across processes.
    Native,
    /// Create by the store, update emulated (`object_store`'s local directory has no
    /// `PutMode::Update`): under a per-process lock per key, the current ETag is compared and
    /// the object replaced. Safe between writers in one process; two processes sharing one
    /// directory are not protected against each other.
    CreateOnly,
}

/// Locks of the emulated conditional updates, one per object path. Bounded by the number of
/// manifests (one per partition), the only objects written conditionally.
fn update_lock(path: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    > = std::sync::LazyLock::new(Default::default);
    // Short section: look up or insert.
    let mut m = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    m.entry(path.to_string()).or_default().clone()
}

/// Where segments go, parsed from `remote.storage.uri` and the `remote.storage.s3.*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// A local directory (`object_store::local`): the embedded default.
    Local { dir: PathBuf },
    /// S3 or an S3-compatible server.
    S3(S3Config),
    /// In memory (`memory://`): tests only; lost at exit.
    Memory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/`.
    pub prefix: String,
    /// Empty for AWS itself.
    pub endpoint: String,
    /// Empty: `AWS_REGION` / `AWS_DEFAULT_REGION`, else us-east-1.
    pub region: String,
    /// Bucket in the path (`http://host/bucket/key`), as most S3-compatible servers want.
    pub path_style: bool,
}

impl StorageConfig {
    /// Parses `remote.storage.uri`: empty → `default_dir`; `file:///DIR` or a bare path → that
    /// directory; `s3://bucket[/prefix]`; `memory://`.
    pub fn parse(
        uri: &str,
        default_dir: &Path,
        endpoint: &str,
        region: &str,
        path_style: bool,
    ) -> Result<StorageConfig> {
        let uri = uri.trim();
        if uri.is_empty() {
            return Ok(StorageConfig::Local {
                dir: default_dir.to_path_buf(),
            });
        }
        if let Some(rest) = uri.strip_prefix("file://") {
            if rest.is_empty() {
                return Err(TieringError::Config(format!("{uri}: no directory")));
            }
            return Ok(StorageConfig::Local {
                dir: PathBuf::from(rest),
            });
        }
        if uri == "memory://" {
            return Ok(StorageConfig::Memory);
        }
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(TieringError::Config(format!("{uri}: no bucket")));
            }
            return Ok(StorageConfig::S3(S3Config {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
                endpoint: endpoint.trim().to_string(),
                region: region.trim().to_string(),
                path_style,
            }));
        }
        if uri.contains("://") {
            return Err(TieringError::Config(format!(
                "{uri}: expected file://DIR, s3://bucket/prefix or memory://"
            )));
        }
        Ok(StorageConfig::Local {
            dir: PathBuf::from(uri),
        })
    }

    /// Builds the store.
    pub fn build(&self) -> Result<ObjectStorage> {
        match self {
            StorageConfig::Local { dir } => ObjectStorage::local(dir),
            StorageConfig::S3(c) => ObjectStorage::s3(c),
            StorageConfig::Memory => Ok(ObjectStorage::memory()),
        }
    }
}

/// Objects larger than this go up in parts.
pub const DEFAULT_MULTIPART_THRESHOLD_BYTES: u64 = 16 * 1024 * 1024;
/// Part size of multipart uploads; S3 wants at least 5 MiB for every part but the last.
pub const DEFAULT_PART_BYTES: usize = 8 * 1024 * 1024;

/// [`RemoteStorage`] over any `object_store` backend.
#[derive(Debug, Clone)]
pub struct ObjectStorage {
    inner: Arc<dyn ObjectStore>,
    /// Prepended to every key (S3 prefix), with a trailing `/` when non-empty.
    prefix: String,
    description: String,
    conditional: ConditionalPuts,
    pub multipart_threshold_bytes: u64,
    pub part_bytes: usize,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TieringError + '_ {
    move |source| TieringError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ObjectStorage {
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: &str, description: String) -> ObjectStorage {
        let prefix = prefix.trim_matches('/');
        ObjectStorage {
            inner,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            description,
            conditional: ConditionalPuts::Native,
            multipart_threshold_bytes: DEFAULT_MULTIPART_THRESHOLD_BYTES,
            part_bytes: DEFAULT_PART_BYTES,
        }
    }

    pub fn memory() -> ObjectStorage {
        ObjectStorage::new(
            Arc::new(object_store::memory::InMemory::new()),
            "",
            "memory://".into(),
        )
    }

    /// A local directory, created if absent.
    pub fn local(dir: &Path) -> Result<ObjectStorage> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| TieringError::from_store("open", &dir.display().to_string(), e))?
            // Empty partition directories go away with their last object.
            .with_automatic_cleanup(true);
        let mut s = ObjectStorage::new(Arc::new(fs), "", format!("file://{}", dir.display()));
        s.conditional = ConditionalPuts::CreateOnly;
        Ok(s)
    }

    /// S3 or an S3-compatible server. Credentials come from the standard AWS chain
    /// ([`AwsChainCredentials`]); the region from the config, else `AWS_REGION` /
    /// `AWS_DEFAULT_REGION`, else us-east-1.
    pub fn s3(c: &S3Config) -> Result<ObjectStorage> {
        use object_store::aws::AmazonS3Builder;
        use object_store::{BackoffConfig, ClientOptions, RetryConfig};
        // reqwest is built without a TLS provider of its own (aws-lc-rs would be a long C
        // build); ring is installed as the process default. Already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let region = Some(c.region.clone())
            .filter(|r| !r.is_empty())
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty());
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&c.bucket)
            .with_region(region.as_deref().unwrap_or("us-east-1"))
            .with_credentials(Arc::new(AwsChainCredentials::new(region)));
        if !c.endpoint.is_empty() {
            b = b.with_endpoint(&c.endpoint);
        }
        b = b.with_virtual_hosted_style_request(!c.path_style);
        // Our own upload loop backs off between rounds; the client's retries only smooth over
        // blips, so an unreachable server fails a call in seconds, not minutes.
        b = b
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
            })
            .with_client_options(
                // Client options replace the builder's: allow_http must be set here.
                ClientOptions::new()
                    .with_allow_http(c.endpoint.starts_with("http://"))
                    .with_connect_timeout(Duration::from_secs(3))
                    .with_timeout(Duration::from_secs(60)),
            );
        let s3 = b
            .build()
            .map_err(|e| TieringError::Config(format!("s3://{}: {e}", c.bucket)))?;
        let description = if c.prefix.is_empty() {
            format!("s3://{}", c.bucket)
        } else {
            format!("s3://{}/{}", c.bucket, c.prefix)
        };
        Ok(ObjectStorage::new(Arc::new(s3), &c.prefix, description))
    }

    fn path(&self, key: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{}", self.prefix, key))
    }

    fn strip(&self, p: &ObjectPath) -> String {
        let s = p.as_ref();
        s.strip_prefix(&self.prefix).unwrap_or(s).to_string()
    }
}

#[async_trait]
impl RemoteStorage for ObjectStorage {
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.inner
            .put(&self.path(key), PutPayload::from(data))
            .await
            .map_err(|e| TieringError::from_store("put", key, e))?;
        Ok(())
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<PutFileOutcome> {
        let mut file = tokio::fs::File::open(path).await.map_err(io_err(path))?;
        let size = file.metadata().await.map_err(io_err(path))?.len();
        if size <= self.multipart_threshold_bytes {
            let mut buf = Vec::with_capacity(size as usize);
            file.read_to_end(&mut buf).await.map_err(io_err(path))?;
            let crc = crc32c::crc32c(&buf);
            let size_bytes = buf.len() as u64;
            self.put(key, Bytes::from(buf)).await?;
            return Ok(PutFileOutcome {
                size_bytes,
                crc32c: crc,
                multipart: false,
            });
        }
        let location = self.path(key);
        let mut upload = self
            .inner
            .put_multipart(&location)
            .await
            .map_err(|e| TieringError::from_store("put_multipart", key, e))?;
        let mut crc = 0u32;
        let mut sent = 0u64;
        let result: Result<()> = async {
            loop {
                let mut part = Vec::with_capacity(self.part_bytes);
                (&mut file)
                    .take(self.part_bytes as u64)
                    .read_to_end(&mut part)
                    .await
                    .map_err(io_err(path))?;
                if part.is_empty() {
                    break;
                }
                crc = crc32c::crc32c_append(crc, &part);
                sent += part.len() as u64;
                upload
                    .put_part(PutPayload::from(part))
                    .await
                    .map_err(|e| TieringError::from_store("put_part", key, e))?;
            }
            upload
                .complete()
                .await
                .map_err(|e| TieringError::from_store("complete_multipart", key, e))?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            // Parts of an aborted upload are not objects; aborting frees them sooner.
            let _ = upload.abort().await;
            return Err(e);
        }
        Ok(PutFileOutcome {
            size_bytes: sent,
            crc32c: crc,
            multipart: true,
        })
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let r = self
            .inner
            .get(&self.path(key))
            .await
            .map_err(|e| TieringError::from_store("get", key, e))?;
        r.bytes()
            .await
            .map_err(|e| TieringError::from_store("get", key, e))
    }

    async fn get_versioned(&self, key: &str) -> Result<(Bytes, ObjectVersion)> {
        let r = self
            .inner
            .get(&self.path(key))
            .await
            .map_err(|e| TieringError::from_store("get", key, e))?;
        let version = ObjectVersion {
            e_tag: r.meta.e_tag.clone(),
            version: r.meta.version.clone(),
        };
        let data = r
            .bytes()
            .await
            .map_err(|e| TieringError::from_store("get", key, e))?;
        Ok((data, version))
    }

    async fn put_if(
        &self,
        key: &str,
        data: Bytes,
        expected: &PutCondition,
    ) -> Result<ObjectVersion> {
        use object_store::{PutMode, PutOptions, UpdateVersion};
        let location = self.path(key);
        let conflict = || TieringError::PreconditionFailed {
            key: key.to_string(),
        };
        let put = |mode: PutMode| {
            let opts = PutOptions {
                mode,
                ..Default::default()
            };
            self.inner
                .put_opts(&location, PutPayload::from(data.clone()), opts)
        };
        let r = match (expected, self.conditional) {
            (PutCondition::Absent, _) => put(PutMode::Create).await,
            (PutCondition::Version(v), ConditionalPuts::Native) => {
                put(PutMode::Update(UpdateVersion {
                    e_tag: v.e_tag.clone(),
                    version: v.version.clone(),
                }))
                .await
            }
            (PutCondition::Version(v), ConditionalPuts::CreateOnly) => {
                let lock = update_lock(&format!("{}/{}", self.description, location));
                let _held = lock.lock().await;
                let current = match self.inner.head(&location).await {
                    Ok(m) => m,
                    Err(object_store::Error::NotFound { .. }) => return Err(conflict()),
                    Err(e) => return Err(TieringError::from_store("head", key, e)),
                };
                if v.e_tag.is_none() || current.e_tag != v.e_tag {
                    return Err(conflict());
                }
                put(PutMode::Overwrite).await
            }
        };
        let r = r.map_err(|e| TieringError::from_store("put_if", key, e))?;
        Ok(ObjectVersion {
            e_tag: r.e_tag,
            version: r.version,
        })
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let want = range.end.saturating_sub(range.start);
        let b = self
            .inner
            .get_range(&self.path(key), range.clone())
            .await
            .map_err(|e| TieringError::from_store("get_range", key, e))?;
        if b.len() as u64 != want {
            return Err(TieringError::Corrupt {
                key: key.to_string(),
                reason: format!(
                    "range {}..{} returned {} bytes",
                    range.start,
                    range.end,
                    b.len()
                ),
            });
        }
        Ok(b)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(TieringError::from_store("delete", key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let p = self.path(prefix.trim_end_matches('/'));
        let metas: Vec<object_store::ObjectMeta> = self
            .inner
            .list(Some(&p))
            .try_collect()
            .await
            .map_err(|e| TieringError::from_store("list", prefix, e))?;
        let mut out: Vec<ObjectInfo> = metas
            .into_iter()
            .map(|m| ObjectInfo {
                key: self.strip(&m.location),
                size_bytes: m.size,
                last_modified_ms: m.last_modified.timestamp_millis(),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let d = Path::new("/data/remote");
        assert_eq!(
            StorageConfig::parse("", d, "", "", false).ok(),
            Some(StorageConfig::Local { dir: d.into() })
        );
        assert_eq!(
            StorageConfig::parse("file:///srv/x", d, "", "", false).ok(),
            Some(StorageConfig::Local {
                dir: "/srv/x".into()
            })
        );
        let s3 = StorageConfig::parse("s3://b/p/q/", d, "http://h:1", "eu", true).ok();
        assert_eq!(
            s3,
            Some(StorageConfig::S3(S3Config {
                bucket: "b".into(),
                prefix: "p/q".into(),
                endpoint: "http://h:1".into(),
                region: "eu".into(),
                path_style: true
            }))
        );
        assert!(StorageConfig::parse("gs://x", d, "", "", false).is_err());
        assert!(StorageConfig::parse("s3://", d, "", "", false).is_err());
    }
}
