//! The daemon's own answer cache, for every query type.

use std::{num::NonZeroUsize, sync::Arc, time::Duration};

use dnsxdp_common::name::QuestionKey;
use hickory_proto::{
    op::Query,
    rr::{DNSClass, Name, RecordType},
    serialize::binary::BinDecodable as _,
};
use lru::LruCache;

use crate::{dns::answer::Answer, dns::query::ClientQuery, kernel::cache::CacheSize};

/// What an answer depends on: the name (lower-cased), type, class, whether DNSSEC records
/// were asked for, and the client group it was asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    name: Name,
    qtype: RecordType,
    qclass: DNSClass,
    dnssec_ok: bool,
    group: u8,
}

impl Key {
    pub fn of(q: &ClientQuery) -> Key {
        Key {
            name: q.lower_name(),
            qtype: q.query.query_type(),
            qclass: q.query.query_class(),
            dnssec_ok: q.dnssec_ok(),
            group: q.group,
        }
    }

    /// The key of a class IN question read off the wire (`wire_hit`), its name lower-cased,
    /// from a client of `group`.
    pub fn of_wire(q: &QuestionKey, group: u8) -> Option<Key> {
        Some(Key {
            name: Name::from_bytes(q.wire_name()).ok()?,
            qtype: RecordType::from(q.qtype),
            qclass: DNSClass::IN,
            dnssec_ok: q.dnssec_ok,
            group,
        })
    }

    /// The query the key answers, as a kernel entry answers it.
    pub fn kernel_query(&self) -> ClientQuery {
        let mut query = Query::query(self.name.clone(), self.qtype);
        query.set_query_class(self.qclass);
        ClientQuery::kernel(query, self.dnssec_ok, self.group)
    }

    /// The name, lower-cased.
    pub fn name(&self) -> &Name {
        &self.name
    }

    pub fn qtype(&self) -> RecordType {
        self.qtype
    }

    pub fn dnssec_ok(&self) -> bool {
        self.dnssec_ok
    }

    pub fn group(&self) -> u8 {
        self.group
    }
}

/// What the cache has for a question.
#[derive(Debug)]
pub enum Lookup {
    Fresh(Arc<Answer>),
    /// Expired, but within the serve-stale window: for when no upstream answers.
    Stale(Arc<Answer>),
    Miss,
}

pub struct Cache {
    lru: LruCache<Key, Arc<Answer>>,
    /// How long after expiry an answer is kept to be served stale.
    stale_window_ns: u64,
    /// Entries dropped to make room for another key.
    evictions: u64,
    /// Bytes the entries take (`footprint`), and the most they may.
    memory: usize,
    memory_limit: usize,
}

/// Bytes an entry takes: its answer, its key, and the LRU's node and table slot.
fn footprint(answer: &Answer) -> usize {
    answer.memory() + size_of::<Key>() + 64
}

impl Cache {
    /// At most `capacity` answers taking at most `memory_limit` bytes.
    pub fn new(capacity: NonZeroUsize, memory_limit: usize, serve_stale: Duration) -> Cache {
        Cache {
            lru: LruCache::new(capacity),
            stale_window_ns: u64::try_from(serve_stale.as_nanos()).unwrap_or(u64::MAX),
            evictions: 0,
            memory: 0,
            memory_limit,
        }
    }

    /// Bytes the entries take now.
    pub fn memory(&self) -> usize {
        self.memory
    }

    /// The answer for `key` at `now_ns`; one expired beyond the stale window is dropped.
    pub fn get(&mut self, key: &Key, now_ns: u64) -> Lookup {
        let Some(answer) = self.lru.get(key) else {
            return Lookup::Miss;
        };
        if !answer.expired(now_ns) {
            return Lookup::Fresh(answer.clone());
        }
        if answer.stale_servable(now_ns, self.stale_window_ns) {
            return Lookup::Stale(answer.clone());
        }
        self.remove(key);
        Lookup::Miss
    }

    fn remove(&mut self, key: &Key) {
        if let Some(answer) = self.lru.pop(key) {
            self.memory -= footprint(&answer);
        }
    }

    /// Stores `answer` if it is cacheable, evicting the least recently used entry when full.
    pub fn insert(&mut self, key: Key, answer: Arc<Answer>) {
        let size = footprint(&answer);
        if !answer.cacheable() || size > self.memory_limit {
            return;
        }
        self.memory += size;
        // `push` hands back the old entry of the same key as well as an evicted one.
        if let Some((pushed_out, old)) = self.lru.push(key.clone(), answer) {
            self.memory -= footprint(&old);
            if pushed_out != key {
                self.evictions += 1;
            }
        }
        while self.memory > self.memory_limit {
            let Some((_, old)) = self.lru.pop_lru() else {
                break;
            };
            self.memory -= footprint(&old);
            self.evictions += 1;
        }
    }

