//! Consumer groups of the KIP-848 protocol against a real broker: members reach a stable
//! assignment through ConsumerGroupHeartbeat, commits are checked against member epochs, and
//! after a restart the group, its epochs and its assignment are rebuilt from
//! `__consumer_offsets`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::kafka::create_topic;
use common::TestBroker;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::*;
use strata::client::KafkaClient;
use strata::protocol::{str_bytes, topic_name};

const GROUP: &str = "restarted";
const TOPIC: &str = "t";
const SETS: &[(&str, &str)] = &[("offsets.topic.num.partitions", "1")];

fn gid(g: &str) -> GroupId {
    GroupId(str_bytes(g))
}

struct Member {
    id: String,
    epoch: i32,
    owned: BTreeSet<(uuid::Uuid, i32)>,
}

impl Member {
    fn owned_wire(&self) -> Vec<TopicPartitions> {
        let mut by_topic: std::collections::BTreeMap<uuid::Uuid, Vec<i32>> = Default::default();
        for (t, p) in &self.owned {
            by_topic.entry(*t).or_default().push(*p);
        }
        by_topic
            .into_iter()
            .map(|(t, ps)| {
                TopicPartitions::default()
                    .with_topic_id(t)
                    .with_partitions(ps)
            })
            .collect()
    }
}

async fn heartbeat(
    c: &mut KafkaClient,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    for _ in 0..100 {
        let resp = c.send(&req, 1).await.expect("heartbeat");
        // COORDINATOR_LOAD_IN_PROGRESS / COORDINATOR_NOT_AVAILABLE / NOT_COORDINATOR: wait
        // for `__consumer_offsets` and its shard.
        if ![14, 15, 16].contains(&resp.error_code) {
            return resp;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the coordinator never loaded")
}

async fn join(c: &mut KafkaClient) -> Member {
    let id = uuid::Uuid::new_v4().to_string();
    let resp = heartbeat(
        c,
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(gid(GROUP))
            .with_member_id(str_bytes(id.clone()))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![topic_name(TOPIC)]))
            .with_topic_partitions(Some(vec![])),
    )
    .await;
    assert_eq!(resp.error_code, 0, "{resp:?}");
    let mut m = Member {
        id,
        epoch: 0,
        owned: BTreeSet::new(),
    };
    apply(&mut m, &resp);
    m
}

fn apply(m: &mut Member, resp: &ConsumerGroupHeartbeatResponse) {
    assert_eq!(resp.error_code, 0, "{resp:?}");
    m.epoch = resp.member_epoch;
    if let Some(a) = &resp.assignment {
        m.owned = a
            .topic_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(move |p| (tp.topic_id, *p)))
            .collect();
    }
}

/// One heartbeat reporting what the member owns (revocations done at once).
async fn beat(c: &mut KafkaClient, m: &mut Member) -> ConsumerGroupHeartbeatResponse {
    let resp = heartbeat(
        c,
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(gid(GROUP))
            .with_member_id(str_bytes(m.id.clone()))
            .with_member_epoch(m.epoch)
            .with_topic_partitions(Some(m.owned_wire())),
    )
    .await;
    apply(m, &resp);
    resp
}

async fn describe(c: &mut KafkaClient) -> consumer_group_describe_response::DescribedGroup {
    let resp = c
        .send(
            &ConsumerGroupDescribeRequest::default().with_group_ids(vec![gid(GROUP)]),
            1,
        )
        .await
        .expect("describe");
    resp.groups.into_iter().next().expect("one group")
}

