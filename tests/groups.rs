//! The group state machine, driven purely: requests and ticks in, records and replies out.

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    OffsetCommitRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strata::group::records::OffsetsRecord;
use strata::group::state::{
    Decision, GroupConfig, GroupRequest, GroupResponse, GroupShard, GroupState, GroupSummary,
};
use strata::model::{Offset, TopicPartition};

const GROUP: &str = "g";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

struct Harness {
    shard: GroupShard,
    now: i64,
    next_waiter: u64,
    /// Every record decided so far, in order (what the log would hold).
    log: Vec<OffsetsRecord>,
    /// Join phases completed so far, as the decisions counted them.
    rebalances: u64,
}

impl Harness {
    fn new(initial_delay_ms: i32) -> Harness {
        let config = GroupConfig {
            initial_rebalance_delay_ms: initial_delay_ms,
            offsets_retention_ms: 60_000,
            ..GroupConfig::default()
        };
        Harness {
            shard: GroupShard::new(config),
            now: 1_000_000,
            next_waiter: 0,
            log: Vec::new(),
            rebalances: 0,
        }
    }

    fn send(&mut self, req: GroupRequest) -> (u64, Decision) {
        self.next_waiter += 1;
        let d = self.shard.handle(self.next_waiter, req, self.now);
        self.log.extend(d.records.iter().cloned());
        self.rebalances += d.rebalances;
        (self.next_waiter, d)
    }

    fn tick(&mut self, advance_ms: i64) -> Decision {
        self.now += advance_ms;
        let d = self.shard.tick(self.now);
        self.log.extend(d.records.iter().cloned());
        self.rebalances += d.rebalances;
        d
    }

    fn state(&self) -> GroupState {
        self.shard
            .groups
            .get(GROUP)
            .map(|g| g.state)
            .unwrap_or(GroupState::Dead)
    }

    fn generation(&self) -> i32 {
        self.shard.groups[GROUP].generation
    }
}

fn join_req(member_id: &str, protocols: &[(&str, &[u8])], instance: Option<&str>) -> GroupRequest {
    GroupRequest::Join {
        version: 7,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        image: None,
        req: JoinGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(s(member_id))
            .with_group_instance_id(instance.map(s))
            .with_protocol_type(s("consumer"))
            .with_protocols(
                protocols
                    .iter()
                    .map(|(n, m)| {
                        JoinGroupRequestProtocol::default()
                            .with_name(s(n))
                            .with_metadata(Bytes::copy_from_slice(m))
                    })
                    .collect(),
            ),
    }
}

fn join_reply(d: &Decision, waiter: u64) -> Option<JoinGroupResponse> {
    d.replies
        .iter()
        .find(|(w, _)| *w == waiter)
        .and_then(|(_, r)| match r {
            GroupResponse::Join(j) => Some(j.clone()),
            _ => None,
        })
}

fn error_of(d: &Decision, waiter: u64) -> i16 {
    match d.replies.iter().find(|(w, _)| *w == waiter).map(|(_, r)| r) {
        Some(GroupResponse::Join(r)) => r.error_code,
        Some(GroupResponse::Sync(r)) => r.error_code,
        Some(GroupResponse::Heartbeat(r)) => r.error_code,
        Some(GroupResponse::Leave(r)) => r
            .members
            .first()
            .map(|m| m.error_code)
            .unwrap_or(r.error_code),
        Some(GroupResponse::Commit(r)) => r.topics[0].partitions[0].error_code,
        Some(GroupResponse::Delete(c)) => *c,
        other => panic!("no error-carrying reply for waiter {waiter}: {other:?}"),
    }
}

/// KIP-394: the first join gets an id, the second join with it enters the group.
fn join_new_member(h: &mut Harness, protocols: &[(&str, &[u8])]) -> (String, u64, Decision) {
    let (w, d) = h.send(join_req("", protocols, None));
    assert_eq!(error_of(&d, w), E::MemberIdRequired.code());
    let id = join_reply(&d, w).unwrap().member_id.to_string();
    assert!(id.starts_with("client-"), "{id}");
    let (w, d) = h.send(join_req(&id, protocols, None));
    (id, w, d)
}

