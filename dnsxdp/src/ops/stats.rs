//! The report `dnsxdp stats` prints and the metrics endpoint serves: every component's
//! counters, and how full the caches are.

use std::{collections::BTreeMap, fmt::Write as _};

use dnsxdp_common::Counter;
use serde::{Deserialize, Serialize};

use crate::{
    access,
    kernel::cache::CacheSize,
    resolve,
    upstream::health::{UpstreamCounters, UpstreamState},
};

/// The daemon's counters, from each component that keeps some.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonCounters {
    #[serde(flatten)]
    pub resolve: resolve::counters::Counts,
    #[serde(flatten)]
    pub access: access::counters::Counts,
    /// Query log lines dropped because the disk could not keep up (`--query-log`).
    pub query_log_dropped: u64,
}

/// The XDP counter of packets to us that the ACL and the rate limit let through; not counted
/// by the program but derived by `with_allowed`.
pub const XDP_ALLOWED: &str = "allowed";

/// The XDP program's counters with `XDP_ALLOWED` added: every packet to us is allowed, denied,
/// limited, dropped for its source port, or passed as martian before the ACL.
pub fn with_allowed(mut xdp: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let stopped: u64 = [
        Counter::PassMartian,
        Counter::DroppedSourcePort,
        Counter::DeniedDropped,
        Counter::DeniedRefused,
        Counter::LimitedDropped,
        Counter::LimitedSlipped,
    ]
    .iter()
    .filter_map(|c| xdp.get(c.name()))
    .sum();
    let packets = xdp.get(Counter::Packets.name()).copied().unwrap_or(0);
    xdp.insert(XDP_ALLOWED.into(), packets.saturating_sub(stopped));
    xdp
}

/// Client queries that looked up the daemon cache, and how many it answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lookups {
    pub lookups: u64,
    pub hits: u64,
}

impl Lookups {
    /// A lookup either hits, or misses (or finds a stale answer) and then asks upstream or
    /// waits for the same question already on its way: `cache_hits` + `upstream_queries` +
    /// `coalesced`. Prefetches are not client queries and count in none of them.
    pub fn of(d: &DaemonCounters) -> Lookups {
        Lookups {
            lookups: d.resolve.cache_hits + d.resolve.upstream_queries + d.resolve.coalesced,
            hits: d.resolve.cache_hits,
        }
    }
}

/// One cache layer in `dnsxdp stats`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CacheLayer {
    #[serde(flatten)]
    pub size: CacheSize,
    /// Hits over lookups (`CacheReport::new` says which); null before the first lookup.
    pub hit_ratio: Option<f64>,
}

/// The `cache` section of `dnsxdp stats`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CacheReport {
    /// Null with --no-xdp.
    pub kernel: Option<CacheLayer>,
    pub daemon: CacheLayer,
    /// Queries answered from either cache over queries that reached one; null before any did.
    pub hit_ratio: Option<f64>,
}

impl CacheReport {
    /// The hit ratios are:
    /// - kernel: XDP `hits` / (`hits` + `misses` + `expired`), the queries the program looked
    ///   up in its map;
    /// - daemon: daemon `cache_hits` / client queries that looked up the daemon cache
    ///   (`Lookups::of`): XDP misses, queries XDP passed or did not see, TCP;
    /// - total: (XDP `hits` + daemon cache hits) / (XDP `hits` + daemon cache lookups): a query
    ///   XDP did not answer reaches the daemon cache and counts there only, not twice.
    pub fn new(
        kernel: Option<(CacheSize, &BTreeMap<String, u64>)>,
        daemon: CacheSize,
        lookups: Lookups,
    ) -> CacheReport {
        let xdp = |c: Counter| kernel.map_or(0, |(_, x)| x.get(c.name()).copied().unwrap_or(0));
        let xdp_hits = xdp(Counter::Hits);
        let xdp_lookups = xdp_hits + xdp(Counter::Misses) + xdp(Counter::Expired);
        CacheReport {
            kernel: kernel.map(|(size, _)| CacheLayer {
                size,
                hit_ratio: ratio(xdp_hits, xdp_lookups),
            }),
            daemon: CacheLayer {
                size: daemon,
                hit_ratio: ratio(lookups.hits, lookups.lookups),
            },
            hit_ratio: ratio(xdp_hits + lookups.hits, xdp_hits + lookups.lookups),
        }
    }
}

/// `part / whole`, or `None` when `whole` is 0.
fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The answer to the control socket's `stats` command.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Report {
    /// The XDP program's counters summed over CPUs, by `Counter::name()`; null with --no-xdp.
    pub xdp: Option<BTreeMap<String, u64>>,
    pub daemon: DaemonCounters,
    pub cache: CacheReport,
    pub upstreams: Vec<UpstreamCounters>,
    /// Blocked answers by client group; empty without groups.
    pub groups: Vec<GroupBlocked>,
}

