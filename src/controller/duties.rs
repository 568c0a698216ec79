//! [`Controller`]: this node's member of the metadata quorum — the Raft node, the commit path
//! (decide, compare-and-set, forward to the active controller), and, while this node is the
//! active controller, its duties: broker liveness, leader elections, controlled shutdown and
//! preferred-leader rebalancing.
//!
//! Liveness. A broker heartbeats over one connection it keeps open to the active controller.
//! The controller fences a broker when
//! - that connection closed and no heartbeat followed within `broker.session.reconnect.grace.ms`
//!   (the broker's process died: the kernel closes its sockets; this is the fast path),
//! - or it has not heartbeated for `broker.session.timeout.ms` (silent failures: a network
//!   partition, a frozen machine),
//! - or, right after this node became the active controller (it inherits no sessions), it has
//!   not heartbeated within the election grace (the larger of the reconnect grace and
//!   `broker.heartbeat.interval.ms`): live brokers have been failing heartbeats since the old
//!   controller stopped answering, so they retry at once and reach the new one as soon as Raft
//!   names it;
//! - or, right after this node became the active controller, the previous active controller's
//!   controller port refused a connection: in a combined node that process is dead (a live
//!   one, or one merely cut off, accepts or times out), and so is its broker, which need not be
//!   waited for through the election grace.
//!
//! A fenced broker that heartbeats again is unfenced.
//!
//! Failover. A voter that stops hearing the active controller probes its controller port; a
//! refused connection means its process is gone, and the voter stands for election as soon as
//! every voter's lease has ended rather than at its rank's slot (see [`RaftTimers`]). Each step
//! of a failover logs one INFO line (`elected the active controller`, `fenced a broker`, and on
//! brokers `partition leadership changed`, `first append in a new leader epoch`, `first commit
//! in a new leader epoch`), from which `tests/compat/failover_phases.py` builds a timeline.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::raft::AppendEntriesResponse;
use openraft::{BasicNode, ServerState};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::elections::{decide_broker_liveness, decide_preferred_leaders, Liveness};
use super::image::MetadataImage;
use super::log_store::MetadataLogStore;
use super::network::{
    serve, ConnectionId, ControllerReply, ControllerRequest, ControllerService, PeerClient,
    QuorumDescription, RaftTransport, RemoteRefusal, ReplicaDescription, ReplicaProgress,
};
use super::quorum::{parse_voters, MetadataWrite, NodeId, Raft, WriteOutcome};
use super::records::MetadataRecord;
use super::state_machine::{ApplyObserver, MetadataStateMachine};
use super::ControllerError;
use crate::config::NodeConfig;
use crate::model::BrokerId;
use crate::net::{BoxFuture, Network};

/// The `metadata.version` this build writes.
pub(crate) const METADATA_VERSION: u16 = 1;
/// How often the active controller looks at broker liveness.
const DUTY_TICK: Duration = Duration::from_millis(200);
/// How long a commit keeps trying (elections, forwarding, conflicts) before giving up with a
/// retriable error.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
const RPC_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a probe of a peer's controller port may take. Only a refusal counts as "its process
/// is gone"; a probe that times out proves nothing (a far or frozen machine).
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);

/// The controller's settings, from the node config.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    pub node_id: NodeId,
    pub voters: BTreeMap<NodeId, BasicNode>,
    /// `process.roles` includes `controller`.
    pub is_voter: bool,
    /// Where to listen for the controller RPC; `None` for a lone voter, which needs no peers.
    pub listen: Option<String>,
    /// How peers reach this node (a learner registers it).
    pub advertised: Option<String>,
    pub election_timeout: Duration,
    pub session_timeout: Duration,
    /// `broker.session.reconnect.grace.ms`.
    pub reconnect_grace: Duration,
    pub broker_heartbeat_interval: Duration,
    pub unclean_leader_election: bool,
    pub auto_leader_rebalance: bool,
    pub leader_imbalance_check_interval: Duration,
    pub leader_imbalance_percent: u32,
}

impl ControllerSettings {
    pub fn from_node(node: &NodeConfig) -> Result<ControllerSettings, ControllerError> {
        let node_id = node.node_id().0 as NodeId;
        let voters = parse_voters(node.get("controller.quorum.voters"))?;
        let is_voter = node
            .get("process.roles")
            .split(',')
            .any(|r| r.trim() == "controller");
        if is_voter && !voters.contains_key(&node_id) {
            return Err(ControllerError::InvalidConfig(format!(
                "process.roles includes controller but node {node_id} is not in controller.quorum.voters"
            )));
        }
        let controller_listener = node
            .listeners()
            .map_err(|e| ControllerError::InvalidConfig(e.to_string()))?
            .into_iter()
            .find(|l| l.name == "CONTROLLER");
        let lone_voter = is_voter && voters.len() == 1;
        let listen = match (&controller_listener, lone_voter) {
            (_, true) => None,
            (Some(l), false) => Some(format!(
                "{}:{}",
                if l.host.is_empty() {
                    "0.0.0.0"
                } else {
                    &l.host
                },
                l.port
            )),
            (None, false) => {
                return Err(ControllerError::InvalidConfig(
                    "a node of a multi-node quorum needs a CONTROLLER://host:port listener".into(),
                ))
            }
        };
        let advertised = if is_voter {
            voters.get(&node_id).map(|n| n.addr.clone())
        } else {
            controller_listener.map(|l| format!("{}:{}", l.host, l.port))
        };
        let ms = |k: &str| Duration::from_millis(node.get_i64(k).max(1) as u64);
        Ok(ControllerSettings {
            node_id,
            voters,
            is_voter,
            listen,
            advertised,
            election_timeout: ms("controller.quorum.election.timeout.ms"),
            session_timeout: ms("broker.session.timeout.ms"),
            reconnect_grace: ms("broker.session.reconnect.grace.ms"),
            broker_heartbeat_interval: ms("broker.heartbeat.interval.ms"),
            unclean_leader_election: node.get("unclean.leader.election.enable") == "true",
            auto_leader_rebalance: node.get("auto.leader.rebalance.enable") == "true",
            leader_imbalance_check_interval: Duration::from_secs(
                node.get_i64("leader.imbalance.check.interval.seconds")
                    .max(1) as u64,
            ),
            leader_imbalance_percent: node
                .get_i64("leader.imbalance.per.broker.percentage")
                .clamp(0, 100) as u32,
        })
    }

