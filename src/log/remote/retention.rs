//! What leaves the remote log: segments past the total `retention.ms/bytes`, records below a
//! DeleteRecords offset, and everything of a deleted topic.

use std::sync::Arc;

use strata_tiering::{RemotePartitionManifest, TieringError};

use super::{PartitionRef, RemoteLogError, RemoteLogManager, RemoteLogPartition, TieredPartition};
use crate::model::{Offset, TopicId, TopicPartition};

impl RemoteLogManager {
    /// Total retention over the remote part, after an upload round on the leader. The bytes
    /// kept only locally count towards `retention.bytes` too.
    pub(super) async fn remote_retention(
        &self,
        p: &dyn TieredPartition,
        entry: &RemoteLogPartition,
        manifest: &Arc<RemotePartitionManifest>,
    ) -> Result<(), TieringError> {
        let tp = p.topic_partition();
        let log = p.local_log();
        let cfg = log.config();
        let remote_end = manifest.end_offset().unwrap_or(-1);
        let local_only: u64 = {
            let sealed = log.sealed_segments();
            let sealed_bytes: u64 = sealed.iter().map(|s| s.size_bytes).sum();
            let active = log.size_bytes().saturating_sub(sealed_bytes);
            sealed
                .iter()
                .filter(|s| s.last_offset.0 > remote_end)
                .map(|s| s.size_bytes)
                .sum::<u64>()
                + active
        };
        let (n, bytes) = entry
            .remote
            .enforce_retention(
                self.clock.now_ms(),
                if cfg.cleanup_policy.deletes() {
                    cfg.retention_ms
                } else {
                    -1
                },
                if cfg.cleanup_policy.deletes() {
                    cfg.retention_bytes
                } else {
                    -1
                },
                local_only,
                &self.cancel,
            )
            .await?;
        if n > 0 {
            self.metrics.remote_deleted_segments.inc_by(n as u64);
            tracing::info!(partition = %tp, segments = n, bytes, "remote retention deleted segments");
        }
        if let Some(m) = entry.remote.manifest() {
            self.metrics
                .remote_log_bytes
                .with_label_values(&[tp.topic.as_str()])
                .set(m.live_bytes() as i64);
        }
        Ok(())
    }

    /// DeleteRecords below or across the local log start: the remote start moves (durably).
    pub(in crate::log) async fn delete_records(
        &self,
        p: PartitionRef<'_>,
        offset: Offset,
    ) -> Result<(), RemoteLogError> {
        if self.manifest_of(p).await?.is_none() {
            return Ok(());
        }
        let entry = self.entry(p.tp, p.topic_id);
        entry
            .remote
            .delete_records(offset.0, &self.cancel)
            .await
            .map_err(|source| RemoteLogError::Storage {
                tp: p.tp.clone(),
                source,
            })
    }

    /// The topic was deleted: its remote data goes too (manifest marked, objects, manifest).
    pub fn on_topic_deleted(&self, tp: &TopicPartition, topic_id: TopicId) {
        let entry = self.entry(tp, topic_id);
        self.partitions().remove(tp);
        let cancel = self.cancel.clone();
        let metrics = self.metrics.clone();
        let tp = tp.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // The topic manifest goes first, so that a deleted topic is never restored (whatever
        // objects of its partitions are left behind by a failure).
        let topic_key = (tp.partition.0 == 0)
            .then(|| strata_tiering::RemoteTopicManifest::key(&tp.topic, topic_id.0));
        if topic_key.is_some() {
            self.published_topics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&topic_id);
        }
        let storage = self.storage.clone();
        rt.spawn(async move {
            let r = async {
                if let Some(key) = &topic_key {
                    match storage.delete(key).await {
                        Ok(()) | Err(TieringError::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                entry.remote.load(&cancel).await?;
                entry.remote.delete_all(&cancel).await
            }
            .await;
            match r {
                Ok(n) => tracing::info!(partition = %tp, objects = n, "deleted remote data of a deleted topic"),
                Err(TieringError::ShuttingDown) => {}
                Err(e) => {
                    metrics.delete_errors.inc();
                    tracing::warn!(partition = %tp, error = %e, "deleting remote data of a deleted topic failed; objects are left behind")
                }
            }
        });
    }
}
