//! Plain DNS over UDP.
//!
//! Every query has a fresh random ID and goes out on a socket with a kernel-chosen random port,
//! connected to the upstream; a reply is only accepted from that upstream with that ID and the
//! same question, so an off-path attacker has to guess both port and ID (RFC 5452).
//!
//! Making and closing a socket costs more system calls than the exchange itself, so a socket
//! that got its answer is kept for the next query, for at most `MAX_USES` queries and
//! `MAX_AGE`: its port changes often enough that learning one helps an attacker little. One
//! whose exchange failed or timed out is closed, late replies and all.

use std::{
    collections::VecDeque,
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Mutex,
    time::Duration,
};

use hickory_proto::op::Message;
use tokio::net::UdpSocket;
use tracing::debug;

use super::{check, question::Question};
use crate::dns::clock;

/// Queries one socket asks before it is closed.
const MAX_USES: u32 = 64;
/// How long one socket is kept.
const MAX_AGE: Duration = Duration::from_secs(10);
/// Idle sockets kept per upstream, for that many queries at once.
const MAX_IDLE: usize = 256;

/// The UDP sockets of one upstream not in use, the one used last at the back.
pub struct Sockets {
    upstream: SocketAddr,
    idle: Mutex<VecDeque<Pooled>>,
}

/// A socket connected to the upstream, with the buffer its replies are read into.
struct Pooled {
    socket: UdpSocket,
    buf: Box<[u8]>,
    uses: u32,
    /// CLOCK_MONOTONIC_COARSE when it was opened.
    opened_ns: u64,
}

impl Sockets {
    pub fn new(upstream: SocketAddr) -> Sockets {
        Sockets {
            upstream,
            idle: Mutex::new(VecDeque::new()),
        }
    }

    /// Asks `q` on an idle socket or a new one, and keeps the socket if it may ask again.
    pub async fn exchange(&self, q: &Question<'_>) -> io::Result<Message> {
        let mut pooled = match self.take() {
            Some(p) => p,
            None => self.open().await?,
        };
        let reply = pooled.exchange(self.upstream, q).await?;
        pooled.uses += 1;
        if pooled.may_ask_again() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            // The front is the socket idle longest: one too old goes with each return, so
            // that a quieter time closes what a busy one opened.
            if idle.front().is_some_and(|p| !p.may_ask_again()) {
                idle.pop_front();
            }
            if idle.len() < MAX_IDLE {
                idle.push_back(pooled);
            }
        }
        Ok(reply)
    }

    /// The idle socket used last, closing those too old to use on the way.
    fn take(&self) -> Option<Pooled> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(p) = idle.pop_back() {
            if p.may_ask_again() {
                return Some(p);
            }
        }
        None
    }

    async fn open(&self) -> io::Result<Pooled> {
        let bind: SocketAddr = match self.upstream {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(bind).await?;
        socket.connect(self.upstream).await?;
        Ok(Pooled {
            socket,
            buf: vec![0; usize::from(u16::MAX)].into(),
            uses: 0,
            opened_ns: clock::coarse_ns(),
        })
    }
}

impl Pooled {
    fn may_ask_again(&self) -> bool {
        let age = clock::coarse_ns().saturating_sub(self.opened_ns);
        self.uses < MAX_USES && age < MAX_AGE.as_nanos() as u64
    }

    async fn exchange(&mut self, upstream: SocketAddr, q: &Question<'_>) -> io::Result<Message> {
        let id = rand::random();
        self.socket.send(&q.wire(id)).await?;
        loop {
            let (len, from) = self.socket.recv_from(&mut self.buf).await?;
            // A connected socket only receives from the upstream; checked again all the same.
            // A late reply to an earlier query on this socket fails the ID or question check.
            let reply = (from == upstream)
                .then(|| check::accept(&self.buf[..len], id, q.query))
                .flatten();
            if let Some(reply) = reply {
                return Ok(reply);
            }
            debug!(%upstream, %from, "ignoring a reply that does not match the query");
        }
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::{
        op::{MessageType, Query},
        rr::{Name, RecordType},
    };

    use super::*;

    fn reply(id: u16, name: &str) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(id).set_message_type(MessageType::Response);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    /// A server on `server` answering every query, or none after `answered` of them; the
    /// source ports the queries came from are sent on the returned channel.
    fn answering(server: UdpSocket, answered: usize) -> tokio::sync::mpsc::UnboundedReceiver<u16> {
        let (ports, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            for n in 0.. {
                let (len, from) = server.recv_from(&mut buf).await.unwrap();
                ports.send(from.port()).unwrap();
                if n < answered {
                    let id = Message::from_vec(&buf[..len]).unwrap().id();
                    server.send_to(&reply(id, "www.t."), from).await.unwrap();
                }
            }
        });
        rx
    }

    fn question(q: &Query) -> Question<'_> {
        Question {
            query: q,
            dnssec_ok: false,
            checking_disabled: false,
        }
    }

    #[tokio::test]
    async fn a_socket_asks_a_few_queries_then_makes_way_for_a_new_port() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sockets = Sockets::new(server.local_addr().unwrap());
        let mut ports = answering(server, usize::MAX);
        let q = Query::query(Name::from_ascii("www.t.").unwrap(), RecordType::A);
        for _ in 0..=MAX_USES {
            sockets.exchange(&question(&q)).await.unwrap();
        }
        let mut seen = Vec::new();
        while let Ok(port) = ports.try_recv() {
            seen.push(port);
        }
        let first = seen[0];
        assert!(
            seen[..MAX_USES as usize].iter().all(|&p| p == first),
            "{seen:?}"
        );
        assert_ne!(seen[MAX_USES as usize], first, "{seen:?}");
    }

    #[tokio::test]
    async fn a_socket_whose_query_went_unanswered_is_closed() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sockets = Sockets::new(server.local_addr().unwrap());
        let mut ports = answering(server, 1);
        let q = Query::query(Name::from_ascii("www.t.").unwrap(), RecordType::A);
        sockets.exchange(&question(&q)).await.unwrap();
        let wait = Duration::from_millis(200);
        assert!(
            tokio::time::timeout(wait, sockets.exchange(&question(&q)))
                .await
                .is_err()
        );
        let _ = tokio::time::timeout(wait, sockets.exchange(&question(&q))).await;
        let seen = [ports.recv().await, ports.recv().await, ports.recv().await];
        assert_eq!(seen[0], seen[1], "the answered socket was used again");
        assert_ne!(seen[1], seen[2], "the unanswered one was not");
    }

    /// A wrong-ID and a wrong-question reply come first; the right one still wins.
    #[tokio::test]
    async fn waits_past_mismatched_replies() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (len, from) = server.recv_from(&mut buf).await.unwrap();
            let id = Message::from_vec(&buf[..len]).unwrap().id();
            for bad in [reply(id.wrapping_add(1), "www.t."), reply(id, "www.u.")] {
                server.send_to(&bad, from).await.unwrap();
            }
            server.send_to(&reply(id, "www.t."), from).await.unwrap();
        });
        let q = Query::query(Name::from_ascii("Www.T.").unwrap(), RecordType::A);
        let got = Sockets::new(addr).exchange(&question(&q)).await.unwrap();
        assert_eq!(got.queries()[0].name().to_ascii(), "www.t.");
    }
}
