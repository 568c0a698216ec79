//! Loading the remote metadata: the manifest (lazily, on first need), the offsets it answers
//! (the remote log start and end), and, at startup, restarting a local log that lost its data
//! after the remote end.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use strata_tiering::{RemoteLogAuxState, RemotePartitionManifest, TieringError};

use super::{
    PartitionRef, RemoteLogError, RemoteLogManager, RemoteLogPartition, TieredPartition,
    TieredPartitions,
};
use crate::model::{LeaderEpoch, Offset};

impl RemoteLogManager {
    /// At startup, for each led tiered partition: loads the manifest and, when the local log
    /// ends at or before the remote end (its data was lost, e.g. a replaced disk), restarts
    /// the local log empty after the remote end so new writes continue from there.
    pub async fn recover_partitions(&self, replicas: &dyn TieredPartitions) {
        for p in replicas.tiered_partitions() {
            if !p.local_log().config().remote_storage_enable || !p.is_leader() {
                continue;
            }
            let tp = p.topic_partition();
            let entry = self.entry(tp, p.topic_id());
            entry.remote_end_checked.store(true, Ordering::Relaxed);
            let loaded =
                tokio::time::timeout(Duration::from_secs(20), entry.remote.load(&self.cancel))
                    .await;
            let m = match loaded {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::warn!(partition = %tp, error = %e, "cannot read the remote manifest at startup; serving the local log only for now");
                    continue;
                }
                Err(_) => {
                    tracing::warn!(partition = %tp, "timed out reading the remote manifest at startup");
                    continue;
                }
            };
            let Some(end) = m.end_offset() else { continue };
            let leo = p.local_log().log_end_offset().0;
            if leo <= end {
                tracing::warn!(
                    partition = %tp, local_end = leo, remote_end = end,
                    "local log ends before the remote log (lost local data?): restarting it after the remote end"
                );
                self.restart_after_remote(p.as_ref(), &entry, end).await;
            }
        }
    }

    /// Restarts the local log of `p` empty after the remote end, with the leader epochs and
    /// producer state of the last remote segment (epoch checkpoint, producer snapshot), so an
    /// idempotent producer that resumes is recognised. Without them (unreadable), the log still
    /// restarts, with epochs and producers empty.
    pub(super) async fn restart_after_remote(
        &self,
        p: &dyn TieredPartition,
        entry: &RemoteLogPartition,
        end: i64,
    ) {
        let tp = p.topic_partition();
        let aux = tokio::time::timeout(
            Duration::from_secs(20),
            entry.remote.aux_state(&self.cancel),
        )
        .await
        .unwrap_or_else(|_| Err(TieringError::Config("timed out".into())));
        let (epochs, snapshot) = match aux {
            Ok(Some(a)) if a.end_offset == end => (
                a.leader_epochs
                    .iter()
                    .map(|&(e, o)| (LeaderEpoch(e), Offset(o)))
                    .collect(),
                a.producer_snapshot,
            ),
            Ok(_) => (Vec::new(), None),
            Err(e) => {
                tracing::warn!(partition = %tp, error = %e, "cannot read the last remote segment's epochs and producer snapshot; producer state starts empty");
                (Vec::new(), None)
            }
        };
        let log = p.local_log().clone();
        let r = crate::runtime::block_in_place(|| {
            log.start_after_remote(Offset(end + 1), &epochs, snapshot.as_deref())
        });
        match r {
            Ok(()) => p.local_log_restarted(),
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "cannot restart the local log after the remote end")
            }
        }
    }

    /// What a replica needs to start its local log after the remote end (Kafka's
    /// `buildRemoteLogAuxState`): the manifest re-read from the store, since the leader may
    /// have uploaded (and deleted locally) since this broker last read it, then the last
    /// remote segment's leader epochs and producer snapshot. `None` when the topic is not
    /// tiered here or nothing is uploaded yet.
    pub(in crate::log) async fn fresh_aux_state(
        &self,
        p: PartitionRef<'_>,
    ) -> Result<Option<RemoteLogAuxState>, RemoteLogError> {
        if !p.log.config().remote_storage_enable {
            return Ok(None);
        }
        let entry = self.entry(p.tp, p.topic_id);
        let storage = |source| RemoteLogError::Storage {
            tp: p.tp.clone(),
            source,
        };
        entry.remote.reload(&self.cancel).await.map_err(storage)?;
        entry.remote.aux_state(&self.cancel).await.map_err(storage)
    }

    /// The last offset of the remote log of `p`, reading its manifest if needed; `None` when
    /// the partition is not tiered or nothing is uploaded yet.
    pub(in crate::log) async fn remote_end_offset(
        &self,
        p: PartitionRef<'_>,
    ) -> Result<Option<Offset>, RemoteLogError> {
        Ok(self
            .manifest_of(p)
            .await?
            .and_then(|m| m.end_offset())
            .map(Offset))
    }

    /// The manifest of `p` if the topic is tiered here and it is loaded (loading it if not).
    pub(super) async fn manifest_of(
        &self,
        p: PartitionRef<'_>,
    ) -> Result<Option<Arc<RemotePartitionManifest>>, RemoteLogError> {
        if !p.log.config().remote_storage_enable {
            return Ok(None);
        }
        let entry = self.entry(p.tp, p.topic_id);
        if let Some(m) = entry.remote.manifest() {
            return Ok(Some(m));
        }
        let m =
            entry
                .remote
                .load(&self.cancel)
                .await
                .map_err(|source| RemoteLogError::Storage {
                    tp: p.tp.clone(),
                    source,
                })?;
        Ok(Some(m))
    }

    /// The start offset of the whole log (remote part included), without waiting: the local
    /// log start when no manifest is loaded.
    pub(in crate::log) fn log_start_offset(&self, p: PartitionRef<'_>) -> Offset {
        let local = p.log.local_log_start_offset();
        if !p.log.config().remote_storage_enable {
            return local;
        }
        let compacted = p.log.config().cleanup_policy.compacts();
        let remote = self
            .get(p.tp)
            .and_then(|e| e.remote.manifest())
            .and_then(|m| {
                let first = m.start_offset()?;
                // A compacted log's start stays where retention or DeleteRecords put it:
                // offsets before the first remote segment were emptied by the cleaner before
                // upload, a gap like any other in a compacted log, which reads skip.
                Some(if compacted {
                    m.log_start_offset.min(first)
                } else {
                    first
                })
            });
        match remote {
            Some(s) => Offset(s.min(local.0)),
            None => local,
        }
    }

    /// Like [`log_start_offset`](Self::log_start_offset), loading the manifest first if needed.
    pub(in crate::log) async fn log_start_offset_loaded(
        &self,
        p: PartitionRef<'_>,
    ) -> Result<Offset, RemoteLogError> {
        self.manifest_of(p).await?;
        Ok(self.log_start_offset(p))
    }
}
