//! Asking the upstream servers.
//!
//! Every UDP attempt uses a fresh random ID and a fresh socket on a kernel-chosen random port,
//! connected to the upstream; a reply is only accepted from that upstream with that ID and the
//! same question, so an off-path attacker has to guess both port and ID (RFC 5452).

use std::{net::SocketAddr, time::Duration};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
    time::{Instant, timeout, timeout_at},
};
use tracing::debug;

use crate::reply::EDNS_UDP_SIZE;

/// How long one attempt (one UDP or TCP exchange with one upstream) may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// The question and flags sent upstream.
pub struct Question<'a> {
    pub query: &'a Query,
    pub dnssec_ok: bool,
    pub checking_disabled: bool,
}

/// Asks each upstream in turn and returns the first usable response: not SERVFAIL or REFUSED,
/// and complete (retried over TCP when truncated). `None` when every upstream failed.
pub async fn resolve(upstreams: &[SocketAddr], q: &Question<'_>) -> Option<Message> {
    for &upstream in upstreams {
        match exchange(upstream, q).await {
            Ok(msg)
                if matches!(
                    msg.response_code(),
                    ResponseCode::ServFail | ResponseCode::Refused
                ) =>
            {
                debug!(%upstream, name = %q.query.name(), rcode = %msg.response_code(), "upstream failed");
            }
            Ok(msg) => return Some(msg),
            Err(e) => debug!(%upstream, name = %q.query.name(), "upstream failed: {e}"),
        }
    }
    None
}

/// One upstream: UDP, then TCP if the UDP reply is truncated.
async fn exchange(upstream: SocketAddr, q: &Question<'_>) -> std::io::Result<Message> {
    let reply = timeout(ATTEMPT_TIMEOUT, exchange_udp(upstream, q))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out over UDP"))??;
    if !reply.truncated() {
        return Ok(reply);
    }
    timeout(ATTEMPT_TIMEOUT, exchange_tcp(upstream, q))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out over TCP"))?
}

/// The query for `q` with a fresh random ID: RD, the client's CD, and an OPT record with our
/// UDP size and the client's DO bit.
fn build_query(q: &Question<'_>) -> (u16, Vec<u8>) {
    let id = rand::random::<u16>();
    let mut msg = Message::new();
    msg.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .set_checking_disabled(q.checking_disabled)
        .add_query(q.query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_UDP_SIZE)
        .set_dnssec_ok(q.dnssec_ok);
    msg.set_edns(edns);
    let wire = msg.to_vec().expect("a single question always encodes");
    (id, wire)
}

async fn exchange_udp(upstream: SocketAddr, q: &Question<'_>) -> std::io::Result<Message> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(upstream).await?;
    let (id, wire) = build_query(q);
    socket.send(&wire).await?;
    let mut buf = vec![0u8; u16::MAX as usize];
    loop {
        let (len, from) = socket.recv_from(&mut buf).await?;
        if let Some(reply) = accept(&buf[..len], from, upstream, id, q.query) {
            return Ok(reply);
        }
        debug!(%upstream, %from, "ignoring a reply that does not match the query");
    }
}

async fn exchange_tcp(upstream: SocketAddr, q: &Question<'_>) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(upstream).await?;
    let (id, wire) = build_query(q);
    let mut frame = Vec::with_capacity(2 + wire.len());
    frame.extend_from_slice(&(wire.len() as u16).to_be_bytes());
    frame.extend_from_slice(&wire);
    stream.write_all(&frame).await?;
    let deadline = Instant::now() + ATTEMPT_TIMEOUT;
    loop {
        let len = timeout_at(deadline, stream.read_u16()).await?? as usize;
        let mut buf = vec![0u8; len];
        timeout_at(deadline, stream.read_exact(&mut buf)).await??;
        if let Some(reply) = accept(&buf, upstream, upstream, id, q.query) {
            return Ok(reply);
        }
        debug!(%upstream, "ignoring a TCP reply that does not match the query");
    }
}