    /// A lone voter: `strata serve` with the defaults.
    pub fn single(node_id: NodeId) -> ControllerSettings {
        ControllerSettings {
            node_id,
            voters: [(node_id, BasicNode::new("127.0.0.1:9093"))].into(),
            is_voter: true,
            listen: None,
            advertised: None,
            election_timeout: Duration::from_millis(1000),
            session_timeout: Duration::from_millis(4000),
            reconnect_grace: Duration::from_millis(300),
            broker_heartbeat_interval: Duration::from_millis(500),
            unclean_leader_election: false,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval: Duration::from_secs(300),
            leader_imbalance_percent: 10,
        }
    }
}

/// openraft's timers for one voter, from `controller.quorum.election.timeout.ms` (et).
///
/// openraft 0.9 draws a voter's election timeout once, when the process starts, and a follower
/// stands after the leader's lease (its `election_timeout_max`) plus that timeout, checked on a
/// tick of 1.5 heartbeat intervals. With timeouts drawn at random from one range, two voters
/// may draw nearly the same value and then split every vote between them until one restarts
/// (measured: two splits in a row, 2.2 s of failover). So each voter gets its own slot by rank
/// of node id instead: the voter of rank r of n stands at et/2 + r x et/(2n) after the leader's
/// last heartbeat (0.5 to 0.83 x et for three voters), and consecutive ranks are et/(2n) apart,
/// more than a tick (et/20 x 1.5) plus a vote round trip for up to five voters, so no two
/// stand at once. The leases (et/4 to et/2) all end before the first voter stands.
///
/// A voter that has seen the leader's controller port refuse connections (its process is gone)
/// need not wait for its slot: it may stand as soon as a vote request can win, which is once
/// every voter's lease has ended — voters refuse votes while their lease on the leader runs.
/// That is the longest lease (the last rank's) after the leader's last heartbeat here, plus a
/// heartbeat interval for a heartbeat that reached another voter later than this one, plus one
/// slot per rank among the voters other than the dead leader, so that two voters that both saw
/// the refusal still stand one at a time ([`RaftTimers::early_stand_after`]; 467 ms and 550 ms
/// for three voters and the default 1 s). A voter stands early only while its vote is still the
/// dead leader's and no vote request has reached it since that leader's last heartbeat, so an
/// early candidate never competes with another one; a request that comes too soon is refused
/// by a lease and the candidate retries after its own timeout, as it would have anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RaftTimers {
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub heartbeat_interval_ms: u64,
}

impl RaftTimers {
    pub(crate) fn for_voter(election_timeout: Duration, rank: usize, voters: usize) -> RaftTimers {
        let et = (election_timeout.as_millis() as u64).max(40);
        let slot = et / 4 / voters.max(1) as u64;
        let min = et / 4 + rank as u64 * slot;
        RaftTimers {
            election_timeout_min_ms: min,
            election_timeout_max_ms: min + 1,
            heartbeat_interval_ms: (et / 20).max(2),
        }
    }

    /// When a voter that saw the leader's controller port refuse connections stands, after the
    /// leader's last heartbeat: `survivor_rank` is its rank among the voters other than the
    /// leader.
    pub(crate) fn early_stand_after(
        election_timeout: Duration,
        survivor_rank: usize,
        voters: usize,
    ) -> Duration {
        let voters = voters.max(1);
        let last = RaftTimers::for_voter(election_timeout, voters - 1, voters);
        let et = (election_timeout.as_millis() as u64).max(40);
        let slot = et / 4 / voters as u64;
        Duration::from_millis(
            last.election_timeout_max_ms + last.heartbeat_interval_ms + survivor_rank as u64 * slot,
        )
    }

    /// When this voter stands, after the leader's last heartbeat (before the tick rounds it up).
    #[cfg(test)]
    fn stands_after_ms(&self) -> u64 {
        self.election_timeout_max_ms + self.election_timeout_min_ms
    }
}

/// What the active controller knows about brokers beyond the image. Reset when this node
/// becomes the active controller: every broker gets a fresh session.
#[derive(Debug, Default)]
struct BrokerSessions {
    /// Last heartbeat seen by this node while it was the active controller, with the term.
    last_seen: HashMap<BrokerId, (Instant, u64)>,
    /// The connection each broker incarnation last heartbeated on.
    heartbeat_conns: HashMap<ConnectionId, (BrokerId, uuid::Uuid)>,
    /// Brokers whose heartbeat connection closed with no heartbeat since: when, the
    /// incarnation that connection belonged to (a broker that registered again is not it), and
    /// the term.
    disconnected: HashMap<BrokerId, (Instant, uuid::Uuid, u64)>,
    /// The incarnation of each broker this controller has seen in the image, since when, and
    /// whether it was inherited from the previous controller (registered before this term).
    incarnations: HashMap<BrokerId, (uuid::Uuid, Instant, bool)>,
    /// Brokers in controlled shutdown, with the incarnation that asked.
    draining: BTreeMap<BrokerId, uuid::Uuid>,
    /// The previous active controller, when its controller port refused a connection after
    /// this node took over: its broker incarnation then, and the term.
    dead_controllers: HashMap<BrokerId, (uuid::Uuid, u64)>,
    leader_term: Option<u64>,
    leader_since: Option<Instant>,
    last_rebalance: Option<Instant>,
}

/// When this voter last heard from the active controller and from a candidate (the Raft
/// messages it served), for standing early when the active controller's process is gone.
#[derive(Debug, Default, Clone, Copy)]
struct LeaderContact {
    /// The last AppendEntries whose vote this node accepted.
    append: Option<Instant>,
    /// The last vote request.
    vote_request: Option<Instant>,
}

/// How a commit reaches the active controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Forwarded when this node is not it.
    Forward,
    /// Only here, while this node is it: the controller's own duties, whose decisions rest on
    /// what this node observed as the active controller and mean nothing anywhere else.
    LocalOnly,
}

/// This node's member of the metadata quorum.
pub struct Controller {
    settings: ControllerSettings,
    raft: Raft,
    image_rx: watch::Receiver<Arc<MetadataImage>>,
    net: Arc<dyn Network>,
    // Serialises this node's decisions so they never conflict with each other.
    commit_lock: tokio::sync::Mutex<()>,
    // Short sections that never await.
    sessions: Mutex<BrokerSessions>,
    /// This broker's heartbeat connection to the active controller (kept open: its closing is
    /// how the controller learns that this process died), with the controller it goes to.
    heartbeat_peer: tokio::sync::Mutex<Option<(NodeId, PeerClient)>>,
    /// Replication times of the peers, recorded by the Raft transport (for DescribeQuorum).
    progress: Arc<ReplicaProgress>,
    /// Runs the duties now rather than at the next tick (a reconnect grace ran out).
    duties_due: Arc<tokio::sync::Notify>,
    // Short sections that never await.
    leader_contact: Mutex<LeaderContact>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("node_id", &self.settings.node_id)
            .finish_non_exhaustive()
    }
}