fn sync(
    h: &mut Harness,
    member: &str,
    generation: i32,
    assignments: &[(&str, &[u8])],
) -> (u64, Decision) {
    h.send(GroupRequest::Sync {
        req: SyncGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id(generation)
            .with_member_id(s(member))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(s(m))
                            .with_assignment(Bytes::copy_from_slice(a))
                    })
                    .collect(),
            ),
    })
}

fn heartbeat(h: &mut Harness, member: &str, generation: i32) -> i16 {
    let (w, d) = h.send(GroupRequest::Heartbeat {
        req: HeartbeatRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id(generation)
            .with_member_id(s(member)),
    });
    error_of(&d, w)
}

fn commit(
    h: &mut Harness,
    member: &str,
    generation: i32,
    partition: i32,
    offset: i64,
) -> (u64, Decision) {
    h.send(GroupRequest::Commit {
        version: 9,
        req: OffsetCommitRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(partition)
                    .with_committed_offset(offset)
                    .with_committed_leader_epoch(-1)])]),
    })
}

fn fetched(h: &Harness, partition: i32) -> Option<i64> {
    let f = h
        .shard
        .fetch_offsets(GROUP, Some(vec![("t".into(), vec![partition])]));
    f.topics[0].1[0].1.as_ref().map(|o| o.offset)
}

#[test]
fn single_member_joins_syncs_and_heartbeats() {
    let mut h = Harness::new(0);
    let (id, w, d) = join_new_member(&mut h, &[("range", b"sub")]);
    let r = join_reply(&d, w).expect("join completes at once with no initial delay");
    assert_eq!(r.error_code, 0);
    assert_eq!(r.generation_id, 1);
    assert_eq!(r.leader.as_str(), id);
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1);
    assert_eq!(&r.members[0].metadata[..], b"sub");
    assert_eq!(h.state(), GroupState::CompletingRebalance);

    let (w, d) = sync(&mut h, &id, 1, &[(&id, b"asg")]);
    assert_eq!(h.state(), GroupState::Stable);
    // The assignment is persisted before anyone learns it.
    assert!(
        matches!(&d.records[..], [OffsetsRecord::GroupMetadata { value: Some(v), .. }] if v.generation == 1 && &v.members[0].assignment[..] == b"asg")
    );
    match &d.replies[0] {
        (rw, GroupResponse::Sync(r)) if *rw == w => assert_eq!(&r.assignment[..], b"asg"),
        other => panic!("{other:?}"),
    }
    assert_eq!(heartbeat(&mut h, &id, 1), 0);
    assert_eq!(heartbeat(&mut h, &id, 0), E::IllegalGeneration.code());
    assert_eq!(heartbeat(&mut h, "nobody", 1), E::UnknownMemberId.code());
}

