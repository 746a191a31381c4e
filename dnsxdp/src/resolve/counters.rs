//! What the resolver counts: the queries it answered and where the answers came from.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use serde::{Deserialize, Serialize};

use crate::dns::reply::Transport;

/// The response codes counted apart; everything else is `other`.
pub const RCODES: [&str; 5] = ["noerror", "nxdomain", "servfail", "refused", "other"];

/// Updated from every query task.
#[derive(Default)]
pub struct Counters {
    queries_udp: AtomicU64,
    queries_tcp: AtomicU64,
    queries_tls: AtomicU64,
    queries_https: AtomicU64,
    queries_quic: AtomicU64,
    cache_hits: AtomicU64,
    upstream_queries: AtomicU64,
    coalesced: AtomicU64,
    stale_answers: AtomicU64,
    failures: AtomicU64,
    prefetches: AtomicU64,
    blocked: AtomicU64,
    rebind_removed: AtomicU64,
    /// Answers sent by the daemon, by `RCODES` index.
    rcodes: [AtomicU64; RCODES.len()],
}

/// The counts at one moment.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub queries: u64,
    pub queries_udp: u64,
    pub queries_tcp: u64,
    /// Over DNS over TLS (`--listen-tls`).
    pub queries_tls: u64,
    /// Over DNS over HTTPS (`--listen-https`).
    pub queries_https: u64,
    /// Over DNS over QUIC (`--listen-quic`).
    pub queries_quic: u64,
    pub cache_hits: u64,
    pub upstream_queries: u64,
    pub coalesced: u64,
    pub stale_answers: u64,
    pub failures: u64,
    /// Popular answers refreshed before they expired, from XDP hits and daemon hits.
    pub prefetches: u64,
    /// Answers for names a blocklist blocks, sent by the daemon (its cache's hits included).
    pub blocked: u64,
    /// Private addresses removed from public upstreams' answers (--rebind-protection).
    pub rebind_removed: u64,
    /// Answers the daemon sent, by response code (`RCODES`).
    pub rcodes: BTreeMap<String, u64>,
}

impl Counters {
    /// A message from a client.
    pub fn query(&self, transport: Transport) {
        match transport {
            Transport::Udp => &self.queries_udp,
            Transport::Tcp => &self.queries_tcp,
            Transport::Tls => &self.queries_tls,
            Transport::Https => &self.queries_https,
            Transport::Quic => &self.queries_quic,
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

    /// A refresh of a popular answer before it expired.
    pub fn prefetch(&self) {
        self.prefetches.fetch_add(1, Relaxed);
    }

    /// An answer for a name a blocklist blocks.
    pub fn blocked(&self) {
        self.blocked.fetch_add(1, Relaxed);
    }

    /// `n` private addresses removed from an upstream's answer.
    pub fn rebind_removed(&self, n: usize) {
        self.rebind_removed.fetch_add(n as u64, Relaxed);
    }

    /// An answer the daemon sent, by its response code (extended ones included).
    pub fn answered(&self, rcode: u16) {
        let index = match rcode {
            0 => 0,
            3 => 1,
            2 => 2,
            5 => 3,
            _ => 4,
        };
        self.rcodes[index].fetch_add(1, Relaxed);
    }

    pub fn counts(&self) -> Counts {
        let [udp, tcp, tls, https, quic] = [
            &self.queries_udp,
            &self.queries_tcp,
            &self.queries_tls,
            &self.queries_https,
            &self.queries_quic,
        ]
        .map(|c| c.load(Relaxed));
        Counts {
            queries: udp + tcp + tls + https + quic,
            queries_quic: quic,
            queries_udp: udp,
            queries_tcp: tcp,
            queries_tls: tls,
            queries_https: https,
            cache_hits: self.cache_hits.load(Relaxed),
            upstream_queries: self.upstream_queries.load(Relaxed),
            coalesced: self.coalesced.load(Relaxed),
            stale_answers: self.stale_answers.load(Relaxed),
            failures: self.failures.load(Relaxed),
            prefetches: self.prefetches.load(Relaxed),
            blocked: self.blocked.load(Relaxed),
            rebind_removed: self.rebind_removed.load(Relaxed),
            rcodes: RCODES
                .iter()
                .zip(&self.rcodes)
                .map(|(name, n)| (name.to_string(), n.load(Relaxed)))
                .collect(),
        }
    }
}
