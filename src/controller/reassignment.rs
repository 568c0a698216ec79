//! Partition reassignment (Kafka's AlterPartitionReassignments, KIP-455), decided purely.
//!
//! A reassignment moves a partition from its original replicas to a target set in three
//! steps, each one `Partition` record:
//!
//! 1. **Start** ([`decide_reassignment`] with a target): `replicas` becomes the target followed
//!    by the original replicas that are not in it (`removing_replicas`); the target replicas
//!    that are new (`adding_replicas`) become followers, create their log and catch up through
//!    the ordinary follower fetchers; the leader's ISR expansion brings them into the ISR.
//!    Leader and ISR are unchanged.
//! 2. **Complete** ([`decide_complete_reassignments`], a controller duty run as ISRs change):
//!    once every target replica is in the ISR, `replicas` becomes the target, the removing
//!    replicas leave the ISR, and if the leader was one of them leadership moves to the first
//!    target replica that is in the ISR and live (a new leader epoch). The removed brokers see
//!    they are no longer replicas, stop, and delete their local copy.
//! 3. **Cancel** ([`decide_reassignment`] with no target): the adding replicas are dropped
//!    (from replicas and ISR), the original replicas restored (in the order the move listed
//!    them, as in Kafka: a registration does not remember the original order). Should the ISR hold only adding
//!    replicas, the first original replica becomes the ISR, which is an unclean choice and so
//!    is refused unless unclean leader election is allowed.
//!
//! A new target for a partition that is already moving first reverts the running move, as
//! Kafka does, then starts from the original replicas. A target that drops replicas and adds
//! none completes at once when the ISR allows it.

use std::collections::BTreeSet;

use super::elections::NO_LEADER;
use super::image::{MetadataImage, PartitionRegistration};
use super::records::MetadataRecord;
use super::ControllerError;
use crate::model::{BrokerId, LeaderEpoch, PartitionIndex};

/// One partition of an AlterPartitionReassignments request: a target, or `None` to cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassignmentRequest {
    pub topic: String,
    pub partition: PartitionIndex,
    pub target: Option<Vec<BrokerId>>,
}

/// Decides every partition of a request against one image: each partition's outcome, and the
/// records of those that succeeded.
pub fn decide_reassignments(
    image: &MetadataImage,
    requests: &[ReassignmentRequest],
    allow_replication_factor_change: bool,
    unclean_default: bool,
) -> (Vec<Result<(), ControllerError>>, Vec<MetadataRecord>) {
    let mut records = Vec::new();
    let mut seen = BTreeSet::new();
    let outcomes = requests
        .iter()
        .map(|r| {
            if !seen.insert((r.topic.as_str(), r.partition)) {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "partition {}-{} appears twice in the request",
                    r.topic, r.partition.0
                )));
            }
            let record =
                decide_reassignment(image, r, allow_replication_factor_change, unclean_default)?;
            records.extend(record);
            Ok(())
        })
        .collect();
    (outcomes, records)
}

/// Starts, replaces or cancels one partition's reassignment: the record to write, or `None`
/// when the partition already is as asked.
pub fn decide_reassignment(
    image: &MetadataImage,
    request: &ReassignmentRequest,
    allow_replication_factor_change: bool,
    unclean_default: bool,
) -> Result<Option<MetadataRecord>, ControllerError> {
    let topic = image
        .topic_by_name(&request.topic)
        .ok_or_else(|| ControllerError::UnknownTopic(request.topic.clone()))?;
    let p = topic
        .partitions
        .get(&request.partition)
        .ok_or_else(|| ControllerError::UnknownTopic(request.topic.clone()))?;
    let unclean = topic
        .config
        .overrides
        .get("unclean.leader.election.enable")
        .map(|v| v == "true")
        .unwrap_or(unclean_default);
    let next = match &request.target {
        None => {
            if !p.is_reassigning() {
                return Err(ControllerError::NoReassignmentInProgress);
            }
            let (reverted, was_unclean) = revert(p);
            if was_unclean && !unclean {
                return Err(ControllerError::EligibleLeadersNotAvailable(
                    "cancelling would leave only a replica outside the ISR; \
                     unclean.leader.election.enable is off"
                        .into(),
                ));
            }
            elect_if_needed(image, p, reverted)
        }
        Some(target) => {
            validate_target(image, target)?;
            let (original, _) = revert(p);
            if !allow_replication_factor_change && target.len() != original.replicas.len() {
                return Err(ControllerError::InvalidReplicationFactor {
                    factor: target.len() as i32,
                    reason: format!(
                        "the partition has {} replicas and the request does not allow a \
                         replication factor change",
                        original.replicas.len()
                    ),
                });
            }
            let started = start(&original, target);
            let started = complete(image, &started).unwrap_or(started);
            elect_if_needed(image, p, started)
        }
    };
    Ok(changed(request, image, p, next))
}

