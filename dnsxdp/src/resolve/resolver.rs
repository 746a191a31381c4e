//! What happens to one client message: parse, answer from the cache or upstream, fill the
//! caches, and render the reply.

use std::{
    collections::HashSet,
    net::SocketAddr,
    num::NonZeroUsize,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering::SeqCst},
    },
    time::{Duration, SystemTime},
};

use dnsxdp_common::{
    CacheEntry,
    entry::{NotCacheable, build_entry, build_static_entry},
    name::QuestionKey,
};
use hickory_proto::{
    op::{Query, ResponseCode},
    rr::{Name, RecordType},
    serialize::binary::BinDecodable,
};
use tokio::time::{Instant, timeout_at};
use tracing::{debug, trace};

use super::{counters::Counters, settings::Config};
use crate::{
    dns::answer::Answer,
    dns::clock,
    dns::query::{self, ClientQuery, Parsed},
    dns::reply::{self, Transport},
    dns::ttl::TtlPolicy,
    dns::wire_hit::{self, WireAnswer, WireQuery},
    filter::Filter,
    kernel::cache::Fill,
    kernel::maps::XdpMaps,
    local::{self, LocalData},
    resolve::cache::{Cache, Key, Lookup},
    resolve::flight::Flights,
    resolve::query_log::{Layer, Line, QueryLog, rcode_name, rfc3339},
    upstream::{check, question::Question, routes::Routes},
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
    routes: Arc<Routes>,
    ttl: TtlPolicy,
    /// How long a client waits for an answer (or a stale one, or SERVFAIL).
    query_timeout: Duration,
    counters: Counters,
    /// The kernel cache to fill, when XDP is in use.
    kernel: Option<Arc<XdpMaps>>,
    /// Hits an answer needs to be refreshed in the last tenth of its TTL; `None`: never.
    prefetch_min_hits: Option<u32>,
    query_log: Option<Arc<QueryLog>>,
    /// The block and allow lists, when there are any.
    filter: Option<Arc<Filter>>,
    /// The local records, when there are any; replaced whole on a reload.
    local: RwLock<Option<Arc<LocalData>>>,
    /// Flushes so far, counted under the cache lock: an answer looked up or fetched before a
    /// flush is not put back into either cache after it.
    flushes: AtomicU64,
}

impl Resolver {
    /// The queries answered so far, and how.
    pub fn counts(&self) -> super::counters::Counts {
        self.counters.counts()
    }

    /// A resolver as `config` says, asking the pools of `routes`, logging to `query_log`,
    /// filling `kernel`'s cache and blocking what `filter`'s lists block, where there are those.
    pub fn new(
        routes: Arc<Routes>,
        config: &Config,
        query_log: Option<Arc<QueryLog>>,
        kernel: Option<Arc<XdpMaps>>,
        filter: Option<Arc<Filter>>,
    ) -> Resolver {
        // The settings hold the size to at least 1.
        let cache_size = NonZeroUsize::new(config.cache_size as usize).unwrap_or(NonZeroUsize::MIN);
        let cache_memory = usize::try_from(config.cache_memory).unwrap_or(usize::MAX);
        Resolver {
            cache: Mutex::new(Cache::new(cache_size, cache_memory, config.serve_stale)),
            flights: Flights::default(),
            routes,
            ttl: config.ttl,
            query_timeout: config.query_timeout,
            counters: Counters::default(),
            kernel,
            prefetch_min_hits: config.prefetch_min_hits,
            query_log,
            filter,
            local: RwLock::default(),
            flushes: AtomicU64::new(0),
        }
    }

    /// Puts `new` local records in force, then forgets the answers of every name whose
    /// records changed from both caches; returns how many from each.
    pub fn set_local(&self, new: LocalData) -> anyhow::Result<(u64, u64)> {
        let new = Arc::new(new);
        let old = self
            .local
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(new.clone());
        let changed: HashSet<Name> = match old {
            Some(old) => local::changed_names(&old, &new),
            None => new.names().cloned().collect(),
        };
        self.forget_names(|name, _| changed.contains(name))
    }

    /// The answer local records give `q`, if its name has any.
    fn local_answer(&self, q: &ClientQuery, now: u64) -> Option<Answer> {
        let local = self
            .local
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        Some(Answer::local(local.answer(&q.query)?, now))
    }

