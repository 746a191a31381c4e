//! The DNS listeners: UDP and TCP on every listen address.

mod in_flight;
pub mod settings;
mod socket;
mod tcp;
mod udp;

use std::{io, net::SocketAddr, sync::Arc};

use anyhow::anyhow;
use tokio::task::JoinSet;

pub use self::{in_flight::InFlight, tcp::TcpLimits};
use crate::{access::Access, resolve::Resolver};

/// The sockets of one listen address.
pub struct Bound {
    addr: SocketAddr,
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
}

/// Binds UDP and TCP on each address, failing with a message that says what to do.
pub fn bind(addrs: &[SocketAddr]) -> anyhow::Result<Vec<Bound>> {
    addrs
        .iter()
        .map(|addr| {
            let udp = socket::bind_udp(addr).map_err(|e| bind_error(addr, "UDP", e))?;
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

    /// Serves both sockets to the clients `access` lets through until the task set is
    /// dropped, the queries being answered within `in_flight` and TCP within `tcp`.
    pub fn serve(
        self,
        resolver: Arc<Resolver>,
        access: Arc<Access>,
        in_flight: InFlight,
        tcp: TcpLimits,
        tasks: &mut JoinSet<()>,
    ) -> io::Result<()> {
        let udp = tokio::net::UdpSocket::from_std(self.udp)?;
        let listener = tokio::net::TcpListener::from_std(self.tcp)?;
        tasks.spawn(udp::serve(
            udp,
            resolver.clone(),
            access.clone(),
            in_flight.clone(),
        ));
        tasks.spawn(tcp::serve(listener, resolver, access, in_flight, tcp));
        Ok(())
    }
}
