//! Failback decisions: turning a link around after a failover.
//!
//! After `failover`, the old target is the primary and takes writes; the old source, when it
//! returns, may hold records the new primary never received (those it took after the last
//! offset the link copied). `reverse` on the old source makes its topics mirror topics of the
//! new primary, in the `Reconciling` state, with every partition's leader epoch bumped: the
//! leader then truncates its divergent tail and appends the new primary's batches under a new
//! epoch, so that its followers find the divergence through the usual epoch check and truncate
//! too. Each partition reports its tail once (`decide_divergent_tail`); the topic becomes
//! `Mirroring` when all have.

use super::decide::validate;
use super::{DivergentTail, MirrorError, MirrorLinkSpec, MirrorTopicState};
use crate::controller::image::MetadataImage;
use crate::controller::records::MetadataRecord;
use crate::controller::ControllerError;
use crate::model::LeaderEpoch;

/// Makes this cluster's topics selected by `spec` mirrors of the cluster `spec` names (the new
/// primary after a failover). The link is created, or, if it exists with all its topics
/// promoted (a failback over the same link), its settings are replaced and it is resumed.
/// Topics eligible: present here, not internal, and not a mirror topic unless promoted.
/// Returns the reversed topics and the records.
pub fn decide_reverse(
    image: &MetadataImage,
    spec: &MirrorLinkSpec,
) -> Result<(Vec<String>, Vec<MetadataRecord>), ControllerError> {
    validate(spec)?;
    let mut records = Vec::new();
    match image.mirrors.links.get(&spec.name) {
        None => records.push(MetadataRecord::MirrorLink { spec: spec.clone() }),
        Some(existing) => {
            let in_use: Vec<String> = image
                .mirrors
                .topics_of(&spec.name)
                .filter(|(_, t)| t.state != MirrorTopicState::Promoted)
                .map(|(n, _)| n.to_string())
                .collect();
            if !in_use.is_empty() {
                return Err(MirrorError::LinkInUse {
                    link: spec.name.clone(),
                    topics: in_use,
                }
                .into());
            }
            if existing.spec != *spec {
                records.push(MetadataRecord::MirrorLink { spec: spec.clone() });
            }
            if existing.state != super::LinkState::Active {
                records.push(MetadataRecord::MirrorLinkState {
                    name: spec.name.clone(),
                    state: super::LinkState::Active,
                });
            }
        }
    }
    let selection = spec
        .topics
        .compile()
        .map_err(|e| MirrorError::InvalidLink {
            name: spec.name.clone(),
            reason: e,
        })?;
    let mut topics = Vec::new();
    for t in image.topics.values() {
        let eligible = !t.name.starts_with("__")
            && selection.selects(&t.name)
            && image
                .mirrors
                .topic(&t.name)
                .is_none_or(|m| m.state == MirrorTopicState::Promoted);
        if !eligible {
            continue;
        }
        topics.push(t.name.clone());
        records.push(MetadataRecord::MirrorTopic {
            topic: t.name.clone(),
            link: spec.name.clone(),
            state: MirrorTopicState::Reconciling,
        });
        for (index, p) in &t.partitions {
            let mut next = p.clone();
            next.leader_epoch = LeaderEpoch(p.leader_epoch.0 + 1);
            next.partition_epoch = p.partition_epoch + 1;
            records.push(next.to_record(t.topic_id, *index));
        }
    }
    if topics.is_empty() {
        return Err(MirrorError::NothingToReverse(spec.name.clone()).into());
    }
    topics.sort();
    Ok((topics, records))
}

/// A reversed partition's fetcher reports its divergent tail (after keeping it, before
/// truncating it). Only the first report of a partition counts (a fetcher that restarts
/// reports again); the last partition to report makes the topic `Mirroring`.
pub fn decide_divergent_tail(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    tail: &DivergentTail,
) -> Vec<MetadataRecord> {
    let Some(m) = image.mirrors.topic(topic) else {
        return vec![];
    };
    if m.state != MirrorTopicState::Reconciling
        || image.mirrors.divergent_tail(topic, partition).is_some()
    {
        return vec![];
    }
    let mut records = vec![MetadataRecord::MirrorDivergentTail {
        topic: topic.into(),
        partition,
        tail: tail.clone(),
    }];
    let reported = image
        .mirrors
        .divergent_tails
        .get(topic)
        .map_or(0, |t| t.len())
        + 1;
    let partitions = image.topic_by_name(topic).map_or(0, |t| t.partitions.len());
    if reported >= partitions {
        records.push(MetadataRecord::MirrorTopic {
            topic: topic.into(),
            link: m.link.clone(),
            state: MirrorTopicState::Mirroring,
        });
    }
    records
}

#[cfg(test)]
#[path = "reverse_tests.rs"]
mod tests;
