//! Partition reassignment across whole brokers on 127.0.0.1: four in-process nodes (nodes 1-3
//! voters of the metadata quorum and brokers, node 4 a broker that follows the metadata log as
//! a learner), the fourth started after the topic exists. A partition on brokers 1 and 2 is moved to brokers
//! 3 and 4 while an idempotent producer writes to it with acks=all, following the leader.
//!
//! Checked: ListPartitionReassignments shows the move while it runs (or nothing once it has
//! finished); the move completes (replicas 3 and 4, both in the ISR, leadership off the removed
//! brokers); every record acknowledged is read back from the new leader at the offset it was
//! acknowledged at, all records in the order produced, none twice; and brokers 1 and 2 no
//! longer hold the partition, on disk either.
//!
//! The leader replication throttle: a partition listed in `leader.replication.throttled.replicas`
//! is copied to its new replica at about `leader.replication.throttled.rate`, while an
//! unlisted partition moving in the same fetches completes at once and keeps up.
//! With `strata.balancer.throttle.bytes.per.second` set (dynamically), a move starts with its
//! source and new replicas listed in the topic's throttled replica lists, copies at that rate,
//! and the lists are removed when it completes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId as WireBrokerId, CreateTopicsRequest,
    IncrementalAlterConfigsRequest, InitProducerIdRequest, ListPartitionReassignmentsRequest,
};
use kafka_protocol::records::Compression;
use tokio_util::sync::CancellationToken;

use common::kafka::{fetch, fetch_request, produce, records_of};
use common::{batch, idempotent_batch};
use strata::broker::Broker;
use strata::client::KafkaClient;
use strata::config::NodeConfig;
use strata::controller::PartitionRegistration;
use strata::metrics::Metrics;
use strata::model::{BrokerId, PartitionIndex, TopicPartition};
use strata::protocol::{str_bytes, topic_name};
use strata::server::{serve, ServerLimits};

const TOPIC: &str = "moving";
const RECORDS: usize = 400;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const NOT_ENOUGH_REPLICAS: i16 = 19;

struct Node {
    broker: Arc<Broker>,
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn start_node(id: i32, voters: &str, controller_port: u16) -> Node {
    start_node_with(id, voters, controller_port, &[]).await
}

async fn start_node_with(
    id: i32,
    voters: &str,
    controller_port: u16,
    extra: &[(&str, &str)],
) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut sets = vec![
        ("node.id".to_string(), id.to_string()),
        ("cluster.id".to_string(), "reassignment-test".to_string()),
        (
            "log.dirs".to_string(),
            dir.path().join("data").display().to_string(),
        ),
        ("http.listener".to_string(), String::new()),
        ("controller.quorum.voters".to_string(), voters.to_string()),
        (
            "broker.heartbeat.interval.ms".to_string(),
            "200".to_string(),
        ),
    ];
    // Brokers that are not voters still listen for the controller: they follow the metadata
    // log as learners, which the active controller replicates to.
    sets.push((
        "listeners".to_string(),
        format!("PLAINTEXT://{addr},CONTROLLER://127.0.0.1:{controller_port}"),
    ));
    if id > 3 {
        sets.push(("process.roles".to_string(), "broker".to_string()));
    }
    sets.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let node = NodeConfig::load(None, &[], &sets).expect("config");
    let shutdown = CancellationToken::new();
    let broker = Broker::start(
        node.clone(),
        strata::clock::system(),
        Arc::new(Metrics::new()),
        shutdown.clone(),
    )
    .await
    .expect("broker starts");
    let server = tokio::spawn(serve(
        strata::net::tokio_acceptor(listener),
        broker.apis.clone(),
        broker.metrics.server.clone(),
        ServerLimits::from_config(&node),
        shutdown.clone(),
    ));
    Node {
        broker,
        addr,
        shutdown,
        _dir: dir,
        server,
    }
}

async fn connect(node: &Node) -> KafkaClient {
    KafkaClient::connect(
        strata::net::tokio_network().as_ref(),
        &node.addr.to_string(),
        "reassignment-test",
        Duration::from_secs(10),
    )
    .await
    .expect("connect")
}

