//! Counters, and the report `dnsxdp stats` prints.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use dnsxdp_common::Counter;
use serde::{Deserialize, Serialize};

use crate::reply::Transport;

/// The daemon's counters, updated from every query task.
#[derive(Default)]
pub struct Stats {
    queries_udp: AtomicU64,
    queries_tcp: AtomicU64,
    cache_hits: AtomicU64,
    upstream_queries: AtomicU64,
    coalesced: AtomicU64,
    stale_answers: AtomicU64,
    failures: AtomicU64,
    allowed: AtomicU64,
    denied_dropped: AtomicU64,
    denied_refused: AtomicU64,
    limited_dropped: AtomicU64,
    limited_slipped: AtomicU64,
    prefetches: AtomicU64,
    /// Answers sent by the daemon, by `RCODES` index.
    rcodes: [AtomicU64; RCODES.len()],
}

/// The response codes counted apart; everything else is `other`.
pub const RCODES: [&str; 5] = ["noerror", "nxdomain", "servfail", "refused", "other"];

impl Stats {
    /// A message from a client.
    pub fn query(&self, transport: Transport) {
        match transport {
            Transport::Udp => &self.queries_udp,
            Transport::Tcp => &self.queries_tcp,
        }
        .fetch_add(1, Relaxed);
    }

