//! The network seam: the Kafka listener, the controller's RPC and the replica fetchers connect
//! and listen through a [`Network`], so that a whole cluster can run under `turmoil`'s simulated
//! network in one thread, seeded and replayable (tests/sim.rs, tests/cluster_sim.rs), while
//! `strata serve` uses [`TokioNetwork`].

pub mod tls;

use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream to a peer.
pub trait Connection: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Connection for T {}

pub type BoxConnection = Box<dyn Connection>;
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// The read half of a connection, owned apart from its write half.
pub type BoxReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a connection, owned apart from its read half.
pub type BoxWriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// A bound listener.
pub trait Acceptor: Send {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxConnection, SocketAddr)>>;

    /// Accepts a connection as two halves, for a reader task beside a writer (the Kafka
    /// listener). The default splits with `tokio::io::split`, whose halves share a lock;
    /// [`TokioNetwork`] hands out a TCP stream's own halves, which share none.
    fn accept_split(
        &mut self,
    ) -> BoxFuture<'_, io::Result<(BoxReadHalf, BoxWriteHalf, SocketAddr)>> {
        Box::pin(async move {
            let (conn, peer) = self.accept().await?;
            let (r, w) = tokio::io::split(conn);
            Ok((
                Box::new(r) as BoxReadHalf,
                Box::new(w) as BoxWriteHalf,
                peer,
            ))
        })
    }
}

/// Connects and listens. Implementations: [`TokioNetwork`]; `turmoil::net` in tests.
pub trait Network: Send + Sync + Debug + 'static {
    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<BoxConnection>>;
    fn bind(&self, addr: String) -> BoxFuture<'static, io::Result<Box<dyn Acceptor>>>;
}

/// The real network.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioNetwork;

struct TokioAcceptor(tokio::net::TcpListener);

impl Acceptor for TokioAcceptor {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxConnection, SocketAddr)>> {
        Box::pin(async move {
            let (s, a) = self.0.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((Box::new(s) as BoxConnection, a))
        })
    }

    fn accept_split(
        &mut self,
    ) -> BoxFuture<'_, io::Result<(BoxReadHalf, BoxWriteHalf, SocketAddr)>> {
        Box::pin(async move {
            let (s, a) = self.0.accept().await?;
            let _ = s.set_nodelay(true);
            let (r, w) = s.into_split();
            Ok((Box::new(r) as BoxReadHalf, Box::new(w) as BoxWriteHalf, a))
        })
    }
}

impl Network for TokioNetwork {
    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<BoxConnection>> {
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(addr).await?;
            let _ = s.set_nodelay(true);
            Ok(Box::new(s) as BoxConnection)
        })
    }

    fn bind(&self, addr: String) -> BoxFuture<'static, io::Result<Box<dyn Acceptor>>> {
        Box::pin(async move {
            let l = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(TokioAcceptor(l)) as Box<dyn Acceptor>)
        })
    }
}

pub fn tokio_network() -> Arc<dyn Network> {
    Arc::new(TokioNetwork)
}

/// A listener already bound with tokio (to learn its port, or to fail fast on a port in use)
/// behind the seam, as [`TokioNetwork::bind`] would return it.
pub fn tokio_acceptor(listener: tokio::net::TcpListener) -> Box<dyn Acceptor> {
    Box::new(TokioAcceptor(listener))
}