fn raft_err(e: impl std::fmt::Display) -> ControllerError {
    ControllerError::Raft(e.to_string())
}

impl Controller {
    /// Opens the Raft log and state machine under `dir`, starts the Raft node (and the
    /// controller listener when there are peers), bootstraps the quorum on first start, and
    /// starts the duties. A lone voter is the active controller when this returns.
    pub async fn open(
        dir: &Path,
        settings: ControllerSettings,
        net: Arc<dyn Network>,
        observer: Option<ApplyObserver>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Controller>, ControllerError> {
        let raft_dir = dir.join("raft");
        let io = |source| ControllerError::Io {
            path: raft_dir.clone(),
            source,
        };
        let log_store = MetadataLogStore::open(&raft_dir).map_err(io)?;
        let (sm, image_rx) = MetadataStateMachine::open(&raft_dir, observer).map_err(io)?;
        let rank = settings
            .voters
            .keys()
            .position(|id| *id == settings.node_id)
            .unwrap_or(0);
        let timers = RaftTimers::for_voter(settings.election_timeout, rank, settings.voters.len());
        let config = openraft::Config {
            cluster_name: "strata-metadata".into(),
            election_timeout_min: timers.election_timeout_min_ms,
            election_timeout_max: timers.election_timeout_max_ms,
            heartbeat_interval: timers.heartbeat_interval_ms,
            install_snapshot_timeout: 10_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1000),
            max_in_snapshot_log_to_keep: 200,
            ..Default::default()
        }
        .validate()
        .map_err(raft_err)?;
        let progress = Arc::new(ReplicaProgress::default());
        let raft = Raft::new(
            settings.node_id,
            Arc::new(config),
            RaftTransport {
                net: net.clone(),
                progress: progress.clone(),
            },
            log_store,
            sm,
        )
        .await
        .map_err(raft_err)?;
        let controller = Arc::new(Controller {
            settings: settings.clone(),
            raft: raft.clone(),
            image_rx,
            net: net.clone(),
            commit_lock: tokio::sync::Mutex::new(()),
            sessions: Mutex::new(BrokerSessions::default()),
            heartbeat_peer: tokio::sync::Mutex::new(None),
            progress,
            duties_due: Arc::new(tokio::sync::Notify::new()),
            leader_contact: Mutex::new(LeaderContact::default()),
            shutdown: shutdown.clone(),
        });
        if let Some(addr) = &settings.listen {
            let acceptor = net
                .bind(addr.clone())
                .await
                .map_err(|source| ControllerError::Io {
                    path: format!("controller listener {addr}").into(),
                    source,
                })?;
            tokio::spawn(serve(acceptor, controller.clone(), shutdown.clone()));
        }
        if settings.is_voter {
            // Every voter may initialize with the same membership: the entries are identical,
            // and a node that already has a log refuses.
            match raft.initialize(settings.voters.clone()).await {
                Ok(()) => {
                    tracing::info!(voters = ?settings.voters.keys().collect::<Vec<_>>(), "bootstrapped the metadata quorum")
                }
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(raft_err(e)),
            }
        } else {
            controller.clone().spawn_join_as_learner();
        }
        if settings.is_voter && settings.voters.len() == 1 {
            let mut m = raft.metrics();
            let leader = tokio::time::timeout(
                Duration::from_secs(10),
                m.wait_for(|m| active_in(m, settings.node_id).is_some()),
            )
            .await;
            if leader.is_err() {
                return Err(ControllerError::NotController { leader: None });
            }
        }
        if settings.is_voter && settings.voters.len() == 1 {
            controller.import_legacy_journal(dir).await?;
        }
        controller.clone().spawn_duties();
        controller.clone().spawn_watch_leadership();
        if settings.is_voter && settings.voters.len() > 1 {
            controller.clone().spawn_stand_early();
        }
        Ok(controller)
    }