fn partition(node: &Node) -> Option<PartitionRegistration> {
    let image = node.broker.apis.image();
    image
        .topic_by_name(TOPIC)?
        .partitions
        .get(&PartitionIndex(0))
        .cloned()
}

async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(v: &[i32]) -> Vec<BrokerId> {
    v.iter().map(|b| BrokerId(*b)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_moves_to_new_brokers_under_load_without_losing_a_record() {
    // STRATA_LOG=info (any tracing filter) narrates a run.
    if let Ok(filter) = std::env::var("STRATA_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    tokio::time::timeout(Duration::from_secs(120), move_under_load())
        .await
        .expect("the test finishes within two minutes");
}

async fn move_under_load() {
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let voters = format!(
        "1@127.0.0.1:{},2@127.0.0.1:{},3@127.0.0.1:{}",
        ports[0], ports[1], ports[2]
    );
    // Together: each waits for a quorum to register with.
    let (a, b, c) = tokio::join!(
        start_node(1, &voters, ports[0]),
        start_node(2, &voters, ports[1]),
        start_node(3, &voters, ports[2]),
    );
    let mut nodes = vec![a, b, c];
    let live = |nodes: &[Node]| {
        nodes[0]
            .broker
            .apis
            .image()
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .count()
    };
    wait_for("three brokers", Duration::from_secs(20), || {
        live(&nodes) == 3
    })
    .await;

    let mut admin = connect(&nodes[0]).await;
    let created = admin
        .send(
            &CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic_name(TOPIC))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_assignments(vec![CreatableReplicaAssignment::default()
                        .with_partition_index(0)
                        .with_broker_ids(vec![WireBrokerId(1), WireBrokerId(2)])])]),
            7,
        )
        .await
        .expect("create");
    assert_eq!(created.topics[0].error_code, 0, "{created:?}");

    // The fourth broker joins after the topic exists: it holds nothing yet.
    nodes.push(start_node(4, &voters, ports[3]).await);
    wait_for("four brokers", Duration::from_secs(20), || {
        live(&nodes) == 4
    })
    .await;
    let tp = TopicPartition {
        topic: TOPIC.into(),
        partition: PartitionIndex(0),
    };
    assert!(nodes[3].broker.apis.replicas.get(&tp).is_none());

    let pid = admin
        .send(
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(kafka_protocol::messages::ProducerId(-1))
                .with_producer_epoch(-1),
            4,
        )
        .await
        .expect("init producer id");
    assert_eq!(pid.error_code, 0);
    let (producer_id, epoch) = (pid.producer_id.0, pid.producer_epoch);

    let mut acked: Vec<i64> = Vec::new();
    let mut leader = 1;
    let mut client = connect(&nodes[0]).await;
    let mut moved = false;
    let mut seen_in_progress = false;
    // At least RECORDS records, and on until the producer has followed the leadership off
    // broker 1: how far the move gets while RECORDS are written depends on the machine.
    let mut i = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while i < RECORDS || (leader == 1 && tokio::time::Instant::now() < deadline) {
        if i == RECORDS / 4 && !moved {
            moved = true;
            let req = AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![ReassignableTopic::default()
                    .with_name(topic_name(TOPIC))
                    .with_partitions(vec![ReassignablePartition::default()
                        .with_partition_index(0)
                        .with_replicas(Some(vec![WireBrokerId(3), WireBrokerId(4)]))])]);
            let resp = admin.send(&req, 1).await.expect("reassign");
            assert_eq!(resp.error_code, 0, "{resp:?}");
            assert_eq!(resp.responses[0].partitions[0].error_code, 0, "{resp:?}");
        }
        if moved && !seen_in_progress {
            let list = admin
                .send(
                    &ListPartitionReassignmentsRequest::default().with_topics(None),
                    0,
                )
                .await
                .expect("list");
            if let Some(t) = list.topics.first() {
                let p = &t.partitions[0];
                let v = |b: &[WireBrokerId]| b.iter().map(|b| b.0).collect::<Vec<_>>();
                assert_eq!(v(&p.replicas), vec![3, 4, 1, 2]);
                assert_eq!(v(&p.adding_replicas), vec![3, 4]);
                assert_eq!(v(&p.removing_replicas), vec![1, 2]);
                seen_in_progress = true;
            }
        }
        let value = format!("r-{i}");
        loop {
            let batch = idempotent_batch(
                &[(None, Some(value.clone()), vec![])],
                Compression::None,
                producer_id,
                epoch,
                i as i32,
            );
            let (code, offset) = produce(&mut client, TOPIC, 0, batch, -1).await;
            match code {
                0 => {
                    acked.push(offset);
                    break;
                }
                NOT_LEADER_OR_FOLLOWER | NOT_ENOUGH_REPLICAS => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let now = partition(&nodes[0]).map(|p| p.leader.0).unwrap_or(-1);
                    if now > 0 && now != leader {
                        leader = now;
                        client = connect(&nodes[leader as usize - 1]).await;
                    }
                }
                other => panic!("record {i}: produce answered {other}"),
            }
        }
        i += 1;
    }
    let produced = i;

    wait_for("the move to complete", Duration::from_secs(30), || {
        partition(&nodes[0])
            .is_some_and(|p| !p.is_reassigning() && p.replicas == ids(&[3, 4]) && p.isr.len() == 2)
    })
    .await;
    let p = partition(&nodes[0]).expect("partition");
    assert!(p.leader == BrokerId(3) || p.leader == BrokerId(4), "{p:?}");
    assert_ne!(
        leader, 1,
        "the producer followed the leadership off broker 1"
    );

    // Every record, from the new leader, in order, each once, at its acknowledged offset.
    let mut reader = connect(&nodes[p.leader.0 as usize - 1]).await;
    let mut values = Vec::new();
    let mut offsets = Vec::new();
    while values.len() < produced {
        let req = fetch_request(
            TOPIC,
            0,
            offsets.last().map_or(0, |o| o + 1),
            500,
            1,
            1 << 20,
        );
        let resp = fetch(&mut reader, &req).await;
        assert_eq!(resp.responses[0].partitions[0].error_code, 0);
        let records = records_of(&resp);
        assert!(
            !records.is_empty(),
            "fetch stalled after {} records",
            values.len()
        );
        for r in records {
            offsets.push(r.offset);
            values.push(String::from_utf8(r.value.expect("value").to_vec()).expect("utf8"));
        }
    }
    let expected: Vec<String> = (0..produced).map(|i| format!("r-{i}")).collect();
    assert_eq!(values, expected);
    assert_eq!(offsets, acked);

    // The removed brokers stopped and deleted their copies; the others hold it.
    for (i, node) in nodes.iter().enumerate() {
        let holds = |n: &Node| n.broker.apis.replicas.get(&tp).is_some();
        if i < 2 {
            wait_for("a removed replica to go", Duration::from_secs(10), || {
                !holds(node)
            })
            .await;
            let data = node._dir.path().join("data").join(tp.dir_name());
            assert!(!data.exists(), "{} still on disk", data.display());
        } else {
            assert!(holds(node), "broker {} holds the partition", i + 1);
        }
    }

    for node in nodes.into_iter().rev() {
        node.shutdown.cancel();
        let _ = node.server.await;
        let _ = node.broker.close();
    }
}

