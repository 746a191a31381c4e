//! DNS over TCP, and over TLS (RFC 7858): length-prefixed messages, several per connection,
//! answered as they complete (RFC 7766 allows out-of-order replies).
//!
//! A connection is checked against the ACL when it is accepted, before any TLS handshake,
//! counted against the limits (`slots`), and closed when it has been quiet for the idle
//! timeout: no complete query arriving, or a reply that cannot be written because the client
//! does not read. A TLS handshake has a timeout of its own.

mod slots;

use std::{net::SocketAddr, sync::Arc};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
    task::JoinSet,
    time::{Instant, sleep_until, timeout},
};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

pub use self::slots::{Activity, Slots, TcpLimits};
use super::{
    https::{self, HttpsSettings},
    pipeline::{Admitted, Dropped, Pipeline},
    proxied::read_header,
    stream_options::{self, Asked},
};
use crate::{access::Via, dns::reply::Transport};

/// What a TLS listener adds to TCP.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    /// The longest a handshake may take.
    pub handshake_timeout: std::time::Duration,
}

/// What a stream listener speaks.
#[derive(Clone)]
pub enum Protocol {
    Tcp,
    /// DNS over TLS.
    Tls(Tls),
    /// DNS over HTTPS.
    Https(Tls, Arc<HttpsSettings>),
}

/// Queries of one connection being answered at once; beyond that, reading waits.
const MAX_PIPELINED: usize = 64;
/// A length prefix and the largest message it can announce.
const MAX_FRAME: usize = 2 + u16::MAX as usize;

/// Serves `listener` in `protocol`.
pub async fn serve(
    listener: TcpListener,
    pipeline: Pipeline,
    limits: TcpLimits,
    protocol: Protocol,
) {
    let slots = Arc::new(Slots::new(limits));
    for id in 0u64.. {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!("TCP accept failed: {e}");
                continue;
            }
        };
        // A client that may not ask gets no connection to hold: closed at once. One behind a
        // proxy is known once the proxy has said who it is, in a PROXY header (DNS over HTTPS
        // names it in each request instead).
        let https = matches!(protocol, Protocol::Https(..));
        let proxied = !https && pipeline.proxies.trusts(peer.ip());
        if !proxied && !pipeline.access.admit_connection(peer.ip()) {
            continue;
        }
        // Replies are written whole: waiting for the client's ACK of the last one (Nagle)
        // would stall the next, HTTP/2's frames above all.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, "TCP_NODELAY: {e}");
        }
        let activity = slots.activity();
        let task = tokio::spawn({
            let (pipeline, slots, activity) = (pipeline.clone(), slots.clone(), activity.clone());
            let protocol = protocol.clone();
            async move {
                let _slot = Release(slots.clone(), id);
                let limits = slots.limits();
                let mut stream = stream;
                let peer = match proxied {
                    true => match timeout(limits.idle_timeout, read_header(&mut stream)).await {
                        Ok(Ok(client)) => client.unwrap_or(peer),
                        Ok(Err(e)) => return debug!(%peer, "from a trusted proxy: {e}"),
                        Err(_) => return debug!(%peer, "no PROXY header in time"),
                    },
                    false => peer,
                };
                if proxied && !pipeline.access.admit_connection(peer.ip()) {
                    return debug!(%peer, "denied behind a proxy");
                }
                let (tls, https) = match protocol {
                    Protocol::Tcp => {
                        connection(stream, peer, &pipeline, &activity, limits, Transport::Tcp)
                            .await;
                        debug!(%peer, "TCP connection closed");
                        return;
                    }
                    Protocol::Tls(tls) => (tls, None),
                    Protocol::Https(tls, settings) => (tls, Some(settings)),
                };
                let stream = match timeout(tls.handshake_timeout, tls.acceptor.accept(stream)).await
                {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => return debug!(%peer, "TLS handshake failed: {e}"),
                    Err(_) => return debug!(%peer, "TLS handshake timed out"),
                };
                activity.touch();
                let idle = limits.idle_timeout;
                match https {
                    Some(settings) => {
                        https::connection(stream, peer, &pipeline, &activity, idle, &settings).await
                    }
                    None => {
                        connection(stream, peer, &pipeline, &activity, limits, Transport::Tls).await
                    }
                }
                debug!(%peer, "TLS connection closed");
            }
        });
        let closed = slots.admit(id, peer.ip(), activity, task.abort_handle());
        if closed > 0 {
            debug!(%peer, closed, "TCP connections closed to make room");
        }
    }
}

/// Gives a connection's place back when its task ends, aborted or not.
pub struct Release(pub Arc<Slots>, pub u64);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

