//! Deterministic simulation of the metadata quorum under `turmoil`: three and five controllers
//! in one thread, with random crashes, restarts and network partitions drawn from a seed, while
//! a client commits numbered writes through whichever node it reaches.
//!
//! Checked after every step:
//! - at most one leader per term;
//! - every node applies the same entry at each log index (so each node's applied image is a
//!   prefix of one history);
//! - every acknowledged write sits at the index it was acknowledged at (never lost, never
//!   reordered), and at the end every node's image holds every acknowledged write.
//!
//! `STRATA_SIM_SEEDS=N` runs N seeds per cluster size (default 3); `STRATA_SIM_SEED=S` runs one.
//! A failure names its seed. The fault schedule and the network are replayed exactly from the
//! seed; openraft's election timers draw from its own thread-local RNG, so a replay can differ
//! in timing detail.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::BasicNode;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use strata::controller::network::{ControllerReply, ControllerRequest, PeerClient};
use strata::controller::quorum::{MetadataWrite, NodeId, WriteOutcome};
use strata::controller::state_machine::ApplyObserver;
use strata::controller::{Controller, ControllerSettings, MetadataRecord};
use strata::net::Network;

#[path = "common/seeds.rs"]
mod seeds;
#[path = "common/turmoil_net.rs"]
mod turmoil_net;
use turmoil_net::TurmoilNetwork;

const PORT: u16 = 9093;

/// What the nodes applied, index by index, and what went wrong.
#[derive(Default)]
struct History {
    /// index -> (term, the write's JSON or the entry kind, outcome)
    entries: BTreeMap<u64, (u64, String, String)>,
    violations: Vec<String>,
}

fn observer(node: NodeId, history: Arc<Mutex<History>>) -> ApplyObserver {
    Arc::new(
        move |log_id, write: Option<&MetadataWrite>, outcome: WriteOutcome| {
            let body = write
                .map(|w| serde_json::to_string(w).unwrap_or_default())
                .unwrap_or_else(|| "-".into());
            let entry = (log_id.leader_id.term, body, format!("{outcome:?}"));
            let mut h = history.lock().unwrap_or_else(|p| p.into_inner());
            match h.entries.get(&log_id.index) {
                Some(e) if *e != entry => {
                    let v = format!(
                        "node {node} applied {entry:?} at index {} where another applied {e:?}",
                        log_id.index
                    );
                    h.violations.push(v);
                }
                Some(_) => {}
                None => {
                    h.entries.insert(log_id.index, entry);
                }
            }
        },
    )
}

type Registry = Arc<Mutex<HashMap<NodeId, Arc<Controller>>>>;

fn seq_write(n: u64) -> MetadataWrite {
    MetadataWrite {
        expected_offset: None,
        records: vec![MetadataRecord::BrokerConfig {
            key: format!("sim.seq.{n:06}"),
            value: Some(n.to_string()),
        }],
    }
}