const THROTTLED: &str = "throttled";
const UNTHROTTLED: &str = "unthrottled";
/// `leader.replication.throttled.rate` on the leader, bytes/s.
const LEADER_RATE: u64 = 50_000;
/// `replica.fetch.max.bytes` on the follower: the most one fetch may overdraw the rate by.
const FETCH_BYTES: u64 = 16_384;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_throttled_move_copies_at_the_rate_while_an_unthrottled_one_keeps_up() {
    if let Ok(filter) = std::env::var("STRATA_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    tokio::time::timeout(Duration::from_secs(60), leader_throttled_move())
        .await
        .expect("the test finishes within a minute");
}

fn registration(node: &Node, topic: &str) -> Option<PartitionRegistration> {
    let image = node.broker.apis.image();
    image
        .topic_by_name(topic)?
        .partitions
        .get(&PartitionIndex(0))
        .cloned()
}

/// Brokers 1-3, the voters, with the automatic balancer paused (it would move replicas onto
/// broker 3 meanwhile), `leader_sets` on broker 1, and fetches of at most [`FETCH_BYTES`] per
/// partition on broker 2.
async fn three_paused_nodes(leader_sets: &[(&str, &str)]) -> (Node, Node, Node) {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let voters = format!(
        "1@127.0.0.1:{},2@127.0.0.1:{},3@127.0.0.1:{}",
        ports[0], ports[1], ports[2]
    );
    let fetch_bytes = FETCH_BYTES.to_string();
    let paused = ("strata.balancer.enable", "false");
    let mut sets_1 = vec![paused];
    sets_1.extend_from_slice(leader_sets);
    let sets_2 = [paused, ("replica.fetch.max.bytes", fetch_bytes.as_str())];
    let sets_3 = [paused];
    // Together: each waits for a quorum to register with.
    let (a, b, c) = tokio::join!(
        start_node_with(1, &voters, ports[0], &sets_1),
        start_node_with(2, &voters, ports[1], &sets_2),
        start_node_with(3, &voters, ports[2], &sets_3),
    );
    wait_for("three brokers", Duration::from_secs(20), || {
        a.broker
            .apis
            .image()
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .count()
            == 3
    })
    .await;
    (a, b, c)
}

/// `name`, one partition on broker 1, with `configs`.
fn topic_on_broker_1(name: &str, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_assignments(vec![CreatableReplicaAssignment::default()
            .with_partition_index(0)
            .with_broker_ids(vec![WireBrokerId(1)])])
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(str_bytes(*k))
                        .with_value(Some(str_bytes(*v)))
                })
                .collect(),
        )
}

