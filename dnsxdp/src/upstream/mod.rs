//! The upstream servers: transports (UDP, TCP, TLS, HTTPS, QUIC), health, and the pool that
//! picks among them.

pub mod check;
mod fall_log;
pub mod health;
mod https;
mod idle;
pub mod pool;
pub mod question;
mod quic;
pub mod rebind;
pub mod routes;
pub mod settings;
pub mod spec;
pub mod strategy;
mod stream;
#[cfg(test)]
mod tests;
pub mod tls;
mod udp;

use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use hickory_proto::op::{Message, ResponseCode};
use rustls::pki_types::ServerName;
use tokio::{
    net::TcpStream,
    sync::Mutex,
    time::{Instant, timeout},
};
use tokio_rustls::TlsConnector;

use self::{
    health::{Change, Health, Outcome},
    https::H2Conn,
    question::Question,
    quic::QuicConn,
    spec::{Protocol, UpstreamSpec},
    stream::StreamConn,
    tls::Connectors,
};

/// How long a TCP, TLS, HTTPS or QUIC connection stays open without queries.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// One upstream server.
struct Upstream {
    spec: UpstreamSpec,
    name: String,
    link: Link,
    health: Health,
}

/// How queries reach the server.
enum Link {
    /// UDP, and TCP for replies too large for it.
    Udp(udp::Sockets, Streams),
    Stream(Streams),
    Https(Https),
    Quic(Quic),
}

/// Why one query to one upstream failed: the pool counts each kind apart and retries on it.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("timed out")]
    TimedOut,
    #[error("{0}")]
    Error(io::Error),
    #[error("answered {0}")]
    Rcode(ResponseCode),
}

impl Upstream {
    /// `connectors` are needed for tls:// and https:// upstreams.
    fn new(spec: UpstreamSpec, connectors: Option<&Connectors>) -> Upstream {
        let streams = |tls: Option<TlsConnector>| Streams {
            addr: spec.addr,
            tls: tls.map(|connector| (connector, spec.server_name())),
            conn: Slot::default(),
        };
        let tls = || connectors.expect("TLS connectors for a TLS upstream");
        let link = match spec.protocol {
            Protocol::Udp => Link::Udp(udp::Sockets::new(spec.addr), streams(None)),
            Protocol::Tcp => Link::Stream(streams(None)),
            Protocol::Tls => Link::Stream(streams(Some(tls().dot.clone()))),
            Protocol::Https => Link::Https(Https {
                spec: spec.clone(),
                uri: format!("https://{}{}", spec.authority, spec.path)
                    .parse()
                    .expect("authority and path were checked when parsed"),
                connector: tls().doh.clone(),
                conn: Slot::default(),
            }),
            Protocol::Quic => Link::Quic(Quic {
                spec: spec.clone(),
                config: quic::client_config(&tls().config, IDLE_TIMEOUT),
                conn: Slot::default(),
            }),
        };
        Upstream {
            name: spec.to_string(),
            spec,
            link,
            health: Health::default(),
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// Asks `q` and waits up to `limit` for a usable reply (not SERVFAIL or REFUSED), then
    /// counts the outcome; returns whether that took the upstream down or brought it back.
    async fn query(
        &self,
        q: &Question<'_>,
        limit: Duration,
        max_fails: u32,
    ) -> (Result<Message, Failure>, Change) {
        let start = Instant::now();
        let result = match timeout(limit, self.exchange(q)).await {
            Err(_) => Err(Failure::TimedOut),
            Ok(Err(e)) => Err(Failure::Error(e)),
            Ok(Ok(reply))
                if matches!(
                    reply.response_code(),
                    ResponseCode::ServFail | ResponseCode::Refused
                ) =>
            {
                Err(Failure::Rcode(reply.response_code()))
            }
            Ok(Ok(reply)) => Ok(reply),
        };
        let outcome = match &result {
            Ok(_) => Outcome::Answered(start.elapsed()),
            Err(Failure::Rcode(_)) => Outcome::Unusable(start.elapsed()),
            Err(Failure::TimedOut) => Outcome::TimedOut(limit),
            Err(Failure::Error(_)) => Outcome::Failed,
        };
        (result, self.health.record(outcome, max_fails))
    }

    /// One exchange; the reply matches the query but may carry any RCODE.
    async fn exchange(&self, q: &Question<'_>) -> io::Result<Message> {
        match &self.link {
            // The stream and HTTPS exchanges are boxed: their futures are large, and every
            // query's future would otherwise be as large and be copied as often.
            Link::Udp(sockets, tcp) => {
                let reply = sockets.exchange(q).await?;
                if reply.truncated() {
                    return Box::pin(tcp.exchange(q)).await;
                }
                Ok(reply)
            }
            Link::Stream(streams) => Box::pin(streams.exchange(q)).await,
            Link::Https(https) => Box::pin(https.exchange(q)).await,
            Link::Quic(quic) => Box::pin(quic.exchange(q)).await,
        }
    }
}

fn mismatch() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the reply does not match the query",
    )
}

/// A connection kept for reuse.
trait Reusable {
    fn is_closed(&self) -> bool;
}

impl Reusable for StreamConn {
    fn is_closed(&self) -> bool {
        StreamConn::is_closed(self)
    }
}

