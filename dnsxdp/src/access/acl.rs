//! Access control lists: CIDR prefixes, the default list, and the trie entries that both the
//! XDP program and the daemon look clients up in.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::{IpAddr, Ipv6Addr},
    str::FromStr,
};

use clap::ValueEnum;
use dnsxdp_common::acl::{ACL_ALLOW, ACL_EXEMPT, V4_MAPPED_PREFIX, prefix_mask, v4_mapped};

/// Allowed when no `allow` rule is configured: loopback, RFC 1918, link-local and unique local
/// addresses. Everyone else is denied: an open resolver is a liability.
pub const DEFAULT_ALLOW: [&str; 8] = [
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

/// What a query from a denied client gets.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DenyAction {
    /// Nothing.
    #[default]
    Drop,
    /// A REFUSED answer.
    Refuse,
}

/// An address prefix, IPv4 or IPv6, with no bits set past its length. Prefixes are compared in
/// the trie's 128-bit form, IPv4 ones as IPv4-mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// The address in 16 bytes, IPv4 mapped, and the prefix length over those 128 bits: the
    /// form of the `ACL` trie's keys.
    pub fn key(&self) -> ([u8; 16], u32) {
        match self.addr {
            IpAddr::V4(a) => (v4_mapped(a.octets()), V4_MAPPED_PREFIX + self.len as u32),
            IpAddr::V6(a) => (a.octets(), self.len as u32),
        }
    }

    /// The prefix of `key()`'s form.
    pub fn from_key(addr: [u8; 16], len: u32) -> Cidr {
        let ip = Ipv6Addr::from(addr);
        match ip.to_ipv4_mapped() {
            Some(v4) if len >= V4_MAPPED_PREFIX => Cidr {
                addr: v4.into(),
                len: (len - V4_MAPPED_PREFIX) as u8,
            },
            _ => Cidr {
                addr: ip.into(),
                len: len as u8,
            },
        }
    }

    /// Whether `other` lies within this prefix (or is it).
    pub fn contains(&self, other: &Cidr) -> bool {
        let ((a, len), (b, other_len)) = (self.key(), other.key());
        other_len >= len && masked(b, len) == a
    }

    /// The prefix of the one address `ip`.
    pub fn host(ip: IpAddr) -> Cidr {
        let len = if ip.is_ipv4() { 32 } else { 128 };
        Cidr { addr: ip, len }
    }

    /// Whether the address lies within this prefix. Compared in the 128-bit form, an
    /// IPv4-mapped IPv6 address (a dual-stack socket's peer) is within its IPv4 prefixes.
    pub fn covers(&self, ip: IpAddr) -> bool {
        self.contains(&Cidr::host(ip))
    }
}

fn masked(mut addr: [u8; 16], len: u32) -> [u8; 16] {
    for (b, m) in addr.iter_mut().zip(prefix_mask(len)) {
        *b &= m;
    }
    addr
}

impl FromStr for Cidr {
    type Err = String;