async fn commit(c: &mut KafkaClient, m: &Member, epoch: i32, version: i16, offset: i64) -> i16 {
    let (_, p) = *m.owned.iter().next().expect("a partition");
    let req = OffsetCommitRequest::default()
        .with_group_id(gid(GROUP))
        .with_member_id(str_bytes(m.id.clone()))
        .with_generation_id_or_member_epoch(epoch)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(TOPIC))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(p)
                .with_committed_offset(offset)])]);
    let resp = c.send(&req, version).await.expect("commit");
    resp.topics[0].partitions[0].error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_and_its_assignment_survive_a_restart() {
    let broker = TestBroker::start(SETS).await;
    let mut c = broker.client("cg").await;
    create_topic(&mut c, TOPIC, 4, &[]).await;
    // FindCoordinator creates `__consumer_offsets`.
    c.send(
        &FindCoordinatorRequest::default().with_key(str_bytes(GROUP)),
        3,
    )
    .await
    .expect("find coordinator");
    let mut a = join(&mut c).await;
    let mut b = join(&mut c).await;
    // Heartbeat until both are at the assignment epoch with two partitions each.
    for _ in 0..10 {
        beat(&mut c, &mut a).await;
        beat(&mut c, &mut b).await;
    }
    let g = describe(&mut c).await;
    assert_eq!(g.group_state.as_str(), "Stable", "{g:?}");
    assert_eq!((a.owned.len(), b.owned.len()), (2, 2));
    assert!(a.owned.is_disjoint(&b.owned));
    assert_eq!(a.epoch, g.assignment_epoch);
    assert_eq!(b.epoch, g.assignment_epoch);

    // Commits: the current epoch only, and only with OffsetCommit v9+.
    assert_eq!(commit(&mut c, &a, a.epoch, 9, 42).await, 0);
    assert_eq!(
        commit(&mut c, &a, a.epoch - 1, 9, 43).await,
        113,
        "STALE_MEMBER_EPOCH"
    );
    assert_eq!(
        commit(&mut c, &a, a.epoch, 8, 43).await,
        35,
        "UNSUPPORTED_VERSION"
    );
    // Repeating a heartbeat changes nothing and fences no one.
    let again = beat(&mut c, &mut a).await;
    assert_eq!(again.member_epoch, a.epoch);

    let before = describe(&mut c).await;
    let dir = broker.stop().await;
    let broker = TestBroker::start_in(dir, SETS).await;
    let mut c = broker.client("cg").await;

    // The first heartbeat after the restart is accepted at the member's epoch, unchanged.
    let resp = beat(&mut c, &mut a).await;
    assert_eq!(
        resp.member_epoch,
        before
            .members
            .iter()
            .find(|m| m.member_id.as_str() == a.id)
            .unwrap()
            .member_epoch
    );
    beat(&mut c, &mut b).await;
    let after = describe(&mut c).await;
    assert_eq!(
        (
            after.group_epoch,
            after.assignment_epoch,
            after.group_state.as_str()
        ),
        (before.group_epoch, before.assignment_epoch, "Stable")
    );
    let sorted = |g: &consumer_group_describe_response::DescribedGroup| {
        let mut m: Vec<_> = g
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.member_epoch,
                    m.assignment.clone(),
                    m.target_assignment.clone(),
                )
            })
            .collect();
        m.sort_by(|x, y| x.0.cmp(&y.0));
        m
    };
    assert_eq!(sorted(&after), sorted(&before));

    // The commit survived, and a member fetches it at its epoch (a stale one is refused).
    let (_, p) = *a.owned.iter().next().unwrap();
    let fetch = |epoch: i32| {
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(gid(GROUP))
            .with_member_id(Some(str_bytes(a.id.clone())))
            .with_member_epoch(epoch)
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(topic_name(TOPIC))
                .with_partition_indexes(vec![p])]))])
    };
    let got = c.send(&fetch(a.epoch), 9).await.expect("fetch");
    assert_eq!(got.groups[0].error_code, 0);
    assert_eq!(got.groups[0].topics[0].partitions[0].committed_offset, 42);
    let stale = c.send(&fetch(a.epoch - 1), 9).await.expect("fetch");
    assert_eq!(stale.groups[0].error_code, 113, "STALE_MEMBER_EPOCH");

    // Listed as a consumer group; not deletable while it has members; deletable once empty.
    let list = c
        .send(&ListGroupsRequest::default(), 5)
        .await
        .expect("list");
    let listed = list
        .groups
        .iter()
        .find(|g| g.group_id.0.as_str() == GROUP)
        .expect("listed");
    assert_eq!(
        (listed.group_type.as_str(), listed.protocol_type.as_str()),
        ("consumer", "consumer")
    );
    // The classic DescribeGroups: not a classic group (v6), or Dead without an error (before).
    let classic = c
        .send(
            &DescribeGroupsRequest::default().with_groups(vec![gid(GROUP)]),
            6,
        )
        .await
        .expect("describe");
    assert_eq!(classic.groups[0].error_code, 69);
    assert_eq!(
        classic.groups[0]
            .error_message
            .as_ref()
            .map(|m| m.to_string()),
        Some(format!("Group {GROUP} is not a classic group."))
    );
    let classic = c
        .send(
            &DescribeGroupsRequest::default().with_groups(vec![gid(GROUP)]),
            5,
        )
        .await
        .expect("describe");
    assert_eq!(
        (
            classic.groups[0].error_code,
            classic.groups[0].group_state.as_str()
        ),
        (0, "Dead")
    );
    let del = c
        .send(
            &DeleteGroupsRequest::default().with_groups_names(vec![gid(GROUP)]),
            2,
        )
        .await
        .expect("delete");
    assert_eq!(del.results[0].error_code, 68, "NON_EMPTY_GROUP");
    for m in [&a, &b] {
        let left = heartbeat(
            &mut c,
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(gid(GROUP))
                .with_member_id(str_bytes(m.id.clone()))
                .with_member_epoch(-1),
        )
        .await;
        assert_eq!((left.error_code, left.member_epoch), (0, -1));
    }
    let del = c
        .send(
            &DeleteGroupsRequest::default().with_groups_names(vec![gid(GROUP)]),
            2,
        )
        .await
        .expect("delete");
    assert_eq!(del.results[0].error_code, 0);

    // Deleted for good: after another restart the tombstones keep it gone.
    let dir = broker.stop().await;
    let broker = TestBroker::start_in(dir, SETS).await;
    let mut c = broker.client("cg").await;
    let mut g = describe(&mut c).await;
    for _ in 0..50 {
        if ![14, 15, 16].contains(&g.error_code) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        g = describe(&mut c).await;
    }
    assert_eq!(g.error_code, 69, "GROUP_ID_NOT_FOUND after deletion: {g:?}");
    broker.stop().await;
}

