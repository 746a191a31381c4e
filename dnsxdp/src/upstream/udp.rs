//! Plain DNS over UDP.
//!
//! Every query uses a fresh random ID and a fresh socket on a kernel-chosen random port,
//! connected to the upstream; a reply is only accepted from that upstream with that ID and the
//! same question, so an off-path attacker has to guess both port and ID (RFC 5452).

use std::{io, net::SocketAddr};

use hickory_proto::op::Message;
use tokio::net::UdpSocket;
use tracing::debug;

use super::{check, question::Question};

pub async fn exchange(upstream: SocketAddr, q: &Question<'_>) -> io::Result<Message> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(upstream).await?;
    let id = rand::random();
    socket.send(&q.wire(id)).await?;
    let mut buf = vec![0u8; u16::MAX as usize];
    loop {
        let (len, from) = socket.recv_from(&mut buf).await?;
        // A connected socket only receives from the upstream; checked again all the same.
        let reply = (from == upstream)
            .then(|| check::accept(&buf[..len], id, q.query))
            .flatten();
        if let Some(reply) = reply {
            return Ok(reply);
        }
        debug!(%upstream, %from, "ignoring a reply that does not match the query");
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
        let question = Question {
            query: &q,
            dnssec_ok: false,
            checking_disabled: false,
        };
        let got = exchange(addr, &question).await.unwrap();
        assert_eq!(got.queries()[0].name().to_ascii(), "www.t.");
    }
}
