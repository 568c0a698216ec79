//! The active controller's decisions about brokers and leaders: fencing and unfencing,
//! leader election from the ISR, controlled shutdown, preferred-leader rebalancing, and the
//! elections an administrator asks for (ElectLeaders).
//! Pure functions from the image (and what the controller observed) to records.

use std::collections::{BTreeMap, BTreeSet};

use super::image::{MetadataImage, PartitionRegistration, TopicImage};
use super::records::MetadataRecord;
use super::ControllerError;
use crate::model::{BrokerId, LeaderEpoch, PartitionIndex, TopicPartition};

pub const NO_LEADER: BrokerId = BrokerId(-1);

/// What the active controller observed about brokers since the image was made.
#[derive(Debug, Default, Clone)]
pub struct Liveness {
    /// Unfenced brokers whose session expired.
    pub fence: BTreeSet<BrokerId>,
    /// Fenced brokers heartbeating again.
    pub unfence: BTreeSet<BrokerId>,
    /// Live brokers that must not lead (controlled shutdown): leaderships move away from them
    /// and they leave the ISR wherever another member remains.
    pub draining: BTreeSet<BrokerId>,
    /// Replicas in a log dir their broker reported offline (its heartbeat): they can neither
    /// lead nor stay in the ISR, though the broker serves its other dirs.
    pub offline_replicas: BTreeMap<BrokerId, BTreeSet<TopicPartition>>,
}

fn unclean_allowed(topic: &TopicImage, unclean_default: bool) -> bool {
    topic
        .config
        .overrides
        .get("unclean.leader.election.enable")
        .map(|v| v == "true")
        .unwrap_or(unclean_default)
}

/// Fences and unfences as observed, then re-elects every partition whose leader is not a live
/// ISR member: the first live ISR member in replica order (so the preferred leader wins when it
/// can), else with unclean election the first live replica (the ISR becomes just it), else no
/// leader (-1). Dead brokers leave the ISR unless they are its last member, who keeps the
/// claim to the data. A leader change bumps the leader epoch; every change bumps the partition
/// epoch. Returns no records when nothing changes.
pub fn decide_broker_liveness(
    image: &MetadataImage,
    observed: &Liveness,
    unclean_default: bool,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for b in &observed.fence {
        if image.brokers.get(b).is_some_and(|r| !r.fenced) {
            records.push(MetadataRecord::FenceBroker { broker_id: *b });
        }
    }
    for b in &observed.unfence {
        if image.brokers.get(b).is_some_and(|r| r.fenced) && !observed.fence.contains(b) {
            records.push(MetadataRecord::UnfenceBroker { broker_id: *b });
        }
    }
    let live = |b: &BrokerId| {
        image.brokers.contains_key(b)
            && !observed.fence.contains(b)
            && (observed.unfence.contains(b) || image.is_live(*b))
    };
    for topic in image.topics.values() {
        let unclean = unclean_allowed(topic, unclean_default);
        for (index, p) in &topic.partitions {
            let tp = (!observed.offline_replicas.is_empty())
                .then(|| TopicPartition::new(&topic.name, index.0));
            let offline = |b: &BrokerId| {
                tp.as_ref().is_some_and(|tp| {
                    observed
                        .offline_replicas
                        .get(b)
                        .is_some_and(|s| s.contains(tp))
                })
            };
            let can_lead = |b: &BrokerId| live(b) && !observed.draining.contains(b) && !offline(b);
            let mut isr: Vec<BrokerId> = p
                .isr
                .iter()
                .copied()
                .filter(|b| {
                    live(b) && !((observed.draining.contains(b) || offline(b)) && p.isr.len() > 1)
                })
                .collect();
            if isr.is_empty() {
                isr = p.isr.clone();
            }
            let leader = if p.leader != NO_LEADER && can_lead(&p.leader) && isr.contains(&p.leader)
            {
                p.leader
            } else if let Some(b) = p.replicas.iter().find(|b| isr.contains(b) && can_lead(b)) {
                *b
            } else if unclean {
                match p.replicas.iter().find(|b| can_lead(b)) {
                    Some(b) => {
                        isr = vec![*b];
                        *b
                    }
                    None => NO_LEADER,
                }
            } else if p.replicas.len() == 1 && observed.draining.contains(&p.leader) {
                // Nowhere to move it: a draining sole replica keeps leading until it stops.
                p.leader
            } else {
                NO_LEADER
            };
            if let Some(r) = changed(topic, *index, p, leader, isr) {
                records.push(r);
            }
        }
    }
    records
}

