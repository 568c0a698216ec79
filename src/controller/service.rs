//! The controller RPC served by this node: Raft's messages from peers, writes forwarded to
//! the active controller, and the broker requests the active controller answers (heartbeats,
//! controlled shutdown, learners joining, DescribeQuorum). A closed heartbeat connection is
//! reported to broker liveness.

use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::AppendEntriesResponse;
use openraft::BasicNode;
use tokio::time::Instant;

use super::network::{
    ConnectionId, ControllerReply, ControllerRequest, ControllerService, HeartbeatAnswer,
    RemoteRefusal,
};
use super::node::Controller;
use crate::net::BoxFuture;

impl Controller {
    /// Serves `req`, which came on controller connection `conn` (`None`: from this node).
    pub(super) async fn serve_request(
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
                quota_usage,
                offline_partitions,
                replica_sizes,
            } => {
                let Some(term) = self.active_term() else {
                    return match quota_usage {
                        Some(_) => ControllerReply::BrokerHeartbeatShares(Err(not_leader())),
                        None => ControllerReply::BrokerHeartbeat(Err(not_leader())),
                    };
                };
                self.heartbeats().record_heartbeat(
                    broker_id,
                    incarnation,
                    conn,
                    Instant::now(),
                    term,
                );
                self.heartbeats()
                    .record_offline_replicas(broker_id, offline_partitions);
                if let Some(sizes) = replica_sizes {
                    self.replica_sizes().record(broker_id, sizes);
                }
                let fenced = self
                    .image()
                    .brokers
                    .get(&broker_id)
                    .is_none_or(|b| b.fenced);
                match quota_usage {
                    None => ControllerReply::BrokerHeartbeat(Ok(fenced)),
                    Some(usage) => {
                        let quota_shares = self.quota_shares().report(
                            term,
                            broker_id,
                            usage,
                            Instant::now(),
                            self.settings.broker_heartbeat_interval,
                            self.settings.session_timeout,
                        );
                        ControllerReply::BrokerHeartbeatShares(Ok(HeartbeatAnswer {
                            fenced,
                            quota_shares,
                        }))
                    }
                }
            }
            ControllerRequest::ControlledShutdown { broker_id } => {
                if !self.is_leader() {
                    return ControllerReply::ControlledShutdown(Err(not_leader()));
                }
                if let Some(b) = self.image().brokers.get(&broker_id) {
                    self.heartbeats().begin_draining(broker_id, b.incarnation);
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
}

impl ControllerService for Controller {
    fn handle(&self, conn: ConnectionId, req: ControllerRequest) -> BoxFuture<'_, ControllerReply> {
        Box::pin(self.serve_request(Some(conn), req))
    }

    fn closed(&self, conn: ConnectionId) {
        let Some((broker_id, incarnation)) = self.heartbeats().forget_connection(conn) else {
            return;
        };
        let Some(term) = self.active_term() else {
            return;
        };
        let lost = self.heartbeats().heartbeat_connection_closed(
            broker_id,
            incarnation,
            Instant::now(),
            term,
        );
        if !lost {
            return;
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