    /// Strata before the Raft quorum kept a lone node's metadata in
    /// `__cluster_metadata/records.log` (`length: u32 BE | crc32 | JSON record`). A lone voter
    /// whose Raft state is empty imports it once, so upgrading never loses topics (the broker
    /// would otherwise delete every partition log missing from the empty image), and renames
    /// it to `records.log.imported`.
    async fn import_legacy_journal(&self, dir: &Path) -> Result<(), ControllerError> {
        let path = dir.join("records.log");
        let Ok(bytes) = std::fs::read(&path) else {
            return Ok(());
        };
        let mut records = Vec::new();
        let mut pos = 0usize;
        while pos + 8 <= bytes.len() {
            let len =
                u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
                    as usize;
            let crc = u32::from_be_bytes([
                bytes[pos + 4],
                bytes[pos + 5],
                bytes[pos + 6],
                bytes[pos + 7],
            ]);
            let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else {
                break;
            };
            if crc32fast::hash(payload) != crc {
                break;
            }
            let Ok(record) = serde_json::from_slice::<MetadataRecord>(payload) else {
                break;
            };
            records.push(record);
            pos += 8 + len;
        }
        if self.image().offset == 0 && !records.is_empty() {
            let count = records.len();
            self.commit(|image| {
                Ok((
                    (),
                    if image.offset == 0 {
                        records.clone()
                    } else {
                        vec![]
                    },
                ))
            })
            .await?;
            tracing::info!(records = count, path = %path.display(), "imported the pre-Raft metadata journal");
        }
        std::fs::rename(&path, dir.join("records.log.imported")).map_err(|source| {
            ControllerError::Io {
                path: path.clone(),
                source,
            }
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.settings.node_id
    }

    pub fn settings(&self) -> &ControllerSettings {
        &self.settings
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.image_rx.borrow().clone()
    }

    /// Receives every new image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image_rx.clone()
    }

    /// The active controller, as far as this node knows.
    pub fn leader_id(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// This node is the active controller: Raft's leader, acknowledged by a quorum in its
    /// current term. A node restarted after a crash reads its own committed vote back and
    /// openraft restores it as leader of its old term, naming itself leader, until a voter
    /// answers with the newer term; that is not enough.
    pub fn is_leader(&self) -> bool {
        self.active_term().is_some()
    }

    /// The term in which this node is the active controller, if it is.
    fn active_term(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = m.borrow();
        active_in(&m, self.settings.node_id)
    }

    fn leader_addr(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?;
        Some((id, node.addr.clone()))
    }

    /// Waits until the local image has reached `offset`.
    pub async fn wait_image(
        &self,
        offset: u64,
        deadline: Instant,
    ) -> Result<Arc<MetadataImage>, ControllerError> {
        let mut rx = self.image_rx.clone();
        let waited = tokio::time::timeout_at(deadline, rx.wait_for(|i| i.offset >= offset))
            .await
            .map(|r| r.map(|i| i.clone()));
        match waited {
            Ok(Ok(i)) => Ok(i),
            Ok(Err(_)) => Err(ControllerError::ShuttingDown),
            Err(_) => Err(ControllerError::NotController {
                leader: self.leader_id(),
            }),
        }
    }

    /// Decides with `decide` against the latest image and commits the records through the
    /// quorum, deciding again whenever the image moved first. Returns the decision's value and
    /// this node's image once it includes the records.
    pub async fn commit<T>(
        &self,
        decide: impl FnMut(&MetadataImage) -> Result<(T, Vec<MetadataRecord>), ControllerError>,
    ) -> Result<(T, Arc<MetadataImage>), ControllerError> {
        self.commit_via(Route::Forward, decide).await
    }

    /// [`Controller::commit`] for the duties of the active controller: fails with
    /// `NotController` rather than forward when this node is not it.
    async fn commit_as_active<T>(
        &self,
        decide: impl FnMut(&MetadataImage) -> Result<(T, Vec<MetadataRecord>), ControllerError>,
    ) -> Result<(T, Arc<MetadataImage>), ControllerError> {
        self.commit_via(Route::LocalOnly, decide).await
    }

    async fn commit_via<T>(
        &self,
        route: Route,
        mut decide: impl FnMut(&MetadataImage) -> Result<(T, Vec<MetadataRecord>), ControllerError>,
    ) -> Result<(T, Arc<MetadataImage>), ControllerError> {
        let deadline = Instant::now() + COMMIT_TIMEOUT;
        let _serial = self.commit_lock.lock().await;
        loop {
            let image = self.image();
            let (value, records) = decide(&image)?;
            if records.is_empty() {
                return Ok((value, image));
            }
            let write = MetadataWrite {
                expected_offset: Some(image.offset),
                records,
            };
            match self.write(&write, route, deadline).await? {
                WriteOutcome::Applied { offset } => {
                    let image = self.wait_image(offset, deadline).await?;
                    return Ok((value, image));
                }
                WriteOutcome::Conflict { offset } => {
                    // Decided on an image that was not the latest: catch up and decide again.
                    let caught_up = offset.max(image.offset + 1);
                    self.wait_image(caught_up, deadline).await?;
                }
            }
        }
    }

    /// Appends `write` through the active controller: locally when this node is it, else
    /// forwarded. Retries through elections until `deadline`.
    async fn write(
        &self,
        write: &MetadataWrite,
        route: Route,
        deadline: Instant,
    ) -> Result<WriteOutcome, ControllerError> {
        loop {
            if self.shutdown.is_cancelled() {
                return Err(ControllerError::ShuttingDown);
            }
            if Instant::now() >= deadline {
                return Err(ControllerError::NotController {
                    leader: self.leader_id(),
                });
            }
            if route == Route::LocalOnly && !self.is_leader() {
                return Err(ControllerError::NotController {
                    leader: self.leader_id(),
                });
            }
            match self.leader_addr() {
                Some((id, _)) if id == self.settings.node_id => {
                    match tokio::time::timeout_at(deadline, self.raft.client_write(write.clone()))
                        .await
                    {
                        Ok(Ok(r)) => return Ok(r.data),
                        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {}
                        Ok(Err(RaftError::APIError(e))) => return Err(raft_err(e)),
                        Ok(Err(RaftError::Fatal(_))) => return Err(ControllerError::ShuttingDown),
                        Err(_) => return Err(ControllerError::NotController { leader: Some(id) }),
                    }
                }
                Some((id, _)) if route == Route::LocalOnly => {
                    return Err(ControllerError::NotController { leader: Some(id) })
                }
                Some((_, addr)) => {
                    let remaining = deadline
                        .saturating_duration_since(Instant::now())
                        .min(RPC_TIMEOUT * 2);
                    let mut peer = PeerClient::new(self.net.clone(), addr);
                    match peer
                        .call(&ControllerRequest::Write(write.clone()), remaining)
                        .await
                    {
                        Ok(ControllerReply::Write(Ok(outcome))) => return Ok(outcome),
                        Ok(ControllerReply::Write(Err(RemoteRefusal::Failed(m)))) => {
                            return Err(ControllerError::Raft(m))
                        }
                        Ok(_) | Err(_) => {}
                    }
                }
                None => {}
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Hands `count` producer ids to `broker_id`; returns the first.
    pub async fn allocate_producer_ids(
        &self,
        broker_id: BrokerId,
        count: i64,
    ) -> Result<i64, ControllerError> {
        let (first, _) = self
            .commit(|image| {
                let first = image.next_producer_id;
                Ok((
                    first,
                    vec![MetadataRecord::ProducerIds {
                        broker_id,
                        next_producer_id: first + count,
                    }],
                ))
            })
            .await?;
        Ok(first)
    }

    /// Sends a request to the active controller, or serves it here when this node is it.
    async fn to_leader(&self, req: ControllerRequest) -> Result<ControllerReply, ControllerError> {
        match self.leader_addr() {
            Some((id, _)) if id == self.settings.node_id => Ok(self.serve_request(None, req).await),
            Some((id, addr)) => PeerClient::new(self.net.clone(), addr)
                .call(&req, RPC_TIMEOUT)
                .await
                .map_err(|_| ControllerError::NotController { leader: Some(id) }),
            None => Err(ControllerError::NotController { leader: None }),
        }
    }

    /// Tells the active controller that `broker_id` is alive, over the connection kept open
    /// for heartbeats (reopened when the active controller changes or a call fails). Returns
    /// whether the broker is fenced.
    pub async fn heartbeat(
        &self,
        broker_id: BrokerId,
        incarnation: uuid::Uuid,
    ) -> Result<bool, ControllerError> {
        let req = ControllerRequest::BrokerHeartbeat {
            broker_id,
            incarnation,
        };
        let reply = match self.leader_addr() {
            None => return Err(ControllerError::NotController { leader: None }),
            Some((id, _)) if id == self.settings.node_id => {
                *self.heartbeat_peer.lock().await = None;
                self.serve_request(None, req).await
            }
            Some((id, addr)) => {
                let mut peer = self.heartbeat_peer.lock().await;
                if peer.as_ref().is_none_or(|(to, _)| *to != id) {
                    *peer = Some((id, PeerClient::new(self.net.clone(), addr)));
                }
                let Some((_, client)) = peer.as_mut() else {
                    return Err(ControllerError::NotController { leader: Some(id) });
                };
                client
                    .call(&req, RPC_TIMEOUT)
                    .await
                    .map_err(|_| ControllerError::NotController { leader: Some(id) })?
            }
        };
        match reply {
            ControllerReply::BrokerHeartbeat(Ok(fenced)) => Ok(fenced),
            ControllerReply::BrokerHeartbeat(Err(e)) => Err(ControllerError::Raft(e.to_string())),
            _ => Err(ControllerError::Raft("unexpected reply".into())),
        }
    }

    /// Asks the active controller to move `broker_id`'s leaderships away, and waits until the
    /// local image shows it leads nothing that could move (or `timeout`).
    pub async fn controlled_shutdown(
        &self,
        broker_id: BrokerId,
        timeout: Duration,
    ) -> Result<(), ControllerError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self
                .to_leader(ControllerRequest::ControlledShutdown { broker_id })
                .await
            {
                Ok(ControllerReply::ControlledShutdown(Ok(()))) => break,
                _ if Instant::now() >= deadline => {
                    return Err(ControllerError::NotController {
                        leader: self.leader_id(),
                    })
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let mut rx = self.image_rx.clone();
        let drained = |i: &Arc<MetadataImage>| {
            i.topics
                .values()
                .flat_map(|t| t.partitions.values())
                .all(|p| p.leader != broker_id || p.replicas.len() == 1)
        };
        tokio::time::timeout_at(deadline, rx.wait_for(drained))
            .await
            .map(|_| ())
            .map_err(|_| ControllerError::NotController {
                leader: self.leader_id(),
            })
    }

    /// The quorum as this node sees it.
    pub fn describe(&self) -> QuorumDescription {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut out_voters = Vec::new();
        let mut learners = Vec::new();
        for (id, node) in membership.nodes() {
            if voters.contains(id) {
                out_voters.push((*id, node.addr.clone()));
            } else {
                learners.push((*id, node.addr.clone()));
            }
        }
        let image = self.image();
        let leading = active_in(&m, self.settings.node_id).is_some();
        let log_end_offset = m.last_log_index.map(|i| i + 1);
        let replicas = if leading {
            let now = ReplicaProgress::now_ms();
            membership
                .nodes()
                .map(|(id, _)| {
                    let (log_end, (fetch, caught_up)) = if *id == self.settings.node_id {
                        (log_end_offset, (Some(now), Some(now)))
                    } else {
                        let matched = m.replication.as_ref().and_then(|r| r.get(id)).copied();
                        (
                            matched.flatten().map(|l| l.index + 1),
                            self.progress.times(*id),
                        )
                    };
                    ReplicaDescription {
                        node_id: *id,
                        voter: voters.contains(id),
                        log_end_offset: log_end,
                        last_fetch_ms: fetch,
                        last_caught_up_ms: caught_up,
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        QuorumDescription {
            node_id: self.settings.node_id,
            log_end_offset,
            high_watermark: m.last_applied.map(|l| l.index + 1),
            replicas,
            leader: m.current_leader,
            term: m.current_term,
            last_applied: m.last_applied.map(|l| l.index),
            voters: out_voters,
            learners,
            image_offset: image.offset,
            metadata_version: image.metadata_version,
            brokers: image
                .brokers
                .values()
                .map(|b| {
                    (
                        b.broker_id.0,
                        format!("{}:{}", b.host, b.port),
                        b.rack.clone(),
                        b.fenced,
                    )
                })
                .collect(),
        }
    }

    /// Refreshes the controller gauges (at scrape time).
    pub fn sync_metrics(&self, out: &crate::metrics::ControllerMetrics) {
        let m = self.raft.metrics().borrow().clone();
        let leading = active_in(&m, self.settings.node_id).is_some();
        let log_end = m.last_log_index.map_or(0, |i| i + 1);
        let applied = m.last_applied.map_or(0, |l| l.index + 1);
        let committed = match (&m.replication, leading) {
            (Some(replication), true) => {
                // What a majority of voters holds: the leader has its whole log.
                let membership = m.membership_config.membership();
                let mut ends: Vec<u64> = membership
                    .voter_ids()
                    .map(|id| {
                        if id == self.settings.node_id {
                            log_end
                        } else {
                            replication
                                .get(&id)
                                .copied()
                                .flatten()
                                .map_or(0, |l| l.index + 1)
                        }
                    })
                    .collect();
                ends.sort_unstable_by(|a, b| b.cmp(a));
                ends.get(ends.len() / 2)
                    .copied()
                    .unwrap_or(applied)
                    .max(applied)
            }
            _ => applied,
        };
        let image = self.image();
        let gauge = |g: &prometheus::IntGauge, v: u64| g.set(v.min(i64::MAX as u64) as i64);
        gauge(&out.active, leading as u64);
        gauge(&out.term, m.current_term);
        gauge(&out.log_end_offset, log_end);
        gauge(&out.committed_offset, committed);
        gauge(&out.applied_offset, applied);
        gauge(&out.commit_lag, log_end.saturating_sub(committed));
        gauge(&out.image_offset, image.offset);
        gauge(&out.registered_brokers, image.brokers.len() as u64);
        gauge(
            &out.fenced_brokers,
            image.brokers.values().filter(|b| b.fenced).count() as u64,
        );
    }

    /// The quorum as the active controller sees it (with every member's replication).
    pub async fn describe_active(&self) -> Result<QuorumDescription, ControllerError> {
        match self.to_leader(ControllerRequest::Describe).await? {
            ControllerReply::Describe(d) if d.leader == Some(d.node_id) => Ok(d),
            ControllerReply::Describe(d) => {
                Err(ControllerError::NotController { leader: d.leader })
            }
            _ => Err(ControllerError::Raft("unexpected reply".into())),
        }
    }

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let _ = self.raft.shutdown().await;
    }

    fn sessions(&self) -> MutexGuard<'_, BrokerSessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn leader_contact(&self) -> MutexGuard<'_, LeaderContact> {
        self.leader_contact
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Serves `req`, which came on controller connection `conn` (`None`: from this node).
    async fn serve_request(
        &self,
        conn: Option<ConnectionId>,
        req: ControllerRequest,
    ) -> ControllerReply {
        let not_leader = || RemoteRefusal::NotLeader {
            leader: self.leader_id(),
        };
        match req {
            ControllerRequest::AppendEntries(r) => {
                let reply = self.raft.append_entries(r).await;
                if matches!(&reply, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
                    self.leader_contact().append = Some(Instant::now());
                }
                ControllerReply::AppendEntries(reply)
            }
            ControllerRequest::Vote(r) => {
                self.leader_contact().vote_request = Some(Instant::now());
                ControllerReply::Vote(self.raft.vote(r).await)
            }
            ControllerRequest::InstallSnapshot(r) => {
                ControllerReply::InstallSnapshot(self.raft.install_snapshot(r).await)
            }
            ControllerRequest::Write(w) => {
                ControllerReply::Write(match self.raft.client_write(w).await {
                    Ok(r) => Ok(r.data),
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                        Err(RemoteRefusal::NotLeader {
                            leader: f.leader_id,
                        })
                    }
                    Err(e) => Err(RemoteRefusal::Failed(e.to_string())),
                })
            }
            ControllerRequest::BrokerHeartbeat {
                broker_id,
                incarnation,
            } => {
                let Some(term) = self.active_term() else {
                    return ControllerReply::BrokerHeartbeat(Err(not_leader()));
                };
                {
                    let mut s = self.sessions();
                    s.last_seen.insert(broker_id, (Instant::now(), term));
                    s.disconnected.remove(&broker_id);
                    s.dead_controllers.remove(&broker_id);
                    if let Some(conn) = conn {
                        s.heartbeat_conns.insert(conn, (broker_id, incarnation));
                    }
                }
                let fenced = self
                    .image()
                    .brokers
                    .get(&broker_id)
                    .is_none_or(|b| b.fenced);
                ControllerReply::BrokerHeartbeat(Ok(fenced))
            }
            ControllerRequest::ControlledShutdown { broker_id } => {
                if !self.is_leader() {
                    return ControllerReply::ControlledShutdown(Err(not_leader()));
                }
                if let Some(b) = self.image().brokers.get(&broker_id) {
                    self.sessions().draining.insert(broker_id, b.incarnation);
                }
                ControllerReply::ControlledShutdown(
                    self.run_liveness()
                        .await
                        .map_err(|e| RemoteRefusal::Failed(e.to_string())),
                )
            }
            ControllerRequest::AddLearner { node_id, addr } => {
                if !self.is_leader() {
                    return ControllerReply::AddLearner(Err(not_leader()));
                }
                ControllerReply::AddLearner(
                    self.raft
                        .add_learner(node_id, BasicNode::new(addr), false)
                        .await
                        .map(|_| ())
                        .map_err(|e| RemoteRefusal::Failed(e.to_string())),
                )
            }
            ControllerRequest::Describe => ControllerReply::Describe(self.describe()),
        }
    }

    fn spawn_join_as_learner(self: Arc<Self>) {
        let Some(addr) = self.settings.advertised.clone() else {
            tracing::error!(
                "a broker-only node needs a CONTROLLER listener to follow the metadata log"
            );
            return;
        };
        tokio::spawn(async move {
            let voters: Vec<String> = self
                .settings
                .voters
                .values()
                .map(|n| n.addr.clone())
                .collect();
            let req = ControllerRequest::AddLearner {
                node_id: self.settings.node_id,
                addr,
            };
            loop {
                for v in &voters {
                    let mut peer = PeerClient::new(self.net.clone(), v.clone());
                    if let Ok(ControllerReply::AddLearner(Ok(()))) =
                        peer.call(&req, RPC_TIMEOUT).await
                    {
                        tracing::info!("following the metadata log as a learner");
                        return;
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = self.shutdown.cancelled() => return,
                }
            }
        });
    }

    fn spawn_duties(self: Arc<Self>) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(DUTY_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = self.duties_due.notified() => {}
                    () = self.shutdown.cancelled() => return,
                }
                if let Err(e) = self.run_duties().await {
                    tracing::debug!(error = %e, "controller duties");
                }
            }
        });
    }

    /// Whether `addr` refuses a connection now: nothing listens there, so the process that
    /// served it is gone. A timeout or any other error is not a refusal.
    async fn refuses_connections(&self, addr: String) -> bool {
        match tokio::time::timeout(PROBE_TIMEOUT, self.net.connect(addr)).await {
            Ok(Err(e)) => e.kind() == io::ErrorKind::ConnectionRefused,
            Ok(Ok(_)) | Err(_) => false,
        }
    }

    fn voter_addr(&self, id: NodeId) -> Option<String> {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }

    /// Follows Raft's view of the active controller: logs this node's election, runs the duties
    /// at once rather than at the next tick, and has the new active controller probe the
    /// previous one (see the module doc).
    fn spawn_watch_leadership(self: Arc<Self>) {
        tokio::spawn(async move {
            let mut rx = self.raft.metrics();
            // The last other node seen leading, with its term.
            let mut previous: Option<(NodeId, u64)> = None;
            let mut announced_term = None;
            loop {
                let (leader, term) = {
                    let m = rx.borrow_and_update();
                    (m.current_leader, m.current_term)
                };
                match leader {
                    Some(id) if id != self.settings.node_id => previous = Some((id, term)),
                    _ => {}
                }
                if let Some(term) = self.active_term() {
                    if announced_term != Some(term) {
                        announced_term = Some(term);
                        let before = previous.filter(|(_, t)| *t < term).map(|(id, _)| id);
                        tracing::info!(
                            node_id = self.settings.node_id,
                            term,
                            previous = ?before,
                            "elected the active controller"
                        );
                        self.duties_due.notify_one();
                        if let Some(old) = before {
                            tokio::spawn(self.clone().fence_if_dead(old, term));
                        }
                    }
                }
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    () = self.shutdown.cancelled() => return,
                }
            }
        });
    }

    /// Right after this node became the active controller in `term`: if the previous one's
    /// controller port refuses connections, its process is dead, and so is the broker it ran.
    async fn fence_if_dead(self: Arc<Self>, old: NodeId, term: u64) {
        let Some(addr) = self.voter_addr(old) else {
            return;
        };
        let broker_id = BrokerId(old as i32);
        let Some(incarnation) = self.image().brokers.get(&broker_id).map(|b| b.incarnation) else {
            return;
        };
        if !self.refuses_connections(addr).await || self.active_term() != Some(term) {
            return;
        }
        tracing::info!(
            node_id = old,
            term,
            "the previous active controller's port refuses connections"
        );
        self.sessions()
            .dead_controllers
            .insert(broker_id, (incarnation, term));
        self.duties_due.notify_one();
    }

    /// A follower voter that stops hearing the active controller probes its controller port,
    /// and if it refuses connections stands as soon as every lease has ended
    /// ([`RaftTimers::early_stand_after`]) instead of at its rank's slot.
    fn spawn_stand_early(self: Arc<Self>) {
        let timers = {
            let voters = self.settings.voters.len();
            let rank = self
                .settings
                .voters
                .keys()
                .position(|id| *id == self.settings.node_id)
                .unwrap_or(0);
            RaftTimers::for_voter(self.settings.election_timeout, rank, voters)
        };
        let beat = Duration::from_millis(timers.heartbeat_interval_ms);
        tokio::spawn(async move {
            // The leadership (vote) this node last stood against, so it stands once per leader.
            let mut stood_against = None;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(beat) => {}
                    () = self.shutdown.cancelled() => return,
                }
                let (state, vote, leader) = {
                    let m = self.raft.metrics();
                    let m = m.borrow();
                    (m.state, m.vote, m.current_leader)
                };
                let Some(leader) = leader.filter(|l| *l != self.settings.node_id) else {
                    continue;
                };
                if state != ServerState::Follower
                    || !vote.is_committed()
                    || stood_against == Some(vote)
                {
                    continue;
                }
                let Some(last_append) = self.leader_contact().append else {
                    continue;
                };
                // The leader heartbeats every `beat`: two missed, and it may be gone.
                if last_append.elapsed() < beat * 2 {
                    continue;
                }
                let Some(addr) = self.voter_addr(leader) else {
                    continue;
                };
                if !self.refuses_connections(addr).await {
                    continue;
                }
                let survivor_rank = self
                    .settings
                    .voters
                    .keys()
                    .filter(|id| **id != leader)
                    .position(|id| *id == self.settings.node_id)
                    .unwrap_or(0);
                let stand_at = last_append
                    + RaftTimers::early_stand_after(
                        self.settings.election_timeout,
                        survivor_rank,
                        self.settings.voters.len(),
                    );
                tokio::select! {
                    () = tokio::time::sleep_until(stand_at) => {}
                    () = self.shutdown.cancelled() => return,
                }
                // Stand only against the same leadership, still silent, with no other
                // candidate heard since its last heartbeat.
                let contact = *self.leader_contact();
                let unchanged = {
                    let m = self.raft.metrics();
                    let m = m.borrow();
                    m.state == ServerState::Follower && m.vote == vote
                };
                if !unchanged
                    || contact.append != Some(last_append)
                    || contact.vote_request.is_some_and(|t| t > last_append)
                {
                    continue;
                }
                stood_against = Some(vote);
                tracing::info!(
                    node_id = self.settings.node_id,
                    leader,
                    term = vote.leader_id().get_term(),
                    silent_ms = last_append.elapsed().as_millis() as u64,
                    "the active controller's port refuses connections; standing for election"
                );
                if self.raft.trigger().elect().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Resolves once Raft names an active controller other than `from` (or none, when `from`
    /// named one).
    pub async fn leader_changed(&self, from: Option<NodeId>) {
        let mut rx = self.raft.metrics();
        if rx.wait_for(|m| m.current_leader != from).await.is_err() {
            // Raft has stopped: no leader will change again.
            std::future::pending::<()>().await;
        }
    }

    async fn run_duties(&self) -> Result<(), ControllerError> {
        let Some(term) = self.active_term() else {
            let mut s = self.sessions();
            s.leader_term = None;
            s.draining.clear();
            s.disconnected.clear();
            s.incarnations.clear();
            s.dead_controllers.clear();
            return Ok(());
        };
        {
            let mut s = self.sessions();
            if s.leader_term != Some(term) {
                // A new active controller gives every broker a fresh session; heartbeats it
                // and closed heartbeat connections it already saw in this term (before this loop
                // noticed) count.
                s.leader_term = Some(term);
                s.last_seen.retain(|_, (_, t)| *t == term);
                s.disconnected.retain(|_, (_, _, t)| *t == term);
                s.dead_controllers.retain(|_, (_, t)| *t == term);
                let now = Instant::now();
                s.incarnations = self
                    .image()
                    .brokers
                    .values()
                    .map(|b| (b.broker_id, (b.incarnation, now, true)))
                    .collect();
                s.leader_since = Some(Instant::now());
                s.last_rebalance = Some(Instant::now());
            }
        }
        self.commit_as_active(|image| {
            let records = if image.metadata_version < METADATA_VERSION {
                vec![MetadataRecord::FeatureLevel {
                    name: "metadata.version".into(),
                    level: METADATA_VERSION,
                }]
            } else {
                vec![]
            };
            Ok(((), records))
        })
        .await?;
        self.run_liveness().await?;
        let rebalance_due = {
            let s = self.sessions();
            self.settings.auto_leader_rebalance
                && s.last_rebalance
                    .is_none_or(|t| t.elapsed() >= self.settings.leader_imbalance_check_interval)
        };
        if rebalance_due {
            self.sessions().last_rebalance = Some(Instant::now());
            let draining: BTreeSet<BrokerId> = self.sessions().draining.keys().copied().collect();
            let pct = self.settings.leader_imbalance_percent;
            self.commit_as_active(|image| {
                Ok(((), decide_preferred_leaders(image, pct, &draining)))
            })
            .await?;
        }
        Ok(())
    }

    /// Fences silent brokers, unfences heartbeating ones, drains those shutting down, and
    /// re-elects leaders accordingly.
    async fn run_liveness(&self) -> Result<(), ControllerError> {
        let session = self.settings.session_timeout;
        let grace = self.settings.reconnect_grace;
        let election_grace = grace.max(self.settings.broker_heartbeat_interval);
        let unclean = self.settings.unclean_leader_election;
        let (changed, _) = self
            .commit_as_active(|image| {
                let now = Instant::now();
                let mut s = self.sessions();
                let since = s.leader_since.unwrap_or(now);
                // A draining broker that registered again (a new incarnation) is back.
                s.draining
                    .retain(|b, inc| image.brokers.get(b).is_some_and(|r| r.incarnation == *inc));
                let mut observed = Liveness {
                    draining: s.draining.keys().copied().collect(),
                    ..Default::default()
                };
                let mut rules = Vec::new();
                for b in image.brokers.values() {
                    let known = s.incarnations.get(&b.broker_id).copied();
                    let (registered, inherited) = match known {
                        Some((inc, at, inherited)) if inc == b.incarnation => (at, inherited),
                        _ => {
                            // Registered (again) during this term: its session starts now, and
                            // heartbeats of an earlier incarnation no longer count.
                            s.incarnations
                                .insert(b.broker_id, (b.incarnation, now, false));
                            if known.is_some() {
                                s.last_seen.remove(&b.broker_id);
                            }
                            (now, false)
                        }
                    };
                    let seen = s.last_seen.get(&b.broker_id).map(|(t, _)| *t);
                    let expired = match seen {
                        Some(t) => {
                            (now.duration_since(t) >= session).then_some(FenceRule::SessionTimeout)
                        }
                        // Inherited from the previous controller: live brokers reach a new one
                        // within the election grace.
                        None if inherited => (now.duration_since(since) >= election_grace)
                            .then_some(FenceRule::ElectionGrace),
                        // Registered during this term: it starts heartbeating once its logs are
                        // open, within its session.
                        None => (now.duration_since(registered) >= session)
                            .then_some(FenceRule::SessionTimeout),
                    };
                    // Its heartbeat connection closed, and no heartbeat has come since.
                    let closed_at = s
                        .disconnected
                        .get(&b.broker_id)
                        .filter(|(_, inc, _)| *inc == b.incarnation)
                        .map(|(t, _, _)| *t);
                    let gone = closed_at
                        .is_some_and(|t| now.duration_since(t) >= grace)
                        .then_some(FenceRule::ConnectionClosed);
                    // The previous active controller, whose port refused a connection.
                    let dead = s
                        .dead_controllers
                        .get(&b.broker_id)
                        .is_some_and(|(inc, _)| *inc == b.incarnation)
                        .then_some(FenceRule::ControllerPortRefused);
                    if let (false, Some(rule)) = (b.fenced, dead.or(gone).or(expired)) {
                        observed.fence.insert(b.broker_id);
                        rules.push((b.broker_id, rule));
                    } else if b.fenced
                        && closed_at.is_none()
                        && dead.is_none()
                        && seen.is_some_and(|t| now.duration_since(t) < session)
                        && !s.draining.contains_key(&b.broker_id)
                    {
                        observed.unfence.insert(b.broker_id);
                    }
                }
                drop(s);
                let records = decide_broker_liveness(image, &observed, unclean);
                let changed = (!records.is_empty()).then_some((rules, observed, records.len()));
                Ok((changed, records))
            })
            .await?;
        // Logged once committed, not per attempt: these lines time a failover.
        if let Some((rules, observed, records)) = changed {
            for (broker_id, rule) in rules {
                tracing::info!(
                    broker_id = broker_id.0,
                    rule = rule.as_str(),
                    "fenced a broker"
                );
            }
            tracing::info!(fence = ?observed.fence, unfence = ?observed.unfence, draining = ?observed.draining, records, "broker liveness changed");
        }
        Ok(())
    }
}

/// The term in which `node` is the active controller, as Raft's metrics `m` show it: the
/// leader, in a committed vote of its current term, acknowledged by a quorum since it took
/// that role in this process (a restored leader of an old term has no acknowledgement yet).
fn active_in(m: &openraft::RaftMetrics<NodeId, BasicNode>, node: NodeId) -> Option<u64> {
    let active = m.state == ServerState::Leader
        && m.current_leader == Some(node)
        && m.vote.is_committed()
        && m.vote.leader_id().voted_for() == Some(node)
        && m.vote.leader_id().get_term() == m.current_term
        && m.millis_since_quorum_ack.is_some();
    active.then_some(m.current_term)
}

/// Why the active controller fenced a broker (the rules in the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FenceRule {
    /// No heartbeat for `broker.session.timeout.ms`.
    SessionTimeout,
    /// Its heartbeat connection closed and no heartbeat followed within the reconnect grace.
    ConnectionClosed,
    /// Inherited from the previous controller and silent through the election grace.
    ElectionGrace,
    /// The previous active controller, whose controller port refused a connection.
    ControllerPortRefused,
}

impl FenceRule {
    fn as_str(self) -> &'static str {
        match self {
            FenceRule::SessionTimeout => "session_timeout",
            FenceRule::ConnectionClosed => "connection_closed",
            FenceRule::ElectionGrace => "election_grace",
            FenceRule::ControllerPortRefused => "controller_port_refused",
        }
    }
}

impl ControllerService for Controller {
    fn handle(&self, conn: ConnectionId, req: ControllerRequest) -> BoxFuture<'_, ControllerReply> {
        Box::pin(self.serve_request(Some(conn), req))
    }

    fn closed(&self, conn: ConnectionId) {
        let Some((broker_id, incarnation)) = self.sessions().heartbeat_conns.remove(&conn) else {
            return;
        };
        let Some(term) = self.active_term() else {
            return;
        };
        {
            let mut s = self.sessions();
            // Heartbeats already come on another connection: nothing was lost.
            if s.heartbeat_conns
                .values()
                .any(|(b, i)| *b == broker_id && *i == incarnation)
            {
                return;
            }
            s.disconnected
                .insert(broker_id, (Instant::now(), incarnation, term));
        }
        tracing::info!(
            broker_id = broker_id.0,
            "a broker's heartbeat connection closed"
        );
        // Look again once the grace has passed rather than at some later tick.
        let grace = self.settings.reconnect_grace;
        let due = self.duties_due.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace + Duration::from_millis(5)).await;
            due.notify_one();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_stand_at_distinct_times_further_apart_than_a_tick() {
        for voters in 1..=5 {
            let timers: Vec<RaftTimers> = (0..voters)
                .map(|r| RaftTimers::for_voter(Duration::from_millis(1000), r, voters))
                .collect();
            let tick = timers[0].heartbeat_interval_ms * 3 / 2;
            for pair in timers.windows(2) {
                let gap = pair[1].stands_after_ms() - pair[0].stands_after_ms();
                assert!(
                    gap > tick + 20,
                    "{voters} voters: gap {gap} ms, tick {tick} ms"
                );
            }
            let first = timers[0].stands_after_ms();
            let last = timers[voters - 1].stands_after_ms();
            assert!(
                (500..=1000).contains(&first) && last <= 1000,
                "{first}..{last}"
            );
            // Every lease has ended before the first voter stands.
            assert!(timers.iter().all(|t| t.election_timeout_max_ms < first));
            assert!(timers
                .iter()
                .all(|t| t.election_timeout_min_ms > t.heartbeat_interval_ms));
        }
    }

    #[test]
    fn early_candidates_stand_after_every_lease_one_at_a_time() {
        let et = Duration::from_millis(1000);
        for voters in 2..=5 {
            let timers: Vec<RaftTimers> = (0..voters)
                .map(|r| RaftTimers::for_voter(et, r, voters))
                .collect();
            let longest_lease = timers.iter().map(|t| t.election_timeout_max_ms).max();
            let beat = timers[0].heartbeat_interval_ms;
            let stands: Vec<u64> = (0..voters - 1)
                .map(|r| RaftTimers::early_stand_after(et, r, voters).as_millis() as u64)
                .collect();
            // Every voter's lease has ended, even one that heard the leader a beat later.
            assert!(stands
                .iter()
                .all(|s| Some(*s) >= longest_lease.map(|l| l + beat)));
            // Survivors a vote round trip apart, and the first no later than any rank's slot.
            assert!(stands.windows(2).all(|w| w[1] - w[0] >= 40), "{stands:?}");
            assert!(stands[0] <= timers[0].stands_after_ms(), "{stands:?}");
        }
        assert_eq!(
            RaftTimers::early_stand_after(et, 0, 3),
            Duration::from_millis(467)
        );
    }
}