/// The answers for names a blocklist blocks sent to one client group's clients, by layer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct GroupBlocked {
    pub group: String,
    /// The XDP program's hits; null with --no-xdp.
    pub xdp: Option<u64>,
    pub daemon: u64,
}

impl Report {
    /// An aligned two-column table, XDP counters in `Counter` order.
    pub fn table(&self) -> String {
        let d = &self.daemon;
        let daemon = [
            ("queries", d.resolve.queries),
            ("queries_udp", d.resolve.queries_udp),
            ("queries_tcp", d.resolve.queries_tcp),
            ("queries_tls", d.resolve.queries_tls),
            ("queries_https", d.resolve.queries_https),
            ("queries_quic", d.resolve.queries_quic),
            ("cache_hits", d.resolve.cache_hits),
            ("upstream_queries", d.resolve.upstream_queries),
            ("coalesced", d.resolve.coalesced),
            ("stale_answers", d.resolve.stale_answers),
            ("failures", d.resolve.failures),
            ("blocked", d.resolve.blocked),
            ("rebind_removed", d.resolve.rebind_removed),
            ("allowed", d.access.allowed),
            ("denied_dropped", d.access.denied_dropped),
            ("denied_refused", d.access.denied_refused),
            ("limited_dropped", d.access.limited_dropped),
            ("limited_slipped", d.access.limited_slipped),
            ("dropped_source_port", d.access.dropped_source_port),
            ("prefetches", d.resolve.prefetches),
            ("query_log_dropped", d.query_log_dropped),
        ];
        let xdp: Option<Vec<(&str, u64)>> = self.xdp.as_ref().map(|x| {
            Counter::ALL
                .iter()
                .map(|c| c.name())
                .chain([XDP_ALLOWED])
                .map(|name| (name, x.get(name).copied().unwrap_or(0)))
                .collect()
        });
        let rows = daemon.iter().chain(xdp.iter().flatten());
        let name_width = rows.clone().map(|(n, _)| n.len()).max().unwrap_or(0);
        let value_width = rows.map(|(_, v)| v.to_string().len()).max().unwrap_or(0);
        let mut out = String::new();
        let mut section = |title: &str, rows: &[(&str, u64)]| {
            let _ = writeln!(out, "{title}");
            for (name, value) in rows {
                let _ = writeln!(out, "  {name:<name_width$}  {value:>value_width$}");
            }
        };
        match &xdp {
            Some(rows) => section("xdp", rows),
            None => section("xdp: disabled (--no-xdp)", &[]),
        }
        section("daemon", &daemon);
        out.push_str(&self.cache_table());
        out.push_str(&self.upstream_table());
        if !self.groups.is_empty() {
            out.push_str(&self.group_table());
        }
        out
    }

    /// One line per client group, columns aligned.
    fn group_table(&self) -> String {
        let header = ["group", "blocked_xdp", "blocked_daemon"];
        let mut rows = vec![header.map(String::from)];
        for g in &self.groups {
            let xdp = g.xdp.map_or("-".into(), |n| n.to_string());
            rows.push([g.group.clone(), xdp, g.daemon.to_string()]);
        }
        aligned("groups", &rows)
    }

    /// One line per cache layer and one for both, columns aligned.
    fn cache_table(&self) -> String {
        let c = &self.cache;
        let percent = |r: Option<f64>| r.map_or("-".into(), |r| format!("{:.1}%", r * 100.0));
        let layer = |name: &str, l: &CacheLayer| {
            let s = &l.size;
            [
                name.into(),
                s.entries.to_string(),
                s.occupancy.to_string(),
                s.capacity.to_string(),
                s.evictions.to_string(),
                percent(l.hit_ratio),
            ]
        };
        let header = [
            "layer",
            "entries",
            "occupancy",
            "capacity",
            "evictions",
            "hit_ratio",
        ];
        let mut rows = vec![header.map(String::from)];
        rows.extend(c.kernel.as_ref().map(|k| layer("kernel", k)));
        rows.push(layer("daemon", &c.daemon));
        let mut total: [String; 6] = Default::default();
        total[0] = "total".into();
        total[5] = percent(c.hit_ratio);
        rows.push(total);
        aligned("cache", &rows)
    }

