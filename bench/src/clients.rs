//! The real-clients scenario: what stub resolvers send. A lookup of a name asks A and AAAA
//! together, and HTTPS too for a third of names (as browsers do); now and then a stub asks a
//! PTR, MX, TXT or SRV. Some stubs send EDNS, a few with the DO bit or a cookie; and some
//! names nobody asked before.
//!
//! dnsperf's text input gives every query the same EDNS (`-D`, `-E`), so the queries are
//! written whole in its binary input (`-B`), each with its own OPT record or none.

use std::str::FromStr as _;

use dnsxdp_tests::{
    testrun::query::{Edns, Query},
    upstream::ZONE,
};
use hickory_proto::rr::RecordType;

use crate::zone::{Q, SITES, SplitMix, ptr_name, srv_name};

/// What a lookup asks, in percent of lookups. A name's lookup is 2 or 3 queries, the others 1:
/// new names are about 10% of the queries and the other types about 4%.
pub const LOOKUPS: [(&str, u32); 6] = [
    ("a known name: A and AAAA, and HTTPS for a third (hits)", 82),
    ("a new name: A and AAAA, and HTTPS for a third (misses)", 10),
    ("PTR of a known address", 2),
    ("MX of a known name", 2),
    ("TXT of a known name", 2),
    ("SRV of a known name", 2),
];

/// The OPT record of the stub that asks a lookup, in percent of lookups: 15% of the queries
/// have DO and 15% a cookie.
pub const STUBS: [(&str, u32); 5] = [
    ("no EDNS", 45),
    ("EDNS", 30),
    ("EDNS with a cookie", 10),
    ("EDNS with DO", 10),
    ("EDNS with DO and a cookie", 5),
];

/// The EDNS UDP payload size DNS Flag Day 2020 recommends.
const UDP_SIZE: u16 = 1232;
const OPT_COOKIE: u16 = 10;

/// One query of the scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    pub q: Q,
    pub edns: Option<Opt>,
    /// Its name was never asked before: a miss for every cache.
    pub new: bool,
}

/// A query's OPT record, with a UDP payload size of `UDP_SIZE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opt {
    pub dnssec_ok: bool,
    /// A client cookie (RFC 7873) without a server cookie, as on a stub's first query to a
    /// server. A cache must answer whatever the cookie, so any value does.
    pub cookie: Option<[u8; 8]>,
}

impl Ask {
    fn to_wire(&self) -> Vec<u8> {
        let qtype = RecordType::from_str(self.q.qtype).expect("a type the scenario asks");
        let mut query = Query::new(&format!("{}.{ZONE}", self.q.name), qtype.into());
        if let Some(opt) = self.edns {
            let mut edns = Edns::new(UDP_SIZE);
            edns.dnssec_ok = opt.dnssec_ok;
            if let Some(cookie) = opt.cookie {
                edns = edns.option(OPT_COOKIE, &cookie);
            }
            query = query.edns(edns);
        }
        query.to_wire()
    }
}

/// `len` queries drawn with the `LOOKUPS` and `STUBS` shares from a fixed seed; every query of
/// a lookup has the same OPT record, and every new name is asked in one lookup only.
pub fn real_clients(len: usize) -> Vec<Ask> {
    let mut rng = SplitMix(0xc11e);
    let mut new_names = 0u64;
    let mut asks = Vec::with_capacity(len + 2);
    while asks.len() < len {
        let (edns, dnssec_ok, cookie) = match rng.share(&STUBS) {
            0 => (false, false, false),
            1 => (true, false, false),
            2 => (true, false, true),
            3 => (true, true, false),
            _ => (true, true, true),
        };
        let edns = edns.then(|| Opt {
            dnssec_ok,
            cookie: cookie.then(|| rng.below(u64::MAX).to_be_bytes()),
        });
        let site = rng.below(u64::from(SITES)) as u32;
        let kind = rng.share(&LOOKUPS);
        let queries = match kind {
            0 | 1 => {
                let name = if kind == 0 {
                    format!("h{site}")
                } else {
                    new_names += 1;
                    format!("n{new_names}.new")
                };
                let mut q = vec![Q::new(name.clone(), "A"), Q::new(name.clone(), "AAAA")];
                if rng.below(3) == 0 {
                    q.push(Q::new(name, "HTTPS"));
                }
                q
            }
            2 => vec![Q::new(ptr_name(site), "PTR")],
            3 => vec![Q::new(format!("h{site}"), "MX")],
            4 => vec![Q::new(format!("h{site}"), "TXT")],
            _ => vec![Q::new(srv_name(site), "SRV")],
        };
        asks.extend(queries.into_iter().map(|q| Ask {
            q,
            edns,
            new: kind == 1,
        }));
    }
    asks.truncate(len);
    asks
}

/// Every question the scenario repeats, without and with DO: dnsxdp caches the answers to
/// DO queries apart, so a stub that sets DO asks another question of the cache.
pub fn warm() -> Vec<Ask> {
    (0..SITES)
        .flat_map(|i| {
            let host = format!("h{i}");
            [
                Q::new(host.clone(), "A"),
                Q::new(host.clone(), "AAAA"),
                Q::new(host.clone(), "HTTPS"),
                Q::new(host.clone(), "MX"),
                Q::new(host, "TXT"),
                Q::new(srv_name(i), "SRV"),
                Q::new(ptr_name(i), "PTR"),
            ]
        })
        .flat_map(|q| {
            let dnssec_ok = Opt {
                dnssec_ok: true,
                cookie: None,
            };
            [None, Some(dnssec_ok)].map(|edns| Ask {
                q: q.clone(),
                edns,
                new: false,
            })
        })
        .collect()
}

