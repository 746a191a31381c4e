//! The DNS listeners: UDP and TCP on every listen address, and DNS over TLS and over HTTPS on
//! theirs.

pub mod certs;
mod datagrams;
pub mod https;
mod in_flight;
mod pipeline;
pub mod proxied;
pub mod settings;
mod socket;
mod stream_options;
mod tcp;
mod udp;

use std::{io, net::SocketAddr, sync::Arc};

use anyhow::anyhow;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use self::{
    certs::Certificates,
    settings::Encrypted,
    tcp::{Protocol, Tls},
};
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

/// An encrypted listener's socket.
pub struct BoundEncrypted {
    addr: SocketAddr,
    tcp: std::net::TcpListener,
    protocol: Protocol,
}

/// Loads the certificate and binds the TLS and HTTPS listeners of `config`.
pub fn bind_encrypted(
    config: &Encrypted,
) -> anyhow::Result<(Arc<Certificates>, Vec<BoundEncrypted>)> {
    let certs = Certificates::load(&config.cert, &config.key)?;
    let tls = |alpn: &[&[u8]]| -> anyhow::Result<Tls> {
        Ok(Tls {
            acceptor: TlsAcceptor::from(certs.server_config(alpn)?),
            handshake_timeout: config.handshake_timeout,
        })
    };
    // RFC 7858 §3.2 names `dot`; DoH offers HTTP/2 first.
    let dot = Protocol::Tls(tls(&[b"dot"])?);
    let doh = Protocol::Https(
        tls(&[b"h2", b"http/1.1"])?,
        Arc::new(config.https_settings.clone()),
    );
    let listeners = (config.tls.iter().map(|a| (a, &dot, "DNS over TLS")))
        .chain(config.https.iter().map(|a| (a, &doh, "DNS over HTTPS")))
        .map(|(addr, protocol, name)| {
            let tcp = socket::bind_tcp(addr).map_err(|e| bind_error(addr, name, e))?;
            Ok(BoundEncrypted {
                addr: *addr,
                tcp,
                protocol: protocol.clone(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((certs, listeners))
}

impl BoundEncrypted {
    /// What it is, for the log.
    pub fn describe(&self) -> String {
        match self.protocol {
            Protocol::Https(..) => format!("{} (DNS over HTTPS)", self.addr),
            _ => format!("{} (DNS over TLS)", self.addr),
        }
    }

    /// Serves it through `pipeline` within `limits` until the task set is dropped.
    pub fn serve(
        self,
        pipeline: &Pipeline,
        limits: TcpLimits,
        tasks: &mut JoinSet<()>,
    ) -> io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(self.tcp)?;
        tasks.spawn(tcp::serve(
            listener,
            pipeline.clone(),
            limits,
            self.protocol,
        ));
        Ok(())
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
        tasks.spawn(tcp::serve(listener, pipeline.clone(), tcp, Protocol::Tcp));
        Ok(())
    }
}
