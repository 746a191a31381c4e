//! The ACL and rate limit for the queries the daemon receives: TCP, and UDP the XDP program
//! did not see. Rules and buckets live in the XDP program's maps, which the daemon reads and
//! writes too, so a rule or a bucket is the same wherever a query lands; with `--no-xdp` the
//! daemon keeps the same tables itself.

pub mod acl;
pub mod charged;
pub mod counters;
pub mod kernel;
pub mod memory;
mod policy;
pub mod ratelimit;
pub mod security;
pub mod settings;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Mutex, RwLock},
};

use anyhow::bail;
use dnsxdp_common::{
    acl::{ACL_ALLOW, ACL_EXEMPT, AccessConfig, Bucket, Charge, DENY_REFUSE, RateKey, v4_mapped},
    ports::reflective_port,
};
use serde::{Deserialize, Serialize};
use tracing::warn;

use self::counters::Counters;
pub use self::{charged::XdpPaths, policy::AccessPolicy};
use crate::{
    access::acl::Cidr,
    access::security::{Action, Layer, SecurityLog},
    dns::bare_reply::{Kind, bare_reply},
    dns::clock,
};

/// The lookups behind the checks: the XDP program's maps or the daemon's own tables.
pub trait Tables: Send + Sync {
    /// The `ACL_*` bits of the most specific entry covering a 16-byte (IPv4-mapped) address.
    fn rule(&self, addr: [u8; 16]) -> anyhow::Result<u8>;
    fn bucket(&self, key: &RateKey) -> anyhow::Result<Option<Bucket>>;
    fn set_bucket(&self, key: &RateKey, bucket: &Bucket) -> anyhow::Result<()>;
    fn buckets(&self) -> anyhow::Result<Vec<(RateKey, Bucket)>>;
    /// Replaces the trie entries and the settings.
    fn apply(&self, entries: &[(Cidr, u8)], config: &AccessConfig) -> anyhow::Result<()>;
}

/// How a query reached the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Over UDP, received on this interface, sent to `dest`.
    Udp {
        ifindex: u32,
        dest: SocketAddr,
    },
    Tcp,
}

/// What to do with a query.
#[derive(Debug, PartialEq, Eq)]
pub enum Screened {
    Serve,
    /// Send this instead: REFUSED, or TC=1 for a limited query that slips.
    Answer(Vec<u8>),
    /// Send nothing; `denied`: the client may not ask at all.
    Drop {
        denied: bool,
    },
}

/// A client's address as the tables key it (IPv4-mapped), and whether it is IPv6.
fn client_addr(peer: IpAddr) -> ([u8; 16], bool) {
    match peer.to_canonical() {
        IpAddr::V4(a) => (v4_mapped(a.octets()), false),
        IpAddr::V6(a) => (a.octets(), true),
    }
}

/// A client prefix and how many of its queries the rate limit stopped.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LimitedClient {
    pub prefix: String,
    pub limited: u64,
}

pub struct Access {
    tables: Box<dyn Tables>,
    /// What was last written to the tables; the daemon is their only writer.
    config: RwLock<AccessConfig>,
    /// Where UDP queries were charged by the XDP program already.
    xdp_paths: RwLock<XdpPaths>,
    /// The daemon's bucket updates are read-modify-write; one at a time.
    charging: Mutex<()>,
    counters: Counters,
    security: SecurityLog,
}

impl Access {
    /// The queries screened so far, by outcome.
    pub fn counts(&self) -> counters::Counts {
        self.counters.counts()
    }

    /// Where queries stopped by XDP are logged too.
    pub fn security_log(&self) -> &SecurityLog {
        &self.security
    }

    /// Access control by `policy`, written to `tables`.
    pub fn new(
        tables: Box<dyn Tables>,
        policy: &AccessPolicy,
        xdp_paths: XdpPaths,
    ) -> anyhow::Result<Access> {
        let access = Access {
            tables,
            config: RwLock::new(policy.config()),
            xdp_paths: RwLock::new(xdp_paths),
            charging: Mutex::new(()),
            counters: Counters::default(),
            security: SecurityLog::default(),
        };
        access.apply(policy)?;
        Ok(access)
    }

