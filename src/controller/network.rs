//! The controller RPC: openraft's messages, forwarded metadata writes and broker heartbeats,
//! over the controller listener.
//!
//! Framing: `length: u32 BE | JSON payload`, one request then one reply on a connection, in
//! turn; a connection carries any number of them. A broker keeps one connection open to the
//! active controller for its heartbeats, so the controller learns of a broker's death when
//! that connection closes ([`ControllerService::closed`]), not only when its session expires. Bounds: a frame is at most
//! [`MAX_FRAME_BYTES`] (openraft sends snapshots in chunks far below it), a listener serves at
//! most [`MAX_CONNECTIONS`] connections at once, and every call has a deadline.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::quorum::{MetadataWrite, NodeId, TypeConfig, WriteOutcome};
use crate::model::BrokerId;
use crate::net::{Acceptor, BoxConnection, Network};
use crate::quota::{QuotaShare, QuotaUsage};

pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
pub const MAX_CONNECTIONS: usize = 256;

#[derive(Debug, Serialize, Deserialize)]
pub enum ControllerRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A metadata write forwarded to the active controller.
    Write(MetadataWrite),
    /// A broker is alive. With `quota_usage` (its observed rates under cluster-wide quota
    /// limits), the answer is [`ControllerReply::BrokerHeartbeatShares`].
    BrokerHeartbeat {
        broker_id: BrokerId,
        incarnation: uuid::Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quota_usage: Option<Vec<QuotaUsage>>,
        /// The partitions this broker holds in offline log dirs (none: every dir serves).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        offline_partitions: Vec<crate::model::TopicPartition>,
        /// The local log size of every replica this broker holds, sent now and then
        /// (`replica_sizes`); none: no news.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replica_sizes: Option<Vec<(crate::model::TopicPartition, u64)>>,
    },
    /// A broker is about to stop: move its leaderships away.
    ControlledShutdown {
        broker_id: BrokerId,
    },
    /// A broker-only node asks to follow the log as a learner at `addr`.
    AddLearner {
        node_id: NodeId,
        addr: String,
    },
    /// The quorum as this node sees it.
    Describe,
}

/// Why a forwarded request was not served.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteRefusal {
    #[error("not the active controller (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("{0}")]
    Failed(String),
}

/// One member's replication, as the active controller sees it (DescribeQuorum's
/// `ReplicaState`). Offsets are Raft log indexes + 1 (the next entry), as Kafka counts them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaDescription {
    pub node_id: NodeId,
    pub voter: bool,
    /// Unknown until the member has answered an AppendEntries.
    pub log_end_offset: Option<u64>,
    /// Wall-clock milliseconds of the member's last successful AppendEntries reply.
    pub last_fetch_ms: Option<i64>,
    /// Wall-clock milliseconds of the last reply that showed it had every entry sent so far.
    pub last_caught_up_ms: Option<i64>,
}

/// The quorum as one node sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuorumDescription {
    pub node_id: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_applied: Option<u64>,
    pub voters: Vec<(NodeId, String)>,
    pub learners: Vec<(NodeId, String)>,
    pub image_offset: u64,
    pub metadata_version: u16,
    /// (id, host:port, rack, fenced)
    pub brokers: Vec<(i32, String, Option<String>, bool)>,
    /// The log end offset of the active controller's log (Raft last index + 1).
    #[serde(default)]
    pub log_end_offset: Option<u64>,
    /// The applied (so committed) offset: Raft last applied index + 1.
    #[serde(default)]
    pub high_watermark: Option<u64>,
    /// Every member's replication; only the active controller knows it (empty elsewhere).
    #[serde(default)]
    pub replicas: Vec<ReplicaDescription>,
}

/// When each peer last answered AppendEntries and last had everything sent to it, recorded by
/// the transport of the active controller (openraft's metrics hold matched indexes, no times).
/// "Caught up" is measured against the highest index sent to any peer, which is the leader's
/// log end as far as replication has seen it.
#[derive(Debug, Default)]
pub struct ReplicaProgress {
    // Short sections that never await.
    inner: std::sync::Mutex<ProgressInner>,
}

