//! The metadata quorum: the log store against openraft's conformance suite, snapshots, and
//! in-process clusters of controllers over real localhost sockets (forwarding, failover,
//! fencing). The scale benchmark is `#[ignore]`d: `cargo test --test controller -- --ignored
//! --nocapture scale`.

#[path = "common/wait.rs"]
mod wait;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::testing::{StoreBuilder, Suite};
use openraft::BasicNode;
use tokio_util::sync::CancellationToken;

use strata::controller::log_store::MetadataLogStore;
use strata::controller::network::{ControllerReply, ControllerRequest, PeerClient};
use strata::controller::quorum::{NodeId, StorageError, TypeConfig};
use strata::controller::state_machine::{decode_snapshot, encode_snapshot, MetadataStateMachine};
use strata::controller::{
    decide_create_topic, Controller, ControllerSettings, MetadataImage, MetadataRecord, NewTopic,
    TopicDefaults,
};
use strata::model::{BrokerId, LeaderEpoch, PartitionIndex, TopicId};

struct DirBuilder;

impl StoreBuilder<TypeConfig, MetadataLogStore, MetadataStateMachine, tempfile::TempDir>
    for DirBuilder
{
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, MetadataLogStore, MetadataStateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = MetadataLogStore::open(dir.path()).expect("open log store");
        let (sm, _) = MetadataStateMachine::open(dir.path(), None).expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn log_store_passes_the_openraft_conformance_suite() {
    Suite::test_all(DirBuilder).expect("openraft storage suite");
}

/// `committed` is replaced without fsync: after a power cut it can exist with no data.
#[tokio::test]
async fn log_store_opens_with_an_empty_committed_file_left_by_a_power_cut() {
    use openraft::storage::RaftLogStorage;

    let dir = tempfile::tempdir().expect("tempdir");
    drop(MetadataLogStore::open(dir.path()).expect("open"));
    std::fs::write(dir.path().join("committed"), b"").expect("write");
    let mut log = MetadataLogStore::open(dir.path()).expect("reopen after the cut");
    assert_eq!(log.read_committed().await.expect("read"), None);
    std::fs::write(dir.path().join("vote"), b"").expect("write");
    assert!(
        MetadataLogStore::open(dir.path()).is_err(),
        "a vote is fsynced before its rename, so an unreadable one is corruption"
    );
}

#[test]
fn snapshots_round_trip_and_reject_corruption() {
    let mut image = MetadataImage::default();
    let topic_id = TopicId::random();
    image.apply(
        1,
        &MetadataRecord::Topic {
            name: "t".into(),
            topic_id,
        },
    );
    let meta = openraft::SnapshotMeta::<NodeId, BasicNode> {
        last_log_id: None,
        last_membership: Default::default(),
        snapshot_id: "s".into(),
    };
    let mut bytes = encode_snapshot(&meta, &image).expect("encode");
    let (_, back) = decode_snapshot(&bytes).expect("decode");
    assert_eq!(back, image);
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    assert!(decode_snapshot(&bytes).is_err());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Node {
    controller: Arc<Controller>,
    shutdown: CancellationToken,
}

async fn cluster(n: u64, dir: &std::path::Path) -> (Vec<Option<Node>>, ControllerSettings) {
    cluster_with(n, dir, |_| {}).await
}

async fn cluster_with(
    n: u64,
    dir: &std::path::Path,
    tweak: impl Fn(&mut ControllerSettings),
) -> (Vec<Option<Node>>, ControllerSettings) {
    let voters: BTreeMap<NodeId, BasicNode> = (1..=n)
        .map(|i| (i, BasicNode::new(format!("127.0.0.1:{}", free_port()))))
        .collect();
    let mut base = ControllerSettings::single(1);
    base.voters = voters.clone();
    base.election_timeout = Duration::from_millis(400);
    base.session_timeout = Duration::from_millis(1000);
    tweak(&mut base);
    let opens = (1..=n).map(|i| {
        let mut s = base.clone();
        s.node_id = i;
        s.listen = Some(voters[&i].addr.clone());
        s.advertised = Some(voters[&i].addr.clone());
        let shutdown = CancellationToken::new();
        let d = dir.join(format!("n{i}"));
        async move {
            let c = Controller::open(&d, s, strata::net::tokio_network(), None, shutdown.clone())
                .await
                .expect("open controller");
            Some(Node {
                controller: c,
                shutdown,
            })
        }
    });
    (futures_join(opens.collect()).await, base)
}

async fn futures_join<T: Send + 'static>(
    futs: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("join"));
    }
    out
}

