//! The consumer-group state machine driven purely: heartbeats and ticks in, records and
//! responses out.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, TopicName,
};
use uuid::Uuid;

use super::heartbeat::{validate, HeartbeatError, HeartbeatInput};
use super::records::{Assignment, ConsumerRecord};
use super::*;
use crate::protocol::str_bytes;

const T: u128 = 1;

fn image(topics: &[(&str, u128, i32)], version: u64) -> TopicsImage {
    TopicsImage {
        version,
        by_name: topics
            .iter()
            .map(|(n, id, p)| {
                (
                    n.to_string(),
                    TopicMeta {
                        id: Uuid::from_u128(*id),
                        partitions: *p,
                    },
                )
            })
            .collect(),
    }
}

struct H {
    group: ConsumerGroup,
    config: ConsumerGroupConfig,
    image: TopicsImage,
    now: i64,
    log: Vec<ConsumerRecord>,
}

impl H {
    fn new(partitions: i32) -> H {
        H {
            group: ConsumerGroup::new("g"),
            config: ConsumerGroupConfig::default(),
            image: image(&[("t", T, partitions)], 1),
            now: 1_000,
            log: Vec::new(),
        }
    }

    fn send(
        &mut self,
        req: ConsumerGroupHeartbeatRequest,
    ) -> Result<ConsumerGroupHeartbeatResponse, HeartbeatError> {
        validate(&req, 1, &self.config)?;
        let input = HeartbeatInput {
            version: 1,
            client_id: "c".into(),
            client_host: "/h".into(),
            new_member_id: "unused".into(),
            image: &self.image,
            now_ms: self.now,
        };
        let mut out = Vec::new();
        let r = self.group.heartbeat(&req, &input, &self.config, &mut out);
        self.log.extend(out);
        r
    }

    fn join(
        &mut self,
        id: &str,
        instance: Option<&str>,
    ) -> Result<ConsumerGroupHeartbeatResponse, HeartbeatError> {
        self.send(
            req(id, 0, Some(vec![]))
                .with_instance_id(instance.map(str_bytes))
                .with_rebalance_timeout_ms(10_000)
                .with_subscribed_topic_names(Some(vec![TopicName(str_bytes("t"))])),
        )
    }
}

fn req(id: &str, epoch: i32, owned: Option<Vec<i32>>) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(str_bytes("g")))
        .with_member_id(str_bytes(id))
        .with_member_epoch(epoch)
        .with_topic_partitions(owned.map(|ps| {
            if ps.is_empty() {
                vec![]
            } else {
                vec![TopicPartitions::default()
                    .with_topic_id(Uuid::from_u128(T))
                    .with_partitions(ps)]
            }
        }))
}

fn partitions(r: &ConsumerGroupHeartbeatResponse) -> Option<Vec<i32>> {
    r.assignment.as_ref().map(|a| {
        let mut ps: Vec<i32> = a
            .topic_partitions
            .iter()
            .flat_map(|t| t.partitions.clone())
            .collect();
        ps.sort();
        ps
    })
}

#[test]
fn a_second_member_gets_partitions_only_after_the_first_revokes_them() {
    let mut h = H::new(4);
    let a = h.join("a", None).unwrap();
    assert_eq!(
        (a.member_epoch, partitions(&a)),
        (1, Some(vec![0, 1, 2, 3]))
    );
    assert_eq!(a.heartbeat_interval_ms, 5000);
    let b = h.join("b", None).unwrap();
    // b is at the new epoch but waits: a still owns everything.
    assert_eq!((b.member_epoch, partitions(&b)), (2, Some(vec![])));
    assert_eq!(
        h.group.members["b"].state,
        MemberState::UnreleasedPartitions
    );
    assert_eq!(h.group.state_name(), "Reconciling");
    // a is asked to revoke two partitions, keeping its epoch.
    let a = h.send(req("a", 1, Some(vec![0, 1, 2, 3]))).unwrap();
    assert_eq!(a.member_epoch, 1);
    let kept = partitions(&a).unwrap();
    assert_eq!(kept.len(), 2);
    // Until a reports the revocation, b gets nothing.
    let b = h.send(req("b", 2, Some(vec![]))).unwrap();
    assert_eq!(partitions(&b).unwrap_or_default(), Vec::<i32>::new());
    let a = h.send(req("a", 1, Some(kept.clone()))).unwrap();
    assert_eq!(a.member_epoch, 2);
    let b = h.send(req("b", 2, Some(vec![]))).unwrap();
    let got = partitions(&b).unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|p| !kept.contains(p)));
    assert_eq!(h.group.state_name(), "Stable");
}

