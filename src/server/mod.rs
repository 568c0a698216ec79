//! The Kafka listener: one task per connection, size-prefixed frames, requests handled in order
//! and answered in order.
//!
//! Bounds: `max.connections` (a semaphore), `socket.request.max.bytes` (checked before any
//! allocation), `queued.max.requests` in flight per connection (reading pauses at the bound),
//! `connections.max.idle.ms`.

mod connection;
pub mod connection_quotas;
mod frame;
mod metrics;
mod sasl;

pub use metrics::ServerMetrics;
pub use sasl::{ListenerSasl, OAuthBearer};

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{KafkaListenerConfig, NodeConfig};
pub use crate::config::{ListenerInfo, SecurityProtocol};
use crate::handlers::{KafkaApis, KafkaPrincipal};
use crate::net::tls::{PrincipalMapper, TlsError, TlsServer};
use crate::net::{Acceptor, BoxConnection, BoxReadHalf, BoxWriteHalf};
use connection_quotas::{CreationRate, PerIpLimits, SharedCreationRate};

#[derive(Debug, Clone)]
pub struct ServerLimits {
    pub max_request_bytes: usize,
    pub max_in_flight: usize,
    pub idle_timeout: Duration,
    /// Connections of all listeners together.
    pub max_connections: usize,
    /// `max.connections.per.ip` and its overrides, across listeners.
    pub per_ip: Arc<PerIpLimits>,
    /// `max.connection.creation.rate`, across listeners.
    pub connection_creation_rate: i64,
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
            per_ip: Arc::new(PerIpLimits::from_config(node).unwrap_or_else(|e| {
                // The format was checked at load; only a host name that does not resolve
                // gets here, and the broker should still start.
                tracing::warn!(error = %e, "ignoring max.connections.per.ip.overrides");
                PerIpLimits::new(
                    node.get_i32("max.connections.per.ip").max(0) as usize,
                    Default::default(),
                )
            })),
            connection_creation_rate: node.get_i64("max.connection.creation.rate"),
        }
    }
}

/// One bound client listener: its name and security protocol, the socket it accepts on, and
/// its TLS when the protocol runs over TLS.
pub struct KafkaListener {
    pub info: ListenerInfo,
    pub acceptor: Box<dyn Acceptor>,
    pub tls: Option<ListenerTls>,
    /// `listener.name.<name>.max.connections`, when set.
    pub max_connections: Option<usize>,
    /// `listener.name.<name>.max.connection.creation.rate`, when set.
    pub connection_creation_rate: Option<i64>,
    /// SASL_PLAINTEXT and SASL_SSL: the mechanisms and settings (see [`KafkaListener::with_sasl`]).
    pub sasl: Option<Arc<ListenerSasl>>,
}

/// A TLS listener's server side and how its client certificates become principals.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub server: Arc<TlsServer>,
    pub principal_mapper: Arc<PrincipalMapper>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("listener {listener}: {source}")]
    Tls {
        listener: String,
        #[source]
        source: TlsError,
    },
    #[error("listener {listener}: {source}")]
    Jwks {
        listener: String,
        #[source]
        source: crate::sasl::oauthbearer::JwksError,
    },
}

impl KafkaListener {
    /// The listener `config` describes, accepting on `acceptor`; loads its TLS material now, so
    /// a missing or bad file stops the start with the file's name.
    pub fn new(
        node: &NodeConfig,
        config: &KafkaListenerConfig,
        acceptor: Box<dyn Acceptor>,
    ) -> Result<KafkaListener, ServerError> {
        let name = &config.info.name;
        let tls = if config.info.security_protocol.uses_tls() {
            let server =
                TlsServer::new(node.tls_settings(name)).map_err(|source| ServerError::Tls {
                    listener: name.clone(),
                    source,
                })?;
            Some(ListenerTls {
                server: Arc::new(server),
                principal_mapper: Arc::new(node.principal_mapper(name)?),
            })
        } else {
            None
        };
        let own = |key: &str| node.listener_override(name, key);
        Ok(KafkaListener {
            info: config.info.clone(),
            acceptor,
            tls,
            max_connections: own("max.connections")
                .and_then(|v| v.parse::<i64>().ok())
                .map(|n| n.max(1) as usize),
            connection_creation_rate: own("max.connection.creation.rate")
                .and_then(|v| v.parse().ok()),
            sasl: None,
        })
    }

