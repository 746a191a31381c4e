//! What happens to one client message: parse, answer from the cache or upstream, fill the
//! caches, and render the reply.

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex},
    time::Duration,
};

use dnsxdp_common::entry::build_entry;
use hickory_proto::{op::ResponseCode, rr::RecordType};
use tokio::time::{Instant, timeout_at};
use tracing::{debug, trace};

use crate::{
    answer::Answer,
    cache::{Cache, Key, Lookup},
    clock,
    config::TtlPolicy,
    flight::Flights,
    kernel_cache::Fill,
    query::{self, ClientQuery, Parsed},
    reply::{self, Transport},
    stats::Stats,
    upstream::{check, pool::Pool, question::Question},
    xdp::XdpMaps,
};

/// What identical in-flight misses share: the cache key, and CD, since a query with CD set is
/// asked differently and its answer is not cached.
#[derive(Clone, PartialEq, Eq, Hash)]
struct FlightKey {
    key: Key,
    checking_disabled: bool,
}

/// What a fetch from upstream lands with; `None` when no upstream answered.
type Fetched = Option<Arc<Answer>>;

pub struct Resolver {
    cache: Mutex<Cache>,
    flights: Flights<FlightKey, Fetched>,
    pool: Arc<Pool>,
    ttl: TtlPolicy,
    /// How long a client waits for an answer (or a stale one, or SERVFAIL).
    query_timeout: Duration,
    stats: Arc<Stats>,
    /// The kernel cache to fill, when XDP is in use.
    kernel: Option<Arc<XdpMaps>>,
}

/// How the resolver is set up, besides its upstreams and where it reports.
pub struct ResolverSettings {
    pub cache_size: NonZeroUsize,
    pub ttl: TtlPolicy,
    pub query_timeout: Duration,
    /// How long after expiry an answer may be served when no upstream answers; 0: never.
    pub serve_stale: Duration,
}

impl Resolver {
    pub fn new(
        pool: Arc<Pool>,
        settings: ResolverSettings,
        stats: Arc<Stats>,
        kernel: Option<Arc<XdpMaps>>,
    ) -> Resolver {
        Resolver {
            cache: Mutex::new(Cache::new(settings.cache_size, settings.serve_stale)),
            flights: Flights::default(),
            pool,
            ttl: settings.ttl,
            query_timeout: settings.query_timeout,
            stats,
            kernel,
        }
    }

    /// The reply to `packet`, or `None` when it deserves none.
    pub async fn handle(self: &Arc<Self>, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
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
        let stale = match self.lock_cache().get(&key, now) {
            Lookup::Fresh(answer) => {
                trace!(name = %q.query.name(), qtype = %q.query.query_type(), "daemon cache hit");
                self.stats.cache_hit();
                // The kernel sends a query it could serve only when its entry is gone (evicted
                // before ours): put it back so the next one is answered there again.
                self.fill_kernel(&q, &answer, now, Fill::IfAbsent);
                return Some(reply::render(&q, &answer, now, transport));
            }
            Lookup::Stale(answer) => Some(answer),
            Lookup::Miss => None,
        };
        let deadline = Instant::now() + self.query_timeout;
        let flight_key = FlightKey {
            key,
            checking_disabled: q.checking_disabled,
        };
        let (flight, started) = self
            .flights
            .join(flight_key, || self.clone().fetch(q.clone(), deadline));
        if started {
            self.stats.upstream_query();
        } else {
            self.stats.coalesced();
        }
        // With every upstream down, a stale answer goes out at once; the fetch goes on as the
        // refresh.
        let fetched = if stale.is_some() && self.pool.all_down() {
            None
        } else {
            timeout_at(deadline, flight.wait())
                .await
                .ok()
                .flatten()
                .flatten()
        };
        let now = clock::now_ns();
        match (fetched, stale) {
            (Some(answer), _) => Some(reply::render(&q, &answer, now, transport)),
            (None, Some(stale)) => {
                trace!(name = %q.query.name(), qtype = %q.query.query_type(), "stale answer");
                self.stats.stale_answer();
                Some(reply::render(&q, &stale.as_stale(now), now, transport))
            }
            (None, None) => {
                self.stats.failure();
                error(ResponseCode::ServFail)
            }
        }
    }

    /// Asks the upstreams for `q` by `deadline`; a checked answer goes into the caches (the
    /// kernel's only while it is live) unless CD is set.
    async fn fetch(self: Arc<Self>, q: ClientQuery, deadline: Instant) -> Fetched {
        let question = Question {
            query: &q.query,
            dnssec_ok: q.dnssec_ok(),
            checking_disabled: q.checking_disabled,
        };
        let msg = self.pool.resolve(&question, deadline).await?;
        let now = clock::now_ns();
        let answer = Arc::new(Answer::from_upstream(
            check::scrub(msg, &q.query),
            now,
            &self.ttl,
        ));
        trace!(name = %q.query.name(), qtype = %q.query.query_type(), rcode = %answer.rcode, "from upstream");
        // With CD set the upstream did not validate: the answer goes only to those who asked.
        if !q.checking_disabled {
            self.lock_cache().insert(Key::of(&q), answer.clone());
            self.fill_kernel(&q, &answer, now, Fill::Replace);
        }
        Some(answer)
    }