/// The completions due: every moving partition whose target replicas are all in the ISR.
pub fn decide_complete_reassignments(image: &MetadataImage) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics.values() {
        for (index, p) in &topic.partitions {
            if let Some(next) = complete(image, p) {
                let next = bump_epochs(p, next);
                records.push(next.to_record(topic.topic_id, *index));
            }
        }
    }
    records
}

/// The partitions with a reassignment under way (ListPartitionReassignments).
pub fn ongoing_reassignments(
    image: &MetadataImage,
) -> impl Iterator<Item = (&str, PartitionIndex, &PartitionRegistration)> {
    image.topics.values().flat_map(|t| {
        t.partitions
            .iter()
            .filter(|(_, p)| p.is_reassigning())
            .map(move |(i, p)| (t.name.as_str(), *i, p))
    })
}

fn validate_target(image: &MetadataImage, target: &[BrokerId]) -> Result<(), ControllerError> {
    if target.is_empty() {
        return Err(ControllerError::InvalidReplicaAssignment(
            "the target replica list is empty".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    for b in target {
        if !seen.insert(*b) {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "the target replica list includes broker {b} more than once"
            )));
        }
        if !image.brokers.contains_key(b) {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "the target replica list includes broker {b}, but no such broker is registered"
            )));
        }
    }
    Ok(())
}

/// The registration with a running reassignment undone (Kafka's `PartitionReassignmentRevert`),
/// and whether its ISR had to be made up (no original replica was in sync).
fn revert(p: &PartitionRegistration) -> (PartitionRegistration, bool) {
    let replicas: Vec<BrokerId> = p
        .replicas
        .iter()
        .copied()
        .filter(|b| !p.adding_replicas.contains(b))
        .collect();
    let mut isr: Vec<BrokerId> = p
        .isr
        .iter()
        .copied()
        .filter(|b| !p.adding_replicas.contains(b))
        .collect();
    let unclean = isr.is_empty() && !replicas.is_empty();
    if unclean {
        isr.push(replicas[0]);
    }
    let reverted = PartitionRegistration {
        replicas,
        isr,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
        ..p.clone()
    };
    (reverted, unclean)
}

/// The registration moving from `original` (no reassignment running) to `target`.
fn start(original: &PartitionRegistration, target: &[BrokerId]) -> PartitionRegistration {
    let removing: Vec<BrokerId> = original
        .replicas
        .iter()
        .copied()
        .filter(|b| !target.contains(b))
        .collect();
    let adding: Vec<BrokerId> = target
        .iter()
        .copied()
        .filter(|b| !original.replicas.contains(b))
        .collect();
    let mut replicas = target.to_vec();
    replicas.extend(&removing);
    PartitionRegistration {
        replicas,
        adding_replicas: adding,
        removing_replicas: removing,
        ..original.clone()
    }
}