#[test]
fn retried_heartbeats_never_fence_a_live_member() {
    let mut h = H::new(2);
    h.join("a", None).unwrap();
    let before = h.log.len();
    let r1 = h.send(req("a", 1, Some(vec![0, 1]))).unwrap();
    let r2 = h.send(req("a", 1, Some(vec![0, 1]))).unwrap();
    assert_eq!((r1.member_epoch, r2.member_epoch), (1, 1));
    assert_eq!(h.log.len(), before, "an unchanged heartbeat writes nothing");
    // A repeated join (its reply lost) is answered with the member's state.
    let again = h.join("a", None).unwrap();
    assert_eq!(
        (again.member_epoch, partitions(&again)),
        (1, Some(vec![0, 1]))
    );
    // A second member bumps a to epoch 2 after revocation; a heartbeat at epoch 1 that owns a
    // subset of the current assignment is still accepted (the epoch-2 reply may be lost).
    h.join("b", None).unwrap();
    let a = h.send(req("a", 1, Some(vec![0, 1]))).unwrap();
    let kept = partitions(&a).unwrap();
    let a = h.send(req("a", 1, Some(kept.clone()))).unwrap();
    assert_eq!(a.member_epoch, 2);
    assert!(h.send(req("a", 1, Some(kept.clone()))).is_ok());
    // A greater epoch, or a stale one claiming partitions it does not own, is fenced.
    assert_eq!(
        h.send(req("a", 3, None)).unwrap_err().code,
        E::FencedMemberEpoch.code()
    );
    assert_eq!(
        h.send(req("a", 1, Some(vec![0, 1]))).unwrap_err().code,
        E::FencedMemberEpoch.code()
    );
    assert_eq!(
        h.send(req("zz", 1, None)).unwrap_err().code,
        E::UnknownMemberId.code()
    );
}

#[test]
fn static_members_leave_for_a_while_and_come_back_to_their_partitions() {
    let mut h = H::new(2);
    h.join("a1", Some("i")).unwrap();
    h.join("b", None).unwrap();
    for _ in 0..3 {
        let owned = h.group.members["a1"]
            .assigned
            .get(&Uuid::from_u128(T))
            .map(|s| s.iter().copied().collect());
        h.send(req(
            "a1",
            h.group.members["a1"].member_epoch,
            owned.or(Some(vec![])),
        ))
        .unwrap();
        let owned = h.group.members["b"]
            .assigned
            .get(&Uuid::from_u128(T))
            .map(|s| s.iter().copied().collect());
        h.send(req(
            "b",
            h.group.members["b"].member_epoch,
            owned.or(Some(vec![])),
        ))
        .unwrap();
    }
    let held: Assignment = h.group.members["a1"].assigned.clone();
    assert_eq!(held.values().map(|s| s.len()).sum::<usize>(), 1);
    // Another process with the same instance id while a1 is alive: refused.
    assert_eq!(
        h.join("a2", Some("i")).unwrap_err().code,
        E::UnreleasedInstanceId.code()
    );
    let epoch = h.group.epoch;
    let left = h
        .send(req("a1", -2, None).with_instance_id(Some(str_bytes("i"))))
        .unwrap();
    assert_eq!(left.member_epoch, -2);
    assert_eq!(h.group.epoch, epoch, "a temporary leave does not rebalance");
    let back = h.join("a2", Some("i")).unwrap();
    assert!(!h.group.members.contains_key("a1"));
    let mut got = Assignment::new();
    for t in &back.assignment.expect("assignment").topic_partitions {
        got.entry(t.topic_id)
            .or_default()
            .extend(t.partitions.iter().copied());
    }
    assert_eq!(
        got, held,
        "the returning static member keeps its partitions"
    );
}