    /// The daemon's cache, locked.
    pub fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
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
        // Counted from when the rendered TTLs are exact, so the entry expires with the answer
        // rather than up to a second after it.
        match build_entry(&wire, answer.aged_at(now), self.ttl.max) {
            Ok((key, entry)) => kernel.cache.insert(key, entry, fill),
            Err(why) => debug!(name = %q.query.name(), ?why, "not cacheable in XDP"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

    use hickory_proto::{
        op::{Message, MessageType, Query},
        rr::{Name, RData, Record, rdata::A},
    };
    use tokio::net::UdpSocket;

    use super::*;
    use crate::upstream::{pool::PoolSettings, spec::UpstreamSpec, strategy::Strategy};

    /// An upstream on loopback answering every A query with one record after `delay`, while
    /// `answering`.
    struct TestUpstream {
        spec: UpstreamSpec,
        queries: Arc<AtomicUsize>,
        answering: Arc<AtomicBool>,
    }

    async fn upstream(ttl: u32, delay: Duration) -> TestUpstream {
        let server = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let spec = UpstreamSpec::udp(server.local_addr().unwrap());
        let queries = Arc::new(AtomicUsize::new(0));
        let answering = Arc::new(AtomicBool::new(true));
        let (count, on) = (queries.clone(), answering.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let (len, from) = server.recv_from(&mut buf).await.unwrap();
                count.fetch_add(1, Relaxed);
                let mut m = Message::from_vec(&buf[..len]).unwrap();
                let owner = m.queries()[0].name().clone();
                m.set_message_type(MessageType::Response);
                m.add_answer(Record::from_rdata(
                    owner,
                    ttl,
                    RData::A(A::new(198, 18, 0, 9)),
                ));
                let (server, on) = (server.clone(), on.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if on.load(Relaxed) {
                        server.send_to(&m.to_vec().unwrap(), from).await.unwrap();
                    }
                });
            }
        });
        TestUpstream {
            spec,
            queries,
            answering,
        }
    }

    fn query(id: u16, name: &str) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(id).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    fn resolver(upstreams: &[&TestUpstream], serve_stale: Duration) -> (Arc<Resolver>, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let settings = PoolSettings {
            strategy: Strategy::Ordered,
            attempt_timeout: Duration::from_millis(150),
            max_fails: 1,
            retries: 2,
        };
        let specs = upstreams.iter().map(|u| u.spec.clone()).collect();
        let pool = Arc::new(Pool::new(specs, settings, None).unwrap());
        let settings = ResolverSettings {
            cache_size: NonZeroUsize::new(16).unwrap(),
            ttl: TtlPolicy::default(),
            query_timeout: Duration::from_millis(400),
            serve_stale,
        };
        let r = Resolver::new(pool, settings, stats.clone(), None);
        (Arc::new(r), stats)
    }

    async fn ask(r: &Arc<Resolver>, id: u16, name: &str) -> Message {
        let reply = r.handle(&query(id, name), Transport::Udp).await.unwrap();
        Message::from_vec(&reply).unwrap()
    }

    #[tokio::test]
    async fn forwards_then_serves_from_the_cache() {
        let up = upstream(300, Duration::ZERO).await;
        let (r, stats) = resolver(&[&up], Duration::ZERO);
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
    async fn no_upstream_answer_is_servfail_within_the_query_timeout() {
        let up = upstream(300, Duration::ZERO).await;
        up.answering.store(false, Relaxed);
        let (r, stats) = resolver(&[&up], Duration::ZERO);
        let start = Instant::now();
        assert_eq!(
            ask(&r, 3, "www.t.").await.response_code(),
            ResponseCode::ServFail
        );
        assert!(
            start.elapsed() < Duration::from_millis(450),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(stats.snapshot().failures, 1);
    }

    #[tokio::test]
    async fn a_burst_of_identical_misses_is_one_upstream_query() {
        let up = upstream(300, Duration::from_millis(50)).await;
        let (r, stats) = resolver(&[&up], Duration::ZERO);
        let burst: Vec<_> = (0..100)
            .map(|id| {
                let r = r.clone();
                tokio::spawn(async move { ask(&r, id, "burst.t.").await })
            })
            .collect();
        for (id, reply) in burst.into_iter().enumerate() {
            let reply = reply.await.unwrap();
            assert_eq!((reply.id(), reply.answers().len()), (id as u16, 1));
        }
        assert_eq!(up.queries.load(Relaxed), 1);
        let s = stats.snapshot();
        assert_eq!((s.upstream_queries, s.coalesced), (1, 99));
    }

    /// Expired and no upstream answering: stale (TTL 30) within the window, else SERVFAIL;
    /// fresh again once an upstream answers.
    #[tokio::test]
    async fn stale_answers_while_upstreams_fail() {
        let up = upstream(1, Duration::ZERO).await;
        let (r, stats) = resolver(&[&up], Duration::from_secs(60));
        let (no_stale, _) = resolver(&[&up], Duration::ZERO);
        assert_eq!(ask(&r, 1, "www.t.").await.answers()[0].ttl(), 1);
        ask(&no_stale, 1, "www.t.").await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        up.answering.store(false, Relaxed);
        let start = Instant::now();
        let stale = ask(&r, 2, "www.t.").await;
        assert_eq!(stale.answers()[0].ttl(), crate::answer::STALE_TTL);
        assert!(start.elapsed() < Duration::from_millis(450));
        assert_eq!(
            ask(&no_stale, 2, "www.t.").await.response_code(),
            ResponseCode::ServFail
        );
        // Now known down: the stale answer comes at once, and the refresh is still tried.
        let start = Instant::now();
        let before = up.queries.load(Relaxed);
        assert_eq!(
            ask(&r, 3, "www.t.").await.answers()[0].ttl(),
            crate::answer::STALE_TTL
        );
        assert!(start.elapsed() < Duration::from_millis(50));
        up.answering.store(true, Relaxed);
        // The refresh that query started retries within its own query timeout.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(up.queries.load(Relaxed) > before, "refresh tried");
        let fresh = ask(&r, 4, "www.t.").await;
        assert!(fresh.answers()[0].ttl() <= 1);
        assert_eq!(stats.snapshot().stale_answers, 2);
    }
}