/// `bytes` parsed, if it is the response to our query `id` for `query` from `upstream`.
fn accept(
    bytes: &[u8],
    from: SocketAddr,
    upstream: SocketAddr,
    id: u16,
    query: &Query,
) -> Option<Message> {
    if from.ip() != upstream.ip() || from.port() != upstream.port() {
        return None;
    }
    let msg = Message::from_vec(bytes).ok()?;
    let same_question = match msg.queries() {
        // Name equality is case-insensitive.
        [answered] => {
            answered.name() == query.name()
                && answered.query_type() == query.query_type()
                && answered.query_class() == query.query_class()
        }
        _ => false,
    };
    (msg.message_type() == MessageType::Response && msg.id() == id && same_question).then_some(msg)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use hickory_proto::rr::{Name, RecordType};

    use super::*;

    fn query() -> Query {
        Query::query(Name::from_ascii("Www.T.").unwrap(), RecordType::A)
    }

    fn reply(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(id).set_message_type(MessageType::Response);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        m.to_vec().unwrap()
    }

    const UP: &str = "198.18.2.2:53";

    fn up() -> SocketAddr {
        UP.parse().unwrap()
    }

    #[test]
    fn accepts_the_matching_reply_in_any_case() {
        assert!(accept(&reply(7, "www.t.", RecordType::A), up(), up(), 7, &query()).is_some());
        assert!(accept(&reply(7, "WWW.T.", RecordType::A), up(), up(), 7, &query()).is_some());
    }

    #[test]
    fn rejects_wrong_id_question_or_source() {
        let q = query();
        assert!(accept(&reply(8, "www.t.", RecordType::A), up(), up(), 7, &q).is_none());
        assert!(accept(&reply(7, "www.u.", RecordType::A), up(), up(), 7, &q).is_none());
        assert!(accept(&reply(7, "www.t.", RecordType::AAAA), up(), up(), 7, &q).is_none());
        let other_port: SocketAddr = "198.18.2.2:5353".parse().unwrap();
        let other_host: SocketAddr = "198.18.2.3:53".parse().unwrap();
        assert!(accept(&reply(7, "www.t.", RecordType::A), other_port, up(), 7, &q).is_none());
        assert!(accept(&reply(7, "www.t.", RecordType::A), other_host, up(), 7, &q).is_none());
    }

    #[test]
    fn rejects_queries_and_garbage() {
        let mut m = Message::new();
        m.set_id(7).add_query(query());
        assert!(accept(&m.to_vec().unwrap(), up(), up(), 7, &query()).is_none());
        assert!(accept(&[0, 7, 0x80], up(), up(), 7, &query()).is_none());
    }

    #[test]
    fn query_carries_edns_and_client_bits() {
        let q = query();
        let (id, wire) = build_query(&Question {
            query: &q,
            dnssec_ok: true,
            checking_disabled: true,
        });
        let m = Message::from_vec(&wire).unwrap();
        assert_eq!(m.id(), id);
        assert!(m.recursion_desired() && m.checking_disabled());
        assert_eq!(m.queries()[0].name().to_ascii(), "Www.T.");
        let e = m.extensions().as_ref().unwrap();
        assert_eq!(e.max_payload(), EDNS_UDP_SIZE);
        assert!(e.flags().dnssec_ok);
    }

    /// A fake upstream on loopback sends a wrong-ID reply first; the right one still wins.
    #[tokio::test]
    async fn waits_past_a_mismatched_reply() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (len, from) = server.recv_from(&mut buf).await.unwrap();
            let msg = Message::from_vec(&buf[..len]).unwrap();
            let bad = reply(msg.id().wrapping_add(1), "www.t.", RecordType::A);
            server.send_to(&bad, from).await.unwrap();
            let good = reply(msg.id(), "www.t.", RecordType::A);
            server.send_to(&good, from).await.unwrap();
        });
        let q = query();
        let question = Question {
            query: &q,
            dnssec_ok: false,
            checking_disabled: false,
        };
        let got = resolve(&[addr], &question).await.unwrap();
        assert_eq!(got.queries()[0].name().to_ascii(), "www.t.");
    }

    /// Silence from the first upstream moves on to the second.
    #[tokio::test]
    async fn falls_through_to_the_next_upstream() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addrs = [silent.local_addr().unwrap(), server.local_addr().unwrap()];
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (len, from) = server.recv_from(&mut buf).await.unwrap();
            let msg = Message::from_vec(&buf[..len]).unwrap();
            server
                .send_to(&reply(msg.id(), "www.t.", RecordType::A), from)
                .await
                .unwrap();
        });
        let q = query();
        let question = Question {
            query: &q,
            dnssec_ok: false,
            checking_disabled: false,
        };
        assert!(resolve(&addrs, &question).await.is_some());
        drop(silent);
    }
}
