//! Committed group offsets exported to the tiered-storage bucket, so that `strata restore`
//! can bring them back after every disk is lost: `__consumer_offsets` is not tiered by
//! default (`strata.remote.storage.internal.topics.enable`), and a restore never brings it back
//! as a topic, so its content is not otherwise restored.
//!
//! Every `remote.group.offsets.export.interval.ms`, each broker lists the groups of the
//! offsets partitions it leads, reads each group's committed offsets from its shard (the
//! same reply OffsetFetch gets), and writes `__strata_groups/{hex of the group id}.json`
//! ([`GroupOffsetsExport`]) when they changed since it last wrote them. What a restore brings
//! back is therefore at most one interval old: a group resumes from offsets it had committed
//! up to an interval before the loss, and re-reads at most what it consumed in that interval
//! (at-least-once, as after any consumer crash). Objects of deleted groups are not removed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_tiering::RemoteStorage;
use tokio_util::sync::CancellationToken;

use super::state::{GroupRequest, GroupResponse};
use super::GroupCoordinator;

/// The key prefix of the exported group offsets in the bucket.
pub const GROUP_OFFSETS_PREFIX: &str = "__strata_groups/";

/// One group's committed offsets, as exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOffsetsExport {
    pub version: u32,
    pub group_id: String,
    /// topic → partition → committed offset.
    pub offsets: BTreeMap<String, BTreeMap<i32, ExportedOffset>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

impl GroupOffsetsExport {
    /// `__strata_groups/{hex}.json`: group ids may hold any character, keys may not.
    pub fn key(group_id: &str) -> String {
        let hex: String = group_id.bytes().map(|b| format!("{b:02x}")).collect();
        format!("{GROUP_OFFSETS_PREFIX}{hex}.json")
    }
}

impl GroupCoordinator {
    /// Starts the export task (see the module documentation); `interval_ms` 0: none.
    pub fn start_offsets_export(
        self: &Arc<Self>,
        storage: Arc<dyn RemoteStorage>,
        interval_ms: u64,
        cancel: CancellationToken,
    ) {
        if interval_ms == 0 {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            // Owned by this task alone: what it last wrote, per group.
            let mut written: HashMap<String, GroupOffsetsExport> = HashMap::new();
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(interval_ms)) => {}
                }
                this.export_once(storage.as_ref(), &mut written).await;
            }
        });
    }

    async fn export_once(
        &self,
        storage: &dyn RemoteStorage,
        written: &mut HashMap<String, GroupOffsetsExport>,
    ) {
        let Ok(receivers) = self.call_all(GroupRequest::List) else {
            return;
        };
        let mut groups = Vec::new();
        for rx in receivers {
            if let Ok(GroupResponse::List(listed)) = rx.await {
                groups.extend(listed.into_iter().map(|g| g.group_id.0.to_string()));
            }
        }
        for group_id in groups {
            let request = GroupRequest::FetchOffsets {
                group_id: group_id.clone(),
                topics: None,
                member: None,
                require_stable: false,
            };
            let Ok(rx) = self.call(&group_id, request) else {
                continue;
            };
            let Ok(GroupResponse::FetchOffsets(fetched)) = rx.await else {
                continue;
            };
            if fetched.error_code != 0 {
                continue;
            }
            let mut offsets: BTreeMap<String, BTreeMap<i32, ExportedOffset>> = BTreeMap::new();
            for (topic, partitions) in fetched.topics {
                for (partition, committed) in partitions {
                    if let Some(c) = committed {
                        offsets.entry(topic.clone()).or_default().insert(
                            partition,
                            ExportedOffset {
                                offset: c.offset,
                                leader_epoch: c.leader_epoch,
                                metadata: c.metadata,
                            },
                        );
                    }
                }
            }
            if offsets.is_empty() {
                continue;
            }
            let export = GroupOffsetsExport {
                version: 1,
                group_id: group_id.clone(),
                offsets,
            };
            if written.get(&group_id) == Some(&export) {
                continue;
            }
            let body = serde_json::to_vec_pretty(&export).unwrap_or_default();
            match storage
                .put(&GroupOffsetsExport::key(&group_id), body.into())
                .await
            {
                Ok(()) => {
                    written.insert(group_id, export);
                }
                Err(e) => {
                    tracing::debug!(group = %group_id, error = %e, "cannot export the group's offsets yet");
                    return;
                }
            }
        }
    }
}