/// Answers the queries of one connection over `transport`: TCP, or TLS once the handshake is
/// done.
async fn connection<S: AsyncRead + AsyncWrite + Send + Unpin>(
    stream: S,
    peer: SocketAddr,
    pipeline: &Pipeline,
    activity: &Activity,
    limits: TcpLimits,
    transport: Transport,
) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    // Keepalive is said over both; padding is for encrypted replies.
    let pads = transport == Transport::Tls;
    let mut received = Vec::with_capacity(512);
    let mut answering = JoinSet::new();
    // Replies made at once (cache hits), to write before waiting again.
    let mut ready = Vec::new();
    let mut quiet_since = Instant::now();
    let mut closed = false;
    loop {
        while let Some(packet) = take_message(&mut received) {
            quiet_since = Instant::now();
            activity.touch();
            let asked = Asked::of(&packet);
            let keepalive = Some(limits.idle_timeout);
            match pipeline.admit(packet, peer, Via::Tcp, transport).await {
                Ok(Admitted::Now(reply)) => {
                    ready.push(stream_options::apply(reply, asked, keepalive, pads));
                }
                Ok(Admitted::Later(answer)) => {
                    answering.spawn(async move {
                        let reply = answer.await?;
                        Some(stream_options::apply(reply, asked, keepalive, pads))
                    });
                }
                // Denied since the connection was accepted: a reload.
                Err(Dropped { denied: true }) => return,
                Err(Dropped { denied: false }) => {}
            }
        }
        // Every reply ready goes out in one write: for TLS one record, and one system call.
        while let Some(done) = answering.try_join_next() {
            ready.extend(done.ok().flatten());
        }
        if !ready.is_empty() {
            if !write_replies(&mut writer, &ready, peer, activity, limits, transport).await {
                return;
            }
            ready.clear();
        }
        if closed && answering.is_empty() {
            return;
        }
        // Reading stops while a full pipeline is answered, and the buffer never holds more
        // than one message and what arrived with it.
        let read_more = !closed && answering.len() < MAX_PIPELINED && received.len() < MAX_FRAME;
        tokio::select! {
            read = reader.read_buf(&mut received), if read_more => {
                if !matches!(read, Ok(n) if n > 0) {
                    // Half-closed by the client: what it asked is still answered.
                    closed = true;
                }
            }
            Some(done) = answering.join_next() => ready.extend(done.ok().flatten()),
            _ = sleep_until(quiet_since + limits.idle_timeout), if answering.is_empty() => return,
        }
    }
}

/// Writes `replies`; false if the connection is to close. A client that does not read is not
/// waited for longer than an idle one.
async fn write_replies(
    writer: &mut (impl AsyncWrite + Unpin),
    replies: &[Vec<u8>],
    peer: SocketAddr,
    activity: &Activity,
    limits: TcpLimits,
    transport: Transport,
) -> bool {
    match timeout(limits.idle_timeout, write_messages(writer, replies)).await {
        Ok(Ok(())) => {
            activity.touch();
            true
        }
        Ok(Err(e)) => {
            debug!(%peer, ?transport, "reply failed: {e}");
            false
        }
        Err(_) => {
            debug!(%peer, ?transport, "client not reading: closed");
            false
        }
    }
}

/// The first complete message in `received`, taken out of it.
fn take_message(received: &mut Vec<u8>) -> Option<Vec<u8>> {
    let len = u16::from_be_bytes([*received.first()?, *received.get(1)?]) as usize;
    let message = received.get(2..2 + len)?.to_vec();
    received.drain(..2 + len);
    Some(message)
}

/// The replies, each with its length prefix, in one write.
async fn write_messages(
    writer: &mut (impl AsyncWrite + Unpin),
    replies: &[Vec<u8>],
) -> std::io::Result<()> {
    let mut frames = Vec::with_capacity(replies.iter().map(|r| 2 + r.len()).sum());
    for reply in replies {
        frames.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        frames.extend_from_slice(reply);
    }
    writer.write_all(&frames).await?;
    // TLS holds written bytes until flushed.
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_taken_whole_and_in_order() {
        let mut received = vec![0, 2, b'a', b'b', 0, 0, 0, 3, b'c'];
        assert_eq!(take_message(&mut received), Some(b"ab".to_vec()));
        assert_eq!(take_message(&mut received), Some(Vec::new()));
        assert_eq!(take_message(&mut received), None);
        assert_eq!(received, [0, 3, b'c']);
        let mut one = vec![0];
        assert_eq!(take_message(&mut one), None);
    }
}