fn changed(
    topic: &TopicImage,
    index: PartitionIndex,
    p: &PartitionRegistration,
    leader: BrokerId,
    isr: Vec<BrokerId>,
) -> Option<MetadataRecord> {
    if leader == p.leader && isr == p.isr {
        return None;
    }
    Some(MetadataRecord::Partition {
        topic_id: topic.topic_id,
        partition: index,
        replicas: p.replicas.clone(),
        leader_epoch: if leader != p.leader {
            LeaderEpoch(p.leader_epoch.0 + 1)
        } else {
            p.leader_epoch
        },
        partition_epoch: p.partition_epoch + 1,
        isr,
        leader,
        adding_replicas: p.adding_replicas.clone(),
        removing_replicas: p.removing_replicas.clone(),
    })
}

/// Moves leadership back to preferred replicas (the first of each replica list) for every
/// broker whose share of partitions led by someone else exceeds `imbalance_percent` of the
/// partitions it prefers, where the preferred replica is live and in the ISR (Kafka's
/// `leader.imbalance.per.broker.percentage`).
pub fn decide_preferred_leaders(
    image: &MetadataImage,
    imbalance_percent: u32,
    draining: &BTreeSet<BrokerId>,
) -> Vec<MetadataRecord> {
    let mut preferred: BTreeMap<BrokerId, (u64, u64)> = BTreeMap::new();
    for topic in image.topics.values() {
        for p in topic.partitions.values() {
            if let Some(first) = p.replicas.first() {
                let e = preferred.entry(*first).or_default();
                e.0 += 1;
                if p.leader != *first {
                    e.1 += 1;
                }
            }
        }
    }
    let imbalanced: BTreeSet<BrokerId> = preferred
        .into_iter()
        .filter(|(b, (total, off))| {
            image.is_live(*b)
                && !draining.contains(b)
                && *off * 100 > *total * u64::from(imbalance_percent)
        })
        .map(|(b, _)| b)
        .collect();
    let mut records = Vec::new();
    for topic in image.topics.values() {
        for (index, p) in &topic.partitions {
            let Some(first) = p.replicas.first() else {
                continue;
            };
            if p.leader != *first && imbalanced.contains(first) && p.isr.contains(first) {
                if let Some(r) = changed(topic, *index, p, *first, p.isr.clone()) {
                    records.push(r);
                }
            }
        }
    }
    records
}

/// Kafka's election types (ElectLeaders' `election_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    /// Move leadership to the first replica, if it is live and in the ISR.
    Preferred,
    /// Elect a leader for a partition that has none, from outside the ISR if need be.
    Unclean,
}