#[derive(Debug, Default)]
struct ProgressInner {
    max_sent: Option<u64>,
    peers: std::collections::HashMap<NodeId, PeerTimes>,
}

#[derive(Debug, Default, Clone, Copy)]
struct PeerTimes {
    last_fetch_ms: Option<i64>,
    last_caught_up_ms: Option<i64>,
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl ReplicaProgress {
    fn lock(&self) -> std::sync::MutexGuard<'_, ProgressInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sending(&self, last: Option<u64>) {
        let mut p = self.lock();
        p.max_sent = p.max_sent.max(last);
    }

    fn acked(&self, target: NodeId, last: Option<u64>, complete: bool) {
        let now = wall_clock_ms();
        let mut p = self.lock();
        let caught_up = complete && last >= p.max_sent;
        let t = p.peers.entry(target).or_default();
        t.last_fetch_ms = Some(now);
        if caught_up {
            t.last_caught_up_ms = Some(now);
        }
    }

    /// (last fetch, last caught up) of `target`, in wall-clock milliseconds.
    pub fn times(&self, target: NodeId) -> (Option<i64>, Option<i64>) {
        let p = self.lock();
        let t = p.peers.get(&target).copied().unwrap_or_default();
        (t.last_fetch_ms, t.last_caught_up_ms)
    }

    /// Now, in the wall-clock milliseconds [`ReplicaProgress::times`] uses.
    pub fn now_ms() -> i64 {
        wall_clock_ms()
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ControllerReply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Write(Result<WriteOutcome, RemoteRefusal>),
    /// Ok(true): this broker is fenced.
    BrokerHeartbeat(Result<bool, RemoteRefusal>),
    /// The answer to a heartbeat that reported quota usage.
    BrokerHeartbeatShares(Result<HeartbeatAnswer, RemoteRefusal>),
    ControlledShutdown(Result<(), RemoteRefusal>),
    AddLearner(Result<(), RemoteRefusal>),
    Describe(QuorumDescription),
}

/// A heartbeat's answer with the broker's cluster-wide quota shares.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    pub fenced: bool,
    /// This broker's shares; `None`: keep the ones it has (a new active controller has not
    /// heard from every broker yet).
    pub quota_shares: Option<Vec<QuotaShare>>,
}

async fn write_frame<T: Serialize>(conn: &mut BoxConnection, msg: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "controller RPC frame too large",
        ));
    }
    let mut buf = Vec::with_capacity(bytes.len() + 4);
    buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    buf.extend_from_slice(&bytes);
    conn.write_all(&buf).await?;
    conn.flush().await
}

async fn read_frame<T: DeserializeOwned>(conn: &mut BoxConnection) -> io::Result<T> {
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "controller RPC frame too large",
        ));
    }
    let mut buf = vec![0u8; len];
    conn.read_exact(&mut buf).await?;
    serde_json::from_slice(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A connection to one peer, reopened after any failure.
#[derive(Debug)]
pub struct PeerClient {
    net: Arc<dyn Network>,
    addr: String,
    conn: Option<BoxConnection>,
}

impl std::fmt::Debug for dyn crate::net::Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

impl PeerClient {
    pub fn new(net: Arc<dyn Network>, addr: String) -> PeerClient {
        PeerClient {
            net,
            addr,
            conn: None,
        }
    }

    /// One request and its reply, within `timeout`.
    pub async fn call(
        &mut self,
        req: &ControllerRequest,
        timeout: Duration,
    ) -> io::Result<ControllerReply> {
        let result = tokio::time::timeout(timeout, async {
            if self.conn.is_none() {
                self.conn = Some(self.net.connect(self.addr.clone()).await?);
            }
            let conn = self
                .conn
                .as_mut()
                .ok_or_else(|| io::Error::other("no connection"))?;
            write_frame(conn, req).await?;
            read_frame(conn).await
        })
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "controller RPC timed out",
            ))
        });
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

