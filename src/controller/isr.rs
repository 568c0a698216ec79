//! ISR changes sent by partition leaders (Kafka's AlterPartition), decided purely.
//!
//! A leader proposes a new ISR for a partition it leads, naming the leader epoch and the
//! partition epoch it last saw. The controller applies it only when both still match the image
//! (compare-and-set: a proposal made against an older registration is refused, and the leader
//! retries from the image it then receives), the new ISR holds the leader, lies within the
//! replicas, and adds only unfenced brokers (a fenced broker cannot be in sync).

use super::image::MetadataImage;
use super::records::MetadataRecord;
use super::ControllerError;
use crate::model::{BrokerId, LeaderEpoch, PartitionIndex, TopicId};

/// A leader's proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartition {
    pub topic_id: TopicId,
    pub partition: PartitionIndex,
    pub leader: BrokerId,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: i32,
    pub new_isr: Vec<BrokerId>,
}

/// The record that applies `req`, none when the ISR is already `new_isr`, or why it is refused.
pub fn decide_alter_partition(
    image: &MetadataImage,
    req: &AlterPartition,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let topic = image
        .topic(&req.topic_id)
        .ok_or(ControllerError::UnknownTopicId(req.topic_id))?;
    let p = topic
        .partitions
        .get(&req.partition)
        .ok_or(ControllerError::UnknownTopicId(req.topic_id))?;
    if p.leader != req.leader || p.leader_epoch != req.leader_epoch {
        return Err(ControllerError::StaleLeaderEpoch {
            leader: p.leader,
            leader_epoch: p.leader_epoch,
        });
    }
    if p.partition_epoch != req.partition_epoch {
        return Err(ControllerError::InvalidUpdateVersion {
            expected: p.partition_epoch,
            got: req.partition_epoch,
        });
    }
    if !req.new_isr.contains(&req.leader) {
        return Err(ControllerError::IneligibleReplica(format!(
            "the ISR {:?} must hold the leader {}",
            req.new_isr, req.leader
        )));
    }
    let mut seen = Vec::with_capacity(req.new_isr.len());
    for b in &req.new_isr {
        if !p.replicas.contains(b) || seen.contains(b) {
            return Err(ControllerError::IneligibleReplica(format!(
                "broker {b} is not a replica of the partition, or is listed twice"
            )));
        }
        if !p.isr.contains(b) && !image.is_live(*b) {
            return Err(ControllerError::IneligibleReplica(format!(
                "broker {b} is fenced and cannot join the ISR"
            )));
        }
        seen.push(*b);
    }
    if req.new_isr == p.isr {
        return Ok(Vec::new());
    }
    Ok(vec![MetadataRecord::Partition {
        topic_id: req.topic_id,
        partition: req.partition,
        replicas: p.replicas.clone(),
        isr: req.new_isr.clone(),
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch + 1,
        adding_replicas: p.adding_replicas.clone(),
        removing_replicas: p.removing_replicas.clone(),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with(isr: &[i32], fenced: &[i32]) -> (MetadataImage, TopicId) {
        let mut image = MetadataImage::default();
        let mut off = 0;
        let mut apply = |image: &mut MetadataImage, r: MetadataRecord| {
            off += 1;
            image.apply(off, &r);
        };
        for i in 1..=3 {
            apply(
                &mut image,
                MetadataRecord::RegisterBroker {
                    broker_id: BrokerId(i),
                    incarnation: uuid::Uuid::new_v4(),
                    host: "h".into(),
                    port: 1,
                    rack: None,
                    endpoints: vec![],
                },
            );
        }
        for b in fenced {
            apply(
                &mut image,
                MetadataRecord::FenceBroker {
                    broker_id: BrokerId(*b),
                },
            );
        }
        let topic_id = TopicId::random();
        apply(
            &mut image,
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id,
            },
        );
        apply(
            &mut image,
            MetadataRecord::Partition {
                topic_id,
                partition: PartitionIndex(0),
                replicas: vec![BrokerId(1), BrokerId(2), BrokerId(3)],
                isr: isr.iter().map(|b| BrokerId(*b)).collect(),
                leader: BrokerId(1),
                leader_epoch: LeaderEpoch(4),
                partition_epoch: 7,
                adding_replicas: vec![],
                removing_replicas: vec![],
            },
        );
        (image, topic_id)
    }

    fn req(topic_id: TopicId, isr: &[i32]) -> AlterPartition {
        AlterPartition {
            topic_id,
            partition: PartitionIndex(0),
            leader: BrokerId(1),
            leader_epoch: LeaderEpoch(4),
            partition_epoch: 7,
            new_isr: isr.iter().map(|b| BrokerId(*b)).collect(),
        }
    }

    #[test]
    fn a_shrink_bumps_the_partition_epoch_and_keeps_the_leader_epoch() {
        let (image, id) = image_with(&[1, 2, 3], &[]);
        let records = decide_alter_partition(&image, &req(id, &[1, 3])).unwrap();
        match &records[..] {
            [MetadataRecord::Partition {
                isr,
                leader,
                leader_epoch,
                partition_epoch,
                ..
            }] => {
                assert_eq!(isr, &vec![BrokerId(1), BrokerId(3)]);
                assert_eq!(*leader, BrokerId(1));
                assert_eq!(*leader_epoch, LeaderEpoch(4));
                assert_eq!(*partition_epoch, 8);
            }
            other => panic!("unexpected records {other:?}"),
        }
    }

    #[test]
    fn a_proposal_against_an_old_registration_is_refused() {
        let (image, id) = image_with(&[1, 2, 3], &[]);
        let mut stale = req(id, &[1, 2]);
        stale.partition_epoch = 6;
        assert!(matches!(
            decide_alter_partition(&image, &stale),
            Err(ControllerError::InvalidUpdateVersion {
                expected: 7,
                got: 6
            })
        ));
        let mut old_leader = req(id, &[1, 2]);
        old_leader.leader_epoch = LeaderEpoch(3);
        assert!(matches!(
            decide_alter_partition(&image, &old_leader),
            Err(ControllerError::StaleLeaderEpoch { .. })
        ));
    }

    #[test]
    fn only_unfenced_replicas_join_and_the_leader_stays() {
        let (image, id) = image_with(&[1], &[3]);
        assert!(matches!(
            decide_alter_partition(&image, &req(id, &[1, 3])),
            Err(ControllerError::IneligibleReplica(_))
        ));
        assert!(matches!(
            decide_alter_partition(&image, &req(id, &[2])),
            Err(ControllerError::IneligibleReplica(_))
        ));
        assert_eq!(
            decide_alter_partition(&image, &req(id, &[1, 2]))
                .unwrap()
                .len(),
            1
        );
        assert!(decide_alter_partition(&image, &req(id, &[1]))
            .unwrap()
            .is_empty());
    }
}