/// dnsperf's binary input: each query as its length in 2 bytes and the message, whose ID
/// dnsperf overwrites.
pub fn wire_file(asks: &[Ask]) -> Vec<u8> {
    let mut out = Vec::with_capacity(asks.len() * 48);
    for a in asks {
        let m = a.to_wire();
        out.extend_from_slice(&(m.len() as u16).to_be_bytes());
        out.extend_from_slice(&m);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use hickory_proto::{
        op::Message,
        rr::rdata::opt::{EdnsCode, EdnsOption},
    };

    use super::*;
    use crate::zone::zone_text;

    #[test]
    fn real_clients_follow_their_shares_and_never_repeat_a_new_name() {
        let asks = real_clients(100_000);
        assert_eq!(asks.len(), 100_000);
        assert_eq!(asks, real_clients(100_000), "deterministic");
        let count = |f: &dyn Fn(&Ask) -> bool| asks.iter().filter(|a| f(a)).count();
        let is = |t: &'static str| move |a: &Ask| a.q.qtype == t;

        for (i, a) in asks.iter().enumerate().filter(|(_, a)| a.q.qtype == "A") {
            let Some(b) = asks.get(i + 1) else { continue };
            assert_eq!(
                (&b.q.name, b.q.qtype, b.edns, b.new),
                (&a.q.name, "AAAA", a.edns, a.new),
                "AAAA right after A, from the same stub"
            );
        }
        let names = count(&is("A"));
        assert_eq!(count(&is("AAAA")), names);
        let https = count(&is("HTTPS"));
        assert!(
            (30..37).contains(&(https * 100 / names)),
            "{https} of {names}"
        );
        for t in ["PTR", "MX", "TXT", "SRV"] {
            assert!((600..1_200).contains(&count(&is(t))), "{t}");
        }

        let dnssec_ok = count(&|a| a.edns.is_some_and(|e| e.dnssec_ok));
        assert!((14_000..16_000).contains(&dnssec_ok), "{dnssec_ok} DO");
        let cookies = count(&|a| a.edns.is_some_and(|e| e.cookie.is_some()));
        assert!((14_000..16_000).contains(&cookies), "{cookies} cookies");
        assert!(count(&|a| a.edns.is_none()) > 40_000);

        let new = count(&|a| a.new);
        assert!((9_500..11_500).contains(&new), "{new} new");
        assert!(asks.iter().all(|a| a.new == a.q.name.ends_with(".new")));
        let new_names: HashSet<_> = asks.iter().filter(|a| a.new).map(|a| &a.q.name).collect();
        let new_lookups = count(&|a| a.new && a.q.qtype == "A");
        assert_eq!(
            new_names.len(),
            new_lookups,
            "a new name in one lookup only"
        );

        let warmed: HashSet<_> = warm()
            .into_iter()
            .map(|a| (a.q, a.edns.is_some_and(|e| e.dnssec_ok)))
            .collect();
        for a in asks.iter().filter(|a| !a.new) {
            let dnssec_ok = a.edns.is_some_and(|e| e.dnssec_ok);
            assert!(
                warmed.contains(&(a.q.clone(), dnssec_ok)),
                "{a:?} not warmed"
            );
        }
    }

    #[test]
    fn every_repeated_question_has_records() {
        let zone = zone_text();
        let records: HashSet<(&str, &str)> = zone
            .lines()
            .filter_map(|l| {
                let (owner, rest) = l.split_once(" IN ")?;
                Some((owner, rest.split(' ').next()?))
            })
            .collect();
        for a in warm() {
            assert!(
                records.contains(&(a.q.name.as_str(), a.q.qtype)),
                "{:?} has no record",
                a.q
            );
        }
        for t in ["A", "AAAA", "HTTPS"] {
            assert!(records.contains(&("*.new", t)), "new names have {t}");
        }
    }

    #[test]
    fn wire_file_holds_each_query_after_its_length() {
        let asks = [
            Ask {
                q: Q::new("h1".into(), "HTTPS"),
                edns: Some(Opt {
                    dnssec_ok: true,
                    cookie: Some(*b"cookie!!"),
                }),
                new: false,
            },
            Ask {
                q: Q::new(ptr_name(257), "PTR"),
                edns: None,
                new: false,
            },
        ];
        let file = wire_file(&asks);
        let len = usize::from(u16::from_be_bytes([file[0], file[1]]));
        let first = Message::from_vec(&file[2..2 + len]).unwrap();
        assert_eq!(first.queries()[0].name().to_string(), "h1.example.test.");
        assert_eq!(first.queries()[0].query_type(), RecordType::HTTPS);
        assert!(first.recursion_desired());
        let edns = first.extensions().as_ref().unwrap();
        assert!(edns.flags().dnssec_ok);
        assert_eq!(edns.max_payload(), UDP_SIZE);
        assert_eq!(
            edns.option(EdnsCode::Cookie),
            Some(&EdnsOption::Unknown(OPT_COOKIE, b"cookie!!".to_vec()))
        );

        let rest = &file[2 + len..];
        let second = Message::from_vec(&rest[2..]).unwrap();
        assert_eq!(
            rest.len(),
            2 + usize::from(u16::from_be_bytes([rest[0], rest[1]]))
        );
        assert_eq!(
            second.queries()[0].name().to_string(),
            "1.1.19.198.in-addr.example.test."
        );
        assert!(second.extensions().is_none());
    }
}
