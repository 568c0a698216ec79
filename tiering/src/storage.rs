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
use crate::stats::{StoreOp, StoreStats};

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
    /// The store's request and byte counters, where it keeps them.
    fn stats(&self) -> Option<Arc<StoreStats>> {
        None
    }
    /// The store's circuit breaker, where calls go through one
    /// ([`BreakerStorage`](crate::breaker::BreakerStorage)).
    fn breaker(&self) -> Option<Arc<crate::breaker::StoreBreaker>> {
        None
    }
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
    /// Bucket in the path (`http://host/bucket/key`), as most S3-compatible servers want;
    /// otherwise virtual-hosted (`http://bucket.host/key`), as AWS prefers.
    pub path_style: bool,
}

impl S3Config {
    /// Path style unless it is configured: on with a custom endpoint (MinIO, Ceph, moto and
    /// most S3-compatible servers are reached by address or by one host name, with no
    /// per-bucket DNS), off for AWS itself (virtual-hosted is AWS's preferred form).
    pub fn default_path_style(endpoint: &str) -> bool {
        !endpoint.trim().is_empty()
    }

    /// The endpoint handed to `object_store`, which takes a custom endpoint as the bucket's
    /// own address when virtual-hosted: so the bucket is put in front of the host here
    /// (`http://host:9000` → `http://bucket.host:9000`). In path style the client appends
    /// `/bucket` itself. `None`: no custom endpoint (AWS; the client builds the address from
    /// bucket and region). An endpoint whose host already starts with `bucket.` is taken to
    /// name the bucket already and used as it is.
    pub fn client_endpoint(&self) -> Result<Option<String>> {
        let endpoint = self.endpoint.trim().trim_end_matches('/');
        if endpoint.is_empty() {
            return Ok(None);
        }
        if self.path_style {
            return Ok(Some(endpoint.to_string()));
        }
        let bad = |reason: &str| {
            TieringError::Config(format!("remote.storage.s3.endpoint {endpoint}: {reason}"))
        };
        let mut url = url::Url::parse(endpoint).map_err(|e| bad(&e.to_string()))?;
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(_) => {
                return Err(bad(
                    "virtual-hosted addressing (remote.storage.s3.path.style=false) puts the \
                     bucket in the host name, which needs a DNS name, not an IP address",
                ))
            }
            None => return Err(bad("no host")),
        };
        let prefix = format!("{}.", self.bucket);
        if !host.starts_with(&prefix) {
            url.set_host(Some(&format!("{prefix}{host}")))
                .map_err(|e| bad(&e.to_string()))?;
        }
        Ok(Some(url.as_str().trim_end_matches('/').to_string()))
    }
}