/// Produces `batches` batches of one 10 kB record; returns their bytes.
async fn fill(client: &mut KafkaClient, topic: &str, batches: usize) -> u64 {
    let mut bytes = 0u64;
    for i in 0..batches {
        let b = batch(
            &[(None, Some(format!("{i:0>10000}")), vec![])],
            Compression::None,
        );
        bytes += b.len() as u64;
        let (code, _) = produce(client, topic, 0, b, 1).await;
        assert_eq!(code, 0);
    }
    bytes
}

/// Moves partition 0 of each of `topics` to brokers 1 and 2.
async fn move_to_1_and_2(admin: &mut KafkaClient, topics: &[&str]) {
    let to_both = |name: &&str| {
        ReassignableTopic::default()
            .with_name(topic_name(*name))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(0)
                .with_replicas(Some(vec![WireBrokerId(1), WireBrokerId(2)]))])
    };
    let resp = admin
        .send(
            &AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(topics.iter().map(to_both).collect()),
            1,
        )
        .await
        .expect("reassign");
    assert_eq!(resp.error_code, 0, "{resp:?}");
    assert!(
        resp.responses
            .iter()
            .all(|t| t.partitions[0].error_code == 0),
        "{resp:?}"
    );
}

fn in_sync_on_1_and_2(p: &PartitionRegistration) -> bool {
    let mut isr = p.isr.clone();
    isr.sort();
    !p.is_reassigning() && p.replicas.len() == 2 && isr == ids(&[1, 2])
}

fn log_end(node: &Node, topic: &str) -> i64 {
    node.broker
        .apis
        .replicas
        .get(&TopicPartition::new(topic, 0))
        .map_or(-1, |p| p.log_view().log_end_offset().0)
}