#[test]
fn second_member_triggers_a_rebalance_and_followers_wait_for_the_leader() {
    let mut h = Harness::new(0);
    let (a, w, d) = join_new_member(&mut h, &[("range", b"a")]);
    assert!(join_reply(&d, w).is_some());
    sync(&mut h, &a, 1, &[(&a, b"all")]);

    // B joins: the group prepares a rebalance and waits for A to rejoin.
    let (b, wb, d) = join_new_member(&mut h, &[("range", b"b")]);
    assert!(join_reply(&d, wb).is_none());
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(heartbeat(&mut h, &a, 1), E::RebalanceInProgress.code());

    let (wa, d) = h.send(join_req(&a, &[("range", b"a")], None));
    let ra = join_reply(&d, wa).unwrap();
    let rb = join_reply(&d, wb).unwrap();
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    assert_eq!(ra.leader.as_str(), a, "the old leader stays leader");
    assert_eq!(ra.members.len(), 2);
    assert!(
        rb.members.is_empty(),
        "only the leader gets the member list"
    );

    // The follower's sync waits for the leader's.
    let (wsb, d) = sync(&mut h, &b, 2, &[]);
    assert!(d.replies.is_empty());
    let (wsa, d) = sync(&mut h, &a, 2, &[(&a, b"pa"), (&b, b"pb")]);
    let got: Vec<(u64, Vec<u8>)> = d
        .replies
        .iter()
        .map(|(w, r)| match r {
            GroupResponse::Sync(s) => (*w, s.assignment.to_vec()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(
        got.contains(&(wsa, b"pa".to_vec())) && got.contains(&(wsb, b"pb".to_vec())),
        "{got:?}"
    );
    assert_eq!(h.state(), GroupState::Stable);
}

#[test]
fn protocol_is_one_every_member_supports_chosen_by_votes() {
    let mut h = Harness::new(0);
    let (a, _, _) = join_new_member(&mut h, &[("roundrobin", b""), ("range", b"")]);
    sync(&mut h, &a, 1, &[]);
    let (_b, wb, _) = join_new_member(&mut h, &[("range", b""), ("sticky", b"")]);
    let (_c, wc, _) = join_new_member(&mut h, &[("range", b""), ("roundrobin", b"")]);
    let (wa, d) = h.send(join_req(&a, &[("roundrobin", b""), ("range", b"")], None));
    for w in [wa, wb, wc] {
        assert_eq!(
            join_reply(&d, w).unwrap().protocol_name.as_deref(),
            Some("range")
        );
    }
    // A member that supports none of the group's protocols is refused.
    let (w, d) = h.send(join_req("", &[("sticky", b"")], None));
    assert_eq!(error_of(&d, w), E::InconsistentGroupProtocol.code());
}

#[test]
fn initial_rebalance_delay_waits_for_more_members() {
    let mut h = Harness::new(3_000);
    let (a, wa, d) = join_new_member(&mut h, &[("range", b"")]);
    assert!(
        join_reply(&d, wa).is_none(),
        "the first rebalance of an empty group is delayed"
    );
    assert_eq!(h.shard.next_deadline_ms(), Some(h.now + 3_000));
    h.now += 1_000;
    let (_b, wb, _) = join_new_member(&mut h, &[("range", b"")]);
    // At the end of the delay a member arrived meanwhile: wait another delay.
    let d = h.tick(2_000);
    assert!(d.replies.is_empty());
    let d = h.tick(3_000);
    let ra = join_reply(&d, wa).unwrap();
    assert!(join_reply(&d, wb).is_some());
    assert_eq!(ra.members.len(), 2);
    assert_eq!(ra.leader.as_str(), a);
}

#[test]
fn expired_session_removes_the_member_and_empties_the_group() {
    let mut h = Harness::new(0);
    let (a, _, _) = join_new_member(&mut h, &[("range", b"")]);
    sync(&mut h, &a, 1, &[(&a, b"x")]);
    h.now += 5_000;
    assert_eq!(heartbeat(&mut h, &a, 1), 0);
    assert_eq!(h.shard.next_deadline_ms(), Some(h.now + 10_000));
    assert!(h.tick(9_999).records.is_empty());
    let d = h.tick(1);
    assert_eq!(h.state(), GroupState::Empty);
    assert_eq!(h.generation(), 2);
    assert!(
        matches!(&d.records[..], [OffsetsRecord::GroupMetadata { value: Some(v), .. }] if v.members.is_empty() && v.generation == 2)
    );
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let mut h = Harness::new(0);
    let (a, _, _) = join_new_member(&mut h, &[("range", b"")]);
    sync(&mut h, &a, 1, &[]);
    let (b, wb, _) = join_new_member(&mut h, &[("range", b"")]);
    // A keeps heartbeating but never rejoins: after the rebalance timeout it is dropped.
    h.now += 20_000;
    assert_eq!(heartbeat(&mut h, &a, 1), E::RebalanceInProgress.code());
    let d = h.tick(10_000);
    let rb = join_reply(&d, wb).unwrap();
    assert_eq!(rb.leader.as_str(), b);
    assert_eq!(rb.members.len(), 1);
    assert_eq!(heartbeat(&mut h, &a, 2), E::UnknownMemberId.code());
}

#[test]
fn leave_group_rebalances_the_rest() {
    let mut h = Harness::new(0);
    let (a, _, _) = join_new_member(&mut h, &[("range", b"")]);
    sync(&mut h, &a, 1, &[]);
    let (b, wb, _) = join_new_member(&mut h, &[("range", b"")]);
    let (_, d) = h.send(join_req(&a, &[("range", b"")], None));
    assert!(join_reply(&d, wb).is_some());
    sync(&mut h, &a, 2, &[]);
    let (w, d) = h.send(GroupRequest::Leave {
        version: 3,
        req: LeaveGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_members(vec![MemberIdentity::default().with_member_id(s(&a))]),
    });
    assert_eq!(error_of(&d, w), 0);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    let (wb, d) = h.send(join_req(&b, &[("range", b"")], None));
    let rb = join_reply(&d, wb).unwrap();
    assert_eq!((rb.generation_id, rb.leader.as_str()), (3, b.as_str()));
}

#[test]
fn static_member_rejoins_without_a_rebalance_and_fences_its_old_id() {
    let mut h = Harness::new(0);
    let (w, d) = h.send(join_req("", &[("range", b"s")], Some("inst-1")));
    let r = join_reply(&d, w).unwrap();
    assert_eq!(r.error_code, 0, "static members skip MEMBER_ID_REQUIRED");
    let old = r.member_id.to_string();
    sync(&mut h, &old, 1, &[(&old, b"asg")]);

    // Restarted with the same instance id: same generation, no rebalance.
    let (w, d) = h.send(join_req("", &[("range", b"s")], Some("inst-1")));
    let r = join_reply(&d, w).unwrap();
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    let new = r.member_id.to_string();
    assert_ne!(new, old);
    assert_eq!(h.state(), GroupState::Stable);
    let (w, d) = sync(&mut h, &new, 1, &[]);
    match &d.replies[0] {
        (rw, GroupResponse::Sync(r)) if *rw == w => assert_eq!(&r.assignment[..], b"asg"),
        other => panic!("{other:?}"),
    }
    let (w, d) = h.send(GroupRequest::Heartbeat {
        req: HeartbeatRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id(1)
            .with_member_id(s(&old))
            .with_group_instance_id(Some(s("inst-1"))),
    });
    assert_eq!(error_of(&d, w), E::FencedInstanceId.code());
}

#[test]
fn commits_inside_and_outside_a_group() {
    let mut h = Harness::new(0);
    // Outside any group: generation -1, no member id.
    let (w, d) = commit(&mut h, "", -1, 0, 42);
    assert_eq!(error_of(&d, w), 0);
    assert_eq!(d.records.len(), 1);
    assert_eq!(fetched(&h, 0), Some(42));
    assert_eq!(fetched(&h, 1), None);

    let (a, _, _) = join_new_member(&mut h, &[("range", b"")]);
    let g = h.generation();
    let (w, d) = commit(&mut h, &a, g, 0, 43);
    assert_eq!(
        error_of(&d, w),
        E::RebalanceInProgress.code(),
        "no commits while the assignment is pending"
    );
    sync(&mut h, &a, g, &[]);
    let (w, d) = commit(&mut h, &a, g, 0, 44);
    assert_eq!(error_of(&d, w), 0);
    assert_eq!(fetched(&h, 0), Some(44));
    let (w, d) = commit(&mut h, &a, g - 1, 0, 45);
    assert_eq!(error_of(&d, w), E::IllegalGeneration.code());
    let (w, d) = commit(&mut h, "stranger", g, 0, 45);
    assert_eq!(error_of(&d, w), E::UnknownMemberId.code());
    let (w, d) = commit(&mut h, "", -1, 0, 45);
    assert_eq!(
        error_of(&d, w),
        E::IllegalGeneration.code(),
        "a standalone commit into a live group is refused"
    );
    assert_eq!(fetched(&h, 0), Some(44));
}

#[test]
fn replaying_the_log_rebuilds_offsets_and_groups() {
    let mut h = Harness::new(0);
    let (a, _, _) = join_new_member(&mut h, &[("range", b"sub")]);
    sync(&mut h, &a, 1, &[(&a, b"asg")]);
    commit(&mut h, &a, 1, 0, 10);
    commit(&mut h, &a, 1, 1, 20);
    commit(&mut h, &a, 1, 0, 11);

    // Through the wire format, as a load reads it.
    let batch = strata::group::records::encode_batch(&h.log, 0).unwrap();
    let mut fresh = GroupShard::new(GroupConfig::default());
    for (_, r) in strata::group::records::decode_batches(batch).unwrap() {
        fresh.replay(r, h.now);
    }
    let g = &fresh.groups[GROUP];
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(g.generation, 1);
    assert_eq!(g.leader.as_deref(), Some(a.as_str()));
    assert_eq!(&g.members[&a].assignment[..], b"asg");
    let offs: Vec<(i32, i64)> = g.offsets.iter().map(|((_, p), o)| (*p, o.offset)).collect();
    assert_eq!(offs, vec![(0, 11), (1, 20)]);
}

#[test]
fn offsets_of_an_empty_group_expire_from_when_it_became_empty() {
    let mut h = Harness::new(0);
    let (a, _, _) = join_new_member(&mut h, &[("range", b"")]);
    sync(&mut h, &a, 1, &[]);
    commit(&mut h, &a, 1, 0, 5);
    h.now += 100_000; // older than the retention, but the group is alive
    assert!(h.shard.expire_offsets(h.now).records.is_empty());
    h.send(GroupRequest::Leave {
        version: 0,
        req: LeaveGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_member_id(s(&a)),
    });
    assert_eq!(h.state(), GroupState::Empty);
    h.now += 59_999;
    assert!(h.shard.expire_offsets(h.now).records.is_empty());
    h.now += 1;
    let d = h.shard.expire_offsets(h.now);
    assert!(
        matches!(
            &d.records[..],
            [
                OffsetsRecord::OffsetCommit { value: None, .. },
                OffsetsRecord::GroupMetadata { value: None, .. }
            ]
        ),
        "{:?}",
        d.records
    );
    assert!(h.shard.groups.is_empty());
}

#[test]
fn only_empty_groups_can_be_deleted() {
    let mut h = Harness::new(0);
    let (a, _, _) = join_new_member(&mut h, &[("range", b"")]);
    sync(&mut h, &a, 1, &[]);
    commit(&mut h, &a, 1, 0, 5);
    let (w, d) = h.send(GroupRequest::Delete {
        group_id: GROUP.into(),
    });
    assert_eq!(error_of(&d, w), E::NonEmptyGroup.code());
    h.send(GroupRequest::Leave {
        version: 0,
        req: LeaveGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_member_id(s(&a)),
    });
    let (w, d) = h.send(GroupRequest::Delete {
        group_id: GROUP.into(),
    });
    assert_eq!(error_of(&d, w), 0);
    assert!(matches!(
        &d.records[..],
        [
            OffsetsRecord::OffsetCommit { value: None, .. },
            OffsetsRecord::GroupMetadata { value: None, .. }
        ]
    ));
    let (w, d) = h.send(GroupRequest::Delete {
        group_id: GROUP.into(),
    });
    assert_eq!(error_of(&d, w), E::GroupIdNotFound.code());
}

#[test]
fn each_generation_bump_counts_one_rebalance_and_the_summary_follows_the_group() {
    let mut h = Harness::new(0);
    let (a, _, _) = join_new_member(&mut h, &[("range", b"")]);
    assert_eq!(h.rebalances, 1);
    sync(&mut h, &a, 1, &[]);
    commit(&mut h, &a, 1, 0, 7);
    let (b, _, _) = join_new_member(&mut h, &[("range", b"")]);
    assert_eq!(
        h.rebalances, 1,
        "a rebalance in progress is not a completed one"
    );
    assert_eq!(h.shard.summary()[0].state, GroupState::PreparingRebalance);
    h.send(join_req(&a, &[("range", b"")], None));
    assert_eq!(h.rebalances, 2);
    sync(&mut h, &a, 2, &[]);
    assert_eq!(heartbeat(&mut h, &b, 2), 0);
    assert_eq!(
        h.shard.summary(),
        vec![GroupSummary {
            group_id: GROUP.into(),
            state: GroupState::Stable,
            members: 2,
            offsets: vec![(TopicPartition::new("t", 0), Offset(7))],
        }]
    );
    // Heartbeats and commits move nothing; both sessions expiring empties the group, which
    // bumps the generation once more.
    commit(&mut h, &a, 2, 0, 8);
    assert_eq!(h.rebalances, 2);
    h.tick(10_000);
    assert_eq!(
        (h.state(), h.generation(), h.rebalances),
        (GroupState::Empty, 3, 3)
    );
    let summary = h.shard.summary();
    assert_eq!(
        (summary[0].state, summary[0].members),
        (GroupState::Empty, 0)
    );
    assert_eq!(
        summary[0].offsets,
        vec![(TopicPartition::new("t", 0), Offset(8))]
    );
}