/// ElectLeaders for one partition (Kafka's `ReplicationControlManager.electLeader`): the record
/// that changes its leader, or why none is elected. PREFERRED: ELECTION_NOT_NEEDED when the
/// first replica already leads, PREFERRED_LEADER_NOT_AVAILABLE when it is fenced or out of the
/// ISR. UNCLEAN: ELECTION_NOT_NEEDED when the partition has a leader; else the first live ISR
/// member in replica order, else the first live replica (the ISR becomes just it), else
/// ELIGIBLE_LEADERS_NOT_AVAILABLE.
pub fn decide_elect_leader(
    image: &MetadataImage,
    topic: &TopicImage,
    index: PartitionIndex,
    election: ElectionType,
) -> Result<MetadataRecord, ControllerError> {
    let p = topic
        .partitions
        .get(&index)
        .ok_or_else(|| ControllerError::UnknownTopic(topic.name.clone()))?;
    match election {
        ElectionType::Preferred => {
            let Some(first) = p.replicas.first().copied() else {
                return Err(ControllerError::PreferredLeaderNotAvailable(
                    "no replicas".into(),
                ));
            };
            if p.leader == first {
                return Err(ControllerError::ElectionNotNeeded(format!(
                    "broker {first} already leads"
                )));
            }
            if !image.is_live(first) || !p.isr.contains(&first) {
                return Err(ControllerError::PreferredLeaderNotAvailable(format!(
                    "broker {first} is fenced or not in the ISR"
                )));
            }
            changed(topic, index, p, first, p.isr.clone())
                .ok_or_else(|| ControllerError::ElectionNotNeeded("unchanged".into()))
        }
        ElectionType::Unclean => {
            if p.leader != NO_LEADER && image.is_live(p.leader) {
                return Err(ControllerError::ElectionNotNeeded(format!(
                    "broker {} leads",
                    p.leader
                )));
            }
            let live = |b: &&BrokerId| image.is_live(**b);
            let (leader, isr) = match p.replicas.iter().filter(live).find(|b| p.isr.contains(b)) {
                Some(b) => (
                    *b,
                    p.isr
                        .iter()
                        .copied()
                        .filter(|b| image.is_live(*b))
                        .collect(),
                ),
                None => match p.replicas.iter().find(live) {
                    Some(b) => (*b, vec![*b]),
                    None => {
                        return Err(ControllerError::EligibleLeadersNotAvailable(
                            "no replica is live".into(),
                        ))
                    }
                },
            };
            changed(topic, index, p, leader, isr)
                .ok_or_else(|| ControllerError::ElectionNotNeeded("unchanged".into()))
        }
    }
}

