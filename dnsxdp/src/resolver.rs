//! What happens to one client message: parse, answer from the cache or upstream, fill the
//! caches, and render the reply.

use std::{
    net::SocketAddr,
    num::NonZeroUsize,
    sync::{Arc, Mutex},
};

use dnsxdp_common::entry::build_entry;
use hickory_proto::{op::ResponseCode, rr::RecordType};
use tracing::{debug, trace};

use crate::{
    answer::Answer,
    cache::{Cache, Key},
    clock,
    forward::{self, Question},
    query::{self, ClientQuery, Parsed},
    reply::{self, Transport},
    stats::Stats,
    xdp::{Fill, XdpMaps},
};

pub struct Resolver {
    cache: Mutex<Cache>,
    upstreams: Vec<SocketAddr>,
    max_ttl: u32,
    stats: Arc<Stats>,
    /// The kernel cache to fill, when XDP is in use.
    kernel: Option<Arc<XdpMaps>>,
}

impl Resolver {
    pub fn new(
        upstreams: Vec<SocketAddr>,
        cache_size: NonZeroUsize,
        max_ttl: u32,
        stats: Arc<Stats>,
        kernel: Option<Arc<XdpMaps>>,
    ) -> Resolver {
        Resolver {
            cache: Mutex::new(Cache::new(cache_size)),
            upstreams,
            max_ttl,
            stats,
            kernel,
        }
    }

    /// The reply to `packet`, or `None` when it deserves none.
    pub async fn handle(&self, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
        self.stats.query(transport);
        let q = match query::parse(packet) {
            Parsed::Query(q) => q,
            Parsed::Reply(reply) => return Some(reply),
            Parsed::Drop => return None,
        };
        let now = clock::now_ns();
        let error = |rcode| Some(reply::render(&q, &Answer::error(rcode), now, transport));
        if q.edns.is_some_and(|e| e.version > 0) {
            return error(ResponseCode::BADVERS);
        }
        // Zone transfers span several messages; a forwarder does not relay them.
        if matches!(q.query.query_type(), RecordType::AXFR | RecordType::IXFR) {
            return error(ResponseCode::Refused);
        }
        let key = Key::of(&q);
        let cached = self.lock_cache().get(&key, now);
        if let Some(answer) = cached {
            trace!(name = %q.query.name(), qtype = %q.query.query_type(), "daemon cache hit");
            self.stats.cache_hit();
            // The kernel sends a query it could serve only when its entry is gone (evicted
            // before ours): put it back so the next one is answered there again.
            self.fill_kernel(&q, &answer, now, Fill::IfAbsent);
            return Some(reply::render(&q, &answer, now, transport));
        }
        self.stats.upstream_query();
        let question = Question {
            query: &q.query,
            dnssec_ok: q.dnssec_ok(),
            checking_disabled: q.checking_disabled,
        };
        let Some(msg) = forward::resolve(&self.upstreams, &question).await else {
            self.stats.failure();
            return error(ResponseCode::ServFail);
        };
        let now = clock::now_ns();
        let answer = Arc::new(Answer::from_upstream(msg, now, self.max_ttl));
        trace!(name = %q.query.name(), qtype = %q.query.query_type(), rcode = %answer.rcode, "from upstream");
        // With CD set the upstream did not validate: keep that answer to this client only.
        if !q.checking_disabled {
            self.lock_cache().insert(key, answer.clone());
            self.fill_kernel(&q, &answer, now, Fill::Replace);
        }
        Some(reply::render(&q, &answer, now, transport))
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives the XDP program an A/AAAA answer to serve, if it can: only answers without DNSSEC
    /// records, since it answers queries without the DO bit.
    fn fill_kernel(&self, q: &ClientQuery, answer: &Answer, now: u64, fill: Fill) {
        let Some(kernel) = &self.kernel else { return };
        if answer.rcode != ResponseCode::NoError || !q.is_address_query() || q.dnssec_ok() {
            return;
        }
        let Some(wire) = reply::normalized(q, answer, now) else {
            return;
        };
        match build_entry(&wire, now, self.max_ttl) {
            Ok((key, entry)) => kernel.insert(key, entry, fill),
            Err(why) => debug!(name = %q.query.name(), ?why, "not cacheable in XDP"),
        }
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::{
        op::{Message, MessageType, Query},
        rr::{Name, RData, Record, rdata::A},
    };
    use tokio::net::UdpSocket;

    use super::*;

    /// An upstream on loopback answering every A query with one record.
    async fn upstream() -> SocketAddr {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let (len, from) = server.recv_from(&mut buf).await.unwrap();
                let mut m = Message::from_vec(&buf[..len]).unwrap();
                let owner = m.queries()[0].name().clone();
                m.set_message_type(MessageType::Response);
                m.add_answer(Record::from_rdata(
                    owner,
                    300,
                    RData::A(A::new(198, 18, 0, 9)),
                ));
                server.send_to(&m.to_vec().unwrap(), from).await.unwrap();
            }
        });
        addr
    }

    fn query(id: u16, name: &str) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(id).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    fn resolver(upstreams: Vec<SocketAddr>) -> (Resolver, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let r = Resolver::new(
            upstreams,
            NonZeroUsize::new(16).unwrap(),
            86400,
            stats.clone(),
            None,
        );
        (r, stats)
    }

    #[tokio::test]
    async fn forwards_then_serves_from_the_cache() {
        let (r, stats) = resolver(vec![upstream().await]);
        let first = r.handle(&query(1, "Www.T."), Transport::Udp).await.unwrap();
        let second = r.handle(&query(2, "www.t."), Transport::Tcp).await.unwrap();
        let (first, second) = (
            Message::from_vec(&first).unwrap(),
            Message::from_vec(&second).unwrap(),
        );
        assert_eq!((first.id(), second.id()), (1, 2));
        assert_eq!(first.queries()[0].name().to_ascii(), "Www.T.");
        assert_eq!(second.answers().len(), 1);
        let s = stats.snapshot();
        assert_eq!(
            (
                s.queries_udp,
                s.queries_tcp,
                s.cache_hits,
                s.upstream_queries
            ),
            (1, 1, 1, 1)
        );
    }

    #[tokio::test]
    async fn no_upstream_answer_is_servfail() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (r, stats) = resolver(vec![silent.local_addr().unwrap()]);
        let reply = r.handle(&query(3, "www.t."), Transport::Udp).await.unwrap();
        assert_eq!(
            Message::from_vec(&reply).unwrap().response_code(),
            ResponseCode::ServFail
        );
        assert_eq!(stats.snapshot().failures, 1);
    }
}