    /// `ADDR/LEN`, or a bare address for a single host.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("invalid prefix '{s}': expected ADDR/LEN, e.g. 192.168.0.0/16");
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(len) => len
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        let cidr = Cidr { addr, len };
        let (bytes, bits) = cidr.key();
        if masked(bytes, bits) != bytes {
            let network = Cidr::from_key(masked(bytes, bits), bits);
            return Err(format!(
                "invalid prefix '{s}': bits set past /{len}; did you mean {network}?"
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Parses a list of prefixes, naming the setting in errors.
pub fn parse_list(key: &str, list: &[String]) -> Result<Vec<Cidr>, String> {
    list.iter()
        .map(|s| s.parse().map_err(|e| format!("{key}: {e}")))
        .collect()
}

/// Allow and deny rules; the most specific prefix covering a client decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    /// Every rule, allowed or not; `0.0.0.0/0` and `::/0` are always among them.
    rules: Vec<(Cidr, bool)>,
}

impl Acl {
    /// `allow` (the default list when `None`) and `deny`, over a denial of everything else. A
    /// deny rule for a prefix on the default list takes its place; the same prefix given to
    /// both `allow` and `deny` is an error.
    pub fn new(allow: Option<Vec<Cidr>>, deny: Vec<Cidr>) -> Result<Acl, String> {
        let configured = allow.is_some();
        let allow = allow.unwrap_or_else(|| {
            DEFAULT_ALLOW
                .iter()
                .map(|s| s.parse().expect("default prefixes are valid"))
                .collect()
        });
        let denied: HashSet<Cidr> = deny.iter().copied().collect();
        let mut seen = HashSet::new();
        let mut rules = Vec::new();
        for cidr in allow {
            if configured && denied.contains(&cidr) {
                return Err(format!("{cidr} is both allowed and denied"));
            }
            if !denied.contains(&cidr) && seen.insert(cidr) {
                rules.push((cidr, true));
            }
        }
        let everything = ["0.0.0.0/0", "::/0"].map(|c| c.parse().expect("valid prefix"));
        for cidr in deny.into_iter().chain(everything) {
            if seen.insert(cidr) {
                rules.push((cidr, false));
            }
        }
        Ok(Acl { rules })
    }

    /// The rules: prefix and whether it is allowed.
    pub fn rules(&self) -> impl Iterator<Item = (Cidr, bool)> + '_ {
        self.rules.iter().copied()
    }

    /// Whether the most specific rule covering `ip` allows it: the reference the trie entries
    /// are tested against.
    #[cfg(test)]
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.rules
            .iter()
            .filter(|(c, _)| c.covers(ip))
            .max_by_key(|(c, _)| c.key().1)
            .is_some_and(|&(_, allow)| allow)
    }
}

/// Prefixes by their trie key, with a longest-prefix lookup.
struct PrefixMap<T> {
    by_key: HashMap<([u8; 16], u32), T>,
    /// The prefix lengths present, longest first.
    lens: Vec<u32>,
}

impl<T> PrefixMap<T> {
    fn new(entries: impl IntoIterator<Item = (Cidr, T)>) -> Self {
        let by_key: HashMap<_, _> = entries.into_iter().map(|(c, v)| (c.key(), v)).collect();
        let mut lens: Vec<u32> = by_key.keys().map(|&(_, len)| len).collect();
        lens.sort_unstable_by(|a, b| b.cmp(a));
        lens.dedup();
        PrefixMap { by_key, lens }
    }

