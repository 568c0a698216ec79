//! [`RemotePartition`]: the one owner of a partition's remote state — its manifest and the steps
//! that change it (upload, DeleteRecords, retention, orphan sweep, deletion of everything).
//!
//! Readers take the published manifest (an `Arc` snapshot) without waiting; writers serialise
//! on an async mutex, because a step spans several store calls. Between processes (two brokers
//! that both believe they lead), manifest writes are conditional on the version last read, so
//! one never overwrites the other's (see [`RemoteStorage::put_if`]).

use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::{Result, TieringError};
use crate::keys::{parse_segment_id, PartitionPath, SegmentFileKind};
use crate::manifest::{RemoteLogSegmentMetadata, RemoteLogSegmentState, RemotePartitionManifest};
use crate::retry::{retry, Backoff};
use crate::scheduler::{remote_retention, SealedSegment};
use crate::storage::{PutCondition, RemoteStorage};

/// How hard a single step retries a store call before the step fails (the caller's loop then
/// backs off and tries the whole step again later).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff: Backoff {
                base: std::time::Duration::from_millis(50),
                max: std::time::Duration::from_secs(2),
            },
            max_attempts: 4,
        }
    }
}

/// What an upload did.
#[derive(Debug, Clone)]
pub struct UploadOutcome {
    pub meta: RemoteLogSegmentMetadata,
    /// Bytes sent, all files together.
    pub bytes: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct RemotePartition {
    path: PartitionPath,
    storage: Arc<dyn RemoteStorage>,
    pub(crate) retry: RetryPolicy,
    // Short sections only: swap or clone the Arc.
    published: RwLock<Option<Arc<RemotePartitionManifest>>>,
    /// What the next manifest write expects to find in the store: the version last read or
    /// written. Short sections only.
    stored_version: std::sync::Mutex<PutCondition>,
    pub(crate) writer: tokio::sync::Mutex<()>,
}

fn epochs_file(epochs: &[(i32, i64)]) -> Bytes {
    // The leader-epoch checkpoint format of the broker: version, count, then "epoch offset".
    let mut s = format!("0\n{}\n", epochs.len());
    for (e, o) in epochs {
        s.push_str(&format!("{e} {o}\n"));
    }
    Bytes::from(s)
}

/// Parses [`epochs_file`]; `None` if it is not one.
fn parse_epochs_file(data: &[u8]) -> Option<Vec<(i32, i64)>> {
    let text = std::str::from_utf8(data).ok()?;
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let n: usize = lines.next()?.trim().parse().ok()?;
    let rows: Option<Vec<(i32, i64)>> = lines
        .take(n)
        .map(|l| {
            let (e, o) = l.trim().split_once(' ')?;
            Some((e.parse().ok()?, o.parse().ok()?))
        })
        .collect();
    rows.filter(|r| r.len() == n)
}

/// What a replica whose local log was lost needs to continue after the remote end (Kafka's
/// `buildRemoteLogAuxState`): from the last remote segment, its leader-epoch checkpoint and
/// producer snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLogAuxState {
    /// The last offset held remotely; the local log restarts after it.
    pub end_offset: i64,
    /// `(epoch, start offset)` of every epoch that wrote the remote log, oldest first.
    pub leader_epochs: Vec<(i32, i64)>,
    /// The producer state after the remote end, as the broker encoded it; `None` if the last
    /// segment went up without one.
    pub producer_snapshot: Option<Bytes>,
}