/// Opens a lone voter with `strata serve`'s defaults in `dir`; cancel the token to stop it.
async fn open_lone_voter(dir: &std::path::Path) -> (Arc<Controller>, CancellationToken) {
    let s = CancellationToken::new();
    let c = Controller::open(
        dir,
        ControllerSettings::single(1),
        strata::net::tokio_network(),
        None,
        s.clone(),
    )
    .await
    .expect("open");
    (c, s)
}

/// Stops every node still running.
async fn stop_all(nodes: &[Option<Node>]) {
    for n in nodes.iter().flatten() {
        n.shutdown.cancel();
        n.controller.shutdown().await;
    }
}

/// Stops node `id` (its process dies: its controller port refuses connections from now on).
async fn stop_node(nodes: &mut [Option<Node>], id: NodeId) {
    let n = nodes[id as usize - 1].take().expect("a running node");
    n.shutdown.cancel();
    n.controller.shutdown().await;
}

/// The controller of the first node still running.
fn first_running(nodes: &[Option<Node>]) -> Arc<Controller> {
    nodes
        .iter()
        .flatten()
        .next()
        .expect("a running node")
        .controller
        .clone()
}

/// How often the active controller runs its duties (the controller's own tick).
const DUTY_TICK: Duration = Duration::from_millis(200);

/// The election grace of `s`: how long a new active controller waits for the brokers it
/// inherited before it fences the silent ones.
fn election_grace(s: &ControllerSettings) -> Duration {
    s.reconnect_grace.max(s.broker_heartbeat_interval)
}