/// The registration once its reassignment completes, if it can now (Kafka's
/// `maybeCompleteReassignment`): every target replica in the ISR, something left of the ISR
/// without the removing replicas, and a live target replica to lead.
fn complete(image: &MetadataImage, p: &PartitionRegistration) -> Option<PartitionRegistration> {
    if !p.is_reassigning() {
        return None;
    }
    let keep = |b: &BrokerId| !p.removing_replicas.contains(b);
    let replicas: Vec<BrokerId> = p.replicas.iter().copied().filter(keep).collect();
    let isr: Vec<BrokerId> = p.isr.iter().copied().filter(keep).collect();
    if replicas.is_empty() || isr.is_empty() || !replicas.iter().all(|b| isr.contains(b)) {
        return None;
    }
    let leader = if replicas.contains(&p.leader) && image.is_live(p.leader) {
        p.leader
    } else {
        // The leader is being removed (or is down): the first in-sync, live target replica,
        // in target order so the preferred replica leads when it can.
        *replicas
            .iter()
            .find(|b| isr.contains(b) && image.is_live(**b))?
    };
    Some(PartitionRegistration {
        replicas,
        isr,
        leader,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
        ..p.clone()
    })
}

/// `next` with a leader that is one of its ISR members: the current leader when it still
/// qualifies, else the first live ISR member in replica order, else none.
fn elect_if_needed(
    image: &MetadataImage,
    current: &PartitionRegistration,
    mut next: PartitionRegistration,
) -> PartitionRegistration {
    if next.isr.contains(&current.leader) && image.is_live(current.leader) {
        next.leader = current.leader;
        return next;
    }
    next.leader = next
        .replicas
        .iter()
        .copied()
        .find(|b| next.isr.contains(b) && image.is_live(*b))
        .unwrap_or(NO_LEADER);
    next
}

/// `next` with its epochs past `current`'s: the partition epoch always, the leader epoch when
/// the leader changes.
fn bump_epochs(
    current: &PartitionRegistration,
    mut next: PartitionRegistration,
) -> PartitionRegistration {
    next.partition_epoch = current.partition_epoch + 1;
    next.leader_epoch = if next.leader != current.leader {
        LeaderEpoch(current.leader_epoch.0 + 1)
    } else {
        current.leader_epoch
    };
    next
}