    /// Loads the SASL settings of a SASL_PLAINTEXT or SASL_SSL listener (its OAUTHBEARER key
    /// set among them); other listeners are returned as they are.
    pub async fn with_sasl(mut self, node: &NodeConfig) -> Result<KafkaListener, ServerError> {
        if self.info.security_protocol.uses_sasl() {
            self.sasl = Some(Arc::new(
                ListenerSasl::from_config(node, &self.info.name).await?,
            ));
        }
        Ok(self)
    }
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
        tls: None,
        max_connections: None,
        connection_creation_rate: None,
        sasl: None,
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
    let shared = SharedLimits {
        permits: Arc::new(Semaphore::new(limits.max_connections)),
        creation_rate: Arc::new(std::sync::Mutex::new(CreationRate::new(
            limits.connection_creation_rate,
        ))),
    };
    let tracker = TaskTracker::new();
    let mut accept_loops = tokio::task::JoinSet::new();
    for listener in listeners {
        metrics.init_listener(&listener.info.name);
        accept_loops.spawn(accept_loop(
            listener,
            apis.clone(),
            metrics.clone(),
            limits.clone(),
            shared.clone(),
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

/// The broker-wide connection bounds every listener's accept loop shares.
#[derive(Clone)]
struct SharedLimits {
    /// `max.connections`.
    permits: Arc<Semaphore>,
    /// `max.connection.creation.rate`.
    creation_rate: SharedCreationRate,
}

async fn accept_loop(
    mut listener: KafkaListener,
    apis: Arc<KafkaApis>,
    metrics: Arc<ServerMetrics>,
    limits: ServerLimits,
    shared: SharedLimits,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let SharedLimits {
        permits,
        creation_rate: broker_rate,
    } = shared;
    let info = listener.info.clone();
    let listener_permits = listener
        .max_connections
        .map(|n| Arc::new(Semaphore::new(n)));
    let mut listener_rate = listener
        .connection_creation_rate
        .and_then(CreationRate::new);
    if info.security_protocol.uses_sasl() && listener.sasl.is_none() {
        // Serving it without its SASL settings would let every client in unauthenticated.
        tracing::error!(listener = %info.name, "SASL listener started without its SASL settings (KafkaListener::with_sasl); not serving it");
        return;
    }
    loop {
        let accepted = match &listener.tls {
            None => tokio::select! {
                a = listener.acceptor.accept_split() => a.map(|(r, w, peer)| (Accepted::Split(r, w), peer)),
                () = shutdown.cancelled() => break,
            },
            // TLS needs the whole stream; it is split after the handshake.
            Some(_) => tokio::select! {
                a = listener.acceptor.accept() => a.map(|(c, peer)| (Accepted::Whole(c), peer)),
                () = shutdown.cancelled() => break,
            },
        };
        let (conn, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!(listener = %info.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Kafka's acceptor stops accepting while a creation rate is exceeded; waiting here
        // holds this listener's later connections in the kernel's backlog meanwhile.
        let now = tokio::time::Instant::now();
        let wait = {
            let mut broker = broker_rate.lock().unwrap_or_else(|e| e.into_inner());
            let b = broker.as_mut().map_or(Duration::ZERO, |r| r.admit(now));
            b.max(
                listener_rate
                    .as_mut()
                    .map_or(Duration::ZERO, |r| r.admit(now)),
            )
        };
        if !wait.is_zero() {
            metrics.connections_throttled.inc();
            tokio::select! {
                () = tokio::time::sleep(wait) => {},
                () = shutdown.cancelled() => break,
            }
        }
        let Ok(ip_slot) = limits.per_ip.try_open(peer.ip()) else {
            metrics.connections_rejected_per_ip.inc();
            tracing::warn!(%peer, max = limits.per_ip.limit(peer.ip()), "max.connections.per.ip reached; closing new connection");
            drop(conn);
            continue;
        };
        let listener_permit = match &listener_permits {
            None => None,
            Some(p) => match p.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    metrics.connections_rejected.inc();
                    tracing::warn!(%peer, listener = %info.name, "the listener's max.connections reached; closing new connection");
                    drop(conn);
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.connections_rejected.inc();
            tracing::warn!(%peer, max = limits.max_connections, "max.connections reached; closing new connection");
            drop(conn);
            continue;
        };
        let limits = limits.clone();
        let (apis, metrics) = (apis.clone(), metrics.clone());
        let shutdown = shutdown.clone();
        let (info, tls, sasl) = (info.clone(), listener.tls.clone(), listener.sasl.clone());
        metrics.connections_accepted.inc();
        metrics.connections.inc();
        tracker.spawn(async move {
            let secured = match (tls, conn) {
                (None, conn) => Some((conn.split(), KafkaPrincipal::anonymous())),
                (Some(tls), Accepted::Whole(conn)) => {
                    handshake(conn, &tls, &info, peer, &metrics).await
                }
                (Some(_), Accepted::Split(..)) => None,
            };
            if let Some(((reader, writer), principal)) = secured {
                let session = connection::Session {
                    peer,
                    listener: info,
                    principal,
                    sasl: sasl.map(sasl::SaslConnection::new),
                    closing: false,
                };
                connection::run(
                    reader,
                    writer,
                    session,
                    apis,
                    metrics.clone(),
                    &limits,
                    shutdown,
                )
                .await;
            }
            metrics.connections.dec();
            drop((permit, listener_permit, ip_slot));
        });
    }
}

/// An accepted connection, as the acceptor gave it.
enum Accepted {
    Split(BoxReadHalf, BoxWriteHalf),
    Whole(BoxConnection),
}

impl Accepted {
    fn split(self) -> (BoxReadHalf, BoxWriteHalf) {
        match self {
            Accepted::Split(r, w) => (r, w),
            Accepted::Whole(c) => split(c),
        }
    }
}

fn split<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static>(
    stream: S,
) -> (BoxReadHalf, BoxWriteHalf) {
    let (r, w) = tokio::io::split(stream);
    (Box::new(r), Box::new(w))
}

/// The TLS handshake of one connection, and the principal its client certificate maps to
/// (`User:ANONYMOUS` without one). A failure is one log line and a count, and closes only
/// this connection.
async fn handshake(
    conn: BoxConnection,
    tls: &ListenerTls,
    info: &ListenerInfo,
    peer: std::net::SocketAddr,
    metrics: &ServerMetrics,
) -> Option<((BoxReadHalf, BoxWriteHalf), KafkaPrincipal)> {
    let fail = |reason: &str, error: &dyn std::fmt::Display| {
        metrics
            .tls_handshake_failures
            .with_label_values(&[info.name.as_str(), reason])
            .inc();
        // A client that closes before finishing the handshake (a port probe, a peer that gave
        // up) is routine; anything else is worth the operator's attention.
        if reason == "eof" {
            tracing::debug!(%peer, listener = %info.name, %error, "client closed during the TLS handshake");
        } else {
            tracing::warn!(%peer, listener = %info.name, %error, "TLS handshake failed; closing the connection");
        }
    };
    let (stream, subject) = match tls.server.accept(conn).await {
        Ok(s) => s,
        Err(e) => {
            fail(e.reason(), &e);
            return None;
        }
    };
    let principal = match subject {
        None => KafkaPrincipal::anonymous(),
        Some(dn) => match tls.principal_mapper.map(&dn) {
            Ok(name) => KafkaPrincipal {
                principal_type: "User".into(),
                name,
            },
            Err(e) => {
                fail("principal_mapping", &e);
                return None;
            }
        },
    };
    tracing::debug!(%peer, listener = %info.name, %principal, "TLS connection authenticated");
    Some((split(stream), principal))
}