async fn leader_throttled_move() {
    // Broker 1 leads both topics; broker 2 joins them; broker 3 completes the quorum.
    let rate = LEADER_RATE.to_string();
    let nodes = three_paused_nodes(&[("leader.replication.throttled.rate", rate.as_str())]).await;
    let (leader, follower) = (&nodes.0, &nodes.1);

    let mut admin = connect(leader).await;
    let created = admin
        .send(
            &CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![
                    topic_on_broker_1(
                        THROTTLED,
                        &[("leader.replication.throttled.replicas", "0:1")],
                    ),
                    topic_on_broker_1(UNTHROTTLED, &[]),
                ]),
            7,
        )
        .await
        .expect("create");
    assert!(
        created.topics.iter().all(|t| t.error_code == 0),
        "{created:?}"
    );

    // About five seconds of the rate.
    let mut client = connect(leader).await;
    let bytes = fill(&mut client, THROTTLED, 25).await;
    let one = |v: &str| batch(&[(None, Some(v.to_string()), vec![])], Compression::None);
    assert_eq!(
        produce(&mut client, UNTHROTTLED, 0, one("u-0"), 1).await,
        (0, 0)
    );
    let throttled_end = log_end(leader, THROTTLED);
    assert_eq!(throttled_end, 25);

    let started = tokio::time::Instant::now();
    move_to_1_and_2(&mut admin, &[THROTTLED, UNTHROTTLED]).await;

    // The unthrottled move completes while the throttled copy is far from done.
    wait_for("the unthrottled move", Duration::from_secs(10), || {
        registration(leader, UNTHROTTLED).is_some_and(|p| in_sync_on_1_and_2(&p))
    })
    .await;
    let copied = log_end(follower, THROTTLED);
    assert!(
        copied < throttled_end,
        "the throttled copy had {copied} of {throttled_end} records"
    );
    // And keeps up: acks=all produces, which wait for broker 2, are answered at once.
    for i in 1..=5 {
        let sent = tokio::time::Instant::now();
        let produced = produce(&mut client, UNTHROTTLED, 0, one(&format!("u-{i}")), -1).await;
        assert_eq!(produced, (0, i));
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "acks=all took {:?}",
            sent.elapsed()
        );
    }
    assert_eq!(log_end(follower, UNTHROTTLED), 6);
    assert!(
        log_end(follower, THROTTLED) < throttled_end,
        "still copying"
    );

    wait_for("the throttled copy", Duration::from_secs(40), || {
        log_end(follower, THROTTLED) == throttled_end
    })
    .await;
    let took = started.elapsed();
    eprintln!("{bytes} bytes copied under the leader throttle in {took:?}");
    assert_copied_at_rate(bytes, took);
    wait_for("the throttled move", Duration::from_secs(10), || {
        registration(leader, THROTTLED).is_some_and(|p| in_sync_on_1_and_2(&p))
    })
    .await;
    stop(nodes).await;
}

/// At least `(bytes - one fetch) / rate`, and not far beyond `bytes / rate`.
fn assert_copied_at_rate(bytes: u64, took: Duration) {
    let least = Duration::from_secs_f64((bytes - FETCH_BYTES) as f64 / LEADER_RATE as f64);
    assert!(
        took >= least,
        "{bytes} bytes copied in {took:?}, under the {LEADER_RATE} B/s rate allows ({least:?})"
    );
    assert!(
        took < least * 4,
        "{bytes} bytes took {took:?} at {LEADER_RATE} B/s"
    );
}