impl RemotePartition {
    /// Reads the aux state of the remote log as the loaded manifest names it; `None` if the
    /// remote log is empty. Epochs of older segments come from the manifest entries, those of
    /// the last segment from its uploaded checkpoint.
    pub async fn aux_state(&self, cancel: &CancellationToken) -> Result<Option<RemoteLogAuxState>> {
        let Some(m) = self.manifest() else {
            return Err(TieringError::Config("manifest not loaded".into()));
        };
        let Some(last) = m
            .segments
            .iter()
            .filter(|s| s.state == RemoteLogSegmentState::CopySegmentFinished)
            .max_by_key(|s| s.end_offset)
        else {
            return Ok(None);
        };
        let get = |kind: SegmentFileKind| {
            let key = self.path.segment_key(last, kind);
            async move {
                retry(self.retry.backoff, self.retry.max_attempts, cancel, || {
                    self.storage.get(&key)
                })
                .await
            }
        };
        let epochs_key = self
            .path
            .segment_key(last, SegmentFileKind::LeaderEpochCheckpoint);
        let last_epochs = parse_epochs_file(&get(SegmentFileKind::LeaderEpochCheckpoint).await?)
            .ok_or_else(|| TieringError::Corrupt {
                key: epochs_key,
                reason: "not a leader-epoch checkpoint".into(),
            })?;
        let mut leader_epochs: Vec<(i32, i64)> = Vec::new();
        let older = m
            .segments
            .iter()
            .filter(|s| s.segment_id != last.segment_id && s.end_offset < last.base_offset)
            .flat_map(|s| s.segment_leader_epochs.iter().copied());
        for (epoch, start) in older.chain(last_epochs) {
            // Keep the first start of each epoch; both must increase.
            match leader_epochs.last() {
                Some(&(e, _)) if epoch <= e => {}
                Some(&(_, o)) if start <= o => {}
                _ => leader_epochs.push((epoch, start)),
            }
        }
        let producer_snapshot = if last.has_snapshot {
            Some(get(SegmentFileKind::ProducerSnapshot).await?)
        } else {
            None
        };
        Ok(Some(RemoteLogAuxState {
            end_offset: last.end_offset,
            leader_epochs,
            producer_snapshot,
        }))
    }

    pub fn new(
        path: PartitionPath,
        storage: Arc<dyn RemoteStorage>,
        retry: RetryPolicy,
    ) -> RemotePartition {
        RemotePartition {
            path,
            storage,
            retry,
            published: RwLock::new(None),
            stored_version: std::sync::Mutex::new(PutCondition::Absent),
            writer: tokio::sync::Mutex::new(()),
        }
    }

    pub fn path(&self) -> &PartitionPath {
        &self.path
    }

    pub fn storage(&self) -> &Arc<dyn RemoteStorage> {
        &self.storage
    }