#[test]
fn group_size_invalid_requests_and_unknown_assignors_are_refused() {
    let mut h = H::new(1);
    h.config.max_size = 1;
    h.join("a", None).unwrap();
    assert_eq!(
        h.join("b", None).unwrap_err().code,
        E::GroupMaxSizeReached.code()
    );
    let bad_regex = req("c", 0, Some(vec![]))
        .with_rebalance_timeout_ms(1)
        .with_subscribed_topic_regex(Some(str_bytes("(")));
    assert_eq!(
        h.send(bad_regex).unwrap_err().code,
        E::InvalidRegularExpression.code()
    );
    let bad_assignor = req("c", 0, Some(vec![]))
        .with_rebalance_timeout_ms(1)
        .with_subscribed_topic_names(Some(vec![]))
        .with_server_assignor(Some(str_bytes("sticky")));
    assert_eq!(
        h.send(bad_assignor).unwrap_err().code,
        E::UnsupportedAssignor.code()
    );
    let no_timeout = req("c", 0, Some(vec![])).with_subscribed_topic_names(Some(vec![]));
    assert_eq!(
        h.send(no_timeout).unwrap_err().code,
        E::InvalidRequest.code()
    );
}

#[test]
fn an_expired_session_hands_the_partitions_to_the_others() {
    let mut h = H::new(2);
    h.join("a", None).unwrap();
    h.join("b", None).unwrap();
    let kept = partitions(&h.send(req("a", 1, Some(vec![0, 1]))).unwrap()).unwrap_or_default();
    let a = h.send(req("a", 1, Some(kept))).unwrap();
    assert_eq!(a.member_epoch, 2);
    // b stops heartbeating; a keeps going until b's session is over.
    h.now += h.config.session_timeout_ms as i64;
    h.send(req("a", 2, None)).unwrap();
    let deadline = h.group.next_deadline_ms().unwrap();
    assert!(deadline <= h.now);
    let mut out = Vec::new();
    assert!(h.group.expire(h.now, &h.config, Some(&h.image), &mut out));
    assert!(!h.group.members.contains_key("b"));
    let a = h.send(req("a", 2, None)).unwrap();
    assert_eq!((a.member_epoch, partitions(&a)), (3, Some(vec![0, 1])));
}

#[test]
fn a_regex_subscription_follows_topics_created_later() {
    let mut h = H::new(1);
    let r = h
        .send(
            req("a", 0, Some(vec![]))
                .with_rebalance_timeout_ms(1000)
                .with_subscribed_topic_regex(Some(str_bytes("^pre.*"))),
        )
        .unwrap();
    assert_eq!(partitions(&r), Some(vec![]), "t does not match");
    h.image = image(
        &[("t", T, 1), ("prefix", 2, 2), ("__prefix_internal", 3, 1)],
        2,
    );
    let r = h.send(req("a", r.member_epoch, Some(vec![]))).unwrap();
    let a = r.assignment.expect("an assignment");
    assert_eq!(a.topic_partitions.len(), 1);
    assert_eq!(
        (
            a.topic_partitions[0].topic_id,
            a.topic_partitions[0].partitions.clone()
        ),
        (Uuid::from_u128(2), vec![0, 1])
    );
    // A partition added to a subscribed topic bumps the group epoch too.
    let epoch = h.group.epoch;
    h.image = image(&[("t", T, 1), ("prefix", 2, 3)], 3);
    h.send(req("a", r.member_epoch, None)).unwrap();
    assert_eq!(h.group.epoch, epoch + 1);
    // Image changes the group does not subscribe to do not.
    h.image = image(&[("t", T, 5), ("prefix", 2, 3)], 4);
    h.send(req("a", h.group.members["a"].member_epoch, None))
        .unwrap();
    assert_eq!(h.group.epoch, epoch + 1);
}