    /// Removes what `select` picks from the daemon's cache; returns how many it removed. Call
    /// it before removing the same from the kernel's, so that no answer taken from either
    /// before is put back after.
    pub fn flush_cache(&self, select: impl Fn(&Key) -> bool) -> u64 {
        let mut cache = self.lock_cache();
        let removed = cache.remove_where(select);
        self.flushes.fetch_add(1, SeqCst);
        removed
    }

    fn flushes(&self) -> u64 {
        self.flushes.load(SeqCst)
    }

    /// The reply to `packet` from `client`, or `None` when it deserves none.
    pub async fn handle(
        self: &Arc<Self>,
        packet: &[u8],
        client: SocketAddr,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        self.counters.query(transport);
        let arrived = self.arrived();
        let (q, reply, layer, rcode, rule) = match query::parse(packet) {
            Parsed::Query(mut q) => {
                q.group = self.group_of(client);
                // A UDP query the wire path reads gets a fetched answer in its wire form too.
                let read = (transport == Transport::Udp)
                    .then(|| wire_hit::read(packet))
                    .flatten();
                let wire = read.as_ref().map(|w| (packet, w));
                let (reply, layer, rcode, rule) = self.answer(&q, transport, wire).await;
                (Some(q), reply, layer, u16::from(rcode), rule)
            }
            // A bare header: the RCODE is all in it.
            Parsed::Reply(reply) => {
                let rcode = reply.get(3).map_or(0, |b| b & 0x0f);
                (None, reply, Layer::Local, u16::from(rcode), None)
            }
            Parsed::Drop => return None,
        };
        self.counters.answered(rcode);
        self.log(
            (client, transport),
            arrived,
            rcode,
            layer,
            rule,
            || match &q {
                Some(q) => (q.query.name().to_string(), q.query.query_type().to_string()),
                None => (String::new(), String::new()),
            },
        );
        Some(reply)
    }

    /// When a query arrived, for the query log's latency: read only when there is a query
    /// log, since a clock read is not free.
    fn arrived(&self) -> Option<std::time::Instant> {
        self.query_log.as_ref().map(|_| std::time::Instant::now())
    }

    /// Writes the query log's line for an answer to `client` over `transport`, if there is a
    /// query log. `question` gives the name as the client wrote it and the type; `rule` is the
    /// list rule that blocked it.
    fn log(
        &self,
        (client, transport): (SocketAddr, Transport),
        arrived: Option<std::time::Instant>,
        rcode: u16,
        layer: Layer,
        rule: Option<Box<str>>,
        question: impl FnOnce() -> (String, String),
    ) {
        let Some(log) = &self.query_log else {
            return;
        };
        let (name, qtype) = question();
        log.log(Line {
            time: rfc3339(SystemTime::now()),
            client,
            transport,
            name,
            qtype,
            rcode: rcode_name(rcode),
            layer,
            rule,
            latency_us: arrived.map(|a| a.elapsed().as_micros() as u64),
        });
    }