fn changed(
    request: &ReassignmentRequest,
    image: &MetadataImage,
    current: &PartitionRegistration,
    next: PartitionRegistration,
) -> Option<MetadataRecord> {
    let same = next.replicas == current.replicas
        && next.isr == current.isr
        && next.leader == current.leader
        && next.adding_replicas == current.adding_replicas
        && next.removing_replicas == current.removing_replicas;
    if same {
        return None;
    }
    let topic_id = image.topic_by_name(&request.topic)?.topic_id;
    Some(bump_epochs(current, next).to_record(topic_id, request.partition))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TopicId;

    fn image(brokers: i32, replicas: &[i32]) -> MetadataImage {
        let mut image = MetadataImage::default();
        let mut records = Vec::new();
        for i in 1..=brokers {
            records.push(MetadataRecord::RegisterBroker {
                broker_id: BrokerId(i),
                incarnation: uuid::Uuid::new_v4(),
                host: "h".into(),
                port: 1,
                rack: None,
                endpoints: vec![],
            });
        }
        let topic_id = TopicId::random();
        records.push(MetadataRecord::Topic {
            name: "t".into(),
            topic_id,
        });
        let r: Vec<BrokerId> = replicas.iter().map(|b| BrokerId(*b)).collect();
        records.push(MetadataRecord::Partition {
            topic_id,
            partition: PartitionIndex(0),
            leader: r[0],
            isr: r.clone(),
            replicas: r,
            leader_epoch: LeaderEpoch(3),
            partition_epoch: 5,
            adding_replicas: vec![],
            removing_replicas: vec![],
        });
        apply(&mut image, &records);
        image
    }

    fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for r in records {
            let o = image.offset + 1;
            image.apply(o, r);
        }
    }

    fn part(image: &MetadataImage) -> PartitionRegistration {
        image.topic_by_name("t").expect("topic").partitions[&PartitionIndex(0)].clone()
    }

    fn ids(v: &[i32]) -> Vec<BrokerId> {
        v.iter().map(|b| BrokerId(*b)).collect()
    }

    fn request(target: Option<&[i32]>) -> ReassignmentRequest {
        ReassignmentRequest {
            topic: "t".into(),
            partition: PartitionIndex(0),
            target: target.map(ids),
        }
    }

    fn reassign(image: &mut MetadataImage, target: Option<&[i32]>) {
        let r = decide_reassignment(image, &request(target), true, false)
            .expect("decided")
            .expect("a record");
        apply(image, &[r]);
    }

    /// The leader's ISR expansion, as AlterPartition would commit it.
    fn isr(image: &mut MetadataImage, isr: &[i32]) {
        let p = part(image);
        let id = image.topic_by_name("t").expect("topic").topic_id;
        let next = PartitionRegistration {
            isr: ids(isr),
            partition_epoch: p.partition_epoch + 1,
            ..p
        };
        apply(image, &[next.to_record(id, PartitionIndex(0))]);
    }

    #[test]
    fn start_makes_the_union_and_keeps_leader_and_isr() {
        let mut image = image(4, &[1, 2, 3]);
        reassign(&mut image, Some(&[2, 3, 4]));
        let p = part(&image);
        assert_eq!(p.replicas, ids(&[2, 3, 4, 1]));
        assert_eq!(p.adding_replicas, ids(&[4]));
        assert_eq!(p.removing_replicas, ids(&[1]));
        assert_eq!(p.isr, ids(&[1, 2, 3]));
        assert_eq!(
            (p.leader, p.leader_epoch, p.partition_epoch),
            (BrokerId(1), LeaderEpoch(3), 6)
        );
        // Not complete while the adding replica is out of the ISR.
        assert!(decide_complete_reassignments(&image).is_empty());
        // The same target again changes nothing.
        assert_eq!(
            decide_reassignment(&image, &request(Some(&[2, 3, 4])), true, false).expect("decided"),
            None
        );
    }

    #[test]
    fn completion_switches_replicas_and_moves_leadership_off_a_removed_leader() {
        let mut image = image(4, &[1, 2, 3]);
        reassign(&mut image, Some(&[2, 3, 4]));
        isr(&mut image, &[1, 2, 3, 4]);
        let records = decide_complete_reassignments(&image);
        assert_eq!(records.len(), 1);
        apply(&mut image, &records);
        let p = part(&image);
        assert_eq!(p.replicas, ids(&[2, 3, 4]));
        assert_eq!(p.isr, ids(&[2, 3, 4]));
        assert!(!p.is_reassigning());
        assert_eq!(
            p.leader,
            BrokerId(2),
            "leadership leaves the removed broker 1"
        );
        assert_eq!(p.leader_epoch, LeaderEpoch(4));
        assert!(decide_complete_reassignments(&image).is_empty());
    }

    #[test]
    fn completion_keeps_a_leader_that_stays() {
        let mut image = image(4, &[1, 2]);
        reassign(&mut image, Some(&[1, 4]));
        isr(&mut image, &[1, 2, 4]);
        let records = decide_complete_reassignments(&image);
        apply(&mut image, &records);
        let p = part(&image);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone()),
            (ids(&[1, 4]), ids(&[1, 4]))
        );
        assert_eq!((p.leader, p.leader_epoch), (BrokerId(1), LeaderEpoch(3)));
    }

    #[test]
    fn cancel_reverts_to_the_original_replicas() {
        let mut image = image(5, &[1, 2, 3]);
        reassign(&mut image, Some(&[3, 4, 5]));
        isr(&mut image, &[1, 2, 3, 4]);
        reassign(&mut image, None);
        let p = part(&image);
        // The original brokers, in the order the move listed them (as Kafka's revert keeps
        // it): the registration does not remember the original order.
        assert_eq!(p.replicas, ids(&[3, 1, 2]));
        assert_eq!(p.isr, ids(&[1, 2, 3]));
        assert!(!p.is_reassigning());
        assert_eq!(p.leader, BrokerId(1));
        // Nothing to cancel any more.
        assert!(matches!(
            decide_reassignment(&image, &request(None), true, false),
            Err(ControllerError::NoReassignmentInProgress)
        ));
    }

    #[test]
    fn a_new_target_replaces_a_running_move_from_the_original_replicas() {
        let mut image = image(5, &[1, 2]);
        reassign(&mut image, Some(&[1, 4]));
        reassign(&mut image, Some(&[1, 5]));
        let p = part(&image);
        assert_eq!(p.replicas, ids(&[1, 5, 2]));
        assert_eq!(p.adding_replicas, ids(&[5]));
        assert_eq!(p.removing_replicas, ids(&[2]));
    }

    #[test]
    fn dropping_replicas_completes_at_once() {
        let mut image = image(3, &[1, 2, 3]);
        reassign(&mut image, Some(&[2]));
        let p = part(&image);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (ids(&[2]), ids(&[2]), BrokerId(2))
        );
        assert!(!p.is_reassigning());
    }

    #[test]
    fn bad_targets_are_refused_with_kafkas_errors() {
        let image = image(3, &[1, 2]);
        let err = |target: Option<&[i32]>, allow_rf: bool| {
            decide_reassignment(&image, &request(target), allow_rf, false).expect_err("refused")
        };
        assert!(
            matches!(err(Some(&[1, 9]), true), ControllerError::InvalidReplicaAssignment(m) if m.contains("broker 9"))
        );
        assert!(
            matches!(err(Some(&[1, 1]), true), ControllerError::InvalidReplicaAssignment(m) if m.contains("more than once"))
        );
        assert!(matches!(
            err(Some(&[]), true),
            ControllerError::InvalidReplicaAssignment(_)
        ));
        assert!(matches!(
            err(Some(&[1, 2, 3]), false),
            ControllerError::InvalidReplicationFactor { .. }
        ));
        assert!(matches!(
            err(None, true),
            ControllerError::NoReassignmentInProgress
        ));
        let unknown = ReassignmentRequest {
            topic: "nope".into(),
            ..request(Some(&[1]))
        };
        assert!(matches!(
            decide_reassignment(&image, &unknown, true, false),
            Err(ControllerError::UnknownTopic(_))
        ));
        let twice = [request(Some(&[2, 3])), request(Some(&[1, 3]))];
        let (outcomes, records) = decide_reassignments(&image, &twice, true, false);
        assert!(outcomes[0].is_ok() && outcomes[1].is_err());
        assert_eq!(records.len(), 1);
    }

    #[test]
    fn cancel_that_needs_an_unclean_choice_is_refused_unless_allowed() {
        let mut image = image(3, &[1]);
        reassign(&mut image, Some(&[2]));
        // The original replica fell out of the ISR: only the adding one is in sync.
        let p = part(&image);
        let id = image.topic_by_name("t").expect("topic").topic_id;
        let next = PartitionRegistration {
            isr: ids(&[2]),
            leader: BrokerId(2),
            partition_epoch: p.partition_epoch + 1,
            ..p
        };
        apply(&mut image, &[next.to_record(id, PartitionIndex(0))]);
        assert!(matches!(
            decide_reassignment(&image, &request(None), true, false),
            Err(ControllerError::EligibleLeadersNotAvailable(_))
        ));
        let r = decide_reassignment(&image, &request(None), true, true)
            .expect("decided")
            .expect("a record");
        apply(&mut image, &[r]);
        let p = part(&image);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (ids(&[1]), ids(&[1]), BrokerId(1))
        );
    }

    #[test]
    fn partition_records_without_a_move_keep_the_old_format() {
        let mut image = image(4, &[1, 2]);
        let id = image.topic_by_name("t").expect("topic").topic_id;
        let still = part(&image).to_record(id, PartitionIndex(0));
        let json = serde_json::to_string(&still).expect("encode");
        // What records looked like before reassignments: they decode unchanged.
        assert!(
            !json.contains("adding_replicas") && !json.contains("removing_replicas"),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<MetadataRecord>(&json).expect("decode"),
            still
        );
        reassign(&mut image, Some(&[3, 4]));
        let moving = part(&image).to_record(id, PartitionIndex(0));
        let json = serde_json::to_string(&moving).expect("encode");
        assert_eq!(
            serde_json::from_str::<MetadataRecord>(&json).expect("decode"),
            moving
        );
        let snapshot = serde_json::to_string(&image).expect("encode");
        assert_eq!(
            serde_json::from_str::<MetadataImage>(&snapshot).expect("decode"),
            image
        );
    }
}
