//! Group offset sync: copies the committed offsets of a link's selected groups from the source
//! cluster to this one, for mirror topics of the link, so that consumers failing over resume
//! where they were (offsets are equal on both sides, no translation).
//!
//! Written as simple commits (no member id, generation -1) through this cluster's own group
//! coordinators, which refuse them for a group with members (ILLEGAL_GENERATION): an active
//! group here is never overwritten, and the check and the write are one step in the
//! coordinator, so no race with a consumer joining. An offset beyond what the mirror holds
//! is capped at the mirror's end, so a consumer never resumes past the copied records.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    BrokerId as WireBrokerId, FindCoordinatorRequest, GroupId, ListGroupsRequest,
    ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest,
};

use super::{source, MirrorLinkSpec, MirrorTopicState};
use crate::client::InterBrokerNet;
use crate::controller::MetadataImage;
use crate::net::Network;
use crate::protocol::{str_bytes, topic_name};

/// (group, topic, partition) -> committed offset.
pub type GroupOffsets = BTreeMap<(String, String, i32), i64>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The committed offsets on the source of the link's selected groups, for the link's mirror
/// topics in `image`.
pub async fn source_offsets(
    net: &Arc<dyn Network>,
    link: &MirrorLinkSpec,
    image: &MetadataImage,
) -> Result<GroupOffsets, String> {
    let groups_re = match &link.options.group_include {
        Some(g) => Some(regex::Regex::new(&format!("^(?:{g})$")).map_err(err)?),
        None => None,
    };
    let mirrored = |topic: &str| {
        image
            .mirrors
            .topic(topic)
            .is_some_and(|t| t.link == link.name && t.state == MirrorTopicState::Mirroring)
    };
    let mut bootstrap = source::connect_any(net, link).await?;
    let md = source::metadata(&mut bootstrap, Some(&[])).await?;
    let mut out = GroupOffsets::new();
    // Each broker lists (and answers offsets for) the groups it coordinates.
    for b in &md.brokers {
        let addr = format!("{}:{}", b.host.as_str(), b.port);
        let mut client = source::connect(net, link, &addr).await?;
        let listed = client
            .send(&ListGroupsRequest::default(), 4)
            .await
            .map_err(err)?;
        let groups: Vec<String> = listed
            .groups
            .iter()
            .map(|g| g.group_id.0.to_string())
            .filter(|g| groups_re.as_ref().is_none_or(|r| r.is_match(g)))
            .collect();
        if groups.is_empty() {
            continue;
        }
        let req = OffsetFetchRequest::default().with_groups(
            groups
                .iter()
                .map(|g| {
                    // Null topics: all of the group's offsets.
                    OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(str_bytes(g.clone())))
                        .with_topics(None)
                })
                .collect(),
        );
        let resp = client.send(&req, 8).await.map_err(err)?;
        for g in resp.groups.iter().filter(|g| g.error_code == 0) {
            for t in g.topics.iter().filter(|t| mirrored(t.name.0.as_str())) {
                for p in t
                    .partitions
                    .iter()
                    .filter(|p| p.error_code == 0 && p.committed_offset >= 0)
                {
                    out.insert(
                        (
                            g.group_id.0.to_string(),
                            t.name.0.to_string(),
                            p.partition_index,
                        ),
                        p.committed_offset,
                    );
                }
            }
        }
    }
    Ok(out)
}