    /// The value of the longest prefix that contains `cidr` (or is it).
    fn longest(&self, cidr: &Cidr) -> Option<&T> {
        let (addr, len) = cidr.key();
        self.lens
            .iter()
            .filter(|&&l| l <= len)
            .find_map(|&l| self.by_key.get(&(masked(addr, l), l)))
    }
}

/// The `ACL` trie entries for `acl` and the rate-limit exemptions `exempt`, merged so that one
/// longest-prefix lookup answers both: every prefix of either list gets the action of the most
/// specific rule covering it, and is exempt if an exempt prefix covers it. The longest entry
/// covering an address then carries exactly the address's own rule and exemption, since it is
/// at least as long as, and lies within, both the most specific rule and exemption covering
/// the address.
pub fn compile(acl: &Acl, exempt: &[Cidr]) -> Vec<(Cidr, u8)> {
    let rules = PrefixMap::new(acl.rules());
    let exempts = PrefixMap::new(exempt.iter().map(|&e| (e, ())));
    let mut seen = HashSet::new();
    acl.rules()
        .map(|(c, _)| c)
        .chain(exempt.iter().copied())
        .filter(|c| seen.insert(*c))
        .map(|p| {
            let allow = rules.longest(&p).copied().unwrap_or(false);
            let exempt = exempts.longest(&p).is_some();
            let flags = if allow { ACL_ALLOW } else { 0 } | if exempt { ACL_EXEMPT } else { 0 };
            (p, flags)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The flags of the longest entry covering `ip`, as the trie finds them.
    fn lookup(entries: &[(Cidr, u8)], ip: IpAddr) -> u8 {
        entries
            .iter()
            .filter(|(c, _)| c.covers(ip))
            .max_by_key(|(c, _)| c.key().1)
            .map(|&(_, f)| f)
            .unwrap()
    }

    #[test]
    fn parsing_and_display() {
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("198.18.1.2").to_string(), "198.18.1.2/32");
        assert_eq!(cidr("fd00::/8").to_string(), "fd00::/8");
        assert_eq!(cidr("::1").key(), (Ipv6Addr::LOCALHOST.octets(), 128));
        assert_eq!(cidr("10.0.0.0/8").key().1, 104);
        let e = "10.1.2.3/8".parse::<Cidr>().unwrap_err();
        assert_eq!(
            e,
            "invalid prefix '10.1.2.3/8': bits set past /8; did you mean 10.0.0.0/8?"
        );
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "example.com",
            "10.0.0.0/",
            "/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        for c in ["0.0.0.0/0", "198.18.0.0/15", "::/0", "fd00:1::/64"] {
            let (addr, len) = cidr(c).key();
            assert_eq!(Cidr::from_key(addr, len), cidr(c));
        }
    }

    #[test]
    fn containment() {
        assert!(cidr("10.0.0.0/8").contains(&cidr("10.1.0.0/16")));
        assert!(!cidr("10.1.0.0/16").contains(&cidr("10.0.0.0/8")));
        assert!(cidr("0.0.0.0/0").covers(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").covers(ip("fd00::1")));
        // IPv4 lives in ::ffff:0:0/96, which ::/0 covers; the rules always hold 0.0.0.0/0,
        // which is more specific.
        assert!(cidr("::/0").covers(ip("10.0.0.1")));
        assert!(cidr("fe80::/10").covers(ip("fe80::1")));
    }

    #[test]
    fn defaults_allow_private_clients_only() {
        let acl = Acl::new(None, vec![]).unwrap();
        for ok in [
            "127.0.0.1",
            "10.9.8.7",
            "172.31.0.1",
            "192.168.1.1",
            "::1",
            "fd00::5",
        ] {
            assert!(acl.allows(ip(ok)), "{ok}");
        }
        for no in ["198.18.1.2", "172.32.0.1", "8.8.8.8", "2001:db8::1", "::2"] {
            assert!(!acl.allows(ip(no)), "{no}");
        }
    }

    #[test]
    fn most_specific_wins_and_deny_adds_to_the_defaults() {
        let acl = Acl::new(None, vec![cidr("192.168.1.66/32"), cidr("10.0.0.0/8")]).unwrap();
        assert!(acl.allows(ip("192.168.1.65")));
        assert!(!acl.allows(ip("192.168.1.66")));
        assert!(!acl.allows(ip("10.0.0.1")));
        let acl = Acl::new(
            Some(vec![cidr("198.18.0.0/15"), cidr("198.18.1.50/32")]),
            vec![cidr("198.18.1.0/24")],
        )
        .unwrap();
        assert!(acl.allows(ip("198.18.0.9")));
        assert!(!acl.allows(ip("198.18.1.9")));
        assert!(acl.allows(ip("198.18.1.50")));
        assert!(
            !acl.allows(ip("127.0.0.1")),
            "a configured list replaces the defaults"
        );
        let e = Acl::new(Some(vec![cidr("fd00::/8")]), vec![cidr("fd00::/8")]).unwrap_err();
        assert_eq!(e, "fd00::/8 is both allowed and denied");
    }

    #[test]
    fn allowing_everything_replaces_the_catch_all() {
        let acl = Acl::new(Some(vec![cidr("0.0.0.0/0")]), vec![]).unwrap();
        assert!(acl.allows(ip("203.0.113.1")));
        assert!(!acl.allows(ip("2001:db8::1")));
        assert_eq!(acl.rules().count(), 2);
    }

    #[test]
    fn compiled_entries_answer_rule_and_exemption_in_one_lookup() {
        let acl = Acl::new(
            Some(vec![cidr("10.0.0.0/8"), cidr("10.1.2.0/24")]),
            vec![cidr("10.1.0.0/16")],
        )
        .unwrap();
        let exempt = [cidr("10.1.0.0/20"), cidr("10.0.0.0/8"), cidr("fd00::/64")];
        let entries = compile(&acl, &exempt);
        for (addr, allow) in [
            ("10.0.0.1", true),
            ("10.1.0.1", false),
            ("10.1.2.3", true),
            ("10.1.16.1", false),
            ("8.8.8.8", false),
            ("fd00::1", false),
        ] {
            let exempt = exempt.iter().any(|e| e.covers(ip(addr)));
            let want = if allow { ACL_ALLOW } else { 0 } | if exempt { ACL_EXEMPT } else { 0 };
            assert_eq!(lookup(&entries, ip(addr)), want, "{addr}");
            assert_eq!(acl.allows(ip(addr)), allow, "{addr}");
        }
    }
}
