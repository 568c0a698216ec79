//! The network seam: the controller's RPC connects and listens through a [`Network`], so that a
//! whole cluster can run under `turmoil`'s simulated network in one thread, seeded and
//! replayable (tests/sim.rs), while `strata serve` uses [`TokioNetwork`].

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

/// A bound listener.
pub trait Acceptor: Send {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxConnection, SocketAddr)>>;
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
