//! The upstream's zone and the query sets the load generators read.
//!
//! Every name the hit sets ask for exists with a long TTL, so nothing expires during a run;
//! misses ask for names nobody asked for before (a wildcard answers them) and NXDOMAIN and
//! NODATA names come from small pools, as repeated typos and missing AAAA records do. The
//! first `SITES` hosts also have the other types stub resolvers ask for (`crate::clients`).

use std::fmt::Write as _;

use dnsxdp_tests::upstream::ZONE;

/// Names with an A and an AAAA record: the hit sets.
pub const HOSTS: u32 = 20_000;
/// Names with only an A record, asked for AAAA: NODATA.
pub const V4_ONLY: u32 = 2_000;
/// Two-step CNAME chains ending at a host.
pub const CHAINS: u32 = 2_000;
/// CNAMEs to names that do not exist.
pub const DANGLING: u32 = 1_000;
/// Names with `BIG_RECORDS` A records.
pub const BIG: u32 = 500;
pub const BIG_RECORDS: u32 = 8;
/// Names that do not exist, asked for repeatedly.
pub const NXDOMAIN: u32 = 1_000;
/// The first hosts, which also have HTTPS, MX and TXT records, an SRV record under
/// `_imaps._tcp` and a PTR record for their IPv4 address.
pub const SITES: u32 = 5_000;
const TTL: u32 = 3600;

/// The zone file: SOA, NS and the generated names.
pub fn zone_text() -> String {
    let mut z = format!(
        "$ORIGIN {ZONE}\n$TTL {TTL}\n\
         @ IN SOA ns hostmaster 1 3600 600 86400 {TTL}\n\
         @ IN NS ns\n\
         ns IN A 198.18.2.2\n\
         www IN A 198.18.10.1\n\
         www IN AAAA fd00:10::1\n\
         *.miss IN A 198.18.3.1\n\
         *.new IN A 198.18.3.2\n\
         *.new IN AAAA fd00:3::2\n\
         *.new IN HTTPS 1 . alpn=h2,h3\n"
    );
    for i in 0..HOSTS {
        let (hi, lo) = (i >> 8, i & 0xff);
        writeln!(
            z,
            "h{i} IN A 198.19.{hi}.{lo}\nh{i} IN AAAA fd00:100::{i:x}"
        )
        .unwrap();
    }
    for i in 0..V4_ONLY {
        writeln!(z, "v4only{i} IN A 198.18.4.{}", i & 0xff).unwrap();
    }
    for i in 0..CHAINS {
        writeln!(
            z,
            "alias{i} IN CNAME alias{i}.chain\nalias{i}.chain IN CNAME h{i}"
        )
        .unwrap();
    }
    for i in 0..DANGLING {
        writeln!(z, "dangling{i} IN CNAME gone{i}").unwrap();
    }
    for i in 0..BIG {
        for r in 0..BIG_RECORDS {
            writeln!(z, "big{i} IN A 198.18.{}.{}", 5 + r, i & 0xff).unwrap();
        }
    }
    for i in 0..SITES {
        writeln!(
            z,
            "h{i} IN HTTPS 1 . alpn=h2,h3\nh{i} IN MX 10 h{i}\n\
             h{i} IN TXT \"v=spf1 a -all\"\n{} IN SRV 0 1 993 h{i}\n{} IN PTR h{i}",
            srv_name(i),
            ptr_name(i)
        )
        .unwrap();
    }
    z
}

/// The owner of host `i`'s SRV record.
pub fn srv_name(i: u32) -> String {
    format!("_imaps._tcp.h{i}")
}

/// The owner of the PTR record for host `i`'s IPv4 address, reversed as under in-addr.arpa.
pub fn ptr_name(i: u32) -> String {
    format!("{}.{}.19.198.in-addr", i & 0xff, i >> 8)
}

/// One query: a name relative to the zone and a type, as dnsperf and kxdpgun read them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Q {
    pub name: String,
    pub qtype: &'static str,
}

impl Q {
    pub(crate) fn new(name: String, qtype: &'static str) -> Self {
        Self { name, qtype }
    }
}

/// Lines of `name. TYPE`, the input format of both dnsperf and kxdpgun.
pub fn query_file(queries: &[Q]) -> String {
    let mut s = String::with_capacity(queries.len() * 24);
    for q in queries {
        writeln!(s, "{}.{ZONE} {}", q.name, q.qtype).unwrap();
    }
    s
}

/// A for every host: the IPv4 100%-hit set.
pub fn hits_a() -> Vec<Q> {
    (0..HOSTS).map(|i| Q::new(format!("h{i}"), "A")).collect()
}

/// A and AAAA for every host, alternating.
pub fn hits_a_aaaa() -> Vec<Q> {
    (0..HOSTS)
        .flat_map(|i| {
            [
                Q::new(format!("h{i}"), "A"),
                Q::new(format!("h{i}"), "AAAA"),
            ]
        })
        .collect()
}

/// Everything the mix asks for more than once, so that a cache can hold it before the run.
pub fn warm() -> Vec<Q> {
    let mut q = hits_a_aaaa();
    q.extend((0..CHAINS).map(|i| Q::new(format!("alias{i}"), "A")));
    q.extend((0..BIG).map(|i| Q::new(format!("big{i}"), "A")));
    q.extend((0..DANGLING).map(|i| Q::new(format!("dangling{i}"), "A")));
    q.extend((0..NXDOMAIN).map(|i| Q::new(format!("nx{i}"), "A")));
    q.extend((0..V4_ONLY).map(|i| Q::new(format!("v4only{i}"), "AAAA")));
    q
}