async fn leader(nodes: &[Option<Node>]) -> NodeId {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leaders: Vec<Option<NodeId>> = nodes
            .iter()
            .flatten()
            .map(|n| n.controller.leader_id())
            .collect();
        if let Some(Some(l)) = leaders.first() {
            if leaders.iter().all(|x| *x == Some(*l)) {
                return *l;
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn register(id: i32) -> MetadataRecord {
    registration(id, uuid::Uuid::new_v4())
}

/// Registered with the nil incarnation, the one `heartbeat_own_broker` sends.
fn nil_registration(id: i32) -> MetadataRecord {
    registration(id, uuid::Uuid::nil())
}

fn registration(id: i32, incarnation: uuid::Uuid) -> MetadataRecord {
    MetadataRecord::RegisterBroker {
        broker_id: BrokerId(id),
        incarnation,
        host: "127.0.0.1".into(),
        port: 9000 + id as u16,
        rack: None,
        endpoints: vec![],
    }
}

fn new_topic(name: &str) -> NewTopic {
    NewTopic {
        name: name.into(),
        num_partitions: 3,
        replication_factor: 3,
        assignments: vec![],
        configs: vec![],
    }
}

const DEFAULTS: TopicDefaults = TopicDefaults {
    num_partitions: 1,
    replication_factor: 1,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_controllers_forward_fail_over_and_fence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nodes, _) = cluster(3, dir.path()).await;
    let l = leader(&nodes).await;
    let follower = (1..=3).find(|i| *i != l).expect("a follower");
    let f = &nodes[follower as usize - 1]
        .as_ref()
        .expect("node")
        .controller;
    // Decided and forwarded from a follower.
    for b in 1..=3 {
        f.commit(|_| Ok(((), vec![register(b)])))
            .await
            .expect("register");
    }
    let silent3 = Arc::new(AtomicBool::new(false));
    let hb = CancellationToken::new();
    for n in nodes.iter().flatten() {
        let (c, hb, silent3) = (n.controller.clone(), hb.clone(), silent3.clone());
        tokio::spawn(async move {
            while !hb.is_cancelled() {
                for b in [1, 2, 3] {
                    if b == 3 && silent3.load(Ordering::SeqCst) {
                        continue;
                    }
                    let _ = c.heartbeat(BrokerId(b), uuid::Uuid::nil()).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    f.commit(|image| decide_create_topic(image, &new_topic("a"), DEFAULTS))
        .await
        .expect("create from a follower");
    let offset = f.image().offset;
    for n in nodes.iter().flatten() {
        let img = n
            .controller
            .wait_image(offset, tokio::time::Instant::now() + Duration::from_secs(5))
            .await
            .expect("caught up");
        assert!(img.topic_by_name("a").is_some());
    }
    // Broker 3 falls silent and is fenced; its leaderships move.
    silent3.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let img = f.image();
        let fenced = img.brokers[&BrokerId(3)].fenced;
        let leads = img
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .any(|p| p.leader == BrokerId(3));
        if fenced && !leads {
            assert!(!img.brokers[&BrokerId(1)].fenced && !img.brokers[&BrokerId(2)].fenced);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broker 3 not fenced: {:?}",
            img.brokers
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Kill the active controller: the other two elect a leader and take writes.
    stop_node(&mut nodes, l).await;
    let t0 = Instant::now();
    let survivor = first_running(&nodes);
    survivor
        .commit(|image| {
            let rf2 = NewTopic {
                replication_factor: 2,
                ..new_topic("b")
            };
            decide_create_topic(image, &rf2, DEFAULTS)
        })
        .await
        .expect("create after failover");
    eprintln!("in-process failover: {:?}", t0.elapsed());
    let new_leader = leader(&nodes).await;
    assert_ne!(new_leader, l);
    let offset = survivor.image().offset;
    let mut images = Vec::new();
    for n in nodes.iter().flatten() {
        images.push(
            n.controller
                .wait_image(offset, tokio::time::Instant::now() + Duration::from_secs(5))
                .await
                .expect("caught up"),
        );
    }
    assert_eq!(images[0].topics, images[1].topics);
    hb.cancel();
    stop_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_lone_voter_keeps_its_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = || open_lone_voter(dir.path());
    let (c, s) = open().await;
    c.commit(|_| Ok(((), vec![register(1)])))
        .await
        .expect("register");
    for i in 0..50 {
        c.commit(|image| {
            decide_create_topic(
                image,
                &new_topic(&format!("t{i}")).clone_with_rf1(),
                DEFAULTS,
            )
        })
        .await
        .expect("create");
    }
    let before = c.image();
    s.cancel();
    c.shutdown().await;
    drop(c);
    let t0 = Instant::now();
    let (c, s) = open().await;
    let after = c.image();
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "reopen took {:?}",
        t0.elapsed()
    );
    assert_eq!(after.topics, before.topics);
    s.cancel();
    c.shutdown().await;
}

trait Rf1 {
    fn clone_with_rf1(self) -> NewTopic;
}
impl Rf1 for NewTopic {
    fn clone_with_rf1(self) -> NewTopic {
        NewTopic {
            replication_factor: 1,
            ..self
        }
    }
}

/// Scale: 100,000 partitions in one image. Reports the time to apply, snapshot (encode and
/// compress), restore (decode), the snapshot size and the image's approximate memory.
#[test]
#[ignore]
fn scale_100k_partitions() {
    let brokers = 12;
    let mut image = MetadataImage::default();
    let mut offset = 0;
    for b in 1..=brokers {
        offset += 1;
        image.apply(offset, &register(b));
    }
    let rss_before = rss_bytes();
    let mut records = Vec::new();
    for t in 0..1000 {
        let topic_id = TopicId::random();
        records.push(MetadataRecord::Topic {
            name: format!("topic-{t:04}"),
            topic_id,
        });
        for p in 0..100 {
            let replicas: Vec<BrokerId> = (0..3)
                .map(|r| BrokerId(1 + (t + p + r) % brokers))
                .collect();
            records.push(MetadataRecord::Partition {
                topic_id,
                partition: PartitionIndex(p),
                leader: replicas[0],
                isr: replicas.clone(),
                replicas,
                leader_epoch: LeaderEpoch(0),
                partition_epoch: 0,
                adding_replicas: vec![],
                removing_replicas: vec![],
            });
        }
    }
    let t0 = Instant::now();
    for r in &records {
        offset += 1;
        image.apply(offset, r);
    }
    let apply = t0.elapsed();
    drop(records);
    let partitions: usize = image.topics.values().map(|t| t.partitions.len()).sum();
    assert_eq!(partitions, 100_000);
    let rss_after = rss_bytes();
    let meta = openraft::SnapshotMeta::<NodeId, BasicNode> {
        last_log_id: None,
        last_membership: Default::default(),
        snapshot_id: "scale".into(),
    };
    let t1 = Instant::now();
    let bytes = encode_snapshot(&meta, &image).expect("encode");
    let snapshot = t1.elapsed();
    let t2 = Instant::now();
    let (_, back) = decode_snapshot(&bytes).expect("decode");
    let restore = t2.elapsed();
    assert_eq!(back.topics.len(), image.topics.len());
    let t3 = Instant::now();
    let cloned = image.clone();
    let clone = t3.elapsed();
    drop(cloned);
    println!(
        "scale: {partitions} partitions in {} topics: apply {:?}, snapshot {:?} ({} bytes zstd), restore {:?}, image clone {:?}, RSS growth {} MiB",
        image.topics.len(),
        apply,
        snapshot,
        bytes.len(),
        restore,
        clone,
        rss_after.saturating_sub(rss_before) / (1024 * 1024)
    );
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_voter_imports_the_pre_raft_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut journal = Vec::new();
    for r in [
        register(1),
        MetadataRecord::Topic {
            name: "old".into(),
            topic_id: TopicId::random(),
        },
    ] {
        let payload = serde_json::to_vec(&r).expect("json");
        journal.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        journal.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
        journal.extend_from_slice(&payload);
    }
    std::fs::write(dir.path().join("records.log"), journal).expect("write journal");
    let (c, s) = open_lone_voter(dir.path()).await;
    assert!(c.image().topic_by_name("old").is_some());
    assert!(dir.path().join("records.log.imported").exists());
    s.cancel();
    c.shutdown().await;
}

/// The closing of a broker's heartbeat connection is how the active controller learns that its
/// process died: with a session timeout of a minute, the broker is still fenced within about
/// the reconnect grace. A broker that heartbeats again on a new connection before the grace
/// runs out (a client that reconnected) is not fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_heartbeat_connection_fences_the_broker_after_the_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, _) = cluster_with(3, dir.path(), |s| {
        s.session_timeout = Duration::from_secs(60);
        s.reconnect_grace = Duration::from_millis(300);
    })
    .await;
    let l = leader(&nodes).await;
    let c = nodes[l as usize - 1]
        .as_ref()
        .expect("leader node")
        .controller
        .clone();
    let (seven, eight, nine) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    c.commit(|_| {
        Ok((
            (),
            vec![
                registration(7, seven),
                registration(8, eight),
                registration(9, nine),
            ],
        ))
    })
    .await
    .expect("register");
    let addr = c.settings().voters[&l].addr.clone();
    let heartbeat = |id: i32, incarnation| ControllerRequest::BrokerHeartbeat {
        broker_id: BrokerId(id),
        incarnation,
        quota_usage: None,
        offline_partitions: Vec::new(),
        replica_sizes: None,
    };
    let net = strata::net::tokio_network();
    let mut client7 = PeerClient::new(net.clone(), addr.clone());
    let mut client8 = PeerClient::new(net.clone(), addr.clone());
    // Broker 9 only marks time: see below.
    let mut client9 = PeerClient::new(net.clone(), addr.clone());
    for (client, id, inc) in [
        (&mut client7, 7, seven),
        (&mut client8, 8, eight),
        (&mut client9, 9, nine),
    ] {
        let reply = client
            .call(&heartbeat(id, inc), Duration::from_secs(3))
            .await
            .expect("heartbeat");
        assert!(
            matches!(reply, ControllerReply::BrokerHeartbeat(Ok(false))),
            "{reply:?}"
        );
    }
    // Broker 8 reconnects: a heartbeat on a new connection, then the old one closes.
    let mut client8_again = PeerClient::new(net.clone(), addr.clone());
    client8_again
        .call(&heartbeat(8, eight), Duration::from_secs(3))
        .await
        .expect("heartbeat on the new connection");
    drop(client8);
    // Broker 7 dies: its connection closes and nothing follows.
    drop(client7);
    let fenced_after = wait::until(
        "broker 7 fenced after its connection closed",
        Duration::from_secs(3),
        || c.image().brokers[&BrokerId(7)].fenced,
    )
    .await;
    eprintln!("fenced {fenced_after:?} after the connection closed");
    assert!(
        fenced_after >= Duration::from_millis(250),
        "fenced before the grace: {fenced_after:?}"
    );
    // Broker 9's connection closes only now, after broker 8's old one and broker 7's. Once the
    // controller has fenced broker 9, its liveness duty has run a whole grace after those
    // closes too, so what it decided about brokers 7 and 8 by then is what it decides.
    drop(client9);
    wait::until(
        "broker 9 fenced after its connection closed",
        Duration::from_secs(3),
        || c.image().brokers[&BrokerId(9)].fenced,
    )
    .await;
    assert!(
        !c.image().brokers[&BrokerId(8)].fenced,
        "broker 8 reconnected in time"
    );
    // Heartbeats from before the connection closed do not unfence it (no flapping).
    assert!(
        c.image().brokers[&BrokerId(7)].fenced,
        "broker 7 unfenced without a heartbeat"
    );
    // A heartbeat from the fenced broker's incarnation unfences it.
    let mut client7 = PeerClient::new(net.clone(), addr.clone());
    client7
        .call(&heartbeat(7, seven), Duration::from_secs(3))
        .await
        .expect("heartbeat");
    wait::until("broker 7 unfenced", Duration::from_secs(3), || {
        !c.image().brokers[&BrokerId(7)].fenced
    })
    .await;
    stop_all(&nodes).await;
}

/// Combined nodes: each heartbeats for its own broker (node id = broker id) every 100 ms, until
/// its token is cancelled. Returns how many of those heartbeats an active controller accepted
/// (only the active controller answers one without an error).
fn heartbeat_own_broker(c: Arc<Controller>, stop: CancellationToken) -> Arc<AtomicU64> {
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let id = BrokerId(c.node_id() as i32);
        while !stop.is_cancelled() {
            if c.heartbeat(id, uuid::Uuid::nil()).await.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    accepted
}

/// The active controller's process dies (its broker with it). Its successor finds the old
/// controller port refusing connections as soon as it is elected and fences that broker at
/// once, rather than after the election grace (3 s here), which fences the brokers it
/// inherited and has not heard from; the live brokers stay unfenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_active_controller_is_fenced_as_soon_as_its_successor_is_elected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nodes, _) = cluster_with(3, dir.path(), |s| {
        s.session_timeout = Duration::from_secs(60);
        s.reconnect_grace = Duration::from_secs(3);
        s.broker_heartbeat_interval = Duration::from_secs(3);
    })
    .await;
    let l = leader(&nodes).await;
    let c = nodes[l as usize - 1]
        .as_ref()
        .expect("leader node")
        .controller
        .clone();
    c.commit(|_| Ok(((), (1..=3).map(nil_registration).collect())))
        .await
        .expect("register");
    let mut beats = Vec::new();
    let mut accepted = Vec::new();
    for n in nodes.iter().flatten() {
        let stop = CancellationToken::new();
        accepted.push(heartbeat_own_broker(n.controller.clone(), stop.clone()));
        beats.push(stop);
    }
    let accepted_now =
        || -> Vec<u64> { accepted.iter().map(|a| a.load(Ordering::SeqCst)).collect() };
    // Every node has the registrations, and the active controller has heard from every broker.
    let offset = c.image().offset;
    for n in nodes.iter().flatten() {
        n.controller
            .wait_image(offset, tokio::time::Instant::now() + Duration::from_secs(5))
            .await
            .expect("caught up");
    }
    wait::until(
        "a heartbeat of every broker accepted",
        Duration::from_secs(5),
        || accepted_now().iter().all(|n| *n > 0),
    )
    .await;
    let image = c.image();
    assert_eq!(image.brokers.len(), 3);
    assert!(
        image.brokers.values().all(|b| !b.fenced),
        "{:?}",
        image.brokers
    );

    beats[l as usize - 1].cancel();
    stop_node(&mut nodes, l).await;
    let survivor = first_running(&nodes);
    let fenced_after = wait::until(
        &format!("broker {l} fenced after its process died"),
        Duration::from_secs(6),
        || survivor.image().brokers[&BrokerId(l as i32)].fenced,
    )
    .await;
    let accepted_at_fence = accepted_now();
    let new_leader = leader(&nodes).await;
    eprintln!("dead controller {l} fenced {fenced_after:?} after it died; new leader {new_leader}");
    assert_ne!(new_leader, l);
    // An election (about half the 400 ms election timeout) plus a commit, well before the
    // election grace of 3 s would have run out.
    assert!(
        fenced_after < Duration::from_millis(1500),
        "fenced only after {fenced_after:?}"
    );
    // The new active controller has since accepted heartbeats of the live brokers over a duty
    // tick at least (three, 100 ms apart), so its liveness duty has looked at them since.
    let live = (1..=3u64).filter(|b| *b != l);
    wait::until(
        "three heartbeats of each live broker accepted by the new active controller",
        Duration::from_secs(5),
        || {
            let now = accepted_now();
            live.clone()
                .all(|b| now[b as usize - 1] >= accepted_at_fence[b as usize - 1] + 3)
        },
    )
    .await;
    let image = survivor.image();
    for b in (1..=3).filter(|b| *b != l) {
        assert!(
            !image.brokers[&BrokerId(b as i32)].fenced,
            "live broker {b} fenced"
        );
    }
    for stop in beats {
        stop.cancel();
    }
    stop_all(&nodes).await;
}

/// A voter restarted after it crashed as the active controller reads its own committed vote
/// back, and openraft restores it as leader of its old term. Until a quorum acknowledges it in
/// that term, it is not the active controller: it serves no heartbeats and its duties decide
/// nothing (they would otherwise fence every broker it has not heard from, through whichever
/// node really leads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leader_is_not_the_active_controller_until_a_quorum_acknowledges_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nodes, base) = cluster(3, dir.path()).await;
    let l = leader(&nodes).await;
    let c = nodes[l as usize - 1]
        .as_ref()
        .expect("leader node")
        .controller
        .clone();
    c.commit(|_| Ok(((), (1..=3).map(nil_registration).collect())))
        .await
        .expect("register");
    drop(c);
    for slot in nodes.iter_mut() {
        let n = slot.take().expect("node");
        n.shutdown.cancel();
        n.controller.shutdown().await;
    }
    // Only the old leader comes back: no quorum can acknowledge anyone.
    let mut s = base.clone();
    s.node_id = l;
    s.listen = Some(base.voters[&l].addr.clone());
    s.advertised = s.listen.clone();
    let shutdown = CancellationToken::new();
    let c = Controller::open(
        &dir.path().join(format!("n{l}")),
        s,
        strata::net::tokio_network(),
        None,
        shutdown.clone(),
    )
    .await
    .expect("reopen");
    assert_eq!(
        c.leader_id(),
        Some(l),
        "the restarted node names itself leader of its old term"
    );
    // Long enough for an active controller to have fenced every broker it inherited and has
    // not heard from: the election grace and two duty ticks.
    let window = election_grace(&base) + 2 * DUTY_TICK;
    let t0 = Instant::now();
    while t0.elapsed() < window {
        assert!(!c.is_leader(), "a leader no quorum acknowledged is active");
        let hb = c.heartbeat(BrokerId(l as i32), uuid::Uuid::nil()).await;
        assert!(hb.is_err(), "heartbeat served: {hb:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(c.image().brokers.values().all(|b| !b.fenced));
    shutdown.cancel();
    c.shutdown().await;
}
