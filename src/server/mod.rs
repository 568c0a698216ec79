//! The Kafka listener: one task per connection, size-prefixed frames, requests handled in order
//! and answered in order.
//!
//! Bounds: `max.connections` (a semaphore), `socket.request.max.bytes` (checked before any
//! allocation), `queued.max.requests` in flight per connection (reading pauses at the bound),
//! `connections.max.idle.ms`.

mod connection;
mod frame;
mod metrics;

pub use metrics::ServerMetrics;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::config::{ListenerInfo, SecurityProtocol};
use crate::handlers::{KafkaApis, KafkaPrincipal};
use crate::net::Acceptor;

#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_request_bytes: usize,
    pub max_in_flight: usize,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl ServerLimits {
    pub fn from_config(node: &crate::config::NodeConfig) -> ServerLimits {
        ServerLimits {
            max_request_bytes: node.get_i32("socket.request.max.bytes").max(1024) as usize,
            max_in_flight: node.get_i32("queued.max.requests").max(1) as usize,
            idle_timeout: Duration::from_millis(
                node.get_i64("connections.max.idle.ms").max(1) as u64
            ),
            max_connections: node.get_i32("max.connections").max(1) as usize,
        }
    }
}

/// One bound client listener: its name and security protocol, and the socket it accepts on.
pub struct KafkaListener {
    pub info: ListenerInfo,
    pub acceptor: Box<dyn Acceptor>,
}

/// Accepts connections on one PLAINTEXT listener until `shutdown` is cancelled; see
/// [`serve_listeners`].
pub async fn serve(
    listener: Box<dyn Acceptor>,
    apis: Arc<KafkaApis>,
    metrics: Arc<ServerMetrics>,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    let listener = KafkaListener {
        info: ListenerInfo::plaintext(),
        acceptor: listener,
    };
    serve_listeners(vec![listener], apis, metrics, limits, shutdown).await
}

/// Accepts connections on every listener until `shutdown` is cancelled, then waits for open
/// connections to finish the requests they have in flight. `max.connections` bounds the
/// connections of all listeners together. Acceptors come from the [`Network`] seam
/// (`crate::net::tokio_acceptor` for a real socket), so a cluster can also run under a
/// simulated network.
///
/// [`Network`]: crate::net::Network
pub async fn serve_listeners(
    listeners: Vec<KafkaListener>,
    apis: Arc<KafkaApis>,
    metrics: Arc<ServerMetrics>,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    metrics
        .build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION"), crate::protocol::KAFKA_RELEASE])
        .set(1);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = TaskTracker::new();
    let mut accept_loops = tokio::task::JoinSet::new();
    for listener in listeners {
        accept_loops.spawn(accept_loop(
            listener,
            apis.clone(),
            metrics.clone(),
            limits,
            permits.clone(),
            tracker.clone(),
            shutdown.clone(),
        ));
    }
    while accept_loops.join_next().await.is_some() {}
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(30), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 30 s of shutdown; closing them");
    }
}

async fn accept_loop(
    mut listener: KafkaListener,
    apis: Arc<KafkaApis>,
    metrics: Arc<ServerMetrics>,
    limits: ServerLimits,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let info = listener.info.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.acceptor.accept_split() => a,
            () = shutdown.cancelled() => break,
        };
        let (reader, writer, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!(listener = %info.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.connections_rejected.inc();
            tracing::warn!(%peer, max = limits.max_connections, "max.connections reached; closing new connection");
            drop((reader, writer));
            continue;
        };
        let (apis, metrics) = (apis.clone(), metrics.clone());
        let shutdown = shutdown.clone();
        let session = connection::Session {
            peer,
            listener: info.clone(),
            principal: KafkaPrincipal::anonymous(),
        };
        metrics.connections_accepted.inc();
        metrics.connections.inc();
        tracker.spawn(async move {
            connection::run(
                reader,
                writer,
                session,
                apis,
                metrics.clone(),
                limits,
                shutdown,
            )
            .await;
            metrics.connections.dec();
            drop(permit);
        });
    }
}
