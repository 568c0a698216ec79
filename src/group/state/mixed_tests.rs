//! Mixed groups driven through the shard: the online upgrade of a classic group with members,
//! classic members' JoinGroup/SyncGroup/Heartbeat/OffsetCommit inside the consumer group with
//! revocation first, their sessions, and the downgrade when the last consumer-protocol member
//! leaves. Records written are replayed into a fresh shard to check they rebuild the same group.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, ConsumerProtocolSubscription,
    GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    OffsetCommitRequest, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::Encodable;
use uuid::Uuid;

use super::convert::{classic_group_from_consumer, consumer_group_from_classic};
use super::*;
use crate::group::consumer::classic::{decode_assignment, encode_assignment};
use crate::group::consumer::records::Assignment;
use crate::group::consumer::{MemberState, TopicMeta};
use crate::model::{Offset, TopicPartition};
use crate::protocol::str_bytes;

const NOW: i64 = 1_000_000;
const T: u128 = 7;
const SESSION_MS: i32 = 10_000;

fn image() -> TopicsImage {
    TopicsImage {
        version: 1,
        by_name: [(
            "t".to_string(),
            TopicMeta {
                id: Uuid::from_u128(T),
                partitions: 6,
            },
        )]
        .into_iter()
        .collect(),
    }
}

fn subscription(owned: &[i32]) -> Bytes {
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(vec![str_bytes("t")])
        .with_owned_partitions(vec![OwnedTopic::default()
            .with_topic(TopicName(str_bytes("t")))
            .with_partitions(owned.to_vec())]);
    let mut buf = BytesMut::new();
    buf.put_i16(1);
    sub.encode(&mut buf, 1).unwrap();
    buf.freeze()
}

fn ids(ps: &[i32]) -> Assignment {
    [(Uuid::from_u128(T), ps.iter().copied().collect())]
        .into_iter()
        .filter(|(_, s): &(Uuid, BTreeSet<i32>)| !s.is_empty())
        .collect()
}

fn partitions_of(bytes: &[u8]) -> Vec<i32> {
    let mut out: Vec<i32> = decode_assignment(bytes)
        .unwrap()
        .into_iter()
        .flat_map(|(_, ps)| ps)
        .collect();
    out.sort();
    out
}

fn classic_member(id: &str, seq: u64, assigned: &[i32]) -> Member {
    Member {
        member_id: id.to_string(),
        group_instance_id: None,
        client_id: "classic".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), subscription(&[]))],
        assignment: encode_assignment(&ids(assigned), &image(), 1),
        awaiting_join: None,
        awaiting_sync: None,
        last_heartbeat_ms: NOW,
        join_seq: seq,
    }
}

/// A Stable classic group "g" at generation 5: a owns t-0..2, b owns t-3..5; t-0 committed.
fn classic_group() -> Group {
    let mut g = Group::new("g", NOW);
    g.state = GroupState::Stable;
    g.generation = 5;
    g.protocol_type = Some("consumer".into());
    g.protocol = Some("range".into());
    g.leader = Some("a".into());
    for (id, seq, ps) in [("a", 1, [0, 1, 2]), ("b", 2, [3, 4, 5])] {
        g.members.insert(id.into(), classic_member(id, seq, &ps));
    }
    g.offsets.insert(
        ("t".into(), 0),
        OffsetAndMetadata {
            offset: 42,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: NOW,
            expire_timestamp_ms: None,
        },
    );
    g
}

struct Shard {
    s: GroupShard,
    log: Vec<OffsetsRecord>,
    now: i64,
    waiter: Waiter,
}

impl Shard {
    fn new() -> Shard {
        let mut s = GroupShard::new(GroupConfig::default());
        let g = classic_group();
        let log = vec![g.metadata_record()];
        s.groups.insert("g".into(), g);
        Shard {
            s,
            log,
            now: NOW,
            waiter: 0,
        }
    }

    fn call(&mut self, r: GroupRequest) -> GroupResponse {
        self.waiter += 1;
        let d = self.s.handle(self.waiter, r, self.now);
        self.log.extend(d.records);
        let w = self.waiter;
        d.replies
            .into_iter()
            .find(|(x, _)| *x == w)
            .map(|(_, r)| r)
            .expect("a reply")
    }