    /// Answered from the daemon cache.
    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Relaxed);
    }

    /// A client query forwarded upstream (however many servers and retries it took).
    pub fn upstream_query(&self) {
        self.upstream_queries.fetch_add(1, Relaxed);
    }

    /// A client query that waited for the same question already on its way upstream.
    pub fn coalesced(&self) {
        self.coalesced.fetch_add(1, Relaxed);
    }

    /// An expired answer sent because no upstream answered (RFC 8767).
    pub fn stale_answer(&self) {
        self.stale_answers.fetch_add(1, Relaxed);
    }

    /// A SERVFAIL sent because no upstream answered.
    pub fn failure(&self) {
        self.failures.fetch_add(1, Relaxed);
    }

    /// A query the ACL and the rate limit let through.
    pub fn allowed(&self) {
        self.allowed.fetch_add(1, Relaxed);
    }

    /// A query from a denied client, answered REFUSED or dropped.
    pub fn denied(&self, refused: bool) {
        match refused {
            true => &self.denied_refused,
            false => &self.denied_dropped,
        }
        .fetch_add(1, Relaxed);
    }

    /// A query over its client's rate limit, answered with TC=1 or dropped.
    pub fn limited(&self, slipped: bool) {
        match slipped {
            true => &self.limited_slipped,
            false => &self.limited_dropped,
        }
        .fetch_add(1, Relaxed);
    }

    /// A refresh of a popular answer before it expired.
    pub fn prefetch(&self) {
        self.prefetches.fetch_add(1, Relaxed);
    }

    /// An answer the daemon sent, by its response code (the low four bits of the header's).
    pub fn answered(&self, rcode: u8) {
        let index = match rcode {
            0 => 0,
            3 => 1,
            2 => 2,
            5 => 3,
            _ => 4,
        };
        self.rcodes[index].fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> DaemonCounters {
        let (udp, tcp) = (
            self.queries_udp.load(Relaxed),
            self.queries_tcp.load(Relaxed),
        );
        DaemonCounters {
            queries: udp + tcp,
            queries_udp: udp,
            queries_tcp: tcp,
            cache_hits: self.cache_hits.load(Relaxed),
            upstream_queries: self.upstream_queries.load(Relaxed),
            coalesced: self.coalesced.load(Relaxed),
            stale_answers: self.stale_answers.load(Relaxed),
            failures: self.failures.load(Relaxed),
            allowed: self.allowed.load(Relaxed),
            denied_dropped: self.denied_dropped.load(Relaxed),
            denied_refused: self.denied_refused.load(Relaxed),
            limited_dropped: self.limited_dropped.load(Relaxed),
            limited_slipped: self.limited_slipped.load(Relaxed),
            prefetches: self.prefetches.load(Relaxed),
            rcodes: RCODES
                .iter()
                .zip(&self.rcodes)
                .map(|(name, n)| (name.to_string(), n.load(Relaxed)))
                .collect(),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DaemonCounters {
    pub queries: u64,
    pub queries_udp: u64,
    pub queries_tcp: u64,
    pub cache_hits: u64,
    pub upstream_queries: u64,
    pub coalesced: u64,
    pub stale_answers: u64,
    pub failures: u64,
    /// Queries screened by the daemon (TCP, and UDP the XDP program did not see), by outcome.
    pub allowed: u64,
    pub denied_dropped: u64,
    pub denied_refused: u64,
    pub limited_dropped: u64,
    pub limited_slipped: u64,
    /// Popular answers refreshed before they expired, from XDP hits and daemon hits.
    pub prefetches: u64,
    /// Answers the daemon sent, by response code (`RCODES`).
    pub rcodes: BTreeMap<String, u64>,
}

/// One upstream's counters.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct UpstreamCounters {
    /// Its URL.
    pub upstream: String,
    pub state: UpstreamState,
    pub queries: u64,
    /// Queries it did not answer usefully: timeouts, errors, SERVFAIL, REFUSED.
    pub failures: u64,
    pub timeouts: u64,
    /// Smoothed latency; null until it has answered or timed out.
    pub latency_ms: Option<f64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamState {
    Up,
    /// Failed too many queries in a row; probed until it answers again.
    Down,
}

/// The XDP counter of packets to us that the ACL and the rate limit let through; not counted
/// by the program but derived by `with_allowed`.
pub const XDP_ALLOWED: &str = "allowed";

/// The XDP program's counters with `XDP_ALLOWED` added: every packet to us is allowed, denied
/// or limited.
pub fn with_allowed(mut xdp: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let stopped: u64 = [
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

/// The answer to the control socket's `stats` command.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Report {
    /// The XDP program's counters summed over CPUs, by `Counter::name()`; null with --no-xdp.
    pub xdp: Option<BTreeMap<String, u64>>,
    pub daemon: DaemonCounters,
    pub upstreams: Vec<UpstreamCounters>,
}

impl Report {
    /// An aligned two-column table, XDP counters in `Counter` order.
    pub fn table(&self) -> String {
        let d = &self.daemon;
        let daemon = [
            ("queries", d.queries),
            ("queries_udp", d.queries_udp),
            ("queries_tcp", d.queries_tcp),
            ("cache_hits", d.cache_hits),
            ("upstream_queries", d.upstream_queries),
            ("coalesced", d.coalesced),
            ("stale_answers", d.stale_answers),
            ("failures", d.failures),
            ("allowed", d.allowed),
            ("denied_dropped", d.denied_dropped),
            ("denied_refused", d.denied_refused),
            ("limited_dropped", d.limited_dropped),
            ("limited_slipped", d.limited_slipped),
            ("prefetches", d.prefetches),
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
        out.push_str(&self.upstream_table());
        out
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
        let widths: Vec<usize> = (0..header.len())
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::from("upstreams\n");
        for row in rows {
            let _ = write!(out, "  {:<w$}", row[0], w = widths[0]);
            for (cell, w) in row.iter().zip(&widths).skip(1) {
                let _ = write!(out, "  {cell:>w$}");
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_transport() {
        let s = Stats::default();
        s.query(Transport::Udp);
        s.query(Transport::Udp);
        s.query(Transport::Tcp);
        s.cache_hit();
        s.upstream_query();
        s.coalesced();
        s.stale_answer();
        s.failure();
        s.allowed();
        s.denied(true);
        s.limited(false);
        s.limited(false);
        let d = s.snapshot();
        assert_eq!((d.queries, d.queries_udp, d.queries_tcp), (3, 2, 1));
        assert_eq!((d.cache_hits, d.upstream_queries, d.failures), (1, 1, 1));
        assert_eq!((d.coalesced, d.stale_answers), (1, 1));
        assert_eq!((d.allowed, d.denied_refused, d.denied_dropped), (1, 1, 0));
        assert_eq!((d.limited_dropped, d.limited_slipped), (2, 0));
    }

    #[test]
    fn json_has_the_documented_shape() {
        let report = Report {
            xdp: None,
            daemon: Stats::default().snapshot(),
            upstreams: vec![upstream(Some(1.25))],
        };
        let v: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert!(v["xdp"].is_null());
        let keys: Vec<&String> = v["daemon"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "allowed",
                "cache_hits",
                "coalesced",
                "denied_dropped",
                "denied_refused",
                "failures",
                "limited_dropped",
                "limited_slipped",
                "prefetches",
                "queries",
                "queries_tcp",
                "queries_udp",
                "rcodes",
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
        let report = Report {
            xdp: Some(xdp),
            daemon: Stats::default().snapshot(),
            upstreams: vec![upstream(Some(1.5)), upstream(None)],
        };
        let table = report.table();
        assert!(table.starts_with("xdp\n  packets "));
        let (counters, upstreams) = table.split_once("upstreams\n").unwrap();
        let widths: Vec<usize> = counters
            .lines()
            .filter(|l| l.starts_with("  "))
            .map(str::len)
            .collect();
        assert_eq!(widths.len(), Counter::ALL.len() + 1 + 14);
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
    fn allowed_is_what_was_neither_denied_nor_limited() {
        let mut xdp: BTreeMap<String, u64> = Counter::ALL
            .iter()
            .map(|c| (c.name().to_string(), 1))
            .collect();
        xdp.insert("packets".into(), 10);
        assert_eq!(with_allowed(xdp)[XDP_ALLOWED], 6);
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