    /// Puts `policy` in force on both sides. Nothing is changed if it does not fit.
    pub fn apply(&self, policy: &AccessPolicy) -> anyhow::Result<()> {
        if let Err(e) = policy.check() {
            bail!(e);
        }
        let config = policy.config();
        self.tables.apply(&policy.entries(), &config)?;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    /// Takes in what the XDP program sees now: its interfaces and SERVED change.
    pub fn set_xdp_paths(&self, paths: XdpPaths) {
        *self.xdp_paths.write().unwrap_or_else(|p| p.into_inner()) = paths;
    }

    /// Whether a UDP datagram from `peer` must go unanswered for its source port, whatever
    /// the ACL says (`ports::reflective_port`); such datagrams are counted.
    pub fn from_reflective_port(&self, peer: SocketAddr) -> bool {
        let reflective = reflective_port(peer.port());
        if reflective {
            self.counters.dropped_source_port();
        }
        reflective
    }

    /// Whether a TCP connection from `peer` may stay open: the ACL allows it to ask. A denied
    /// one is counted and closed, whatever `acl-action` says, since it could only hold a
    /// connection others need.
    pub fn admit_connection(&self, peer: IpAddr) -> bool {
        let allowed = self.rule(client_addr(peer).0) & ACL_ALLOW != 0;
        if !allowed {
            self.counters.denied(false);
            self.security
                .record(peer, Action::Denied { refused: false }, Layer::Daemon);
        }
        allowed
    }

    /// Applies the ACL and the rate limit to `packet` from `peer`, and counts the outcome.
    pub fn screen(&self, packet: &[u8], peer: IpAddr, via: Via) -> Screened {
        let (addr, v6) = client_addr(peer);
        let config = *self.config.read().unwrap_or_else(|p| p.into_inner());
        let rule = self.rule(addr);
        let charged = match via {
            Via::Udp { ifindex, dest } => self
                .xdp_paths
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .charged(ifindex, dest),
            Via::Tcp => false,
        };
        if rule & ACL_ALLOW == 0 {
            // REFUSED is an answer too, so it is held to the rate limit like any other: a
            // flood with spoofed sources is not reflected one for one.
            let refuse = config.deny == DENY_REFUSE
                && !(config.limits() && !charged && self.charge(&config, addr, v6, via).is_some());
            if refuse && let Some(refused) = bare_reply(packet, Kind::Refused) {
                self.counters.denied(true);
                self.security
                    .record(peer, Action::Denied { refused: true }, Layer::Daemon);
                return Screened::Answer(refused);
            }
            self.counters.denied(false);
            self.security
                .record(peer, Action::Denied { refused: false }, Layer::Daemon);
            return Screened::Drop { denied: true };
        }
        if rule & ACL_EXEMPT == 0
            && config.limits()
            && !charged
            && let Some(slip) = self.charge(&config, addr, v6, via)
        {
            // Over TCP a client has nowhere better to go.
            if slip
                && via != Via::Tcp
                && let Some(truncated) = bare_reply(packet, Kind::Truncated)
            {
                self.counters.limited(true);
                self.security
                    .record(peer, Action::Limited { slipped: true }, Layer::Daemon);
                return Screened::Answer(truncated);
            }
            self.counters.limited(false);
            self.security
                .record(peer, Action::Limited { slipped: false }, Layer::Daemon);
            return Screened::Drop { denied: false };
        }
        self.counters.allowed();
        Screened::Serve
    }

    /// The `ACL_*` bits for a 16-byte address.
    fn rule(&self, addr: [u8; 16]) -> u8 {
        self.tables.rule(addr).unwrap_or_else(|e| {
            // Closed: a client the ACL cannot vouch for is not served.
            warn!("{e:#}");
            0
        })
    }

    /// Charges a query to its bucket as the XDP program does; `Some(slip)` when over the
    /// limit. A kernel update between our read and write of the same bucket is lost, which at
    /// worst forgets a charge.
    fn charge(&self, config: &AccessConfig, addr: [u8; 16], v6: bool, via: Via) -> Option<bool> {
        let key = config.rate_key(addr, v6);
        let _one_at_a_time = self.charging.lock().unwrap_or_else(|p| p.into_inner());
        let now = clock::now_ns();
        let result = self.tables.bucket(&key).and_then(|bucket| {
            let mut b = bucket.unwrap_or(Bucket {
                tat_ns: 0,
                limited: 0,
            });
            let charge = match via {
                Via::Udp { .. } => config.charge(b.tat_ns, now),
                Via::Tcp => config.charge_tcp(b.tat_ns, now),
            };
            let over = match charge {
                Charge::Start(tat) => {
                    b.tat_ns = tat;
                    None
                }
                Charge::Take => {
                    b.tat_ns += config.interval_ns;
                    None
                }
                Charge::Limited => {
                    b.limited += 1;
                    Some(config.slips(b.limited))
                }
            };
            self.tables.set_bucket(&key, &b)?;
            Ok(over)
        });
        result.unwrap_or_else(|e| {
            // Open: losing track of a bucket must not take the service down.
            warn!("{e:#}");
            None
        })
    }

    /// The `n` client prefixes the rate limit stopped most often, as long as their buckets
    /// are kept.
    pub fn top(&self, n: usize) -> anyhow::Result<Vec<LimitedClient>> {
        let mut limited: Vec<(RateKey, Bucket)> = self
            .tables
            .buckets()?
            .into_iter()
            .filter(|(_, b)| b.limited > 0)
            .collect();
        limited.sort_by_key(|(_, b)| std::cmp::Reverse(b.limited));
        Ok(limited
            .into_iter()
            .take(n)
            .map(|(key, b)| LimitedClient {
                prefix: Cidr::from_key(key.addr, key.prefix_len).to_string(),
                limited: b.limited,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::{
        op::{Message, Query, ResponseCode},
        rr::{Name, RecordType},
    };

    use super::*;
    use dnsxdp_common::acl::MAX_ACL_RULES;

    use crate::access::memory::MemoryTables;
    use crate::access::{acl::DenyAction, settings::Settings};

    /// Where the XDP program answers in these tests.
    const SERVED: &str = "198.18.1.1:53";

    fn via_udp(ifindex: u32) -> Via {
        Via::Udp {
            ifindex,
            dest: SERVED.parse().unwrap(),
        }
    }

    /// Access by `settings`, with an XDP program on `xdp_ifaces` serving `SERVED`.
    fn access(settings: Settings, xdp_ifaces: Vec<u32>) -> Access {
        let policy = AccessPolicy::from_settings(&settings).unwrap();
        let tables = Box::new(MemoryTables::default());
        let paths = XdpPaths {
            ifaces: xdp_ifaces,
            served: vec![SERVED.parse().unwrap()],
        };
        Access::new(tables, &policy, paths).unwrap()
    }

    fn query() -> Vec<u8> {
        let mut m = Message::new();
        m.add_query(Query::query(
            Name::from_ascii("www.example.test.").unwrap(),
            RecordType::A,
        ));
        m.to_vec().unwrap()
    }

    fn rcode(screened: &Screened) -> Option<(ResponseCode, bool)> {
        match screened {
            Screened::Answer(bytes) => {
                let m = Message::from_vec(bytes).unwrap();
                Some((m.response_code(), m.truncated()))
            }
            _ => None,
        }
    }

    #[test]
    fn denied_clients_are_refused_or_dropped() {
        let a = access(
            Settings {
                allow: Some(vec!["198.18.1.0/25".into()]),
                acl_action: Some(DenyAction::Refuse),
                ..Default::default()
            },
            vec![],
        );
        let (q, udp) = (query(), via_udp(1));
        let stranger = "198.18.1.200".parse().unwrap();
        assert_eq!(
            a.screen(&q, "198.18.1.2".parse().unwrap(), udp),
            Screened::Serve
        );
        let refused = a.screen(&q, stranger, Via::Tcp);
        assert_eq!(rcode(&refused), Some((ResponseCode::Refused, false)));
        // Without a question there is nothing to refuse.
        let screened = a.screen(&q[..12], stranger, udp);
        assert_eq!(screened, Screened::Drop { denied: true });
        assert_eq!(
            a.screen(&q, "::ffff:198.18.1.200".parse().unwrap(), udp),
            refused,
            "IPv4-mapped peers are IPv4 clients"
        );
        let d = a.counts();
        assert_eq!((d.allowed, d.denied_refused, d.denied_dropped), (1, 2, 1));
    }

    #[test]
    fn refusals_are_held_to_the_rate_limit() {
        let a = access(
            Settings {
                allow: Some(vec!["198.18.1.0/25".into()]),
                acl_action: Some(DenyAction::Refuse),
                ratelimit_qps: Some(1),
                ratelimit_burst: Some(2),
                ..Default::default()
            },
            vec![7],
        );
        let (q, udp) = (query(), via_udp(1));
        let stranger = "198.18.1.200".parse().unwrap();
        let refused = (0..5)
            .filter(|_| rcode(&a.screen(&q, stranger, udp)).is_some())
            .count();
        assert_eq!(refused, 2);
        // What arrived on the XDP program's interface it has charged already.
        let screened = a.screen(&q, stranger, via_udp(7));
        assert_eq!(rcode(&screened), Some((ResponseCode::Refused, false)));
        let d = a.counts();
        assert_eq!((d.denied_refused, d.denied_dropped), (3, 3));
    }

    #[test]
    fn buckets_limit_udp_slip_and_give_tcp_room() {
        let a = access(
            Settings {
                allow: Some(vec!["198.18.0.0/15".into()]),
                ratelimit_qps: Some(1),
                ratelimit_burst: Some(2),
                ratelimit_action: Some("slip:2".parse().unwrap()),
                ratelimit_exempt: Some(vec!["198.18.1.9".into()]),
                ..Default::default()
            },
            vec![7],
        );
        let (q, udp) = (query(), via_udp(1));
        let client = "198.18.1.2".parse().unwrap();
        let outcomes: Vec<Option<(ResponseCode, bool)>> = (0..5)
            .map(|_| match a.screen(&q, client, udp) {
                Screened::Serve => Some((ResponseCode::NoError, false)),
                Screened::Drop { denied: false } => None,
                other => rcode(&other),
            })
            .collect();
        let (served, slipped) = (
            Some((ResponseCode::NoError, false)),
            Some((ResponseCode::NoError, true)),
        );
        assert_eq!(outcomes, [served, served, None, slipped, None]);
        // TCP may run one burst further; then it is dropped, never slipped.
        assert_eq!(a.screen(&q, client, Via::Tcp), Screened::Serve);
        assert_eq!(a.screen(&q, client, Via::Tcp), Screened::Serve);
        assert_eq!(
            a.screen(&q, client, Via::Tcp),
            Screened::Drop { denied: false }
        );
        // The XDP program charged what arrived on its interface for a served destination,
        // and nothing else: a broadcast, say.
        assert_eq!(a.screen(&q, client, via_udp(7)), Screened::Serve);
        let broadcast = Via::Udp {
            ifindex: 7,
            dest: "198.18.1.255:53".parse().unwrap(),
        };
        assert_eq!(
            a.screen(&q, client, broadcast),
            Screened::Drop { denied: false }
        );
        // Exempt clients are free.
        let exempt = "198.18.1.9".parse().unwrap();
        assert!((0..5).all(|_| a.screen(&q, exempt, udp) == Screened::Serve));
        let top = a.top(5).unwrap();
        assert_eq!(top.len(), 1);
        assert_eq!(
            (top[0].prefix.as_str(), top[0].limited),
            ("198.18.1.2/32", 5)
        );
        let d = a.counts();
        assert_eq!((d.limited_dropped, d.limited_slipped), (4, 1));
    }

    #[test]
    fn a_policy_that_does_not_fit_changes_nothing() {
        let a = access(Settings::default(), vec![]);
        let deny: Vec<String> = (0..MAX_ACL_RULES)
            .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
            .collect();
        let e = AccessPolicy::from_settings(&Settings {
            deny: Some(deny),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.contains(&format!("at most {MAX_ACL_RULES} fit")), "{e}");
        assert_eq!(
            a.screen(&query(), "192.168.0.1".parse().unwrap(), Via::Tcp),
            Screened::Serve
        );
    }
}
