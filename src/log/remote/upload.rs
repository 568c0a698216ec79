//! The periodic task and the leader's round: uploads of sealed segments in offset order, then
//! local retention, then remote retention (`retention.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use strata_tiering::scheduler::{self, SealedSegment};
use strata_tiering::{Backoff, RemoteTopicManifest, TieringError};

use super::{RemoteLogManager, RemoteLogPartition, TieredPartition, TieredPartitions};
use crate::log::SealedSegmentInfo;
use crate::model::TopicId;

fn round_backoff() -> Backoff {
    Backoff {
        base: Duration::from_millis(500),
        max: Duration::from_secs(30),
    }
}

pub(super) fn to_sealed(s: &SealedSegmentInfo) -> SealedSegment {
    SealedSegment {
        base_offset: s.base_offset.0,
        end_offset: s.last_offset.0,
        max_timestamp_ms: s.max_timestamp_ms,
        size_bytes: s.size_bytes,
        log_path: s.log_path.clone(),
        index_path: s.index_path.clone(),
        time_index_path: s.time_index_path.clone(),
        snapshot_path: s.producer_snapshot_path.clone(),
        txn_index_path: s.txn_index_path.clone(),
        leader_epochs: s.leader_epochs.iter().map(|(e, o)| (e.0, o.0)).collect(),
    }
}