#[test]
fn replaying_the_records_rebuilds_the_group_in_any_compaction_order() {
    let mut h = H::new(3);
    h.join("a", Some("i")).unwrap();
    h.join("b", None).unwrap();
    h.send(req("a", 1, Some(vec![0, 1, 2]))).unwrap();
    // The latest record per key, as compaction keeps it; current assignments first, as when
    // member metadata was rewritten later.
    let mut latest: std::collections::BTreeMap<Vec<u8>, ConsumerRecord> = Default::default();
    for r in &h.log {
        let mut k = bytes::BytesMut::new();
        r.encode_key(&mut k);
        latest.insert(k.to_vec(), r.clone());
    }
    let mut records: Vec<ConsumerRecord> = latest.into_values().collect();
    records.sort_by_key(|r| match r {
        ConsumerRecord::CurrentMemberAssignment { .. } => 0,
        _ => 1,
    });
    let mut g = ConsumerGroup::new("g");
    for r in records {
        g.replay(r, 0, 45_000);
    }
    assert_eq!(
        (g.epoch, g.assignment_epoch),
        (h.group.epoch, h.group.assignment_epoch)
    );
    assert_eq!(g.target, h.group.target);
    assert_eq!(g.static_members, h.group.static_members);
    for (id, m) in &h.group.members {
        let r = &g.members[id];
        assert_eq!(
            (
                r.member_epoch,
                r.state,
                &r.assigned,
                &r.pending_revocation,
                &r.meta
            ),
            (
                m.member_epoch,
                m.state,
                &m.assigned,
                &m.pending_revocation,
                &m.meta
            )
        );
    }
    // Tombstones remove it all.
    let mut g2 = g.clone();
    for r in g.tombstones() {
        g2.replay(r, 0, 45_000);
    }
    assert!(g2.members.is_empty() && g2.target.is_empty());
}

#[test]
fn offsets_of_subscribed_topics_cannot_be_deleted_while_members_subscribe() {
    use crate::group::state::{GroupConfig, GroupRequest, GroupResponse, GroupShard};
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use kafka_protocol::messages::{OffsetCommitRequest, OffsetDeleteRequest};
    use std::sync::Arc;

    let mut shard = GroupShard::new(GroupConfig::default());
    let image = Arc::new(image(&[("t", T, 1), ("u", 2, 1)], 1));
    let hb = crate::group::state::ConsumerHeartbeat {
        version: 1,
        client_id: "c".into(),
        client_host: "/h".into(),
        new_member_id: "x".into(),
        image: image.clone(),
        req: req("a", 0, Some(vec![]))
            .with_rebalance_timeout_ms(1000)
            .with_subscribed_topic_names(Some(vec![TopicName(str_bytes("t"))])),
    };
    let d = shard.handle(1, GroupRequest::ConsumerHeartbeat(Box::new(hb)), 0);
    let Some((_, GroupResponse::ConsumerHeartbeat(r))) = d.replies.first() else {
        panic!("no reply")
    };
    let epoch = r.member_epoch;
    // A commit by the member at its epoch, to both topics; a stale epoch is refused.
    let commit = |e: i32| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_member_id(str_bytes("a"))
            .with_generation_id_or_member_epoch(e)
            .with_topics(
                ["t", "u"]
                    .iter()
                    .map(|t| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(str_bytes(*t)))
                            .with_partitions(vec![
                                OffsetCommitRequestPartition::default().with_committed_offset(5)
                            ])
                    })
                    .collect(),
            )
    };
    let d = shard.handle(
        2,
        GroupRequest::Commit {
            version: 9,
            req: commit(epoch + 1),
        },
        0,
    );
    let Some((_, GroupResponse::Commit(c))) = d.replies.first() else {
        panic!("no reply")
    };
    assert_eq!(
        c.topics[0].partitions[0].error_code,
        E::StaleMemberEpoch.code()
    );
    assert!(d.records.is_empty());
    let d = shard.handle(
        3,
        GroupRequest::Commit {
            version: 9,
            req: commit(epoch),
        },
        0,
    );
    assert_eq!(d.records.len(), 2);
    let delete = OffsetDeleteRequest::default()
        .with_group_id(GroupId(str_bytes("g")))
        .with_topics(
            ["t", "u"]
                .iter()
                .map(|t| {
                    OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(str_bytes(*t)))
                        .with_partitions(vec![OffsetDeleteRequestPartition::default()])
                })
                .collect(),
        );
    let d = shard.handle(4, GroupRequest::DeleteOffsets { req: delete }, 0);
    let Some((_, GroupResponse::DeleteOffsets(r))) = d.replies.first() else {
        panic!("no reply")
    };
    let codes: Vec<i16> = r
        .topics
        .iter()
        .map(|t| t.partitions[0].error_code)
        .collect();
    assert_eq!(codes, vec![E::GroupSubscribedToTopic.code(), 0]);
}
