//! What a cluster needs to rebuild a topic from the bucket alone: the per-topic object
//! `{topic}-{topic_id}/topic.json` ([`RemoteTopicManifest`]: name, id, partition count, the
//! topic's config overrides), written by the leader of partition 0 whenever they change, and
//! [`restore_plan`], the pure reading of a bucket listing into the topics a restore creates.
//!
//! The object is encoded like the partition manifest (JSON, then a `crc32:` line), so a torn
//! or foreign object is refused. It sits beside the partition prefixes, not under one, so the
//! orphan sweep of a partition never touches it.
//!
//! Producer state and leader epochs need nothing more: every remote segment carries its
//! producer snapshot (`.snapshot`) and leader epoch checkpoint (`.epochs`), and
//! [`RemotePartition::aux_state`](crate::RemotePartition::aux_state) reads those of the last
//! one, which is what a partition restarted after the remote end adopts.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Result, TieringError};

pub const TOPIC_MANIFEST_VERSION: u32 = 1;
pub const TOPIC_MANIFEST_FILE: &str = "topic.json";

/// See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteTopicManifest {
    pub version: u32,
    pub topic: String,
    pub topic_id: Uuid,
    pub partitions: i32,
    /// The topic's config overrides (not the broker defaults), under Kafka's names.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    /// The cluster's next producer id when this was written: every producer id in the
    /// topic's producer snapshots is below it (up to the lag of this object's rewrite), so
    /// a restored cluster hands out ids from above it and a new producer never takes the
    /// id of one whose state was restored.
    #[serde(default)]
    pub next_producer_id: i64,
}

impl RemoteTopicManifest {
    pub fn new(
        topic: &str,
        topic_id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> RemoteTopicManifest {
        RemoteTopicManifest {
            version: TOPIC_MANIFEST_VERSION,
            topic: topic.to_string(),
            topic_id,
            partitions,
            configs,
            next_producer_id: 0,
        }
    }

    /// `{topic}-{topic_id}/topic.json`
    pub fn key(topic: &str, topic_id: Uuid) -> String {
        format!("{topic}-{topic_id}/{TOPIC_MANIFEST_FILE}")
    }

    pub fn encode(&self) -> Bytes {
        crate::manifest::encode_checked(self)
    }

    pub fn decode(key: &str, data: &[u8]) -> Result<RemoteTopicManifest> {
        let bad = |reason: String| TieringError::Manifest {
            key: key.to_string(),
            reason,
        };
        let m: RemoteTopicManifest = crate::manifest::decode_checked(key, data)?;
        if m.version != TOPIC_MANIFEST_VERSION {
            return Err(bad(format!("unknown version {}", m.version)));
        }
        Ok(m)
    }
}

/// The topic name and id of a key `{topic}-{topic_id}/...` (topic names may contain `-`; the
/// id is the last 36 characters before the first `/`).
pub fn parse_topic_dir(key: &str) -> Option<(String, Uuid)> {
    let (dir, _) = key.split_once('/')?;
    let cut = dir.len().checked_sub(37)?;
    if dir.as_bytes().get(cut) != Some(&b'-') {
        return None;
    }
    let id = Uuid::parse_str(&dir[cut + 1..]).ok()?;
    Some((dir[..cut].to_string(), id))
}

/// A topic as a restore finds it in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreTopic {
    pub topic: String,
    pub topic_id: Uuid,
    /// From the topic manifest; without one, one more than the highest partition that has a
    /// partition manifest (partitions that never uploaded would be missed: flagged).
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
    /// Partitions with a manifest in the bucket.
    pub manifests: BTreeSet<i32>,
    /// False when the topic manifest is missing (written by a version before it existed):
    /// partition count and configs are guesses.
    pub described: bool,
}

/// Why a topic found in the bucket is not restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreSkip {
    /// Two ids for one name (a topic deleted and re-created whose old data is still there):
    /// the one with more partition manifests is kept, ties go to the described one.
    ShadowedId { topic: String, topic_id: Uuid },
}