/// Shares of the realistic mix, in percent.
pub const MIX: [(&str, u32); 7] = [
    ("host A/AAAA (hit)", 60),
    ("CNAME chain A (hit)", 8),
    ("8 A records (hit)", 2),
    ("unique name (miss)", 12),
    ("NXDOMAIN (negative hit)", 6),
    ("CNAME to NXDOMAIN (negative hit)", 4),
    ("AAAA of an A-only name, NODATA (negative hit)", 8),
];

/// `len` queries drawn with the `MIX` shares from a fixed seed; every miss is a new name.
pub fn mix(len: usize) -> Vec<Q> {
    let mut rng = SplitMix(0x5eed);
    let mut misses = 0u64;
    (0..len)
        .map(|_| {
            let pick = |rng: &mut SplitMix, n: u32| rng.below(u64::from(n));
            match rng.share(&MIX) {
                0 => {
                    let t = if rng.below(2) == 0 { "A" } else { "AAAA" };
                    Q::new(format!("h{}", pick(&mut rng, HOSTS)), t)
                }
                1 => Q::new(format!("alias{}", pick(&mut rng, CHAINS)), "A"),
                2 => Q::new(format!("big{}", pick(&mut rng, BIG)), "A"),
                3 => {
                    misses += 1;
                    Q::new(format!("m{misses}.miss"), "A")
                }
                4 => Q::new(format!("nx{}", pick(&mut rng, NXDOMAIN)), "A"),
                5 => Q::new(format!("dangling{}", pick(&mut rng, DANGLING)), "A"),
                _ => Q::new(format!("v4only{}", pick(&mut rng, V4_ONLY)), "AAAA"),
            }
        })
        .collect()
}

/// `len` queries, each for a name nobody asked before and none of the mix's: every one a miss
/// that goes upstream.
pub fn misses(len: usize) -> Vec<Q> {
    (0..len)
        .map(|i| Q::new(format!("new{i}.miss"), "A"))
        .collect()
}

/// A small deterministic generator, so every contender gets the same mix.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }

    /// The index of one of `shares` (in percent, adding up to 100), drawn with those shares.
    pub(crate) fn share(&mut self, shares: &[(&str, u32)]) -> usize {
        let r = self.below(100);
        let mut bound = 0;
        shares
            .iter()
            .position(|&(_, share)| {
                bound += u64::from(share);
                r < bound
            })
            .expect("shares add up to 100")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn zone_has_every_kind_of_name_once() {
        let z = zone_text();
        let records = z.lines().filter(|l| l.contains(" IN ")).count() as u32;
        assert_eq!(
            records,
            9 + 2 * HOSTS + V4_ONLY + 2 * CHAINS + DANGLING + BIG * BIG_RECORDS + 5 * SITES
        );
        for needle in [
            "h19999 IN AAAA fd00:100::4e1f\n",
            "h257 IN A 198.19.1.1\n",
            "alias7 IN CNAME alias7.chain\n",
            "alias7.chain IN CNAME h7\n",
            "dangling3 IN CNAME gone3\n",
            "h4999 IN HTTPS 1 . alpn=h2,h3\n",
            "h7 IN MX 10 h7\n",
            "_imaps._tcp.h7 IN SRV 0 1 993 h7\n",
            "1.1.19.198.in-addr IN PTR h257\n",
        ] {
            assert!(z.contains(needle), "{needle:?} missing");
        }
        let owners: HashSet<_> = z
            .lines()
            .filter_map(|l| l.split(" IN ").next().filter(|_| l.contains(" IN ")))
            .collect();
        assert!(owners.len() > 25_000, "tens of thousands of names");
    }

    #[test]
    fn query_sets_ask_for_names_of_the_zone() {
        let file = query_file(&hits_a()[..2]);
        assert_eq!(file, "h0.example.test. A\nh1.example.test. A\n");
        assert_eq!(hits_a_aaaa().len() as u32, 2 * HOSTS);
        let warm: HashSet<Q> = warm().into_iter().collect();
        for q in mix(5_000) {
            assert!(
                q.name.ends_with(".miss") || warm.contains(&q),
                "{q:?} is neither warmed nor a miss"
            );
        }
    }

    #[test]
    fn misses_are_new_names_the_mix_never_asks() {
        let m = misses(1_000);
        let names: HashSet<_> = m.iter().map(|q| &q.name).collect();
        assert_eq!(names.len(), m.len());
        assert!(m.iter().all(|q| q.name.ends_with(".miss")));
        assert!(mix(100_000).iter().all(|q| !names.contains(&q.name)));
    }

    #[test]
    fn mix_follows_its_shares_and_never_repeats_a_miss() {
        let m = mix(100_000);
        assert_eq!(m, mix(100_000), "deterministic");
        let misses: Vec<_> = m.iter().filter(|q| q.name.ends_with(".miss")).collect();
        let unique: HashSet<_> = misses.iter().map(|q| &q.name).collect();
        assert_eq!(unique.len(), misses.len());
        assert!((11_000..13_000).contains(&misses.len()), "{}", misses.len());
        let nodata = m
            .iter()
            .filter(|q| q.qtype == "AAAA" && q.name.starts_with("v4only"));
        assert!((7_000..9_000).contains(&nodata.count()));
    }
}