async fn stop((a, b, c): (Node, Node, Node)) {
    for node in [c, b, a] {
        node.shutdown.cancel();
        let _ = node.server.await;
        let _ = node.broker.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancer_throttle_lists_a_moves_replicas_until_it_completes() {
    tokio::time::timeout(Duration::from_secs(60), balancer_throttled_move())
        .await
        .expect("the test finishes within a minute");
}

async fn balancer_throttled_move() {
    const TOPIC: &str = "balancer-throttled";
    let nodes = three_paused_nodes(&[]).await;
    let (leader, follower) = (&nodes.0, &nodes.1);
    let mut admin = connect(leader).await;
    let created = admin
        .send(
            &CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![topic_on_broker_1(TOPIC, &[])]),
            7,
        )
        .await
        .expect("create");
    assert_eq!(created.topics[0].error_code, 0, "{created:?}");
    let bytes = fill(&mut connect(leader).await, TOPIC, 15).await;

    // The operator sets the move throttle, cluster-wide and dynamic.
    let rate = LEADER_RATE.to_string();
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(str_bytes(""))
            .with_configs(vec![AlterableConfig::default()
                .with_name(str_bytes("strata.balancer.throttle.bytes.per.second"))
                .with_config_operation(0)
                .with_value(Some(str_bytes(&rate)))]),
    ]);
    let resp = admin.send(&req, 1).await.expect("alter");
    assert_eq!(
        resp.responses[0].error_code, 0,
        "{:?}",
        resp.responses[0].error_message
    );
    let lists = |node: &Node| {
        let image = node.broker.apis.image();
        let t = image.topic_by_name(TOPIC).expect("topic");
        let get = |k: &str| t.config.overrides.get(k).cloned();
        (
            get("leader.replication.throttled.replicas"),
            get("follower.replication.throttled.replicas"),
        )
    };
    wait_for("the rate on the brokers", Duration::from_secs(5), || {
        [leader, follower].iter().all(|n| {
            n.broker
                .apis
                .image()
                .broker_configs
                .contains_key("strata.balancer.throttle.bytes.per.second")
        })
    })
    .await;
    assert_eq!(lists(leader), (None, None));

    let started = tokio::time::Instant::now();
    move_to_1_and_2(&mut admin, &[TOPIC]).await;
    // Within a duty pass: the source (broker 1) and the new replica (broker 2) are listed.
    wait_for("the move's throttle", Duration::from_secs(2), || {
        lists(leader) == (Some("0:1".into()), Some("0:2".into()))
    })
    .await;
    let end = log_end(leader, TOPIC);
    wait_for("the throttled copy", Duration::from_secs(40), || {
        log_end(follower, TOPIC) == end
    })
    .await;
    let took = started.elapsed();
    eprintln!("{bytes} bytes copied under the balancer's move throttle in {took:?}");
    assert_copied_at_rate(bytes, took);
    // Cleared once the move completes.
    wait_for(
        "the move to complete and its throttle to go",
        Duration::from_secs(10),
        || {
            registration(leader, TOPIC).is_some_and(|p| in_sync_on_1_and_2(&p))
                && lists(leader) == (None, None)
        },
    )
    .await;
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancer_evens_out_the_bytes_brokers_report() {
    tokio::time::timeout(Duration::from_secs(60), balance_by_bytes())
        .await
        .expect("the test finishes within a minute");
}

/// `name` with partition `i` on broker `on[i]` alone.
fn topic_on(name: &str, on: &[i32]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_assignments(
            on.iter()
                .enumerate()
                .map(|(i, b)| {
                    CreatableReplicaAssignment::default()
                        .with_partition_index(i as i32)
                        .with_broker_ids(vec![WireBrokerId(*b)])
                })
                .collect(),
        )
}