/// The log end offset of each mirror partition named in `offsets`, asked of this cluster's
/// partition leaders.
async fn local_ends(
    local: &InterBrokerNet,
    image: &MetadataImage,
    offsets: &GroupOffsets,
) -> Result<HashMap<(String, i32), i64>, String> {
    let mut by_leader: BTreeMap<(String, u16), BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for (_, topic, partition) in offsets.keys() {
        let Some(t) = image.topic_by_name(topic) else {
            continue;
        };
        let Some(reg) = t.partitions.get(&crate::model::PartitionIndex(*partition)) else {
            continue;
        };
        let Some(b) = image.brokers.get(&reg.leader) else {
            continue;
        };
        let parts = by_leader
            .entry((b.host.clone(), b.port))
            .or_default()
            .entry(topic.clone())
            .or_default();
        if !parts.contains(partition) {
            parts.push(*partition);
        }
    }
    let mut ends = HashMap::new();
    for ((host, port), topics) in by_leader {
        let addr = format!("{host}:{port}");
        let mut c = local
            .connect(&addr, "strata-mirror", source::CONNECT_TIMEOUT)
            .await
            .map_err(err)?;
        let req = ListOffsetsRequest::default()
            .with_replica_id(WireBrokerId(-1))
            .with_topics(
                topics
                    .iter()
                    .map(|(t, ps)| {
                        ListOffsetsTopic::default()
                            .with_name(topic_name(t.clone()))
                            .with_partitions(
                                ps.iter()
                                    .map(|p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(*p)
                                            .with_timestamp(-1)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let resp = c.send(&req, 7).await.map_err(err)?;
        for t in &resp.topics {
            for p in t.partitions.iter().filter(|p| p.error_code == 0) {
                ends.insert((t.name.0.to_string(), p.partition_index), p.offset);
            }
        }
    }
    Ok(ends)
}

/// Commits `offsets` (those not already written, per `written`) on this cluster through the
/// group coordinators, capped at the mirror's end; groups with members refuse and are skipped.
/// Returns how many offsets were written.
pub async fn write_offsets(
    local: &InterBrokerNet,
    image: &MetadataImage,
    offsets: &GroupOffsets,
    written: &mut GroupOffsets,
) -> Result<usize, String> {
    let ends = local_ends(local, image, offsets).await?;
    tracing::debug!(
        source_offsets = offsets.len(),
        mirror_ends = ends.len(),
        "group offsets to sync"
    );
    let mut by_group: BTreeMap<&str, Vec<(&str, i32, i64)>> = BTreeMap::new();
    for ((group, topic, partition), offset) in offsets {
        let Some(end) = ends.get(&(topic.clone(), *partition)) else {
            continue;
        };
        let offset = (*offset).min(*end);
        if written.get(&(group.clone(), topic.clone(), *partition)) == Some(&offset) {
            continue;
        }
        by_group
            .entry(group)
            .or_default()
            .push((topic, *partition, offset));
    }
    let Some(any) = image.brokers.values().find(|b| !b.fenced) else {
        return Ok(0);
    };
    let mut bootstrap = local
        .connect(
            &format!("{}:{}", any.host, any.port),
            "strata-mirror",
            source::CONNECT_TIMEOUT,
        )
        .await
        .map_err(err)?;
    let mut count = 0;
    for (group, parts) in by_group {
        let coordinator = bootstrap
            .send(
                &FindCoordinatorRequest::default()
                    .with_key(str_bytes(group))
                    .with_key_type(0),
                3,
            )
            .await
            .map_err(err)?;
        if coordinator.error_code != 0 {
            continue;
        }
        let addr = format!("{}:{}", coordinator.host.as_str(), coordinator.port);
        let mut c = local
            .connect(&addr, "strata-mirror", source::CONNECT_TIMEOUT)
            .await
            .map_err(err)?;
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (t, p, o) in &parts {
            topics.entry(t).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o),
            );
        }
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(str_bytes(""))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let resp = c.send(&req, 8).await.map_err(err)?;
        for t in &resp.topics {
            for p in &t.partitions {
                if p.error_code == 0 {
                    if let Some((_, _, o)) = parts
                        .iter()
                        .find(|(pt, pp, _)| *pt == t.name.0.as_str() && *pp == p.partition_index)
                    {
                        written.insert(
                            (group.to_string(), t.name.0.to_string(), p.partition_index),
                            *o,
                        );
                        count += 1;
                    }
                } else {
                    tracing::debug!(%group, topic = %t.name.0.as_str(), partition = p.partition_index, error = p.error_code, "group offset not synced (group active here?)");
                }
            }
        }
    }
    Ok(count)
}
