//! DNS-rebinding protection: an answer from a public upstream may not point a name at this
//! network's private, loopback or link-local addresses, as Unbound's `private-address` has it,
//! but for the domains allowed to. Such records are removed before the answer is cached.

use std::net::IpAddr;

use hickory_proto::{
    op::Message,
    rr::{Name, RData},
};

pub struct Rebind {
    /// Domains (and their subdomains) whose answers may hold private addresses.
    allowed: Vec<Name>,
}

impl Rebind {
    pub fn new(allowed: Vec<Name>) -> Rebind {
        Rebind { allowed }
    }

    /// Removes from `msg`, the answer to a question about `name`, the addresses that point
    /// into a private network, unless `name` is allowed to; returns how many went.
    pub fn strip(&self, name: &Name, msg: &mut Message) -> usize {
        if self.allowed.iter().any(|d| d.zone_of(name)) {
            return 0;
        }
        let before = msg.answers().len();
        msg.answers_mut().retain(|r| match r.data() {
            RData::A(a) => !private(IpAddr::V4(a.0)),
            RData::AAAA(a) => !private(IpAddr::V6(a.0)),
            _ => true,
        });
        before - msg.answers().len()
    }
}

/// An address that belongs inside a network, never to a public name: RFC 1918 and RFC 6598
/// space, loopback, link-local, "this network", and IPv6 unique-local, link-local, loopback,
/// unspecified and IPv4-mapped forms of those.
pub fn private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => private(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback()
                    || v6.is_unspecified()
                    || first & 0xfe00 == 0xfc00
                    || first & 0xffc0 == 0xfe80
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::{
        op::Message,
        rr::{
            Record,
            rdata::{A, AAAA, CNAME},
        },
    };

    use super::*;

    #[test]
    fn private_addresses() {
        for p in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.1.1",
        ] {
            assert!(private(p.parse().unwrap()), "{p}");
        }
        for p in [
            "198.18.0.1",
            "8.8.8.8",
            "172.32.0.1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!private(p.parse().unwrap()), "{p}");
        }
    }

    #[test]
    fn private_addresses_go_but_for_allowed_domains() {
        let name = |s: &str| Name::from_ascii(s).unwrap();
        let www = name("www.example.");
        let answer = || {
            let mut m = Message::new();
            m.add_answer(Record::from_rdata(
                www.clone(),
                60,
                RData::CNAME(CNAME(name("a.example."))),
            ));
            m.add_answer(Record::from_rdata(
                name("a.example."),
                60,
                RData::A(A::new(192, 168, 1, 1)),
            ));
            m.add_answer(Record::from_rdata(
                name("a.example."),
                60,
                RData::A(A::new(198, 18, 0, 1)),
            ));
            m.add_answer(Record::from_rdata(
                name("a.example."),
                60,
                RData::AAAA(AAAA::from("fd00::1".parse::<std::net::Ipv6Addr>().unwrap())),
            ));
            m
        };
        let mut m = answer();
        assert_eq!(Rebind::new(Vec::new()).strip(&www, &mut m), 2);
        assert_eq!(m.answers().len(), 2);
        let mut m = answer();
        assert_eq!(Rebind::new(vec![name("example.")]).strip(&www, &mut m), 0);
        assert_eq!(m.answers().len(), 4);
    }
}
