//! The DNS listeners: UDP and TCP on every listen address, and DNS over TLS and over HTTPS on
//! theirs.

pub mod certs;
mod coalesce;
mod datagrams;
pub mod https;
mod in_flight;
mod pipeline;
pub mod proxied;
mod quic;
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
    socket: Socket,
}

enum Socket {
    /// DNS over TLS or HTTPS.
    Tcp(std::net::TcpListener, Protocol),
    /// DNS over QUIC, and the longest its handshake may take.
    Quic(
        std::net::UdpSocket,
        quinn::ServerConfig,
        std::time::Duration,
    ),
}

/// Loads the certificate and binds the TLS, HTTPS and QUIC listeners of `config`; QUIC's
/// idle timeout is that of `limits`.
pub fn bind_encrypted(
    config: &Encrypted,
    limits: TcpLimits,
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
    let mut listeners = (config.tls.iter().map(|a| (a, &dot, "DNS over TLS")))
        .chain(config.https.iter().map(|a| (a, &doh, "DNS over HTTPS")))
        .map(|(addr, protocol, name)| {
            let tcp = socket::bind_tcp(addr).map_err(|e| bind_error(addr, name, e))?;
            Ok(BoundEncrypted {
                addr: *addr,
                socket: Socket::Tcp(tcp, protocol.clone()),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // RFC 9250 §4.1.1 names `doq`.
    let mut doq = certs.quic_config(&[b"doq"])?;
    doq.transport_config(quic::transport(limits, config.https_settings.max_streams));
    for addr in &config.quic {
        let udp =
            std::net::UdpSocket::bind(addr).map_err(|e| bind_error(addr, "DNS over QUIC", e))?;
        listeners.push(BoundEncrypted {
            addr: *addr,
            socket: Socket::Quic(udp, doq.clone(), config.handshake_timeout),
        });
    }
    Ok((certs, listeners))
}

impl BoundEncrypted {
    /// What it is, for the log.
    pub fn describe(&self) -> String {
        match self.socket {
            Socket::Tcp(_, Protocol::Https(..)) => format!("{} (DNS over HTTPS)", self.addr),
            Socket::Tcp(..) => format!("{} (DNS over TLS)", self.addr),
            Socket::Quic(..) => format!("{} (DNS over QUIC)", self.addr),
        }
    }

    /// Serves it through `pipeline` within `limits` until the task set is dropped.
    pub fn serve(
        self,
        pipeline: &Pipeline,
        limits: TcpLimits,
        tasks: &mut JoinSet<()>,
    ) -> io::Result<()> {
        match self.socket {
            Socket::Tcp(tcp, protocol) => {
                let listener = tokio::net::TcpListener::from_std(tcp)?;
                tasks.spawn(tcp::serve(listener, pipeline.clone(), limits, protocol));
            }
            Socket::Quic(udp, config, handshake_timeout) => {
                let runtime = Arc::new(quinn::TokioRuntime);
                let endpoint =
                    quinn::Endpoint::new(Default::default(), Some(config), udp, runtime)?;
                tasks.spawn(quic::serve(
                    endpoint,
                    pipeline.clone(),
                    limits,
                    handshake_timeout,
                ));
            }
        }
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