/// Reads a listing of the bucket (every key, and the decoded topic manifests) into the topics
/// to restore, sorted by name, keeping those whose name `include` accepts. A described topic
/// with no partition manifest (nothing uploaded yet) is restored empty; deleting a topic
/// deletes its topic manifest first, so a deleted topic is not brought back. Pure.
pub fn restore_plan(
    keys: &[String],
    described: &[RemoteTopicManifest],
    include: impl Fn(&str) -> bool,
) -> (Vec<RestoreTopic>, Vec<RestoreSkip>) {
    let mut found: BTreeMap<(String, Uuid), RestoreTopic> = BTreeMap::new();
    for key in keys {
        let Some((topic, id)) = parse_topic_dir(key) else {
            continue;
        };
        let rest = &key[key.find('/').map_or(0, |i| i + 1)..];
        let Some((partition, file)) = rest.split_once('/') else {
            continue;
        };
        let (Ok(partition), "manifest.json") = (partition.parse::<i32>(), file) else {
            continue;
        };
        let t = found
            .entry((topic.clone(), id))
            .or_insert_with(|| RestoreTopic {
                topic,
                topic_id: id,
                partitions: 0,
                configs: BTreeMap::new(),
                manifests: BTreeSet::new(),
                described: false,
            });
        t.manifests.insert(partition);
        t.partitions = t.partitions.max(partition + 1);
    }
    let mut skipped = Vec::new();
    for d in described {
        let t = found
            .entry((d.topic.clone(), d.topic_id))
            .or_insert_with(|| RestoreTopic {
                topic: d.topic.clone(),
                topic_id: d.topic_id,
                partitions: 0,
                configs: BTreeMap::new(),
                manifests: BTreeSet::new(),
                described: false,
            });
        t.partitions = t.partitions.max(d.partitions);
        t.configs = d.configs.clone();
        t.described = true;
    }
    let mut by_name: BTreeMap<String, RestoreTopic> = BTreeMap::new();
    for (_, t) in found {
        if !include(&t.topic) {
            continue;
        }
        match by_name.get(&t.topic) {
            Some(kept)
                if (kept.manifests.len(), kept.described) >= (t.manifests.len(), t.described) =>
            {
                skipped.push(RestoreSkip::ShadowedId {
                    topic: t.topic.clone(),
                    topic_id: t.topic_id,
                });
            }
            Some(kept) => {
                skipped.push(RestoreSkip::ShadowedId {
                    topic: kept.topic.clone(),
                    topic_id: kept.topic_id,
                });
                by_name.insert(t.topic.clone(), t);
            }
            None => {
                by_name.insert(t.topic.clone(), t);
            }
        }
    }
    (by_name.into_values().collect(), skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_rejects_damage() {
        let m = RemoteTopicManifest::new(
            "orders-eu",
            Uuid::new_v4(),
            3,
            BTreeMap::from([("cleanup.policy".to_string(), "delete".to_string())]),
        );
        let enc = m.encode();
        assert_eq!(RemoteTopicManifest::decode("k", &enc).ok(), Some(m));
        let mut bad = enc.to_vec();
        bad[12] ^= 1;
        assert!(RemoteTopicManifest::decode("k", &bad).is_err());
    }

    #[test]
    fn topic_dirs_parse_with_dashes_in_names() {
        let id = Uuid::new_v4();
        let key = RemoteTopicManifest::key("a-b-c", id);
        assert_eq!(parse_topic_dir(&key), Some(("a-b-c".to_string(), id)));
        assert_eq!(
            parse_topic_dir(&format!("a-{id}/0/manifest.json")),
            Some(("a".into(), id))
        );
        assert_eq!(parse_topic_dir("_probe/x"), None);
        assert_eq!(parse_topic_dir("no-slash"), None);
    }

    #[test]
    fn the_plan_takes_counts_and_configs_from_topic_manifests() {
        let (a, b, old_b, idle) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let keys: Vec<String> = [
            format!("a-{a}/0/manifest.json"),
            format!("a-{a}/0/00000000000000000000-0-{}.log", Uuid::new_v4()),
            format!("a-{a}/2/manifest.json"),
            format!("a-{a}/topic.json"),
            format!("b-{b}/0/manifest.json"),
            format!("b-{b}/1/manifest.json"),
            format!("b-{old_b}/0/manifest.json"),
            format!("idle-{idle}/topic.json"),
            "_strata_probe/x".to_string(),
        ]
        .into_iter()
        .collect();
        let described = vec![
            RemoteTopicManifest::new(
                "a",
                a,
                4,
                BTreeMap::from([("retention.ms".to_string(), "-1".to_string())]),
            ),
            RemoteTopicManifest::new("idle", idle, 2, BTreeMap::new()),
        ];
        let (plan, skipped) = restore_plan(&keys, &described, |_| true);
        assert_eq!(plan.len(), 3);
        assert_eq!(plan[0].topic, "a");
        assert_eq!(plan[0].topic_id, a);
        assert_eq!(
            plan[0].partitions, 4,
            "from the topic manifest, not the listing"
        );
        assert_eq!(plan[0].manifests, BTreeSet::from([0, 2]));
        assert_eq!(
            plan[0].configs.get("retention.ms").map(String::as_str),
            Some("-1")
        );
        assert!(plan[0].described);
        assert_eq!(plan[1].topic_id, b, "the id with more partitions wins");
        assert_eq!(plan[1].partitions, 2);
        assert!(!plan[1].described);
        assert_eq!(
            skipped,
            vec![RestoreSkip::ShadowedId {
                topic: "b".into(),
                topic_id: old_b
            }]
        );
        assert_eq!(plan[2].topic, "idle");
        assert_eq!(plan[2].partitions, 2);
        assert!(plan[2].manifests.is_empty());
        let (only_b, _) = restore_plan(&keys, &described, |t| t == "b");
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].topic, "b");
    }
}