/// The first request to a coordinator whose `__consumer_offsets` partition was just created
/// waits for the shard to load instead of answering COORDINATOR_LOAD_IN_PROGRESS, so a client
/// that retries that only a few times (librdkafka's OffsetCommit) is not failed by a fresh
/// cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_commit_to_a_fresh_coordinator_waits_for_the_load() {
    let broker = TestBroker::start(SETS).await;
    let mut c = broker.client("cg").await;
    create_topic(&mut c, TOPIC, 1, &[]).await;
    for _ in 0..100 {
        let resp = c
            .send(
                &FindCoordinatorRequest::default().with_key(str_bytes("fresh")),
                3,
            )
            .await
            .expect("find coordinator");
        if resp.error_code == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One commit, no retry: a simple (memberless) commit of an offset.
    let req = OffsetCommitRequest::default()
        .with_group_id(gid("fresh"))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(TOPIC))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(17)])]);
    let resp = c.send(&req, 8).await.expect("commit");
    assert_eq!(resp.topics[0].partitions[0].error_code, 0, "{resp:?}");
    let fetch = OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(gid("fresh"))
        .with_topics(Some(vec![OffsetFetchRequestTopics::default()
            .with_name(topic_name(TOPIC))
            .with_partition_indexes(vec![0])]))]);
    let resp = c.send(&fetch, 8).await.expect("offset fetch");
    let group = &resp.groups[0];
    assert_eq!(group.error_code, 0, "{resp:?}");
    assert_eq!(group.topics[0].partitions[0].committed_offset, 17);
}
