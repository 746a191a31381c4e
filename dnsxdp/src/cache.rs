//! The daemon's own answer cache, for every query type.

use std::{num::NonZeroUsize, sync::Arc};

use hickory_proto::rr::{DNSClass, Name, RecordType};
use lru::LruCache;

use crate::{answer::Answer, query::ClientQuery};

/// What an answer depends on: the name (lower-cased), type, class and whether DNSSEC records
/// were asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    name: Name,
    qtype: RecordType,
    qclass: DNSClass,
    dnssec_ok: bool,
}

impl Key {
    pub fn of(q: &ClientQuery) -> Key {
        Key {
            name: q.lower_name(),
            qtype: q.query.query_type(),
            qclass: q.query.query_class(),
            dnssec_ok: q.dnssec_ok(),
        }
    }
}

pub struct Cache {
    lru: LruCache<Key, Arc<Answer>>,
}

impl Cache {
    pub fn new(capacity: NonZeroUsize) -> Cache {
        Cache {
            lru: LruCache::new(capacity),
        }
    }

    /// The answer for `key` unless it has expired by `now_ns` (then it is dropped).
    pub fn get(&mut self, key: &Key, now_ns: u64) -> Option<Arc<Answer>> {
        let answer = self.lru.get(key)?;
        if answer.expired(now_ns) {
            self.lru.pop(key);
            return None;
        }
        Some(answer.clone())
    }

    /// Stores `answer` if it is cacheable, evicting the least recently used entry when full.
    pub fn insert(&mut self, key: Key, answer: Arc<Answer>) {
        if answer.cacheable() {
            self.lru.put(key, answer);
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
        answer::tests::{a, name, response},
        query::{Parsed, parse},
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
        Arc::new(Answer::from_upstream(msg, now, 86400))
    }

    fn cache(n: usize) -> Cache {
        Cache::new(NonZeroUsize::new(n).unwrap())
    }

    #[test]
    fn hits_ignore_case_and_age_ttls() {
        let mut c = cache(4);
        c.insert(Key::of(&client("WWW.t.", false)), answer(300, 0));
        let hit = c.get(&Key::of(&client("www.T.", false)), 100 * S).unwrap();
        let ttls: Vec<u32> = hit
            .sections_at(100 * S)
            .answers
            .iter()
            .map(Record::ttl)
            .collect();
        assert_eq!(ttls, vec![200]);
        assert!(c.get(&Key::of(&client("www.t.", true)), 100 * S).is_none());
    }

    #[test]
    fn expired_entries_are_not_served() {
        let mut c = cache(4);
        let key = Key::of(&client("www.t.", false));
        c.insert(key.clone(), answer(10, 5 * S));
        assert!(c.get(&key, 14 * S).is_some());
        assert!(c.get(&key, 15 * S).is_none());
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
        assert!(c.get(&k1, 0).is_some());
        c.insert(k3.clone(), answer(60, 0));
        assert!(c.get(&k1, 0).is_some());
        assert!(c.get(&k2, 0).is_none());
        assert!(c.get(&k3, 0).is_some());
    }

    #[test]
    fn uncacheable_answers_are_not_stored() {
        let mut c = cache(2);
        let key = Key::of(&client("www.t.", false));
        c.insert(key.clone(), Arc::new(Answer::error(ResponseCode::ServFail)));
        assert!(c.get(&key, 0).is_none());
    }
}
