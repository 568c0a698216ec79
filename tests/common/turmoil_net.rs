//! The `strata::net::Network` seam over `turmoil`'s simulated TCP, for the simulations
//! (tests/sim.rs, tests/cluster_sim.rs). Included with `#[path]`, so that test binaries that do
//! not simulate need not compile it.

use std::io;
use std::net::SocketAddr;

use strata::net::{Acceptor, BoxConnection, BoxFuture, Network};

/// Connects to `host:port` by turmoil host name; binds `0.0.0.0` at the port of the address
/// given (a simulated host has one address).
#[derive(Debug)]
pub(crate) struct TurmoilNetwork;

struct TurmoilAcceptor(turmoil::net::TcpListener);

impl Acceptor for TurmoilAcceptor {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxConnection, SocketAddr)>> {
        Box::pin(async move {
            let (s, a) = self.0.accept().await?;
            Ok((Box::new(s) as BoxConnection, a))
        })
    }
}

impl Network for TurmoilNetwork {
    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<BoxConnection>> {
        Box::pin(async move {
            let s = turmoil::net::TcpStream::connect(addr).await?;
            Ok(Box::new(s) as BoxConnection)
        })
    }

    fn bind(&self, addr: String) -> BoxFuture<'static, io::Result<Box<dyn Acceptor>>> {
        Box::pin(async move {
            let port: u16 = addr
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("no port in {addr}"))
                })?;
            let l = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?;
            Ok(Box::new(TurmoilAcceptor(l)) as Box<dyn Acceptor>)
        })
    }
}