async fn balance_by_bytes() {
    const HEAVY: &str = "heavy";
    const LIGHT: &str = "light";
    // Two replicas a broker: broker 1 holds the two heavy partitions, 2 and 3 the light ones.
    let nodes = three_paused_nodes(&[("strata.balancer.size.report.interval.ms", "300")]).await;
    let all = [&nodes.0, &nodes.1, &nodes.2];
    let mut admin = connect(&nodes.0).await;
    let created = admin
        .send(
            &CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![
                    topic_on(HEAVY, &[1, 1]),
                    topic_on(LIGHT, &[2, 2, 3, 3]),
                ]),
            7,
        )
        .await
        .expect("create");
    assert!(
        created.topics.iter().all(|t| t.error_code == 0),
        "{created:?}"
    );
    let mut client = connect(&nodes.0).await;
    let mut heavy_values = vec![];
    for p in 0..2 {
        for i in 0..20 {
            let v = format!("{p}-{i:0>20000}");
            let b = batch(&[(None, Some(v.clone()), vec![])], Compression::None);
            assert_eq!(produce(&mut client, HEAVY, p, b, 1).await.0, 0);
            heavy_values.push(v);
        }
    }
    for (p, node) in [(0, 1), (1, 1), (2, 2), (3, 2)] {
        let mut c = connect(all[node]).await;
        let b = batch(
            &[(None, Some(format!("light-{p}")), vec![])],
            Compression::None,
        );
        assert_eq!(produce(&mut c, LIGHT, p, b, 1).await.0, 0);
    }

    // The balancer on, with a floor low enough for these few hundred kB.
    let set = |k: &str, v: &str| {
        AlterableConfig::default()
            .with_name(str_bytes(k))
            .with_config_operation(0)
            .with_value(Some(str_bytes(v)))
    };
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(str_bytes(""))
            .with_configs(vec![
                set("strata.balancer.tolerance.bytes.min", "100000"),
                set("strata.balancer.enable", "true"),
            ]),
    ]);
    let resp = admin.send(&req, 1).await.expect("alter");
    assert_eq!(resp.responses[0].error_code, 0, "{resp:?}");

    // One swap: a heavy partition leaves broker 1 for a lighter broker, a light one comes back.
    let replicas = |topic: &str, p: i32| -> Vec<BrokerId> {
        let image = nodes.0.broker.apis.image();
        let t = image.topic_by_name(topic).expect("topic");
        let r = &t.partitions[&PartitionIndex(p)];
        if r.is_reassigning() {
            vec![]
        } else {
            r.replicas.clone()
        }
    };
    wait_for("a heavy partition to move", Duration::from_secs(30), || {
        (0..2).any(|p| matches!(replicas(HEAVY, p).as_slice(), [b] if b.0 != 1))
    })
    .await;
    wait_for("the swap to complete", Duration::from_secs(30), || {
        let on_1 = (0..2)
            .map(|p| replicas(HEAVY, p))
            .chain((0..4).map(|p| replicas(LIGHT, p)))
            .filter(|r| r == &ids(&[1]))
            .count();
        on_1 == 2
    })
    .await;
    let image = nodes.0.broker.apis.image();
    let counts = strata::controller::balancer::replicas_per_broker(&image);
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "counts stay even"
    );
    let heavy_on: Vec<BrokerId> = (0..2).map(|p| replicas(HEAVY, p)[0]).collect();
    assert!(
        heavy_on.contains(&BrokerId(1)) && heavy_on.iter().any(|b| b.0 != 1),
        "{heavy_on:?}"
    );

    // The moved partition reads back whole from its new broker.
    let moved = (0..2)
        .find(|p| heavy_on[*p as usize].0 != 1)
        .expect("moved");
    let to = all[(heavy_on[moved as usize].0 - 1) as usize];
    wait_for("the new leader to serve", Duration::from_secs(10), || {
        to.broker
            .apis
            .replicas
            .get(&TopicPartition::new(HEAVY, moved))
            .is_some_and(|p| p.log_view().log_end_offset().0 == 20)
    })
    .await;
    // Read from the new replica once it serves the partition (its high watermark caught up).
    let mut c = connect(to).await;
    let req = fetch_request(HEAVY, moved, 0, 100, 1, 1 << 20);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let values = loop {
        let values: Vec<String> = records_of(&fetch(&mut c, &req).await)
            .iter()
            .map(|r| String::from_utf8(r.value.clone().expect("value").to_vec()).expect("utf8"))
            .collect();
        if values.len() >= 20 || tokio::time::Instant::now() > deadline {
            break values;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let want = &heavy_values[moved as usize * 20..][..20];
    assert!(
        values == want,
        "read {} records from broker {:?}, the first {:?}",
        values.len(),
        heavy_on[moved as usize],
        values.first().map(|v| &v[..8])
    );
    // And it settles: nothing more moves.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!nodes
        .0
        .broker
        .apis
        .image()
        .topics
        .values()
        .any(|t| t.partitions.values().any(|p| p.is_reassigning())));
    stop(nodes).await;
}