    /// The reply to `packet` from `client` over `transport`, written over `out`, when the
    /// daemon's cache has a fresh answer the wire path gives (`wire_hit`) within the size a UDP
    /// client takes: counted and logged as the full path would, without parsing or encoding a
    /// message, or allocating. `false` leaves it to the full path.
    pub fn answer_now(
        self: &Arc<Self>,
        packet: &[u8],
        client: SocketAddr,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> bool {
        let arrived = self.arrived();
        let Some(q) = wire_hit::read(packet) else {
            return false;
        };
        let Some(key) = Key::of_wire(&q.question, self.group_of(client)) else {
            return false;
        };
        let now = clock::now_ns();
        let (Lookup::Fresh(answer), flushes) = self.look_up(&key, now) else {
            return false;
        };
        let Some(form) = answer.wire(|| self.wire_form(&key, &answer, now)) else {
            return false;
        };
        if !form.reply_into(packet, &q, now, out) {
            return false;
        }
        self.counters.query(transport);
        self.after_hit(&answer, key.group(), transport, now, flushes, || {
            key.kernel_query()
        });
        let rcode = u16::from(answer.rcode);
        self.counters.answered(rcode);
        let rule = answer.blocked_by.as_ref().map(|(_, rule)| rule.clone());
        self.log(
            (client, transport),
            arrived,
            rcode,
            Layer::Cache,
            rule,
            || {
                let name =
                    Name::from_bytes(q.sent_name(packet)).map_or(String::new(), |n| n.to_string());
                (name, key.qtype().to_string())
            },
        );
        true
    }

    /// The client group of `client`: 0 without groups.
    fn group_of(&self, client: SocketAddr) -> u8 {
        self.filter.as_ref().map_or(0, |f| f.group_of(client.ip()))
    }

    /// What the cache has for `key` at `now`, and the flushes so far as of the lookup.
    fn look_up(&self, key: &Key, now: u64) -> (Lookup, u64) {
        let mut cache = self.lock_cache();
        (cache.get(key, now), self.flushes())
    }

    /// `answer`'s wire form for the question of `key`, made at `now` as its kernel entry is.
    fn wire_form(&self, key: &Key, answer: &Answer, now: u64) -> Option<WireAnswer> {
        let (_, entry) = self.kernel_entry(&key.kernel_query(), answer, now).ok()?;
        Some(WireAnswer::of(&entry))
    }

    /// The kernel entry of `answer` to `q`, made at `now`: counted from when the rendered TTLs
    /// are exact, so that it expires with the answer rather than up to a second after it.
    fn kernel_entry(
        &self,
        q: &ClientQuery,
        answer: &Answer,
        now: u64,
    ) -> Result<(QuestionKey, CacheEntry), NotCacheable> {
        let wire = reply::normalized(q, answer, now).ok_or(NotCacheable::Unsupported)?;
        let (mut key, mut entry) = match answer.local {
            true => build_static_entry(&wire)?,
            false => build_entry(&wire, answer.aged_at(now), self.ttl.max)?,
        };
        (key.group, entry.group) = (q.group, q.group);
        Ok((key, entry))
    }

    /// What a fresh daemon cache hit for a client of `group` over `transport` does besides the
    /// reply: it is counted, a popular answer in the last tenth of its life is refreshed, and a
    /// kernel entry the map evicted before ours is put back. `query` is the question to refresh
    /// and fill.
    fn after_hit(
        self: &Arc<Self>,
        answer: &Answer,
        group: u8,
        transport: Transport,
        now: u64,
        flushes: u64,
        query: impl Fn() -> ClientQuery,
    ) {
        self.counters.cache_hit();
        self.count_block(answer, group);
        let hits = answer.usage.hit();
        if self
            .prefetch_min_hits
            .is_some_and(|min| hits >= u64::from(min))
            && answer.in_prefetch_window(now)
            && answer.usage.start_prefetch()
        {
            self.prefetch(query());
        }
        // The kernel sends a query it could serve only when its entry is gone (evicted before
        // ours): put it back so the next one is answered there again. It never sees the other
        // transports, so their hits say nothing of its entries.
        if self.kernel.is_some() && transport == Transport::Udp {
            self.fill_kernel(&query(), answer, now, Fill::IfAbsent, flushes);
        }
    }

    /// The reply to `q`, which layer gave it, and its RCODE (extended ones included).
    /// `wire` is the packet and what the wire path read of it, if it did.
    async fn answer(
        self: &Arc<Self>,
        q: &ClientQuery,
        transport: Transport,
        wire: Option<(&[u8], &WireQuery)>,
    ) -> (Vec<u8>, Layer, ResponseCode, Option<Box<str>>) {
        let now = clock::now_ns();
        let error = |rcode| {
            let reply = reply::render(q, &Answer::error(rcode), now, transport);
            (reply, Layer::Local, rcode, None)
        };
        // The reply from a fetched or blocked answer under `key`, in its wire form where it has
        // one.
        let fresh = |key: &Key, answer: &Arc<Answer>, now| {
            let from_wire = wire.and_then(|(packet, w)| {
                let form = answer.wire(|| self.wire_form(key, answer, now))?;
                form.reply(packet, w, now)
            });
            from_wire.unwrap_or_else(|| reply::render(q, answer, now, transport))
        };
        if q.edns.is_some_and(|e| e.version > 0) {
            return error(ResponseCode::BADVERS);
        }
        // Zone transfers span several messages; a forwarder does not relay them.
        if matches!(q.query.query_type(), RecordType::AXFR | RecordType::IXFR) {
            return error(ResponseCode::Refused);
        }
        // Local records are never in the daemon cache: their kernel entries last until they
        // change, and a reload forgets what they replace.
        if let Some(answer) = self.local_answer(q, now) {
            if transport == Transport::Udp {
                self.fill_kernel(q, &answer, now, Fill::Replace, self.flushes());
            }
            let reply = reply::render(q, &answer, now, transport);
            return (reply, Layer::Records, answer.rcode, None);
        }
        let key = Key::of(q);
        let (lookup, flushes) = self.look_up(&key, now);
        let stale = match lookup {
            Lookup::Fresh(answer) => {
                trace!(name = %q.query.name(), qtype = %q.query.query_type(), "daemon cache hit");
                self.after_hit(&answer, q.group, transport, now, flushes, || q.clone());
                let reply = reply::render(q, &answer, now, transport);
                let rule = answer.blocked_by.as_ref().map(|(_, rule)| rule.clone());
                return (reply, Layer::Cache, answer.rcode, rule);
            }
            Lookup::Stale(answer) => Some(answer),
            Lookup::Miss => None,
        };
        if let Some(answer) = self.block(q, flushes) {
            self.count_block(&answer, q.group);
            let rule = answer.blocked_by.as_ref().map(|(_, rule)| rule.clone());
            let now = clock::now_ns();
            return (
                fresh(&key, &answer, now),
                Layer::Blocked,
                answer.rcode,
                rule,
            );
        }
        let deadline = Instant::now() + self.query_timeout;
        let flight_key = FlightKey {
            key: key.clone(),
            checking_disabled: q.checking_disabled,
        };
        let (flight, started) = self
            .flights
            .join(flight_key, || self.clone().fetch(q.clone(), deadline));
        if started {
            self.counters.upstream_query();
        } else {
            self.counters.coalesced();
        }
        // With every upstream down, a stale answer goes out at once; the fetch goes on as the
        // refresh.
        let pool = self.routes.for_name(q.query.name());
        let fetched = if stale.is_some() && pool.all_down() {
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
            (Some(answer), _) => (
                fresh(&key, &answer, now),
                Layer::Upstream,
                answer.rcode,
                None,
            ),
            (None, Some(stale)) => {
                trace!(name = %q.query.name(), qtype = %q.query.query_type(), "stale answer");
                self.counters.stale_answer();
                let reply = reply::render(q, &stale.as_stale(now), now, transport);
                (reply, Layer::Stale, stale.rcode, None)
            }
            (None, None) => {
                self.counters.failure();
                error(ResponseCode::ServFail)
            }
        }
    }

    /// Refreshes a popular answer the XDP program served to clients of `group` in the last
    /// tenth of its TTL: `name` is its wire name, lower-cased.
    pub fn prefetch_kernel_entry(
        self: &Arc<Self>,
        name: &[u8],
        qtype: u16,
        dnssec_ok: bool,
        group: u8,
    ) {
        let Ok(name) = Name::from_bytes(name) else {
            return;
        };
        let query = Query::query(name, RecordType::from(qtype));
        let q = ClientQuery::kernel(query, dnssec_ok, group);
        // The daemon's copy, when it has one, says whether a refresh already runs: two CPUs
        // may report the same entry. A refresh replaces the copy, so the next window asks anew.
        // The kernel entry's window is its own (one put back from the copy starts later).
        if let Lookup::Fresh(answer) = self.lock_cache().get(&Key::of(&q), clock::now_ns())
            && !answer.usage.start_prefetch()
        {
            return;
        }
        self.prefetch(q);
    }

    /// Asks the upstreams for `q` again, in the background, to refresh the caches before its
    /// answer expires. A client miss for the same question meanwhile joins it.
    fn prefetch(self: &Arc<Self>, q: ClientQuery) {
        debug!(name = %q.query.name(), qtype = %q.query.query_type(), "prefetch");
        self.counters.prefetch();
        let key = FlightKey {
            key: Key::of(&q),
            checking_disabled: false,
        };
        let deadline = Instant::now() + self.query_timeout;
        self.flights.join(key, || self.clone().fetch(q, deadline));
    }

    /// Asks the upstreams for `q` by `deadline`; a checked answer goes into the caches (the
    /// kernel's only while it is live) unless CD is set.
    async fn fetch(self: Arc<Self>, q: ClientQuery, deadline: Instant) -> Fetched {
        let question = Question {
            query: &q.query,
            dnssec_ok: q.dnssec_ok(),
            checking_disabled: q.checking_disabled,
        };
        let flushes = self.flushes();
        // A refresh of a blocked answer the kernel serves stays blocked.
        if let Some(answer) = self.block(&q, flushes) {
            return Some(answer);
        }
        let pool = self.routes.for_name(q.query.name());
        let msg = pool.resolve(&question, deadline).await?;
        let mut msg = check::scrub(msg, &q.query);
        if let Some(rebind) = self.routes.rebind(q.query.name()) {
            let removed = rebind.strip(q.query.name(), &mut msg);
            if removed > 0 {
                debug!(name = %q.query.name(), removed, "private addresses removed from a public upstream's answer");
                self.counters.rebind_removed(removed);
            }
        }
        let now = clock::now_ns();
        let answer = Arc::new(Answer::from_upstream(msg, now, &self.ttl));
        trace!(name = %q.query.name(), qtype = %q.query.query_type(), rcode = %answer.rcode, "from upstream");
        self.keep(&q, &answer, now, flushes);
        Some(answer)
    }

    /// Puts `answer` to `q`, made at `now`, into both caches, unless a flush came after
    /// `flushes`, or CD is set: then the upstream did not validate it, and it goes only to
    /// those who asked.
    fn keep(&self, q: &ClientQuery, answer: &Arc<Answer>, now: u64, flushes: u64) {
        if q.checking_disabled {
            return;
        }
        let mut cache = self.lock_cache();
        if self.flushes() == flushes {
            cache.insert(Key::of(q), answer.clone());
            drop(cache);
            self.fill_kernel(q, answer, now, Fill::Replace, flushes);
        }
    }

    /// The answer to `q` if a list blocks its name, kept like a fetched one: the kernel then
    /// serves the repeats. `flushes` as for `keep`.
    fn block(&self, q: &ClientQuery, flushes: u64) -> Option<Arc<Answer>> {
        let (msg, blocked) = self.filter.as_ref()?.check(q.group, &q.query)?;
        let now = clock::now_ns();
        // The block TTL as set, held to --max-ttl as every answer is.
        let policy = TtlPolicy {
            min: 0,
            max: self.ttl.max,
            max_negative: self.ttl.max,
            factor: 1.0,
        };
        let answer = Answer::from_upstream(msg, now, &policy).blocked(blocked.list, &blocked.rule);
        let answer = Arc::new(answer);
        self.keep(q, &answer, now, flushes);
        Some(answer)
    }

    /// Counts an answer sent to a client of `group` for a blocked name, in all, against its
    /// list and against the group.
    fn count_block(&self, answer: &Answer, group: u8) {
        let Some((list, _)) = &answer.blocked_by else {
            return;
        };
        self.counters.blocked();
        if let Some(filter) = &self.filter {
            filter.count(*list, group);
        }
    }

    /// Removes the answers `select` picks by name and client group from both caches; returns
    /// how many from the daemon's and how many from the kernel's.
    pub fn forget_names(&self, select: impl Fn(&Name, u8) -> bool) -> anyhow::Result<(u64, u64)> {
        let daemon = self.flush_cache(|key| select(key.name(), key.group()));
        let kernel = match &self.kernel {
            Some(k) => k.cache.remove_where(|q| {
                Name::from_bytes(q.wire_name()).is_ok_and(|name| select(&name, q.group))
            })?,
            None => 0,
        };
        Ok((daemon, kernel))
    }

    /// The daemon's cache, locked.
    pub fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives the XDP program an answer to serve, positive or negative, if it can: one whose
    /// every record the entry carries (`reply::normalized`), under a key that says whether the
    /// query had DO.
    /// `flushes` is `self.flushes()` as of when `answer` was looked up or asked for: after a
    /// flush since, it is not filled.
    fn fill_kernel(&self, q: &ClientQuery, answer: &Answer, now: u64, fill: Fill, flushes: u64) {
        let Some(kernel) = &self.kernel else { return };
        let rcode_served = matches!(answer.rcode, ResponseCode::NoError | ResponseCode::NXDomain);
        if !rcode_served || !q.is_kernel_question() {
            return;
        }
        let built = self.kernel_entry(q, answer, now);
        // The same form answers the daemon's own hits.
        answer.wire(|| built.as_ref().ok().map(|(_, entry)| WireAnswer::of(entry)));
        match built {
            Ok((key, mut entry)) => {
                // The window of the answer's whole life, as the daemon's copy has it, rather
                // than of what is left of it: an entry filled late in its life still asks in
                // time. A local record's never comes.
                if !answer.local {
                    entry.prefetch_ns = answer.prefetch_ns();
                }
                // Checked as it is written: a flush removes from the kernel cache only after
                // counting itself, so a write it does not see here it removes.
                let current = || self.flushes() == flushes;
                kernel.cache.insert(key, entry, fill, current)
            }
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
    use crate::upstream::{
        pool::{Pool, PoolSettings},
        spec::UpstreamSpec,
        strategy::Strategy,
    };

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

    fn resolver(upstreams: &[&TestUpstream], serve_stale: Duration) -> Arc<Resolver> {
        let settings = PoolSettings {
            strategy: Strategy::Ordered,
            attempt_timeout: Duration::from_millis(150),
            max_fails: 1,
            retries: 2,
        };
        let specs = upstreams.iter().map(|u| u.spec.clone()).collect();
        let pool = Arc::new(Pool::new(specs, settings, None).unwrap());
        let config = Config {
            cache_size: 16,
            cache_memory: u64::MAX,
            ttl: TtlPolicy::default(),
            query_timeout: Duration::from_millis(400),
            serve_stale,
            prefetch_min_hits: Some(2),
            query_log: None,
            query_log_sample: 1,
        };
        Arc::new(Resolver::new(
            Arc::new(Routes::single(pool)),
            &config,
            None,
            None,
            None,
        ))
    }

    fn client() -> SocketAddr {
        "198.18.1.2:5353".parse().unwrap()
    }

    async fn ask(r: &Arc<Resolver>, id: u16, name: &str) -> Message {
        let reply = r
            .handle(&query(id, name), client(), Transport::Udp)
            .await
            .unwrap();
        Message::from_vec(&reply).unwrap()
    }

    /// An answer on its way while the cache is flushed is sent, but not cached: it may be the
    /// very data the flush was for.
    #[tokio::test]
    async fn an_answer_fetched_across_a_flush_is_not_cached() {
        let up = upstream(300, Duration::from_millis(100)).await;
        let r = resolver(&[&up], Duration::ZERO);
        let asking = tokio::spawn({
            let r = r.clone();
            async move { ask(&r, 1, "www.t.").await }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(r.flush_cache(|_| true), 0);
        assert_eq!(asking.await.unwrap().answers().len(), 1);
        ask(&r, 2, "www.t.").await;
        assert_eq!(
            up.queries.load(Relaxed),
            2,
            "the second was answered from the cache"
        );
    }

    #[tokio::test]
    async fn forwards_then_serves_from_the_cache() {
        let up = upstream(300, Duration::ZERO).await;
        let r = resolver(&[&up], Duration::ZERO);
        let first = r
            .handle(&query(1, "Www.T."), client(), Transport::Udp)
            .await
            .unwrap();
        let second = r
            .handle(&query(2, "www.t."), client(), Transport::Tcp)
            .await
            .unwrap();
        let (first, second) = (
            Message::from_vec(&first).unwrap(),
            Message::from_vec(&second).unwrap(),
        );
        assert_eq!((first.id(), second.id()), (1, 2));
        assert_eq!(first.queries()[0].name().to_ascii(), "Www.T.");
        assert_eq!(second.answers().len(), 1);
        let s = r.counts();
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

    /// A UDP hit answered into a buffer with room allocates nothing (for names that fit
    /// hickory's inline 32 bytes, as most do).
    #[tokio::test]
    async fn a_wire_hit_allocates_nothing() {
        let up = upstream(300, Duration::ZERO).await;
        let r = resolver(&[&up], Duration::ZERO);
        ask(&r, 1, "www.example.t.").await;
        let packet = query(2, "WWW.example.t.");
        let mut out = Vec::with_capacity(512);
        let (hit, allocations) = crate::allocations::during(|| {
            r.answer_now(&packet, client(), Transport::Udp, &mut out)
        });
        assert!(hit);
        assert_eq!(allocations, 0);
        let reply = Message::from_vec(&out).unwrap();
        assert_eq!((reply.id(), reply.answers().len()), (2, 1));
        assert_eq!(reply.queries()[0].name().to_ascii(), "WWW.example.t.");
    }

    #[tokio::test]
    async fn no_upstream_answer_is_servfail_within_the_query_timeout() {
        let up = upstream(300, Duration::ZERO).await;
        up.answering.store(false, Relaxed);
        let r = resolver(&[&up], Duration::ZERO);
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
        assert_eq!(r.counts().failures, 1);
    }

    #[tokio::test]
    async fn a_burst_of_identical_misses_is_one_upstream_query() {
        let up = upstream(300, Duration::from_millis(50)).await;
        let r = resolver(&[&up], Duration::ZERO);
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
        let s = r.counts();
        assert_eq!((s.upstream_queries, s.coalesced), (1, 99));
    }

    /// Expired and no upstream answering: stale (TTL 30) within the window, else SERVFAIL;
    /// fresh again once an upstream answers.
    #[tokio::test]
    async fn stale_answers_while_upstreams_fail() {
        let up = upstream(1, Duration::ZERO).await;
        let r = resolver(&[&up], Duration::from_secs(60));
        let no_stale = resolver(&[&up], Duration::ZERO);
        // TTLs count down from the start, by the one rule both layers follow.
        assert_eq!(ask(&r, 1, "www.t.").await.answers()[0].ttl(), 0);
        ask(&no_stale, 1, "www.t.").await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        up.answering.store(false, Relaxed);
        let start = Instant::now();
        let stale = ask(&r, 2, "www.t.").await;
        assert_eq!(stale.answers()[0].ttl(), crate::dns::answer::STALE_TTL);
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
            crate::dns::answer::STALE_TTL
        );
        assert!(start.elapsed() < Duration::from_millis(50));
        up.answering.store(true, Relaxed);
        // The refresh that query started retries within its own query timeout.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(up.queries.load(Relaxed) > before, "refresh tried");
        let fresh = ask(&r, 4, "www.t.").await;
        assert!(fresh.answers()[0].ttl() <= 1);
        assert_eq!(r.counts().stale_answers, 2);
    }

    /// A name asked often enough is fetched again in the last tenth of its TTL, once, in the
    /// background; the answer in the cache is then the new one, and no client waits for it.
    #[tokio::test]
    async fn popular_answers_are_refreshed_before_they_expire() {
        let up = upstream(2, Duration::ZERO).await;
        let r = resolver(&[&up], Duration::ZERO);
        ask(&r, 1, "www.t.").await;
        ask(&r, 2, "www.t.").await;
        ask(&r, 3, "www.t.").await;
        assert_eq!(up.queries.load(Relaxed), 1);
        // In the last 200 ms of two seconds.
        tokio::time::sleep(Duration::from_millis(1850)).await;
        // The hit that starts the refresh gets the cached answer at once, as do those after.
        let reply = ask(&r, 4, "www.t.").await;
        assert_eq!(reply.answers()[0].ttl(), 0, "the cached answer");
        for id in 5..8 {
            ask(&r, id, "www.t.").await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(up.queries.load(Relaxed), 2, "one refresh");
        assert_eq!(r.counts().prefetches, 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Past the first answer's expiry: the refreshed one, from the cache.
        let hits = r.counts().cache_hits;
        assert!(ask(&r, 9, "www.t.").await.answers()[0].ttl() >= 1);
        assert_eq!(r.counts().cache_hits, hits + 1);
        assert_eq!(up.queries.load(Relaxed), 2);
        // An answer asked once is not refreshed: it expires.
        ask(&r, 10, "other.t.").await;
        tokio::time::sleep(Duration::from_millis(1850)).await;
        ask(&r, 11, "other.t.").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(r.counts().prefetches, 1);
    }

    /// Answers are counted by their whole RCODE: BADVERS (16) lives partly in the OPT record.
    #[tokio::test]
    async fn answers_are_counted_by_rcode() {
        let up = upstream(300, Duration::ZERO).await;
        let r = resolver(&[&up], Duration::ZERO);
        ask(&r, 1, "www.t.").await;
        let mut m = Message::from_vec(&query(2, "www.t.")).unwrap();
        let mut edns = hickory_proto::op::Edns::new();
        edns.set_version(1);
        m.set_edns(edns);
        let reply = r
            .handle(&m.to_vec().unwrap(), client(), Transport::Udp)
            .await;
        let reply = Message::from_vec(&reply.unwrap()).unwrap();
        // 16: BADVERS, which hickory reads as BADSIG, its other name.
        assert_eq!(u16::from(reply.response_code()), 16);
        // Too short to answer: not counted.
        assert!(
            r.handle(&[0, 1, 0, 0, 0, 1], client(), Transport::Udp)
                .await
                .is_none()
        );
        let rcodes = r.counts().rcodes;
        assert_eq!((rcodes["noerror"], rcodes["other"]), (1, 1));
        assert_eq!(rcodes.values().sum::<u64>(), 2, "{rcodes:?}");
    }
}