    /// One line per upstream, columns aligned.
    fn upstream_table(&self) -> String {
        let header = [
            "upstream",
            "state",
            "queries",
            "failures",
            "timeouts",
            "latency_ms",
        ];
        let mut rows = vec![header.map(String::from)];
        for u in &self.upstreams {
            rows.push([
                u.upstream.clone(),
                match u.state {
                    UpstreamState::Up => "up".into(),
                    UpstreamState::Down => "down".into(),
                },
                u.queries.to_string(),
                u.failures.to_string(),
                u.timeouts.to_string(),
                u.latency_ms.map_or("-".into(), |ms| format!("{ms:.1}")),
            ]);
        }
        aligned("upstreams", &rows)
    }
}

/// `title`, then `rows` indented with the first column left-aligned and the others right.
fn aligned<const N: usize>(title: &str, rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = format!("{title}\n");
    for row in rows {
        let _ = write!(out, "  {:<w$}", row[0], w = widths[0]);
        for (cell, w) in row.iter().zip(&widths).skip(1) {
            let _ = write!(out, "  {cell:>w$}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::reply::Transport;

    #[test]
    fn counts_per_transport() {
        let (r, a) = (
            resolve::counters::Counters::default(),
            access::counters::Counters::default(),
        );
        r.query(Transport::Udp);
        r.query(Transport::Udp);
        r.query(Transport::Tcp);
        r.cache_hit();
        r.upstream_query();
        r.coalesced();
        r.stale_answer();
        r.failure();
        a.allowed();
        a.denied(true);
        a.limited(false);
        a.limited(false);
        let d = DaemonCounters {
            resolve: r.counts(),
            access: a.counts(),
            query_log_dropped: 0,
        };
        assert_eq!(
            (
                d.resolve.queries,
                d.resolve.queries_udp,
                d.resolve.queries_tcp
            ),
            (3, 2, 1)
        );
        assert_eq!(
            (
                d.resolve.cache_hits,
                d.resolve.upstream_queries,
                d.resolve.failures
            ),
            (1, 1, 1)
        );
        assert_eq!((d.resolve.coalesced, d.resolve.stale_answers), (1, 1));
        assert_eq!(
            (
                d.access.allowed,
                d.access.denied_refused,
                d.access.denied_dropped
            ),
            (1, 1, 0)
        );
        assert_eq!((d.access.limited_dropped, d.access.limited_slipped), (2, 0));
    }

    fn size(entries: u64) -> CacheSize {
        CacheSize {
            entries,
            occupancy: entries + 2,
            capacity: 64,
            evictions: 1,
        }
    }

    fn xdp_counters(hits: u64, misses: u64, expired: u64) -> BTreeMap<String, u64> {
        [("hits", hits), ("misses", misses), ("expired", expired)]
            .into_iter()
            .map(|(name, n)| (name.to_string(), n))
            .collect()
    }

    #[test]
    fn hit_ratios_count_each_query_once() {
        // 6 XDP hits of 10 lookups; 4 more queries reached the daemon cache besides the
        // XDP misses and the expired one, 5 daemon hits of those 8.
        let xdp = xdp_counters(6, 3, 1);
        let r = resolve::counters::Counters::default();
        for _ in 0..5 {
            r.cache_hit();
        }
        r.upstream_query();
        r.upstream_query();
        r.coalesced();
        let daemon = DaemonCounters {
            resolve: r.counts(),
            ..Default::default()
        };
        let lookups = Lookups::of(&daemon);
        assert_eq!(
            lookups,
            Lookups {
                lookups: 8,
                hits: 5
            }
        );
        let c = CacheReport::new(Some((size(3), &xdp)), size(5), lookups);
        assert_eq!(c.kernel.unwrap().hit_ratio, Some(0.6));
        assert_eq!(c.daemon.hit_ratio, Some(5.0 / 8.0));
        assert_eq!(c.hit_ratio, Some(11.0 / 14.0));
    }

    #[test]
    fn hit_ratios_are_null_before_any_lookup() {
        let idle = CacheReport::new(
            Some((size(0), &xdp_counters(0, 0, 0))),
            size(0),
            Lookups::default(),
        );
        assert_eq!(idle.kernel.as_ref().unwrap().hit_ratio, None);
        assert_eq!((idle.daemon.hit_ratio, idle.hit_ratio), (None, None));
        let no_xdp = CacheReport::new(
            None,
            size(1),
            Lookups {
                lookups: 4,
                hits: 1,
            },
        );
        assert!(no_xdp.kernel.is_none());
        assert_eq!(
            (no_xdp.daemon.hit_ratio, no_xdp.hit_ratio),
            (Some(0.25), Some(0.25))
        );
        let json = serde_json::to_value(&idle).unwrap();
        assert!(json["hit_ratio"].is_null(), "{json}");
    }

    #[test]
    fn json_has_the_documented_shape() {
        let report = Report {
            xdp: None,
            daemon: DaemonCounters::default(),
            cache: CacheReport::new(
                None,
                size(3),
                Lookups {
                    lookups: 4,
                    hits: 1,
                },
            ),
            upstreams: vec![upstream(Some(1.25))],
            groups: Vec::new(),
        };
        let v: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert!(v["xdp"].is_null());
        assert_eq!(
            v["cache"],
            serde_json::json!({
                "kernel": null,
                "daemon": {
                    "entries": 3,
                    "occupancy": 5,
                    "capacity": 64,
                    "evictions": 1,
                    "hit_ratio": 0.25,
                },
                "hit_ratio": 0.25,
            })
        );
        let keys: Vec<&String> = v["daemon"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "allowed",
                "blocked",
                "cache_hits",
                "coalesced",
                "denied_dropped",
                "denied_refused",
                "dropped_source_port",
                "failures",
                "limited_dropped",
                "limited_slipped",
                "prefetches",
                "queries",
                "queries_https",
                "queries_quic",
                "queries_tcp",
                "queries_tls",
                "queries_udp",
                "query_log_dropped",
                "rcodes",
                "rebind_removed",
                "stale_answers",
                "upstream_queries"
            ]
        );
        assert_eq!(
            v["upstreams"][0],
            serde_json::json!({
                "upstream": "tls://198.18.2.2:853#dns.example",
                "state": "down",
                "queries": 12,
                "failures": 3,
                "timeouts": 2,
                "latency_ms": 1.25,
            })
        );
    }

    #[test]
    fn table_is_aligned() {
        let xdp = with_allowed(
            Counter::ALL
                .iter()
                .map(|c| (c.name().to_string(), 7))
                .collect(),
        );
        // The 14 XDP misses and expired reached the daemon cache, which answered half.
        let lookups = Lookups {
            lookups: 14,
            hits: 7,
        };
        let cache = CacheReport::new(Some((size(2), &xdp)), size(3), lookups);
        let report = Report {
            xdp: Some(xdp),
            daemon: DaemonCounters::default(),
            cache,
            upstreams: vec![upstream(Some(1.5)), upstream(None)],
            groups: vec![
                GroupBlocked {
                    group: "default".into(),
                    xdp: Some(12),
                    daemon: 3,
                },
                GroupBlocked {
                    group: "kids".into(),
                    xdp: Some(4000),
                    daemon: 5,
                },
            ],
        };
        let table = report.table();
        let (table, groups) = table.split_once("groups\n").unwrap();
        let lines: Vec<&str> = groups.lines().collect();
        assert_eq!(lines.len(), 3, "{groups}");
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{groups}");
        assert!(
            lines[2].starts_with("  kids") && lines[2].ends_with("  5"),
            "{groups}"
        );
        assert!(table.starts_with("xdp\n  packets "));
        let (counters, rest) = table.split_once("cache\n").unwrap();
        let (cache, upstreams) = rest.split_once("upstreams\n").unwrap();
        let lines: Vec<&str> = cache.lines().collect();
        assert_eq!(lines.len(), 4, "{cache}");
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{cache}");
        assert!(
            lines[1].starts_with("  kernel") && lines[1].ends_with("  33.3%"),
            "{cache}"
        );
        assert!(
            lines[2].ends_with("  50.0%") && lines[3].ends_with("  66.7%"),
            "{cache}"
        );
        let widths: Vec<usize> = counters
            .lines()
            .filter(|l| l.starts_with("  "))
            .map(str::len)
            .collect();
        assert_eq!(widths.len(), Counter::ALL.len() + 1 + 21);
        assert!(widths.iter().all(|&w| w == widths[0]));
        let lines: Vec<&str> = upstreams.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines.iter().all(|l| l.len() == lines[0].len()),
            "{upstreams}"
        );
        assert!(
            lines[1].ends_with("  1.5") && lines[2].ends_with("  -"),
            "{upstreams}"
        );
    }

    #[test]
    fn allowed_is_what_the_acl_saw_and_neither_denied_nor_limited() {
        let mut xdp: BTreeMap<String, u64> = Counter::ALL
            .iter()
            .map(|c| (c.name().to_string(), 1))
            .collect();
        xdp.insert("packets".into(), 10);
        assert_eq!(with_allowed(xdp)[XDP_ALLOWED], 4);
    }

    fn upstream(latency_ms: Option<f64>) -> UpstreamCounters {
        UpstreamCounters {
            upstream: "tls://198.18.2.2:853#dns.example".into(),
            state: UpstreamState::Down,
            queries: 12,
            failures: 3,
            timeouts: 2,
            latency_ms,
        }
    }
}