impl StorageConfig {
    /// Parses `remote.storage.uri`: empty → `default_dir`; `file:///DIR` or a bare path → that
    /// directory; `s3://bucket[/prefix]`; `memory://`. `path_style` `None` (not configured):
    /// [`S3Config::default_path_style`].
    pub fn parse(
        uri: &str,
        default_dir: &Path,
        endpoint: &str,
        region: &str,
        path_style: Option<bool>,
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
                path_style: path_style.unwrap_or_else(|| S3Config::default_path_style(endpoint)),
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

/// Where a store keeps its objects, for messages an operator acts on: the bucket and endpoint,
/// or the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    S3 {
        bucket: String,
        /// The configured endpoint; empty for AWS.
        endpoint: String,
        region: String,
    },
    Local {
        dir: PathBuf,
    },
    Memory,
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::S3 {
                bucket, endpoint, ..
            } if !endpoint.is_empty() => write!(f, "bucket {bucket:?} at {endpoint}"),
            StoreLocation::S3 { bucket, region, .. } => {
                let region = if region.is_empty() {
                    "default region"
                } else {
                    region
                };
                write!(f, "bucket {bucket:?} at AWS S3 ({region})")
            }
            StoreLocation::Local { dir } => write!(f, "directory {:?}", dir.display().to_string()),
            StoreLocation::Memory => f.write_str("the in-memory store"),
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
    location: StoreLocation,
    conditional: ConditionalPuts,
    /// Shared by clones: one set of counters per configured store.
    stats: Arc<StoreStats>,
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
            location: StoreLocation::Memory,
            conditional: ConditionalPuts::Native,
            stats: Arc::default(),
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
        s.location = StoreLocation::Local {
            dir: dir.to_path_buf(),
        };
        Ok(s)
    }

    /// S3 or an S3-compatible server. Credentials come from the standard AWS chain
    /// ([`AwsChainCredentials`]); the region from the config, else `AWS_REGION` /
    /// `AWS_DEFAULT_REGION`, else us-east-1.
    pub fn s3(c: &S3Config) -> Result<ObjectStorage> {
        Self::s3_from(c, Self::s3_builder(c)?)
    }

    /// [`ObjectStorage::s3`] with requests sent through `connector` instead of the default
    /// HTTP client: for tests that must resolve names the system does not (a virtual-hosted
    /// `bucket.localhost`).
    pub fn s3_with_http_connector<C: object_store::client::HttpConnector>(
        c: &S3Config,
        connector: C,
    ) -> Result<ObjectStorage> {
        Self::s3_from(c, Self::s3_builder(c)?.with_http_connector(connector))
    }

    fn s3_from(c: &S3Config, b: object_store::aws::AmazonS3Builder) -> Result<ObjectStorage> {
        let s3 = b
            .build()
            .map_err(|e| TieringError::Config(format!("s3://{}: {e}", c.bucket)))?;
        let description = if c.prefix.is_empty() {
            format!("s3://{}", c.bucket)
        } else {
            format!("s3://{}/{}", c.bucket, c.prefix)
        };
        let mut s = ObjectStorage::new(Arc::new(s3), &c.prefix, description);
        s.location = StoreLocation::S3 {
            bucket: c.bucket.clone(),
            endpoint: c.endpoint.trim().to_string(),
            region: c.region.clone(),
        };
        Ok(s)
    }

    fn s3_builder(c: &S3Config) -> Result<object_store::aws::AmazonS3Builder> {
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
        if let Some(endpoint) = c.client_endpoint()? {
            b = b.with_endpoint(endpoint);
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
        Ok(b)
    }

    /// Where the objects are (bucket and endpoint, or directory), for operator messages.
    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// Counts one request of `op` (its bytes when it succeeded) and maps its error.
    fn counted<T>(
        &self,
        op: StoreOp,
        name: &'static str,
        key: &str,
        r: std::result::Result<T, object_store::Error>,
        bytes: impl FnOnce(&T) -> u64,
    ) -> Result<T> {
        match r {
            Ok(v) => {
                self.stats.record(op, bytes(&v));
                Ok(v)
            }
            Err(e) => {
                self.stats.record(op, 0);
                let e = TieringError::from_store(name, key, e);
                if e.is_throttled() {
                    self.stats
                        .throttled
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e)
            }
        }
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
        let len = data.len() as u64;
        let r = self
            .inner
            .put(&self.path(key), PutPayload::from(data))
            .await;
        self.counted(StoreOp::Put, "put", key, r, |_| len)?;
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
        let r = self.inner.put_multipart(&location).await;
        let mut upload = self.counted(StoreOp::Put, "put_multipart", key, r, |_| 0)?;
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
                let len = part.len() as u64;
                sent += len;
                let r = upload.put_part(PutPayload::from(part)).await;
                self.counted(StoreOp::Put, "put_part", key, r, |_| len)?;
            }
            let r = upload.complete().await;
            self.counted(StoreOp::Put, "complete_multipart", key, r, |_| 0)?;
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
        let r = match self.inner.get(&self.path(key)).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        self.counted(StoreOp::Get, "get", key, r, |b| b.len() as u64)
    }

    async fn get_versioned(&self, key: &str) -> Result<(Bytes, ObjectVersion)> {
        let r = match self.inner.get(&self.path(key)).await {
            Ok(r) => {
                let version = ObjectVersion {
                    e_tag: r.meta.e_tag.clone(),
                    version: r.meta.version.clone(),
                };
                r.bytes().await.map(|data| (data, version))
            }
            Err(e) => Err(e),
        };
        self.counted(StoreOp::Get, "get", key, r, |(b, _)| b.len() as u64)
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
                let r = self.inner.head(&location).await;
                let current = match self.counted(StoreOp::Head, "head", key, r, |_| 0) {
                    Ok(m) => m,
                    Err(TieringError::NotFound { .. }) => return Err(conflict()),
                    Err(e) => return Err(e),
                };
                if v.e_tag.is_none() || current.e_tag != v.e_tag {
                    return Err(conflict());
                }
                put(PutMode::Overwrite).await
            }
        };
        let r = self.counted(StoreOp::Put, "put_if", key, r, |_| data.len() as u64)?;
        Ok(ObjectVersion {
            e_tag: r.e_tag,
            version: r.version,
        })
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let want = range.end.saturating_sub(range.start);
        let r = self.inner.get_range(&self.path(key), range.clone()).await;
        let b = self.counted(StoreOp::Get, "get_range", key, r, |b| b.len() as u64)?;
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
        let r = self.inner.delete(&self.path(key)).await;
        match self.counted(StoreOp::Delete, "delete", key, r, |_| 0) {
            Ok(()) | Err(TieringError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let p = self.path(prefix.trim_end_matches('/'));
        let metas: std::result::Result<Vec<object_store::ObjectMeta>, _> =
            self.inner.list(Some(&p)).try_collect().await;
        // One LIST request per 1,000 keys (S3's page size).
        let metas = self.counted(StoreOp::List, "list", prefix, metas, |_| 0)?;
        for _ in 1..metas.len().div_ceil(1000) {
            self.stats.record(StoreOp::List, 0);
        }
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

    fn stats(&self) -> Option<Arc<StoreStats>> {
        Some(self.stats.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let d = Path::new("/data/remote");
        assert_eq!(
            StorageConfig::parse("", d, "", "", None).ok(),
            Some(StorageConfig::Local { dir: d.into() })
        );
        assert_eq!(
            StorageConfig::parse("file:///srv/x", d, "", "", None).ok(),
            Some(StorageConfig::Local {
                dir: "/srv/x".into()
            })
        );
        let s3 = StorageConfig::parse("s3://b/p/q/", d, "http://h:1", "eu", Some(true)).ok();
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
        assert!(StorageConfig::parse("gs://x", d, "", "", None).is_err());
        assert!(StorageConfig::parse("s3://", d, "", "", None).is_err());
    }

    fn s3(uri: &str, endpoint: &str, path_style: Option<bool>) -> S3Config {
        match StorageConfig::parse(uri, Path::new("/d"), endpoint, "", path_style) {
            Ok(StorageConfig::S3(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn path_style_defaults_on_with_a_custom_endpoint_and_off_for_aws() {
        assert!(s3("s3://b/c1", "http://127.0.0.1:9000", None).path_style);
        assert!(!s3("s3://b/c1", "", None).path_style);
        assert!(!s3("s3://b/c1", "http://minio:9000", Some(false)).path_style);
        assert!(s3("s3://b/c1", "", Some(true)).path_style);
    }

    #[test]
    fn the_bucket_is_in_the_path_or_in_the_host_never_dropped() {
        // Path style: the client appends `/b` to the endpoint.
        let c = s3("s3://b/c1", "http://127.0.0.1:9000/", None);
        assert_eq!(
            c.client_endpoint().ok(),
            Some(Some("http://127.0.0.1:9000".to_string()))
        );
        // Virtual-hosted: the bucket goes in front of the host, port and path kept.
        let c = s3("s3://b/c1", "http://s3.local:9000", Some(false));
        assert_eq!(
            c.client_endpoint().ok(),
            Some(Some("http://b.s3.local:9000".to_string()))
        );
        let c = s3("s3://b/c1", "https://gw.example.com/s3/", Some(false));
        assert_eq!(
            c.client_endpoint().ok(),
            Some(Some("https://b.gw.example.com/s3".to_string()))
        );
        // Already naming the bucket: as it is.
        let c = s3("s3://b/c1", "http://b.s3.local:9000", Some(false));
        assert_eq!(
            c.client_endpoint().ok(),
            Some(Some("http://b.s3.local:9000".to_string()))
        );
        // A bucket cannot go in front of an address.
        let c = s3("s3://b/c1", "http://127.0.0.1:9000", Some(false));
        assert!(matches!(c.client_endpoint(), Err(TieringError::Config(_))));
        // AWS: the client builds the address from bucket and region.
        assert_eq!(s3("s3://b", "", None).client_endpoint().ok(), Some(None));
    }
}