    /// The manifest as last loaded or written; `None` until [`load`](Self::load) ran.
    pub fn manifest(&self) -> Option<Arc<RemotePartitionManifest>> {
        self.published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn publish(&self, m: RemotePartitionManifest) -> Arc<RemotePartitionManifest> {
        let m = Arc::new(m);
        *self.published.write().unwrap_or_else(|p| p.into_inner()) = Some(m.clone());
        m
    }

    /// Reads the manifest from the store (an absent one is empty) unless already loaded.
    pub async fn load(&self, cancel: &CancellationToken) -> Result<Arc<RemotePartitionManifest>> {
        if let Some(m) = self.manifest() {
            return Ok(m);
        }
        let _w = self.writer.lock().await;
        if let Some(m) = self.manifest() {
            return Ok(m);
        }
        let m = self.read_stored(cancel).await?;
        Ok(self.publish(m))
    }

    /// Reads the manifest from the store again (a follower tracking its leader's uploads).
    pub async fn reload(&self, cancel: &CancellationToken) -> Result<Arc<RemotePartitionManifest>> {
        let _w = self.writer.lock().await;
        let m = self.read_stored(cancel).await?;
        Ok(self.publish(m))
    }

    /// Reads the stored manifest (an absent one is empty) and remembers its version for the
    /// next conditional write.
    async fn read_stored(&self, cancel: &CancellationToken) -> Result<RemotePartitionManifest> {
        let key = self.path.manifest_key();
        let got = retry(self.retry.backoff, self.retry.max_attempts, cancel, || {
            self.storage.get_versioned(&key)
        })
        .await;
        let (m, version) = match got {
            Ok((data, v)) => (
                RemotePartitionManifest::decode(&key, &data)?,
                PutCondition::Version(v),
            ),
            Err(TieringError::NotFound { .. }) => (
                RemotePartitionManifest::empty(
                    &self.path.topic,
                    self.path.topic_id,
                    self.path.partition,
                ),
                PutCondition::Absent,
            ),
            Err(e) => return Err(e),
        };
        *self.lock_stored_version() = version;
        Ok(m)
    }

    fn lock_stored_version(&self) -> std::sync::MutexGuard<'_, PutCondition> {
        self.stored_version
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the manifest if the stored one is still the one this partition last read or
    /// wrote (a conditional put). If another writer changed it meanwhile — a second leader —
    /// nothing is overwritten: the stored manifest is read and published instead and the step
    /// fails with [`TieringError::ManifestConflict`]; the next step starts from what is there.
    pub(crate) async fn write_manifest(
        &self,
        m: RemotePartitionManifest,
        cancel: &CancellationToken,
    ) -> Result<Arc<RemotePartitionManifest>> {
        let key = self.path.manifest_key();
        let data = m.encode();
        let expected = self.lock_stored_version().clone();
        let put = retry(self.retry.backoff, self.retry.max_attempts, cancel, || {
            self.storage.put_if(&key, data.clone(), &expected)
        })
        .await;
        match put {
            Ok(version) => {
                *self.lock_stored_version() = PutCondition::Version(version);
                Ok(self.publish(m))
            }
            Err(TieringError::PreconditionFailed { .. }) => {
                let stored = self.read_stored(cancel).await?;
                // An earlier attempt of this same write may have landed with its reply lost.
                let ours = stored == m;
                let published = self.publish(stored);
                if ours {
                    return Ok(published);
                }
                tracing::warn!(key = %key, "the remote manifest was changed by another writer; not overwriting it");
                Err(TieringError::ManifestConflict { key })
            }
            Err(e) => Err(e),
        }
    }

    /// Uploads a sealed segment: every data object first, then the manifest naming it. A
    /// failure or a crash before the manifest write leaves only orphans (see
    /// [`sweep_orphans`](Self::sweep_orphans)).
    pub async fn upload(
        &self,
        seg: &SealedSegment,
        leader_epoch: i32,
        now_ms: i64,
        cancel: &CancellationToken,
    ) -> Result<UploadOutcome> {
        let _w = self.writer.lock().await;
        let current = self
            .manifest()
            .ok_or_else(|| TieringError::Config("manifest not loaded".into()))?;
        if current.end_offset().is_some_and(|e| e >= seg.end_offset) {
            // Already uploaded (a repeated step after a restart or a leadership change).
            let meta = current
                .segments
                .iter()
                .find(|s| s.base_offset <= seg.base_offset && s.end_offset >= seg.end_offset)
                .cloned();
            if let Some(meta) = meta {
                return Ok(UploadOutcome { meta, bytes: 0 });
            }
        }
        let (bytes, meta) = self
            .upload_new_objects(seg, leader_epoch, now_ms, cancel)
            .await?;
        let mut meta = meta;
        let mut next = (*current).clone();
        next.add_copied(meta.clone());
        meta.state = RemoteLogSegmentState::CopySegmentFinished;
        self.write_manifest(next, cancel).await?;
        Ok(UploadOutcome { meta, bytes })
    }

    /// Writes every object of `seg` under a new segment id (the `CopySegmentStarted` step),
    /// deleting what went up if a write fails: nothing names them yet.
    pub(crate) async fn upload_new_objects(
        &self,
        seg: &SealedSegment,
        leader_epoch: i32,
        now_ms: i64,
        cancel: &CancellationToken,
    ) -> Result<(u64, RemoteLogSegmentMetadata)> {
        let meta = RemoteLogSegmentMetadata {
            segment_id: Uuid::new_v4(),
            base_offset: seg.base_offset,
            end_offset: seg.end_offset,
            max_timestamp_ms: seg.max_timestamp_ms,
            leader_epoch,
            segment_bytes: 0,
            log_crc32c: 0,
            index_bytes: 0,
            time_index_bytes: 0,
            has_snapshot: false,
            txn_index_bytes: 0,
            segment_leader_epochs: seg.leader_epochs.clone(),
            state: RemoteLogSegmentState::CopySegmentStarted,
            uploaded_ms: now_ms,
            delete_after_ms: 0,
        };
        let failed_meta = meta.clone();
        match self.upload_objects(seg, meta, cancel).await {
            Ok(done) => Ok(done),
            Err(e) => {
                // Best effort; the orphan sweep catches what this misses.
                if !matches!(e, TieringError::ShuttingDown) {
                    self.delete_objects(&failed_meta).await;
                }
                Err(e)
            }
        }
    }

    /// Deletes every object of a segment the manifest does not name (best effort, once).
    pub async fn delete_objects(&self, meta: &RemoteLogSegmentMetadata) {
        for kind in SegmentFileKind::ALL {
            let _ = self
                .storage
                .delete(&self.path.segment_key(meta, kind))
                .await;
        }
    }

    /// Writes every data object of a segment (the `CopySegmentStarted` step).
    async fn upload_objects(
        &self,
        seg: &SealedSegment,
        mut meta: RemoteLogSegmentMetadata,
        cancel: &CancellationToken,
    ) -> Result<(u64, RemoteLogSegmentMetadata)> {
        let (policy, n) = (self.retry.backoff, self.retry.max_attempts);
        let put_file =
            |kind: SegmentFileKind, file: std::path::PathBuf, meta: &RemoteLogSegmentMetadata| {
                let key = self.path.segment_key(meta, kind);
                async move { retry(policy, n, cancel, || self.storage.put_file(&key, &file)).await }
            };
        let log = put_file(SegmentFileKind::Log, seg.log_path.clone(), &meta).await?;
        meta.segment_bytes = log.size_bytes;
        meta.log_crc32c = log.crc32c;
        let mut bytes = log.size_bytes;
        let idx = put_file(SegmentFileKind::OffsetIndex, seg.index_path.clone(), &meta).await?;
        meta.index_bytes = idx.size_bytes;
        let tidx = put_file(
            SegmentFileKind::TimeIndex,
            seg.time_index_path.clone(),
            &meta,
        )
        .await?;
        meta.time_index_bytes = tidx.size_bytes;
        bytes += idx.size_bytes + tidx.size_bytes;
        if let Some(snap) = &seg.snapshot_path {
            match put_file(SegmentFileKind::ProducerSnapshot, snap.clone(), &meta).await {
                Ok(o) => {
                    meta.has_snapshot = true;
                    bytes += o.size_bytes;
                }
                // Snapshots are pruned as the log rolls on; one gone meanwhile is not needed.
                Err(TieringError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(txn_index) = &seg.txn_index_path {
            let o = put_file(SegmentFileKind::TransactionIndex, txn_index.clone(), &meta).await?;
            meta.txn_index_bytes = o.size_bytes;
            bytes += o.size_bytes;
        }
        let epochs = epochs_file(&seg.leader_epochs);
        bytes += epochs.len() as u64;
        let key = self
            .path
            .segment_key(&meta, SegmentFileKind::LeaderEpochCheckpoint);
        retry(policy, n, cancel, || self.storage.put(&key, epochs.clone())).await?;

        Ok((bytes, meta))
    }

    /// DeleteRecords: nothing below `offset` is served from now on. The manifest is written
    /// before this returns; the objects go at the next retention pass.
    pub async fn delete_records(&self, offset: i64, cancel: &CancellationToken) -> Result<()> {
        let _w = self.writer.lock().await;
        let Some(current) = self.manifest() else {
            return Err(TieringError::Config("manifest not loaded".into()));
        };
        if offset <= current.log_start_offset {
            return Ok(());
        }
        let mut next = (*current).clone();
        next.log_start_offset = offset;
        self.write_manifest(next, cancel).await?;
        Ok(())
    }

    /// Total retention over the remote log: marks expired segments `DeleteSegmentStarted` (and
    /// moves the start offset) in a durable manifest, deletes their objects, then drops their
    /// entries. Every step may be repeated. Returns the segments and bytes removed.
    pub async fn enforce_retention(
        &self,
        now_ms: i64,
        retention_ms: i64,
        retention_bytes: i64,
        local_only_bytes: u64,
        cancel: &CancellationToken,
    ) -> Result<(usize, u64)> {
        let _w = self.writer.lock().await;
        let Some(current) = self.manifest() else {
            return Ok((0, 0));
        };
        let plan = remote_retention(
            &current,
            now_ms,
            retention_ms,
            retention_bytes,
            local_only_bytes,
        );
        if plan.delete.is_empty() {
            return Ok((0, 0));
        }
        let mut marked = (*current).clone();
        marked.mark_deleting(&plan.delete);
        marked.log_start_offset = marked.log_start_offset.max(plan.new_log_start_offset);
        let marked = if marked != *current {
            self.write_manifest(marked, cancel).await?
        } else {
            current
        };
        let doomed: Vec<RemoteLogSegmentMetadata> = marked
            .segments
            .iter()
            .filter(|s| plan.delete.contains(&s.segment_id))
            .cloned()
            .collect();
        let mut bytes = 0;
        for s in &doomed {
            for kind in SegmentFileKind::ALL {
                let key = self.path.segment_key(s, kind);
                retry(self.retry.backoff, self.retry.max_attempts, cancel, || {
                    self.storage.delete(&key)
                })
                .await?;
            }
            bytes += s.segment_bytes;
        }
        let mut done = (*marked).clone();
        done.remove(&plan.delete);
        self.write_manifest(done, cancel).await?;
        Ok((doomed.len(), bytes))
    }

    /// Deletes objects under the partition prefix that the manifest does not name and that are
    /// older than `min_age_ms` (an upload in flight elsewhere is younger). Returns how many.
    pub async fn sweep_orphans(
        &self,
        now_ms: i64,
        min_age_ms: i64,
        cancel: &CancellationToken,
    ) -> Result<usize> {
        let _w = self.writer.lock().await;
        let Some(current) = self.manifest() else {
            return Ok(0);
        };
        let manifest_key = self.path.manifest_key();
        let prefix = self.path.prefix();
        let listed = retry(self.retry.backoff, self.retry.max_attempts, cancel, || {
            self.storage.list(&prefix)
        })
        .await?;
        let mut n = 0;
        for o in listed {
            if o.key == manifest_key || now_ms - o.last_modified_ms < min_age_ms {
                continue;
            }
            let named = parse_segment_id(&o.key)
                .is_some_and(|id| current.segments.iter().any(|s| s.segment_id == id));
            if named {
                continue;
            }
            tracing::info!(key = %o.key, "deleting orphaned remote object");
            retry(self.retry.backoff, self.retry.max_attempts, cancel, || {
                self.storage.delete(&o.key)
            })
            .await?;
            n += 1;
        }
        Ok(n)
    }

    /// Topic deletion: every segment marked deleted in the manifest, every object deleted, the
    /// manifest last.
    pub async fn delete_all(&self, cancel: &CancellationToken) -> Result<usize> {
        let _w = self.writer.lock().await;
        let key = self.path.manifest_key();
        if let Some(current) = self.manifest() {
            let ids: Vec<Uuid> = current.segments.iter().map(|s| s.segment_id).collect();
            if !ids.is_empty() {
                let mut marked = (*current).clone();
                marked.mark_deleting(&ids);
                self.write_manifest(marked, cancel).await?;
            }
        }
        let prefix = self.path.prefix();
        let listed = retry(self.retry.backoff, self.retry.max_attempts, cancel, || {
            self.storage.list(&prefix)
        })
        .await?;
        let mut n = 0;
        for o in listed.iter().filter(|o| o.key != key) {
            retry(self.retry.backoff, self.retry.max_attempts, cancel, || {
                self.storage.delete(&o.key)
            })
            .await?;
            n += 1;
        }
        retry(self.retry.backoff, self.retry.max_attempts, cancel, || {
            self.storage.delete(&key)
        })
        .await?;
        *self.published.write().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(n)
    }
}