impl RemoteLogManager {
    /// Runs the periodic task until shutdown.
    pub fn start(self: &Arc<Self>, replicas: Arc<dyn TieredPartitions>) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = this.cancel.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(this.config.task_interval_ms)) => {}
                }
                this.run_once(replicas.as_ref());
                this.sync_metrics();
            }
        });
    }

    /// One round: starts work for every tiered partition that is not already busy or backing
    /// off. Returns at once; the work runs on tasks.
    pub fn run_once(self: &Arc<Self>, replicas: &dyn TieredPartitions) {
        let now = self.clock.now_ms();
        // The store's breaker is open: no partition starts a round (each would only be
        // refused); the lag gauges keep their last values until the probe closes it.
        if self
            .storage
            .breaker()
            .and_then(|b| b.open_for_ms())
            .is_some()
        {
            return;
        }
        self.publish_topic_manifests(replicas.led_tiered_topics());
        let (mut lag_bytes, mut lag_segments) = (0u64, 0u64);
        for p in replicas.tiered_partitions() {
            if !p.local_log().config().remote_storage_enable {
                continue;
            }
            let entry = self.entry(p.topic_partition(), p.topic_id());
            lag_bytes += entry.lag_bytes.load(Ordering::Relaxed);
            lag_segments += entry.lag_segments.load(Ordering::Relaxed);
            if now < entry.retry_after_ms.load(Ordering::Relaxed) as i64 {
                continue;
            }
            if entry.busy.swap(true, Ordering::AcqRel) {
                continue;
            }
            let this = self.clone();
            tokio::spawn(async move {
                let leader = p.is_leader();
                let r = if leader {
                    this.leader_round(p.as_ref(), &entry).await
                } else {
                    entry.remote_end_checked.store(false, Ordering::Relaxed);
                    entry.remote.reload(&this.cancel).await.map(|_| ())
                };
                match r {
                    Ok(()) => {
                        entry.failures.store(0, Ordering::Relaxed);
                        entry.retry_after_ms.store(0, Ordering::Relaxed);
                    }
                    Err(TieringError::ShuttingDown) => {}
                    // Stopped by the store's open breaker: not this partition's failure, and
                    // the breaker said when it probes; one line was logged when it opened.
                    Err(TieringError::CircuitOpen { retry_in_ms, .. }) => {
                        entry.retry_after_ms.store(
                            (this.clock.now_ms() + retry_in_ms as i64) as u64,
                            Ordering::Relaxed,
                        );
                    }
                    Err(e) => {
                        let n = entry.failures.fetch_add(1, Ordering::Relaxed);
                        let wait = round_backoff().delay(n);
                        entry.retry_after_ms.store(
                            (this.clock.now_ms() + wait.as_millis() as i64) as u64,
                            Ordering::Relaxed,
                        );
                        this.metrics.upload_errors.inc();
                        tracing::warn!(
                            partition = %p.topic_partition(), error = %e, failures = n + 1,
                            retry_in_ms = wait.as_millis() as u64,
                            "tiering round failed; local segments are kept until uploaded"
                        );
                    }
                }
                entry.busy.store(false, Ordering::Release);
            });
        }
        self.metrics.upload_lag_bytes.set(lag_bytes as i64);
        self.metrics.upload_lag_segments.set(lag_segments as i64);
    }

    /// Writes the topic manifests that changed since this broker last wrote them, one task
    /// at a time; a failure is retried at the next round.
    fn publish_topic_manifests(self: &Arc<Self>, led: Vec<RemoteTopicManifest>) {
        let changed: Vec<RemoteTopicManifest> = {
            let published = self
                .published_topics
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            led.into_iter()
                .filter(|t| published.get(&TopicId(t.topic_id)) != Some(t))
                .collect()
        };
        if changed.is_empty() || self.publishing_topics.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            for t in changed {
                let key = RemoteTopicManifest::key(&t.topic, t.topic_id);
                match this.storage.put(&key, t.encode()).await {
                    Ok(()) => {
                        tracing::debug!(topic = %t.topic, partitions = t.partitions, "wrote the topic manifest");
                        this.published_topics
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(TopicId(t.topic_id), t);
                    }
                    Err(e) => {
                        tracing::debug!(topic = %t.topic, error = %e, "cannot write the topic manifest yet");
                        break;
                    }
                }
            }
            this.publishing_topics.store(false, Ordering::Release);
        });
    }

    async fn leader_round(
        &self,
        p: &dyn TieredPartition,
        entry: &RemoteLogPartition,
    ) -> Result<(), TieringError> {
        let cancel = &self.cancel;
        let tp = p.topic_partition();
        let manifest = entry.remote.load(cancel).await?;
        // The first round as leader here: a log that ends at or before the remote end lost its
        // data or was never written (a topic re-created by `strata restore` with its old id):
        // it restarts after the remote end, with the last segment's epochs and producers, as
        // startup recovery does.
        if !entry.remote_end_checked.swap(true, Ordering::AcqRel) {
            if let Some(end) = manifest.end_offset() {
                let leo = p.local_log().log_end_offset().0;
                if leo <= end {
                    tracing::warn!(
                        partition = %tp, local_end = leo, remote_end = end,
                        "local log ends before the remote log: restarting it after the remote end"
                    );
                    self.restart_after_remote(p, entry, end).await;
                }
            }
        }
        let now = self.clock.now_ms();
        if now >= entry.next_sweep_ms.load(Ordering::Relaxed) {
            let n = entry
                .remote
                .sweep_orphans(now, self.config.orphan_grace_ms, cancel)
                .await?;
            if n > 0 {
                tracing::info!(partition = %tp, orphans = n, "deleted orphaned remote objects");
            }
            entry.next_sweep_ms.store(
                now.saturating_add(self.config.orphan_sweep_interval_ms),
                Ordering::Relaxed,
            );
        }
        let mut manifest = manifest;
        loop {
            let sealed: Vec<SealedSegment> = p
                .local_log()
                .sealed_segments()
                .iter()
                .map(to_sealed)
                .collect();
            let (n, bytes) = scheduler::upload_lag(&manifest, &sealed);
            entry.lag_segments.store(n as u64, Ordering::Relaxed);
            entry.lag_bytes.store(bytes, Ordering::Relaxed);
            let log = p.local_log();
            let compacts = log.config().cleanup_policy.compacts();
            // A compacted topic uploads what the cleaner has passed (its output), never a
            // segment the cleaner may still rewrite.
            let bound = if compacts {
                p.last_stable_offset().min(log.cleaner_checkpoint()).0
            } else {
                p.last_stable_offset().0
            };
            let Some(seg) = scheduler::next_upload(&manifest, &sealed, bound).cloned() else {
                break;
            };
            if compacts && manifest.end_offset().is_some_and(|e| seg.base_offset <= e) {
                // The cleaner rewrote uploaded segments (tiering was off meanwhile): this one
                // would overlap the remote log. Nothing goes up; its local copy stays.
                tracing::warn!(
                    partition = %tp, base = seg.base_offset, end = seg.end_offset,
                    remote_end = manifest.end_offset().unwrap_or(-1),
                    "a local segment overlaps the remote log; not uploading it"
                );
                break;
            }
            if compacts {
                // Claim the segment before reading its files: the cleaner's floor moves past
                // it. A cleaner swap that began before the claim finishes under the log's
                // lock, which listing the segments again waits for; if it replaced the
                // segment, the next turn picks up what it wrote.
                entry
                    .upload_claim
                    .fetch_max(seg.end_offset + 1, Ordering::AcqRel);
                let unchanged = log.sealed_segments().iter().any(|s| {
                    s.base_offset.0 == seg.base_offset
                        && s.last_offset.0 == seg.end_offset
                        && s.size_bytes == seg.size_bytes
                });
                if !unchanged {
                    continue;
                }
            }
            let epoch = p.leader_epoch().0;
            let _slot = tokio::select! {
                s = self.upload_slots.clone().acquire_owned() => s.map_err(|_| TieringError::ShuttingDown)?,
                () = cancel.cancelled() => return Err(TieringError::ShuttingDown),
            };
            let started = std::time::Instant::now();
            let out = entry
                .remote
                .upload(&seg, epoch, self.clock.now_ms(), cancel)
                .await?;
            self.metrics.upload_bytes.inc_by(out.bytes);
            self.metrics.uploaded_segments.inc();
            self.metrics
                .upload_latency
                .observe(started.elapsed().as_secs_f64());
            tracing::debug!(partition = %tp, base = seg.base_offset, end = seg.end_offset, bytes = out.bytes, "uploaded segment");
            manifest = entry.remote.manifest().unwrap_or(manifest);
        }
        // Every claimed segment is in the manifest now, whose end bounds the cleaner instead.
        entry.upload_claim.store(i64::MIN, Ordering::Release);
        self.maybe_compact_remote(p, entry).await?;
        // Local retention now that the manifest moved; blocking file deletes off the reactor.
        let log = p.local_log().clone();
        let tp_owned = tp.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = log.delete_old_segments() {
                tracing::warn!(partition = %tp_owned, error = %e, "local retention failed");
            }
        })
        .await;
        self.remote_retention(p, entry, &manifest).await
    }
}