    fn consumer(&mut self, id: &str, epoch: i32, owned: &[i32]) -> ConsumerGroupHeartbeatResponse {
        use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
        let mut req = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_member_id(str_bytes(id))
            .with_member_epoch(epoch)
            .with_topic_partitions(Some(vec![TopicPartitions::default()
                .with_topic_id(Uuid::from_u128(T))
                .with_partitions(owned.to_vec())]));
        if epoch == 0 {
            req = req
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![TopicName(str_bytes("t"))]))
                .with_topic_partitions(Some(vec![]));
        }
        let hb = ConsumerHeartbeat {
            version: 1,
            client_id: "new".into(),
            client_host: "/127.0.0.1".into(),
            new_member_id: "unused".into(),
            image: Arc::new(image()),
            req,
        };
        match self.call(GroupRequest::ConsumerHeartbeat(Box::new(hb))) {
            GroupResponse::ConsumerHeartbeat(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn join(&mut self, id: &str, owned: &[i32]) -> JoinGroupResponse {
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_member_id(str_bytes(id))
            .with_session_timeout_ms(SESSION_MS)
            .with_rebalance_timeout_ms(30_000)
            .with_protocol_type(str_bytes("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(str_bytes("range"))
                .with_metadata(subscription(owned))]);
        match self.call(GroupRequest::Join {
            version: 5,
            client_id: "classic".into(),
            client_host: "/127.0.0.1".into(),
            req,
            image: Some(Arc::new(image())),
        }) {
            GroupResponse::Join(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn sync(&mut self, id: &str, generation: i32) -> SyncGroupResponse {
        let req = SyncGroupRequest::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_member_id(str_bytes(id))
            .with_generation_id(generation)
            .with_protocol_type(Some(str_bytes("consumer")))
            .with_protocol_name(Some(str_bytes("range")));
        match self.call(GroupRequest::Sync { req }) {
            GroupResponse::Sync(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn heartbeat(&mut self, id: &str, generation: i32) -> i16 {
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_member_id(str_bytes(id))
            .with_generation_id(generation);
        match self.call(GroupRequest::Heartbeat { req }) {
            GroupResponse::Heartbeat(r) => r.error_code,
            other => panic!("{other:?}"),
        }
    }

    fn commit(&mut self, id: &str, generation: i32, partition: i32, offset: i64) -> i16 {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_member_id(str_bytes(id))
            .with_generation_id_or_member_epoch(generation)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(str_bytes("t")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(partition)
                    .with_committed_offset(offset)])]);
        match self.call(GroupRequest::Commit { version: 7, req }) {
            GroupResponse::Commit(r) => r.topics[0].partitions[0].error_code,
            other => panic!("{other:?}"),
        }
    }

    fn cg(&self) -> &ConsumerGroup {
        &self.s.consumer_groups["g"]
    }

    /// No partition is held (assigned or pending revocation) by two members.
    fn held_once(&self) {
        let mut seen = BTreeSet::new();
        for m in self.cg().members.values() {
            for a in [&m.assigned, &m.pending_revocation] {
                for (t, ps) in a {
                    for p in ps {
                        assert!(seen.insert((*t, *p)), "t-{p} held twice");
                    }
                }
            }
        }
    }

    fn assigned(&self, id: &str) -> Vec<i32> {
        let m = &self.cg().members[id];
        m.assigned.values().flatten().copied().collect()
    }

    /// A fresh shard rebuilt from everything written so far.
    fn replayed(&self) -> GroupShard {
        let mut s = GroupShard::new(GroupConfig::default());
        for r in &self.log {
            s.replay(r.clone(), self.now);
        }
        s
    }
}

#[test]
fn classic_group_converts_to_consumer_group_with_its_members() {
    let g = classic_group();
    let cg = consumer_group_from_classic(&g, &image(), NOW).unwrap();
    assert_eq!((cg.epoch, cg.assignment_epoch), (5, 5));
    let a = &cg.members["a"];
    assert_eq!(a.member_epoch, 5);
    assert_eq!(a.state, MemberState::Stable);
    assert_eq!(a.assigned, ids(&[0, 1, 2]));
    assert_eq!(cg.target["b"], ids(&[3, 4, 5]));
    assert_eq!(a.meta.subscribed_topic_names, vec!["t".to_string()]);
    let classic = a.meta.classic.as_ref().unwrap();
    assert_eq!(classic.session_timeout_ms, SESSION_MS);
    assert_eq!(classic.protocols[0].0, "range");
    assert_eq!(a.session_deadline_ms, NOW + SESSION_MS as i64);

    // Malformed embedded bytes refuse the conversion instead of guessing.
    let mut bad = classic_group();
    bad.members.get_mut("b").unwrap().assignment = Bytes::from_static(&[0, 1, 9]);
    assert!(consumer_group_from_classic(&bad, &image(), NOW).is_err());
}

#[test]
fn consumer_group_of_classic_members_converts_back() {
    let g = classic_group();
    let mut cg = consumer_group_from_classic(&g, &image(), NOW).unwrap();
    cg.epoch = 9;
    cg.members.get_mut("a").unwrap().member_epoch = 8;
    cg.target.insert("a".into(), ids(&[0, 1, 2, 3]));
    cg.target.insert("b".into(), ids(&[4, 5]));
    let mut seq = 10;
    let back = classic_group_from_consumer(&cg, &image(), NOW, &mut seq);
    assert_eq!(back.generation, 8, "the members' generation");
    assert_eq!(back.state, GroupState::Stable);
    assert_eq!(back.protocol.as_deref(), Some("range"));
    assert_eq!(back.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(
        back.members.keys().cloned().collect::<Vec<_>>(),
        vec!["a".to_string(), "b".to_string()]
    );
    // Each member holds its target, encoded as a ConsumerProtocol assignment.
    assert_eq!(
        partitions_of(&back.members["a"].assignment),
        vec![0, 1, 2, 3]
    );
    assert_eq!(partitions_of(&back.members["b"].assignment), vec![4, 5]);
    assert_eq!(back.members["b"].session_timeout_ms, SESSION_MS);
    assert_eq!(back.leader.as_deref(), Some("a"));
    assert_eq!(seq, 12);
}

#[test]
fn online_upgrade_then_classic_members_reconcile_revocation_first() {
    let mut h = Shard::new();
    // A consumer-protocol member joins the classic group with members: it converts.
    let r = h.consumer("c", 0, &[]);
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(
        r.member_epoch, 6,
        "the group epoch moves past the generation"
    );
    assert!(h.s.consumer_groups.contains_key("g"));
    assert!(h.s.groups["g"].members.is_empty());
    assert_eq!(h.s.groups["g"].offsets[&("t".to_string(), 0)].offset, 42);
    assert!(matches!(
        &h.log[1],
        OffsetsRecord::GroupMetadata { group, value: None } if group == "g"
    ));
    // Everything is still held by the classic members: c waits for its share.
    assert!(h.assigned("c").is_empty());
    assert_eq!(h.assigned("a"), vec![0, 1, 2]);
    h.held_once();

    // a (eager: owns nothing when it rejoins) is told to rejoin and gets its share at once.
    assert_eq!(h.heartbeat("a", 5), E::RebalanceInProgress.code());
    let j = h.join("a", &[]);
    assert_eq!((j.error_code, j.generation_id), (0, 6));
    assert_eq!(
        j.protocol_name.as_ref().map(|s| s.to_string()).as_deref(),
        Some("range")
    );
    assert_ne!(j.leader, j.member_id, "the broker assigns, not a leader");
    let s = h.sync("a", 6);
    assert_eq!(s.error_code, 0);
    assert_eq!(partitions_of(&s.assignment), h.assigned("a"));
    assert_eq!(h.assigned("a").len(), 2);
    assert_eq!(h.heartbeat("a", 6), 0);
    h.held_once();

    // c gets what a released, not yet what b holds.
    let r = h.consumer("c", 6, &[]);
    assert_eq!(r.error_code, 0);
    assert_eq!(h.assigned("c").len(), 1);
    h.held_once();

    // b is cooperative: it rejoins still owning everything, so it must revoke first.
    assert_eq!(h.heartbeat("b", 5), E::RebalanceInProgress.code());
    let j = h.join("b", &[3, 4, 5]);
    assert_eq!((j.error_code, j.generation_id), (0, 5));
    let s = h.sync("b", 5);
    let kept = partitions_of(&s.assignment);
    assert_eq!(kept.len(), 2);
    let lost: Vec<i32> = [3, 4, 5]
        .into_iter()
        .filter(|p| !kept.contains(p))
        .collect();
    assert_eq!(h.cg().members["b"].pending_revocation, ids(&lost));
    h.held_once();
    // Until b has rejoined without it, c does not get b's partition.
    h.consumer("c", 6, &h.assigned("c"));
    assert_eq!(h.assigned("c").len(), 1);
    assert_eq!(h.heartbeat("b", 5), E::RebalanceInProgress.code());
    let j = h.join("b", &kept);
    assert_eq!((j.error_code, j.generation_id), (0, 6));
    assert_eq!(partitions_of(&h.sync("b", 6).assignment), kept);
    assert_eq!(h.heartbeat("b", 6), 0);
    h.consumer("c", 6, &h.assigned("c"));
    assert_eq!(h.assigned("c").len(), 2);
    assert!(h.assigned("c").contains(&lost[0]));
    assert_eq!(h.cg().state_name(), "Stable");
    h.held_once();

    // Commits of classic members are checked against their member epoch, at any version.
    assert_eq!(h.commit("a", 5, 1, 10), E::IllegalGeneration.code());
    assert_eq!(h.commit("a", 6, 1, 10), 0);
    assert_eq!(h.s.groups["g"].offsets[&("t".to_string(), 1)].offset, 10);
    assert_eq!(h.commit("zz", 6, 1, 11), E::UnknownMemberId.code());

    // The log rebuilds the same group, classic members included.
    let back = h.replayed();
    let cg = &back.consumer_groups["g"];
    assert_eq!(cg.epoch, h.cg().epoch);
    for (id, m) in &h.cg().members {
        let r = &cg.members[id];
        assert_eq!(
            (r.member_epoch, &r.assigned, &r.meta),
            (m.member_epoch, &m.assigned, &m.meta)
        );
    }
    assert_eq!(back.groups["g"].offsets[&("t".to_string(), 1)].offset, 10);
}

#[test]
fn classic_members_join_a_consumer_group_and_leave_it() {
    let mut h = Shard::new();
    h.consumer("c", 0, &[]);
    // A new classic member: v5 first gets a member id, then joins with it.
    let j = h.join("", &[]);
    assert_eq!(j.error_code, E::MemberIdRequired.code());
    let id = j.member_id.to_string();
    let j = h.join(&id, &[]);
    assert_eq!(j.error_code, 0);
    let cg = h.cg();
    assert!(cg.members[&id].uses_classic());
    assert_eq!(cg.members.len(), 4);
    // A protocol the classic members do not share is refused.
    let req = JoinGroupRequest::default()
        .with_group_id(GroupId(str_bytes("g")))
        .with_member_id(str_bytes("x"))
        .with_session_timeout_ms(SESSION_MS)
        .with_protocol_type(str_bytes("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(str_bytes("roundrobin"))
            .with_metadata(subscription(&[]))]);
    let r = h.call(GroupRequest::Join {
        version: 5,
        client_id: String::new(),
        client_host: String::new(),
        req,
        image: None,
    });
    assert!(
        matches!(r, GroupResponse::Join(r) if r.error_code == E::InconsistentGroupProtocol.code())
    );
    // A consumer-protocol member cannot be driven by classic requests.
    assert_eq!(h.heartbeat("c", 6), E::UnknownMemberId.code());

    let epoch = h.cg().epoch;
    let r = h.call(GroupRequest::Leave {
        version: 3,
        req: LeaveGroupRequest::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_members(vec![
                kafka_protocol::messages::leave_group_request::MemberIdentity::default()
                    .with_member_id(str_bytes(&id)),
                kafka_protocol::messages::leave_group_request::MemberIdentity::default()
                    .with_member_id(str_bytes("c")),
            ]),
    });
    let GroupResponse::Leave(r) = r else { panic!() };
    assert_eq!(r.members[0].error_code, 0);
    assert_eq!(r.members[1].error_code, E::UnknownMemberId.code());
    assert!(!h.cg().members.contains_key(&id));
    assert_eq!(h.cg().epoch, epoch + 1);
}

#[test]
fn classic_sessions_expire_on_their_own_timeout() {
    let mut h = Shard::new();
    h.consumer("c", 0, &[]);
    // c heartbeats; a and b stay silent past their 10 s session.
    h.now += 5_000;
    h.consumer("c", 6, &[]);
    h.now += SESSION_MS as i64;
    let d = h.s.tick(h.now);
    h.log.extend(d.records);
    assert_eq!(
        h.cg().members.keys().cloned().collect::<Vec<_>>(),
        vec!["c".to_string()]
    );
    let epoch = h.cg().members["c"].member_epoch;
    let r = h.consumer("c", epoch, &h.assigned("c"));
    assert_eq!(r.member_epoch, h.cg().epoch);
    assert_eq!(h.assigned("c"), vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn last_consumer_member_leaving_downgrades_and_rebalances() {
    let mut h = Shard::new();
    h.consumer("c", 0, &[]);
    let r = h.consumer("c", -1, &[]);
    assert_eq!(r.error_code, 0);
    assert!(!h.s.consumer_groups.contains_key("g"));
    let g = &h.s.groups["g"];
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(g.generation, 5, "the generation a and b still have");
    assert_eq!(g.members.len(), 2);
    assert_eq!(g.offsets[&("t".to_string(), 0)].offset, 42);
    assert!(matches!(
        h.log.last(),
        Some(OffsetsRecord::GroupMetadata { value: Some(v), .. }) if v.generation == 5 && v.members.len() == 2
    ));
    // The classic members learn of the rebalance and rejoin as in any classic group.
    assert_eq!(h.heartbeat("a", 5), E::RebalanceInProgress.code());
    h.waiter += 1;
    let wa = h.waiter;
    let req = |id: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_member_id(str_bytes(id))
            .with_session_timeout_ms(SESSION_MS)
            .with_rebalance_timeout_ms(30_000)
            .with_protocol_type(str_bytes("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(str_bytes("range"))
                .with_metadata(subscription(&[]))])
    };
    let join = |r| GroupRequest::Join {
        version: 5,
        client_id: String::new(),
        client_host: String::new(),
        req: r,
        image: None,
    };
    let d = h.s.handle(wa, join(req("a")), h.now);
    assert!(d.replies.is_empty(), "a waits for b");
    let d = h.s.handle(wa + 1, join(req("b")), h.now);
    let gens: BTreeMap<Waiter, i32> = d
        .replies
        .iter()
        .map(|(w, r)| match r {
            GroupResponse::Join(r) => (*w, r.generation_id),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(gens, [(wa, 6), (wa + 1, 6)].into_iter().collect());
    // The summary the metrics read shows a classic group again.
    let s = h.s.summary();
    assert_eq!(s[0].members, 2);
    assert!(s[0]
        .offsets
        .contains(&(TopicPartition::new("t", 0), Offset(42))));
}

#[test]
fn upgrade_refused_when_the_policy_says_so() {
    let mut h = Shard::new();
    h.s.config.consumer.migration = crate::group::consumer::MigrationPolicy::Downgrade;
    let r = h.consumer("c", 0, &[]);
    assert_eq!(r.error_code, E::GroupIdNotFound.code());
    assert!(!h.s.consumer_groups.contains_key("g"));
    assert_eq!(h.s.groups["g"].members.len(), 2);
}

#[test]
fn downgrade_waits_for_the_policy() {
    let mut h = Shard::new();
    h.consumer("c", 0, &[]);
    h.s.config.consumer.migration = crate::group::consumer::MigrationPolicy::Upgrade;
    h.consumer("c", -1, &[]);
    // Only classic members are left, and they stay in the consumer group.
    assert_eq!(h.cg().members.len(), 2);
    assert!(h.cg().members.values().all(|m| m.uses_classic()));
    assert_eq!(h.heartbeat("a", 5), E::RebalanceInProgress.code());
    assert_eq!(h.join("a", &[]).generation_id, h.cg().epoch);
}