/// openraft's view of the network: one [`RaftPeer`] per target.
#[derive(Debug, Clone)]
pub struct RaftTransport {
    pub net: Arc<dyn Network>,
    pub progress: Arc<ReplicaProgress>,
}

impl RaftNetworkFactory<TypeConfig> for RaftTransport {
    type Network = RaftPeer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> RaftPeer {
        RaftPeer {
            target,
            client: PeerClient::new(self.net.clone(), node.addr.clone()),
            progress: self.progress.clone(),
        }
    }
}

#[derive(Debug)]
pub struct RaftPeer {
    target: NodeId,
    client: PeerClient,
    progress: Arc<ReplicaProgress>,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, E>;

impl RaftPeer {
    async fn rpc<E: std::error::Error>(
        &mut self,
        req: ControllerRequest,
        option: &RPCOption,
    ) -> Result<ControllerReply, RpcErr<E>> {
        match self.client.call(&req, option.hard_ttl()).await {
            Ok(r) => Ok(r),
            Err(e)
                if e.kind() == io::ErrorKind::ConnectionRefused
                    || e.kind() == io::ErrorKind::TimedOut =>
            {
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    fn unexpected<E: std::error::Error>() -> RpcErr<E> {
        RPCError::Network(NetworkError::new(&io::Error::other(
            "unexpected controller RPC reply",
        )))
    }
}

impl RaftNetwork<TypeConfig> for RaftPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        let last = rpc
            .entries
            .last()
            .map(|e| e.log_id.index)
            .or(rpc.prev_log_id.map(|l| l.index));
        self.progress.sending(last);
        match self
            .rpc(ControllerRequest::AppendEntries(rpc), &option)
            .await?
        {
            ControllerReply::AppendEntries(r) => {
                match &r {
                    Ok(AppendEntriesResponse::Success) => {
                        self.progress.acked(self.target, last, true)
                    }
                    Ok(AppendEntriesResponse::PartialSuccess(_)) => {
                        self.progress.acked(self.target, last, false)
                    }
                    _ => {}
                }
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(Self::unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<RaftError<NodeId, InstallSnapshotError>>>
    {
        match self
            .rpc(ControllerRequest::InstallSnapshot(rpc), &option)
            .await?
        {
            ControllerReply::InstallSnapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(Self::unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        match self.rpc(ControllerRequest::Vote(rpc), &option).await? {
            ControllerReply::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(Self::unexpected()),
        }
    }
}

/// Names one accepted connection of the controller listener, unique for the listener's life.
pub type ConnectionId = u64;

/// What serves controller requests (the [`Controller`](super::Controller)).
pub trait ControllerService: Send + Sync + 'static {
    /// Serves one request that arrived on connection `conn`.
    fn handle(
        &self,
        conn: ConnectionId,
        req: ControllerRequest,
    ) -> crate::net::BoxFuture<'_, ControllerReply>;

    /// Connection `conn` reached end of stream or failed: the peer closed it, or its process
    /// died and the kernel closed it (a SIGKILLed broker's sockets are reset).
    fn closed(&self, conn: ConnectionId);
}

/// Serves the controller listener until `shutdown`.
pub async fn serve(
    mut acceptor: Box<dyn Acceptor>,
    service: Arc<dyn ControllerService>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut next_conn: ConnectionId = 0;
    loop {
        let accepted = tokio::select! {
            a = acceptor.accept() => a,
            () = shutdown.cancelled() => return,
        };
        let (mut conn, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "controller listener accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = MAX_CONNECTIONS, "controller listener at its connection limit; closing");
            continue;
        };
        let (service, shutdown) = (service.clone(), shutdown.clone());
        next_conn += 1;
        let id = next_conn;
        tokio::spawn(async move {
            let _permit = permit;
            loop {
                let req = tokio::select! {
                    r = read_frame::<ControllerRequest>(&mut conn) => r,
                    () = shutdown.cancelled() => return,
                };
                let Ok(req) = req else { break };
                let reply = service.handle(id, req).await;
                if write_frame(&mut conn, &reply).await.is_err() {
                    break;
                }
            }
            service.closed(id);
        });
    }
}