/// UnregisterBroker: removes a broker's registration, refused while the broker is unfenced
/// (it is running: it must be shut down first) or still holds replicas (move them away with
/// reassignments first), so no partition ever names an unknown broker.
pub fn decide_unregister_broker(
    image: &MetadataImage,
    broker: BrokerId,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let Some(registration) = image.brokers.get(&broker) else {
        return Err(ControllerError::BrokerIdNotRegistered(broker));
    };
    if !registration.fenced {
        return Err(ControllerError::BrokerInUse {
            broker,
            reason: "it is not fenced; shut it down first".into(),
        });
    }
    let held = image
        .topics
        .values()
        .flat_map(|t| t.partitions.iter().map(move |(i, p)| (t, i, p)))
        .filter(|(_, _, p)| p.replicas.contains(&broker))
        .count();
    if held > 0 {
        return Err(ControllerError::BrokerInUse {
            broker,
            reason: format!("it still holds {held} replicas; reassign them first"),
        });
    }
    Ok(vec![MetadataRecord::UnregisterBroker { broker_id: broker }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TopicId;

    fn cluster(brokers: i32, replicas: &[Vec<i32>]) -> (MetadataImage, TopicId) {
        let mut image = MetadataImage::default();
        let mut off = 0;
        let mut next = || {
            off += 1;
            off
        };
        for i in 1..=brokers {
            image.apply(
                next(),
                &MetadataRecord::RegisterBroker {
                    broker_id: BrokerId(i),
                    incarnation: uuid::Uuid::new_v4(),
                    host: "h".into(),
                    port: 1,
                    rack: None,
                    endpoints: vec![],
                },
            );
        }
        let topic_id = TopicId::random();
        image.apply(
            next(),
            &MetadataRecord::Topic {
                name: "t".into(),
                topic_id,
            },
        );
        for (i, r) in replicas.iter().enumerate() {
            let r: Vec<BrokerId> = r.iter().map(|b| BrokerId(*b)).collect();
            image.apply(
                next(),
                &MetadataRecord::Partition {
                    topic_id,
                    partition: PartitionIndex(i as i32),
                    leader: r[0],
                    isr: r.clone(),
                    replicas: r,
                    leader_epoch: LeaderEpoch(0),
                    partition_epoch: 0,
                    adding_replicas: vec![],
                    removing_replicas: vec![],
                },
            );
        }
        (image, topic_id)
    }

    fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for r in records {
            let o = image.offset + 1;
            image.apply(o, r);
        }
    }

    fn part(image: &MetadataImage, t: TopicId, p: i32) -> PartitionRegistration {
        image.topics[&t].partitions[&PartitionIndex(p)].clone()
    }

    #[test]
    fn fencing_the_leader_elects_from_the_isr_and_bumps_epochs() {
        let (mut image, t) = cluster(3, &[vec![1, 2, 3], vec![2, 3, 1]]);
        let observed = Liveness {
            fence: [BrokerId(1)].into(),
            ..Default::default()
        };
        let records = decide_broker_liveness(&image, &observed, false);
        apply(&mut image, &records);
        assert!(image.brokers[&BrokerId(1)].fenced);
        let p0 = part(&image, t, 0);
        assert_eq!(p0.leader, BrokerId(2));
        assert_eq!(p0.isr, vec![BrokerId(2), BrokerId(3)]);
        assert_eq!((p0.leader_epoch, p0.partition_epoch), (LeaderEpoch(1), 1));
        let p1 = part(&image, t, 1);
        assert_eq!(p1.leader, BrokerId(2));
        assert_eq!((p1.leader_epoch, p1.partition_epoch), (LeaderEpoch(0), 1));
        // Deciding again changes nothing.
        assert!(decide_broker_liveness(&image, &Liveness::default(), false).is_empty());
    }

    /// Metadata lists only unfenced brokers (as Kafka's KRaft cache does), which is safe for
    /// clients only because a fenced broker never leads: fencing and re-election are one batch.
    /// Every sequence of fencings, clean or unclean, leaves each leader live or absent (-1).
    #[test]
    fn no_partition_is_ever_led_by_a_fenced_broker() {
        let layouts = [vec![1, 2, 3], vec![2, 3, 1], vec![3, 1], vec![1]];
        for unclean in [false, true] {
            for order in [[1, 2, 3], [3, 1, 2], [2, 3, 1]] {
                let (mut image, t) = cluster(3, &layouts);
                for b in order {
                    let observed = Liveness {
                        fence: [BrokerId(b)].into(),
                        ..Default::default()
                    };
                    let records = decide_broker_liveness(&image, &observed, unclean);
                    apply(&mut image, &records);
                    for p in 0..layouts.len() as i32 {
                        let leader = part(&image, t, p).leader;
                        assert!(
                            leader == NO_LEADER || image.is_live(leader),
                            "partition {p} led by fenced {leader} after fencing {b} ({order:?}, unclean {unclean})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn no_live_isr_member_means_offline_unless_unclean() {
        let (mut image, t) = cluster(2, &[vec![1, 2]]);
        let observed = Liveness {
            fence: [BrokerId(2)].into(),
            ..Default::default()
        };
        let r = decide_broker_liveness(&image, &observed, false);
        apply(&mut image, &r);
        let observed = Liveness {
            fence: [BrokerId(1)].into(),
            ..Default::default()
        };
        let mut clean = image.clone();
        let r = decide_broker_liveness(&clean, &observed, false);
        apply(&mut clean, &r);
        assert_eq!(part(&clean, t, 0).leader, NO_LEADER);
        assert_eq!(part(&clean, t, 0).isr, vec![BrokerId(1)]);
        // Broker 2 comes back: it is not in the ISR, so the partition stays offline...
        let back = Liveness {
            unfence: [BrokerId(2)].into(),
            ..Default::default()
        };
        let mut c2 = clean.clone();
        let r = decide_broker_liveness(&c2, &back, false);
        apply(&mut c2, &r);
        assert_eq!(part(&c2, t, 0).leader, NO_LEADER);
        // ...unless unclean election is on.
        let r = decide_broker_liveness(&c2, &Liveness::default(), true);
        apply(&mut c2, &r);
        assert_eq!(part(&c2, t, 0).leader, BrokerId(2));
        assert_eq!(part(&c2, t, 0).isr, vec![BrokerId(2)]);
        // Broker 1 (the last ISR member) comes back: it leads again.
        let back = Liveness {
            unfence: [BrokerId(1)].into(),
            ..Default::default()
        };
        let r = decide_broker_liveness(&clean, &back, false);
        apply(&mut clean, &r);
        assert_eq!(part(&clean, t, 0).leader, BrokerId(1));
    }

    #[test]
    fn draining_moves_leadership_but_keeps_sole_replicas() {
        let (mut image, t) = cluster(3, &[vec![1, 2, 3], vec![1]]);
        let observed = Liveness {
            draining: [BrokerId(1)].into(),
            ..Default::default()
        };
        let r = decide_broker_liveness(&image, &observed, false);
        apply(&mut image, &r);
        assert_eq!(part(&image, t, 0).leader, BrokerId(2));
        assert_eq!(part(&image, t, 0).isr, vec![BrokerId(2), BrokerId(3)]);
        assert_eq!(part(&image, t, 1).leader, BrokerId(1));
        assert!(!image.brokers[&BrokerId(1)].fenced);
    }

    #[test]
    fn an_offline_log_dir_moves_leadership_and_leaves_the_isr_for_its_partitions_only() {
        let (mut image, t) = cluster(3, &[vec![1, 2, 3], vec![1, 2, 3], vec![2, 1, 3], vec![1]]);
        // Broker 1's dir holding partitions 0, 2 and 3 failed; partition 1 is in another dir.
        let offline = [0, 2, 3].map(|p| crate::model::TopicPartition::new("t", p));
        let observed = Liveness {
            offline_replicas: [(BrokerId(1), offline.into())].into(),
            ..Default::default()
        };
        let r = decide_broker_liveness(&image, &observed, false);
        apply(&mut image, &r);
        assert_eq!(part(&image, t, 0).leader, BrokerId(2));
        assert_eq!(part(&image, t, 0).isr, vec![BrokerId(2), BrokerId(3)]);
        assert_eq!(
            part(&image, t, 1).leader,
            BrokerId(1),
            "its other dir serves"
        );
        assert_eq!(part(&image, t, 1).isr.len(), 3);
        assert_eq!(part(&image, t, 2).leader, BrokerId(2));
        assert_eq!(part(&image, t, 2).isr, vec![BrokerId(2), BrokerId(3)]);
        // A sole replica in the failed dir: no one can lead, it keeps its claim to the data.
        assert_eq!(part(&image, t, 3).leader, NO_LEADER);
        assert_eq!(part(&image, t, 3).isr, vec![BrokerId(1)]);
        assert!(!image.brokers[&BrokerId(1)].fenced);
        // Once the broker reports the dir back (after a restart), the sole replica leads again;
        // elsewhere it rejoins the ISR by catching up, as any follower does.
        let r = decide_broker_liveness(&image, &Liveness::default(), false);
        apply(&mut image, &r);
        assert_eq!(part(&image, t, 3).leader, BrokerId(1));
        assert_eq!(part(&image, t, 0).leader, BrokerId(2));
    }

    #[test]
    fn rebalancing_returns_leadership_to_preferred_replicas() {
        let (mut image, t) = cluster(3, &[vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]]);
        let observed = Liveness {
            fence: [BrokerId(1)].into(),
            ..Default::default()
        };
        let r = decide_broker_liveness(&image, &observed, false);
        apply(&mut image, &r);
        assert_ne!(part(&image, t, 0).leader, BrokerId(1));
        let back = Liveness {
            unfence: [BrokerId(1)].into(),
            ..Default::default()
        };
        let r = decide_broker_liveness(&image, &back, false);
        apply(&mut image, &r);
        // Not in the ISR (no follower caught up yet): nothing to move.
        assert!(decide_preferred_leaders(&image, 10, &BTreeSet::new()).is_empty());
        let mut p0 = part(&image, t, 0);
        p0.isr.push(BrokerId(1));
        apply(
            &mut image,
            &[MetadataRecord::Partition {
                topic_id: t,
                partition: PartitionIndex(0),
                replicas: p0.replicas,
                isr: p0.isr,
                leader: p0.leader,
                leader_epoch: p0.leader_epoch,
                partition_epoch: p0.partition_epoch + 1,
                adding_replicas: vec![],
                removing_replicas: vec![],
            }],
        );
        let records = decide_preferred_leaders(&image, 10, &BTreeSet::new());
        apply(&mut image, &records);
        assert_eq!(part(&image, t, 0).leader, BrokerId(1));
        assert!(decide_preferred_leaders(&image, 10, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn elect_leaders_preferred_and_unclean() {
        let (mut image, t) = cluster(3, &[vec![1, 2, 3], vec![2, 3]]);
        let topic = image.topics[&t].clone();
        let preferred = ElectionType::Preferred;
        assert!(matches!(
            decide_elect_leader(&image, &topic, PartitionIndex(0), preferred),
            Err(ControllerError::ElectionNotNeeded(_))
        ));
        assert!(matches!(
            decide_elect_leader(&image, &topic, PartitionIndex(9), preferred),
            Err(ControllerError::UnknownTopic(_))
        ));
        // Broker 1 dies: 2 leads partition 0; back but out of the ISR, it cannot be elected.
        let fence = Liveness {
            fence: [BrokerId(1)].into(),
            ..Default::default()
        };
        let r = decide_broker_liveness(&image, &fence, false);
        apply(&mut image, &r);
        let back = Liveness {
            unfence: [BrokerId(1)].into(),
            ..Default::default()
        };
        let r = decide_broker_liveness(&image, &back, false);
        apply(&mut image, &r);
        let topic = image.topics[&t].clone();
        assert!(matches!(
            decide_elect_leader(&image, &topic, PartitionIndex(0), preferred),
            Err(ControllerError::PreferredLeaderNotAvailable(_))
        ));
        let mut p0 = part(&image, t, 0);
        p0.isr.push(BrokerId(1));
        p0.partition_epoch += 1;
        apply(&mut image, &[p0.to_record(t, PartitionIndex(0))]);
        let topic = image.topics[&t].clone();
        let r = decide_elect_leader(&image, &topic, PartitionIndex(0), preferred).expect("elected");
        apply(&mut image, &[r]);
        assert_eq!(part(&image, t, 0).leader, BrokerId(1));
        assert_eq!(part(&image, t, 0).leader_epoch, LeaderEpoch(2));
        // Unclean: not needed while a leader lives; elects outside the ISR when none is left.
        let topic = image.topics[&t].clone();
        assert!(matches!(
            decide_elect_leader(&image, &topic, PartitionIndex(1), ElectionType::Unclean),
            Err(ControllerError::ElectionNotNeeded(_))
        ));
        let mut p1 = part(&image, t, 1);
        p1.isr = vec![BrokerId(3)];
        p1.partition_epoch += 1;
        apply(&mut image, &[p1.to_record(t, PartitionIndex(1))]);
        let fence = Liveness {
            fence: [BrokerId(3)].into(),
            ..Default::default()
        };
        let r = decide_broker_liveness(&image, &fence, false);
        apply(&mut image, &r);
        assert_eq!(part(&image, t, 1).leader, NO_LEADER);
        let topic = image.topics[&t].clone();
        let r = decide_elect_leader(&image, &topic, PartitionIndex(1), ElectionType::Unclean)
            .expect("elected");
        apply(&mut image, &[r]);
        assert_eq!(
            (part(&image, t, 1).leader, part(&image, t, 1).isr),
            (BrokerId(2), vec![BrokerId(2)])
        );
    }

    #[test]
    fn unregistering_needs_a_fenced_broker_without_replicas() {
        let (mut image, _) = cluster(3, &[vec![1, 2]]);
        assert!(matches!(
            decide_unregister_broker(&image, BrokerId(9)),
            Err(ControllerError::BrokerIdNotRegistered(_))
        ));
        assert!(matches!(
            decide_unregister_broker(&image, BrokerId(3)),
            Err(ControllerError::BrokerInUse { .. })
        ));
        for b in [2, 3] {
            let fence = Liveness {
                fence: [BrokerId(b)].into(),
                ..Default::default()
            };
            let r = decide_broker_liveness(&image, &fence, false);
            apply(&mut image, &r);
        }
        assert!(
            matches!(decide_unregister_broker(&image, BrokerId(2)), Err(ControllerError::BrokerInUse { reason, .. }) if reason.contains("1 replicas"))
        );
        let r = decide_unregister_broker(&image, BrokerId(3)).expect("unregistered");
        apply(&mut image, &r);
        assert!(!image.brokers.contains_key(&BrokerId(3)));
    }
}
