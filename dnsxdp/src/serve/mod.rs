//! The DNS listeners: UDP and TCP on every listen address.

mod datagrams;
mod in_flight;
mod pipeline;
pub mod settings;
mod socket;
mod tcp;
mod udp;

use std::{io, net::SocketAddr};

use anyhow::anyhow;
use tokio::task::JoinSet;

pub use self::{in_flight::InFlight, pipeline::Pipeline, tcp::TcpLimits};

/// The sockets of one listen address.
pub struct Bound {
    addr: SocketAddr,
    /// One per worker.
    udp: Vec<std::net::UdpSocket>,
    tcp: std::net::TcpListener,
}

/// Binds TCP and `workers` UDP sockets on each address, failing with a message that says what
/// to do.
pub fn bind(addrs: &[SocketAddr], workers: usize) -> anyhow::Result<Vec<Bound>> {
    addrs
        .iter()
        .map(|addr| {
            let udp = socket::bind_udp(addr, workers).map_err(|e| bind_error(addr, "UDP", e))?;
            let tcp = socket::bind_tcp(addr).map_err(|e| bind_error(addr, "TCP", e))?;
            Ok(Bound {
                addr: *addr,
                udp,
                tcp,
            })
        })
        .collect()
}

fn bind_error(addr: &SocketAddr, proto: &str, e: io::Error) -> anyhow::Error {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            anyhow!("{addr} ({proto}) is in use — is another DNS server running?")
        }
        io::ErrorKind::PermissionDenied => {
            anyhow!(
                "cannot listen on {addr} ({proto}): permission denied (ports below 1024 need root)"
            )
        }
        io::ErrorKind::AddrNotAvailable => {
            anyhow!("cannot listen on {addr} ({proto}): not an address of this host")
        }
        _ => anyhow!("cannot listen on {addr} ({proto}): {e}"),
    }
}

impl Bound {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves the sockets through `pipeline` until the task set is dropped, TCP within `tcp`.
    pub fn serve(
        self,
        pipeline: &Pipeline,
        tcp: TcpLimits,
        tasks: &mut JoinSet<()>,
    ) -> io::Result<()> {
        for (i, udp) in self.udp.into_iter().enumerate() {
            let udp = tokio::net::UdpSocket::from_std(udp)?;
            tasks.spawn(udp::serve(udp, pipeline.clone(), i == 0));
        }
        let listener = tokio::net::TcpListener::from_std(self.tcp)?;
        tasks.spawn(tcp::serve(listener, pipeline.clone(), tcp));
        Ok(())
    }
}
