//! Failover: how a new active controller takes over quickly when the old one's process dies.
//!
//! A voter that stops hearing the active controller probes its controller port; a refused
//! connection means its process is gone, and the voter stands for election as soon as every
//! voter's lease has ended rather than at its rank's slot (see [`RaftTimers`]). The new active
//! controller probes the previous one's port too: a refusal there fences that node's broker at
//! once (see [`super::liveness`]).
//!
//! Each step of a failover logs one INFO line (`elected the active controller`, `fenced a
//! broker`, and on brokers `partition leadership changed`, `first append in a new leader
//! epoch`, `first commit in a new leader epoch`), from which `tests/compat/failover_phases.py`
//! builds a timeline.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use tokio::time::Instant;

use super::node::Controller;
use super::quorum::NodeId;
use super::settings::RaftTimers;
use crate::model::BrokerId;

/// How long a probe of a peer's controller port may take. Only a refusal counts as "its process
/// is gone"; a probe that times out proves nothing (a far or frozen machine).
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);

/// When this voter last heard from the active controller and from a candidate (the Raft
/// messages it served), for standing early when the active controller's process is gone.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct LeaderContact {
    /// The last AppendEntries whose vote this node accepted.
    pub(super) append: Option<Instant>,
    /// The last vote request.
    pub(super) vote_request: Option<Instant>,
}

impl Controller {
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
    pub(super) fn spawn_watch_leadership(self: Arc<Self>) {
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
        self.heartbeats()
            .controller_port_refused(broker_id, incarnation, term);
        self.duties_due.notify_one();
    }

    /// A follower voter that stops hearing the active controller probes its controller port,
    /// and if it refuses connections stands as soon as every lease has ended
    /// ([`RaftTimers::early_stand_after`]) instead of at its rank's slot.
    pub(super) fn spawn_stand_early(self: Arc<Self>) {
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
}