impl Reusable for H2Conn {
    fn is_closed(&self) -> bool {
        H2Conn::is_closed(self)
    }
}

impl Reusable for QuicConn {
    fn is_closed(&self) -> bool {
        QuicConn::is_closed(self)
    }
}

/// The connection to one upstream, made when first needed and again after it closes.
struct Slot<C>(Mutex<Option<Arc<C>>>);

impl<C> Default for Slot<C> {
    fn default() -> Self {
        Slot(Mutex::new(None))
    }
}

impl<C: Reusable> Slot<C> {
    /// The open connection and `true`, or a new one from `connect` and `false`. Queries
    /// arriving while it connects wait for that connection rather than making their own.
    async fn get(
        &self,
        connect: impl Future<Output = io::Result<C>>,
    ) -> io::Result<(Arc<C>, bool)> {
        let mut slot = self.0.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok((conn.clone(), true));
        }
        let conn = Arc::new(connect.await?);
        *slot = Some(conn.clone());
        Ok((conn, false))
    }

    /// `exchange` on the connection; when a reused one turns out closed (the server may close
    /// idle connections at any time), once more on a new one.
    async fn with<F, G, T>(
        &self,
        connect: impl Fn() -> F,
        exchange: impl Fn(Arc<C>) -> G,
    ) -> io::Result<T>
    where
        F: Future<Output = io::Result<C>>,
        G: Future<Output = io::Result<T>>,
    {
        let (conn, reused) = self.get(connect()).await?;
        match exchange(conn).await {
            Err(e) if reused && e.kind() == io::ErrorKind::ConnectionAborted => {
                let (conn, _) = self.get(connect()).await?;
                exchange(conn).await
            }
            result => result,
        }
    }
}

async fn tcp_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// DNS over TCP, or over TLS when `tls` is set.
struct Streams {
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    conn: Slot<StreamConn>,
}

impl Streams {
    async fn connect(&self) -> io::Result<StreamConn> {
        let tcp = tcp_connect(self.addr).await?;
        Ok(match &self.tls {
            None => StreamConn::start(tcp, IDLE_TIMEOUT),
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), tcp).await?;
                StreamConn::start(tls, IDLE_TIMEOUT)
            }
        })
    }

    async fn exchange(&self, q: &Question<'_>) -> io::Result<Message> {
        let wire = q.wire(0);
        let (id, reply) = self
            .conn
            .with(
                || self.connect(),
                |conn| {
                    let wire = wire.clone();
                    async move { conn.exchange(wire).await }
                },
            )
            .await?;
        check::accept(&reply, id, q.query).ok_or_else(mismatch)
    }
}

struct Https {
    spec: UpstreamSpec,
    uri: http::Uri,
    connector: TlsConnector,
    conn: Slot<H2Conn>,
}

impl Https {
    async fn connect(&self) -> io::Result<H2Conn> {
        let tcp = tcp_connect(self.spec.addr).await?;
        let tls = self.connector.connect(self.spec.server_name(), tcp).await?;
        H2Conn::start(tls, self.uri.clone(), self.spec.get, IDLE_TIMEOUT).await
    }

    /// With ID 0, as RFC 8484 asks so that equal queries are equal HTTP requests.
    async fn exchange(&self, q: &Question<'_>) -> io::Result<Message> {
        let ask = |conn: Arc<H2Conn>, wire| async move { conn.exchange(wire).await };
        with_id_0(&self.conn, || self.connect(), ask, q).await
    }
}

struct Quic {
    spec: UpstreamSpec,
    /// An error if QUIC's TLS settings could not be made; every query then fails with it.
    config: io::Result<quinn::ClientConfig>,
    conn: Slot<QuicConn>,
}

impl Quic {
    async fn connect(&self) -> io::Result<QuicConn> {
        let config = self
            .config
            .as_ref()
            .map_err(|e| io::Error::other(e.to_string()))?;
        let name = match &self.spec.tls_name {
            Some(name) => name.clone(),
            None => self.spec.addr.ip().to_string(),
        };
        QuicConn::start(self.spec.addr, &name, config.clone()).await
    }

    /// With ID 0, as RFC 9250 §4.2.1 asks.
    async fn exchange(&self, q: &Question<'_>) -> io::Result<Message> {
        let ask = |conn: Arc<QuicConn>, wire| async move { conn.exchange(wire).await };
        with_id_0(&self.conn, || self.connect(), ask, q).await
    }
}

/// `q` asked with ID 0 by `ask` on the connection `slot` keeps, which `connect` makes: for
/// the transports whose queries all carry ID 0 and whose replies are matched by their stream.
async fn with_id_0<C, F, G>(
    slot: &Slot<C>,
    connect: impl Fn() -> F,
    ask: impl Fn(Arc<C>, Vec<u8>) -> G,
    q: &Question<'_>,
) -> io::Result<Message>
where
    C: Reusable,
    F: Future<Output = io::Result<C>>,
    G: Future<Output = io::Result<Vec<u8>>>,
{
    let wire = q.wire(0);
    let reply = slot.with(connect, |conn| ask(conn, wire.clone())).await?;
    check::accept(&reply, 0, q.query).ok_or_else(mismatch)
}
