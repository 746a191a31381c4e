//! What the daemon's screening counts: the queries it let through or stopped, and why.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// Updated from every query task.
#[derive(Default)]
pub struct Counters {
    allowed: AtomicU64,
    denied_dropped: AtomicU64,
    denied_refused: AtomicU64,
    limited_dropped: AtomicU64,
    limited_slipped: AtomicU64,
    dropped_source_port: AtomicU64,
}

/// The counts at one moment: queries screened by the daemon (TCP, and UDP the XDP program did
/// not see), by outcome.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub allowed: u64,
    pub denied_dropped: u64,
    pub denied_refused: u64,
    pub limited_dropped: u64,
    pub limited_slipped: u64,
    /// UDP datagrams from a port no answer may go to, dropped before the ACL.
    pub dropped_source_port: u64,
}

impl Counters {
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

    /// A datagram dropped for its source port (`dnsxdp_common::ports::reflective_port`).
    pub fn dropped_source_port(&self) {
        self.dropped_source_port.fetch_add(1, Relaxed);
    }

    pub fn counts(&self) -> Counts {
        Counts {
            allowed: self.allowed.load(Relaxed),
            denied_dropped: self.denied_dropped.load(Relaxed),
            denied_refused: self.denied_refused.load(Relaxed),
            limited_dropped: self.limited_dropped.load(Relaxed),
            limited_slipped: self.limited_slipped.load(Relaxed),
            dropped_source_port: self.dropped_source_port.load(Relaxed),
        }
    }
}