fn run_seed(nodes: u64, seed: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(120))
        .tick_duration(Duration::from_millis(2))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(10))
        .build_with_rng(Box::new(rand::rngs::StdRng::seed_from_u64(seed)));
    let history: Arc<Mutex<History>> = Arc::default();
    let registry: Registry = Arc::default();
    let voters: BTreeMap<NodeId, BasicNode> = (1..=nodes)
        .map(|i| (i, BasicNode::new(format!("n{i}:{PORT}"))))
        .collect();
    for id in 1..=nodes {
        let mut settings = ControllerSettings::single(id);
        settings.voters = voters.clone();
        settings.listen = Some(format!("0.0.0.0:{PORT}"));
        settings.advertised = Some(format!("n{id}:{PORT}"));
        settings.election_timeout = Duration::from_millis(300);
        let (dir, history, registry) = (
            dir.path().join(format!("n{id}")),
            history.clone(),
            registry.clone(),
        );
        sim.host(format!("n{id}"), move || {
            let (dir, settings, history, registry) = (
                dir.clone(),
                settings.clone(),
                history.clone(),
                registry.clone(),
            );
            async move {
                let shutdown = CancellationToken::new();
                let c = Controller::open(
                    &dir,
                    settings,
                    Arc::new(TurmoilNetwork),
                    Some(observer(id, history)),
                    shutdown,
                )
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)?;
                registry
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, c);
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
    // The client: numbered writes, each sent to a random node and retried at the leader it
    // names; acknowledged ones are recorded with their index.
    let acked: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let stop = CancellationToken::new();
    {
        let (acked, stop) = (acked.clone(), stop.clone());
        sim.client("client", async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
            let net: Arc<dyn Network> = Arc::new(TurmoilNetwork);
            let mut n = 0u64;
            while !stop.is_cancelled() {
                n += 1;
                let mut target = rng.gen_range(1..=nodes);
                for _ in 0..20 {
                    let mut peer = PeerClient::new(net.clone(), format!("n{target}:{PORT}"));
                    match peer
                        .call(
                            &ControllerRequest::Write(seq_write(n)),
                            Duration::from_millis(500),
                        )
                        .await
                    {
                        Ok(ControllerReply::Write(Ok(WriteOutcome::Applied { offset }))) => {
                            acked
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((n, offset));
                            break;
                        }
                        Ok(ControllerReply::Write(Err(
                            strata::controller::network::RemoteRefusal::NotLeader {
                                leader: Some(l),
                            },
                        ))) => target = l,
                        _ => target = rng.gen_range(1..=nodes),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(Duration::from_millis(rng.gen_range(5..50))).await;
            }
            Ok(())
        });
    }

    let mut faults = rand::rngs::StdRng::seed_from_u64(seed);
    let names: Vec<String> = (1..=nodes).map(|i| format!("n{i}")).collect();
    let mut crashed: Vec<u64> = Vec::new();
    let max_down = ((nodes - 1) / 2) as usize;
    let mut leaders: BTreeMap<u64, NodeId> = BTreeMap::new();
    let fault_steps = 4000; // 8 s of simulated time under faults
    let settle_steps = 2500; // then 5 s healed
    for step in 0..fault_steps + settle_steps {
        if step < fault_steps && step % 100 == 0 {
            match faults.gen_range(0..5) {
                0 if crashed.len() < max_down => {
                    let id = faults.gen_range(1..=nodes);
                    if !crashed.contains(&id) {
                        sim.crash(names[id as usize - 1].as_str());
                        registry
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&id);
                        crashed.push(id);
                    }
                }
                1 if !crashed.is_empty() => {
                    let id = crashed.remove(faults.gen_range(0..crashed.len()));
                    sim.bounce(names[id as usize - 1].as_str());
                }
                2 => {
                    let a = faults.gen_range(0..nodes as usize);
                    let b = faults.gen_range(0..nodes as usize);
                    if a != b {
                        sim.partition(names[a].as_str(), names[b].as_str());
                    }
                }
                3 => {
                    for a in &names {
                        for b in &names {
                            if a != b {
                                sim.repair(a.as_str(), b.as_str());
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if step == fault_steps {
            for a in &names {
                for b in &names {
                    if a != b {
                        sim.repair(a.as_str(), b.as_str());
                    }
                }
            }
            for id in crashed.drain(..) {
                sim.bounce(names[id as usize - 1].as_str());
            }
        }
        if step == fault_steps + settle_steps - 500 {
            stop.cancel();
        }
        sim.step()
            .unwrap_or_else(|e| panic!("seed {seed}: simulation failed: {e}"));
        // At most one leader per term.
        for (id, c) in registry.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let m = c.raft().metrics().borrow().clone();
            if m.state == openraft::ServerState::Leader {
                let prev = *leaders.entry(m.current_term).or_insert(*id);
                assert_eq!(
                    prev, *id,
                    "seed {seed}: two leaders in term {}",
                    m.current_term
                );
            }
        }
        let h = history.lock().unwrap_or_else(|p| p.into_inner());
        assert!(h.violations.is_empty(), "seed {seed}: {:?}", h.violations);
        for (n, offset) in acked.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let key = format!("sim.seq.{n:06}");
            match h.entries.get(offset) {
                Some((_, body, _)) => assert!(
                    body.contains(&key),
                    "seed {seed}: write {n} acknowledged at {offset} but {body} is there"
                ),
                None => {} // acknowledged by the leader, not yet applied by a node this step saw
            }
        }
    }
    // Healed: every node holds every acknowledged write, in acknowledgement order.
    let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        !acked.is_empty(),
        "seed {seed}: no write was ever acknowledged"
    );
    assert!(
        acked.windows(2).all(|w| w[0].1 < w[1].1),
        "seed {seed}: acknowledged writes out of order: {acked:?}"
    );
    let registry = registry.lock().unwrap_or_else(|p| p.into_inner());
    assert_eq!(
        registry.len() as u64,
        nodes,
        "seed {seed}: not every node restarted"
    );
    for (id, c) in registry.iter() {
        let image = c.image();
        for (n, _) in &acked {
            assert!(
                image
                    .broker_configs
                    .contains_key(&format!("sim.seq.{n:06}")),
                "seed {seed}: node {id} lost acknowledged write {n}"
            );
        }
    }
    assert!(
        !leaders.is_empty(),
        "seed {seed}: no leader was ever elected"
    );
}

#[test]
fn three_controllers_under_crashes_and_partitions() {
    for seed in seeds::seeds(3) {
        run_seed(3, seed);
    }
}

#[test]
fn five_controllers_under_crashes_and_partitions() {
    for seed in seeds::seeds(3) {
        run_seed(5, 1000 + seed);
    }
}