    /// Every entry not yet expired at `now_ns`, with its answer and whole seconds left.
    pub fn fresh(&self, now_ns: u64) -> impl Iterator<Item = (&Key, &Arc<Answer>, u64)> {
        self.lru
            .iter()
            .filter_map(move |(k, a)| Some((k, a, a.remaining_secs(now_ns)?)))
    }

    /// Removes every entry whose key `flush` selects; returns how many.
    pub fn remove_where(&mut self, flush: impl Fn(&Key) -> bool) -> u64 {
        let keys: Vec<Key> = self
            .lru
            .iter()
            .map(|(k, _)| k)
            .filter(|k| flush(k))
            .cloned()
            .collect();
        for key in &keys {
            self.remove(key);
        }
        keys.len() as u64
    }

    /// How full the cache is at `now_ns`: stale answers count as held, not as entries.
    pub fn size(&self, now_ns: u64) -> CacheSize {
        CacheSize {
            entries: self.fresh(now_ns).count() as u64,
            occupancy: self.lru.len() as u64,
            capacity: self.lru.cap().get() as u64,
            evictions: self.evictions,
        }
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::{
        op::{Edns, Message, Query, ResponseCode},
        rr::Record,
    };

    use super::*;
    use crate::{
        dns::answer::tests::{a, name, response},
        dns::query::{Parsed, parse},
    };

    const S: u64 = 1_000_000_000;

    fn client(qname: &str, dnssec_ok: bool) -> ClientQuery {
        let mut m = Message::new();
        m.add_query(Query::query(name(qname), RecordType::A));
        if dnssec_ok {
            let mut e = Edns::new();
            e.set_dnssec_ok(true);
            m.set_edns(e);
        }
        let Parsed::Query(q) = parse(&m.to_vec().unwrap()) else {
            panic!()
        };
        q
    }

    fn answer(ttl: u32, now: u64) -> Arc<Answer> {
        let msg = response(ResponseCode::NoError, vec![a("www.t.", ttl, 1)], vec![]);
        Arc::new(Answer::from_upstream(
            msg,
            now,
            &crate::dns::ttl::TtlPolicy::default(),
        ))
    }

    fn cache(n: usize) -> Cache {
        Cache::new(NonZeroUsize::new(n).unwrap(), usize::MAX, Duration::ZERO)
    }

    /// An answer of `records` A records for `name`.
    fn sized(name: &str, records: u8) -> Arc<Answer> {
        let answers = (0..records).map(|i| a(name, 300, i)).collect();
        let msg = response(ResponseCode::NoError, answers, vec![]);
        Arc::new(Answer::from_upstream(
            msg,
            0,
            &crate::dns::ttl::TtlPolicy::default(),
        ))
    }

    #[test]
    fn memory_is_bounded_in_bytes_whatever_the_count() {
        let big = sized("big.t.", 200);
        let limit = 3 * footprint(&big) + footprint(&big) / 2;
        let mut c = Cache::new(NonZeroUsize::new(1000).unwrap(), limit, Duration::ZERO);
        let key = |i: usize| Key::of(&client(&format!("n{i}.t."), false));
        for i in 0..10 {
            c.insert(key(i), sized(&format!("n{i}.t."), 200));
            assert!(c.memory() <= limit, "{} > {limit}", c.memory());
        }
        // The three most recent fit; the rest were evicted, least recently used first.
        assert_eq!(c.lru.len(), 3);
        assert!(matches!(c.get(&key(9), 0), Lookup::Fresh(_)));
        assert!(matches!(c.get(&key(7), 0), Lookup::Fresh(_)));
        assert_eq!(c.size(0).evictions, 7);
        // Replacing an entry and removing one give their bytes back.
        c.insert(key(9), sized("n9.t.", 1));
        assert_eq!(c.remove_where(|k| k == &key(8)), 1);
        let left = footprint(&sized("n9.t.", 1)) + footprint(&sized("n7.t.", 200));
        assert_eq!(c.memory(), left);
        // A single answer larger than the whole limit is not cached at all.
        let mut small = Cache::new(NonZeroUsize::new(1000).unwrap(), 1000, Duration::ZERO);
        small.insert(key(0), big);
        assert_eq!((small.lru.len(), small.memory()), (0, 0));
    }

    fn fresh(lookup: Lookup) -> Option<Arc<Answer>> {
        match lookup {
            Lookup::Fresh(answer) => Some(answer),
            _ => None,
        }
    }

    #[test]
    fn hits_ignore_case_and_age_ttls() {
        let mut c = cache(4);
        c.insert(Key::of(&client("WWW.t.", false)), answer(300, 0));
        let hit = fresh(c.get(&Key::of(&client("www.T.", false)), 100 * S)).unwrap();
        let ttls: Vec<u32> = hit
            .sections_at(100 * S)
            .answers
            .iter()
            .map(Record::ttl)
            .collect();
        // 100 s and the margin, rounded down.
        assert_eq!(ttls, vec![199]);
        assert!(matches!(
            c.get(&Key::of(&client("www.t.", true)), 100 * S),
            Lookup::Miss
        ));
    }

    #[test]
    fn expired_entries_are_not_served() {
        let mut c = cache(4);
        let key = Key::of(&client("www.t.", false));
        c.insert(key.clone(), answer(10, 5 * S));
        assert!(fresh(c.get(&key, 14 * S)).is_some());
        assert!(matches!(c.get(&key, 15 * S), Lookup::Miss));
        assert_eq!(c.lru.len(), 0);
    }

    #[test]
    fn expired_entries_are_stale_within_the_window() {
        let mut c = Cache::new(
            NonZeroUsize::new(4).unwrap(),
            usize::MAX,
            Duration::from_secs(60),
        );
        let key = Key::of(&client("www.t.", false));
        c.insert(key.clone(), answer(10, 0));
        assert!(matches!(c.get(&key, 9 * S), Lookup::Fresh(_)));
        assert!(matches!(c.get(&key, 10 * S), Lookup::Stale(_)));
        assert!(matches!(c.get(&key, 69 * S), Lookup::Stale(_)));
        assert!(matches!(c.get(&key, 70 * S), Lookup::Miss));
        assert_eq!(c.lru.len(), 0);
    }

    #[test]
    fn least_recently_used_goes_first() {
        let mut c = cache(2);
        let (k1, k2, k3) = (
            Key::of(&client("a.t.", false)),
            Key::of(&client("b.t.", false)),
            Key::of(&client("c.t.", false)),
        );
        c.insert(k1.clone(), answer(60, 0));
        c.insert(k2.clone(), answer(60, 0));
        assert!(fresh(c.get(&k1, 0)).is_some());
        c.insert(k3.clone(), answer(60, 0));
        assert!(fresh(c.get(&k1, 0)).is_some());
        assert!(fresh(c.get(&k2, 0)).is_none());
        assert!(fresh(c.get(&k3, 0)).is_some());
    }

    #[test]
    fn evictions_count_keys_pushed_out_not_replacements() {
        let mut c = cache(2);
        let keys: Vec<Key> = ["a.t.", "b.t.", "c.t."]
            .iter()
            .map(|n| Key::of(&client(n, false)))
            .collect();
        c.insert(keys[0].clone(), answer(60, 0));
        c.insert(keys[1].clone(), answer(60, 0));
        c.insert(keys[1].clone(), answer(60, 0));
        assert_eq!(c.size(0).evictions, 0, "a replacement");
        c.insert(keys[2].clone(), answer(60, 0));
        c.insert(keys[0].clone(), answer(60, 0));
        let size = c.size(0);
        assert_eq!((size.entries, size.capacity, size.evictions), (2, 2, 2));
    }

    #[test]
    fn expired_answers_are_held_but_not_entries_and_can_be_removed() {
        let mut c = cache(4);
        let (short, long) = (
            Key::of(&client("a.t.", false)),
            Key::of(&client("b.t.", true)),
        );
        c.insert(short.clone(), answer(10, 0));
        c.insert(long.clone(), answer(100, 0));
        let size = c.size(20 * S);
        assert_eq!((size.entries, size.occupancy), (1, 2));
        let fresh: Vec<(&Key, u64)> = c.fresh(20 * S).map(|(k, _, ttl)| (k, ttl)).collect();
        assert_eq!(fresh, vec![(&long, 80)]);
        assert!(long.dnssec_ok() && long.name().to_string() == "b.t.");
        assert_eq!(c.remove_where(|k| k.name() == short.name()), 1);
        assert_eq!(c.size(20 * S).occupancy, 1);
        assert_eq!(c.size(20 * S).evictions, 0, "removals are not evictions");
    }

    #[test]
    fn uncacheable_answers_are_not_stored() {
        let mut c = cache(2);
        let key = Key::of(&client("www.t.", false));
        c.insert(key.clone(), Arc::new(Answer::error(ResponseCode::ServFail)));
        assert!(matches!(c.get(&key, 0), Lookup::Miss));
    }
}
