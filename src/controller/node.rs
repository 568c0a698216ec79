//! [`Controller`]: this node's member of the metadata quorum. It opens the Raft log and state
//! machine, bootstraps the quorum on first start, and commits decisions: decided against the
//! latest image, appended as a compare-and-set on that image, locally when this node is the
//! active controller and forwarded to it otherwise.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ServerState};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::failover::LeaderContact;
use super::image::MetadataImage;
use super::liveness::BrokerHeartbeatManager;
use super::log_store::MetadataLogStore;
use super::network::{
    serve, ControllerReply, ControllerRequest, HeartbeatAnswer, PeerClient, RaftTransport,
    RemoteRefusal, ReplicaProgress,
};
use super::quorum::{MetadataWrite, NodeId, Raft, WriteOutcome};
use super::quota_shares::QuotaShareBook;
use super::records::MetadataRecord;
use super::settings::{ControllerSettings, RaftTimers};
use super::state_machine::{ApplyObserver, MetadataStateMachine};
use super::ControllerError;
use crate::model::BrokerId;
use crate::net::Network;
use crate::quota::QuotaUsage;

/// How long a commit keeps trying (elections, forwarding, conflicts) before giving up with a
/// retriable error.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one call to a peer's controller RPC may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(3);

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
    pub(super) settings: ControllerSettings,
    pub(super) raft: Raft,
    image_rx: watch::Receiver<Arc<MetadataImage>>,
    pub(super) net: Arc<dyn Network>,
    // Serialises this node's decisions so they never conflict with each other.
    commit_lock: tokio::sync::Mutex<()>,
    // Short sections that never await.
    heartbeats: Mutex<BrokerHeartbeatManager>,
    // The brokers' quota usage and their cluster-wide quota shares, while this node is the
    // active controller. Short sections that never await.
    quota_shares: Mutex<QuotaShareBook>,
    replica_sizes: Mutex<super::replica_sizes::ReplicaSizeBook>,
    // When the active controller last rebalanced preferred leaders (reset with each new term).
    // Short sections that never await.
    last_rebalance: Mutex<Option<Instant>>,
    /// Partition reassignments this node completed as the active controller (a metric).
    pub(super) reassignments_completed: std::sync::atomic::AtomicU64,
    /// This broker's heartbeat connection to the active controller (kept open: its closing is
    /// how the controller learns that this process died), with the controller it goes to.
    heartbeat_peer: tokio::sync::Mutex<Option<(NodeId, PeerClient)>>,
    /// Replication times of the peers, recorded by the Raft transport (for DescribeQuorum).
    pub(super) progress: Arc<ReplicaProgress>,
    /// Runs the duties now rather than at the next tick (a reconnect grace ran out).
    pub(super) duties_due: Arc<tokio::sync::Notify>,
    // Short sections that never await.
    leader_contact: Mutex<LeaderContact>,
    pub(super) shutdown: CancellationToken,
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
            heartbeats: Mutex::new(BrokerHeartbeatManager::new(&settings)),
            quota_shares: Mutex::new(QuotaShareBook::default()),
            replica_sizes: Mutex::new(Default::default()),
            last_rebalance: Mutex::new(None),
            reassignments_completed: std::sync::atomic::AtomicU64::new(0),
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
        if !settings.is_voter {
            controller.clone().spawn_join_as_learner();
        } else if !raft.is_initialized().await.map_err(raft_err)? {
            // Only a voter with an empty log and vote bootstraps: openraft refuses any other
            // and logs the refusal at ERROR, which a plain restart must not do. Every voter may
            // initialize with the same membership: the entries are identical, and a voter that
            // got a log or a vote from a peer since it looked refuses.
            match raft.initialize(settings.voters.clone()).await {
                Ok(()) => {
                    tracing::info!(voters = ?settings.voters.keys().collect::<Vec<_>>(), "bootstrapped the metadata quorum")
                }
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(raft_err(e)),
            }
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

    /// Resolves once Raft names an active controller other than `from` (or none, when `from`
    /// named one).
    pub async fn leader_changed(&self, from: Option<NodeId>) {
        let mut rx = self.raft.metrics();
        if rx.wait_for(|m| m.current_leader != from).await.is_err() {
            // Raft has stopped: no leader will change again.
            std::future::pending::<()>().await;
        }
    }

    /// This node is the active controller: Raft's leader, acknowledged by a quorum in its
    /// current term. A node restarted after a crash reads its own committed vote back and
    /// openraft restores it as leader of its old term, naming itself leader, until a voter
    /// answers with the newer term; that is not enough.
    pub fn is_leader(&self) -> bool {
        self.active_term().is_some()
    }

    /// The term in which this node is the active controller, if it is.
    pub(super) fn active_term(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = m.borrow();
        active_in(&m, self.settings.node_id)
    }

    pub(super) fn leader_addr(&self) -> Option<(NodeId, String)> {
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
    pub(super) async fn commit_as_active<T>(
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
    pub(super) async fn to_leader(
        &self,
        req: ControllerRequest,
    ) -> Result<ControllerReply, ControllerError> {
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
            quota_usage: None,
            offline_partitions: Vec::new(),
            replica_sizes: None,
        };
        match self.heartbeat_call(req).await? {
            ControllerReply::BrokerHeartbeat(Ok(fenced)) => Ok(fenced),
            ControllerReply::BrokerHeartbeat(Err(e)) => Err(ControllerError::Raft(e.to_string())),
            _ => Err(ControllerError::Raft("unexpected reply".into())),
        }
    }

    /// A heartbeat that also reports this broker's rates under cluster-wide quota limits;
    /// the answer carries its shares of them (see `quota_shares`).
    pub async fn heartbeat_with_quota_usage(
        &self,
        broker_id: BrokerId,
        incarnation: uuid::Uuid,
        usage: Vec<QuotaUsage>,
        offline_partitions: Vec<crate::model::TopicPartition>,
        replica_sizes: Option<Vec<(crate::model::TopicPartition, u64)>>,
    ) -> Result<HeartbeatAnswer, ControllerError> {
        let req = ControllerRequest::BrokerHeartbeat {
            broker_id,
            incarnation,
            quota_usage: Some(usage),
            offline_partitions,
            replica_sizes,
        };
        match self.heartbeat_call(req).await? {
            ControllerReply::BrokerHeartbeatShares(Ok(answer)) => Ok(answer),
            ControllerReply::BrokerHeartbeatShares(Err(e)) => {
                Err(ControllerError::Raft(e.to_string()))
            }
            _ => Err(ControllerError::Raft("unexpected reply".into())),
        }
    }

    async fn heartbeat_call(
        &self,
        req: ControllerRequest,
    ) -> Result<ControllerReply, ControllerError> {
        Ok(match self.leader_addr() {
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
        })
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

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let _ = self.raft.shutdown().await;
    }

    pub(super) fn replica_sizes(&self) -> MutexGuard<'_, super::replica_sizes::ReplicaSizeBook> {
        self.replica_sizes.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn quota_shares(&self) -> MutexGuard<'_, QuotaShareBook> {
        self.quota_shares.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn heartbeats(&self) -> MutexGuard<'_, BrokerHeartbeatManager> {
        self.heartbeats.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn last_rebalance(&self) -> MutexGuard<'_, Option<Instant>> {
        self.last_rebalance
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn leader_contact(&self) -> MutexGuard<'_, LeaderContact> {
        self.leader_contact
            .lock()
            .unwrap_or_else(|p| p.into_inner())
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
}

/// The term in which `node` is the active controller, as Raft's metrics `m` show it: the
/// leader, in a committed vote of its current term, acknowledged by a quorum since it took
/// that role in this process (a restored leader of an old term has no acknowledgement yet).
pub(super) fn active_in(m: &openraft::RaftMetrics<NodeId, BasicNode>, node: NodeId) -> Option<u64> {
    let active = m.state == ServerState::Leader
        && m.current_leader == Some(node)
        && m.vote.is_committed()
        && m.vote.leader_id().voted_for() == Some(node)
        && m.vote.leader_id().get_term() == m.current_term
        && m.millis_since_quorum_ack.is_some();
    active.then_some(m.current_term)
}
