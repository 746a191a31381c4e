//! Access control and rate limiting: the maps the XDP program and the daemon both read, and the
//! token bucket arithmetic both apply, so a rule or a bucket means the same on either side.
//!
//! Addresses are 16 bytes, IPv4 ones IPv4-mapped (`::ffff:a.b.c.d`, as in `ServedKey`), so one
//! trie and one bucket table hold both families; an IPv4 prefix of length n is the mapped
//! prefix of length 96 + n.

use bytemuck::{Pod, Zeroable};

pub const MAP_ACL: &str = "ACL";
pub const MAP_ACCESS: &str = "ACCESS";
pub const MAP_RATE: &str = "RATE";

/// Rules the `ACL` trie holds.
pub const MAX_ACL_RULES: u32 = 16384;
/// Client prefixes the `RATE` table tracks; the least recently seen make room for new ones.
pub const RATE_ENTRIES: u32 = 65536;

/// Length of the `::ffff:0:0/96` prefix IPv4 addresses are mapped into.
pub const V4_MAPPED_PREFIX: u32 = 96;

/// Bits of an `ACL` value. The daemon merges allow/deny rules and rate-limit exemptions into
/// one trie, so one longest-prefix lookup answers both (see the daemon's `acl::compile`).
pub const ACL_ALLOW: u8 = 1;
pub const ACL_EXEMPT: u8 = 2;

/// `AccessConfig::deny`: what a query from a denied client gets.
pub const DENY_DROP: u32 = 0;
pub const DENY_REFUSE: u32 = 1;

/// `addr` as the IPv4-mapped IPv6 address.
pub const fn v4_mapped(addr: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, addr[0], addr[1], addr[2], addr[3],
    ]
}

/// The mask that keeps the first `bits` bits of an address (all of them from 128 on).
pub const fn prefix_mask(bits: u32) -> [u8; 16] {
    let mut mask = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        let first = i as u32 * 8;
        mask[i] = if bits >= first + 8 {
            0xff
        } else if bits <= first {
            0
        } else {
            !(0xffu8 >> (bits - first))
        };
        i += 1;
    }
    mask
}

/// The single entry of the `ACCESS` array. All zero, as a freshly loaded program has it, means
/// no rate limit and denied queries dropped.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default, PartialEq, Eq, Debug)]
pub struct AccessConfig {
    /// Nanoseconds a query costs: 1 s / qps. Zero: no rate limit.
    pub interval_ns: u64,
    /// How far a bucket's theoretical arrival time may run ahead of now: (burst - 1) queries.
    pub tolerance_ns: u64,
    /// Applied to an IPv4 client's mapped address to find its bucket.
    pub v4_mask: [u8; 16],
    /// Applied to an IPv6 client's address to find its bucket.
    pub v6_mask: [u8; 16],
    /// Prefix lengths of the bucket keys (IPv4 mapped: 96 + n).
    pub v4_prefix_len: u32,
    pub v6_prefix_len: u32,
    /// Every `slip`th limited query gets a TC=1 answer; 0: all are dropped.
    pub slip: u32,
    /// `DENY_DROP` or `DENY_REFUSE`.
    pub deny: u32,
}

/// Key of the `RATE` table: the client's address masked to its prefix, and the prefix length,
/// so buckets of another prefix length (before a reload changed it) never match.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, PartialEq, Eq, Hash, Debug)]
pub struct RateKey {
    /// First, so the XDP program writes it to the stack in whole aligned words.
    pub addr: [u8; 16],
    pub prefix_len: u32,
}

/// Value of the `RATE` table: a GCRA token bucket (the theoretical arrival time of the next
/// query; it runs ahead of now by one interval per query, and a query that would take it more
/// than the tolerance ahead is over the limit) and how many queries it limited.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, PartialEq, Eq, Debug)]
pub struct Bucket {
    pub tat_ns: u64,
    pub limited: u64,
}

/// What a query does to its bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    /// The bucket was idle (full): its arrival time starts again from now, at this value.
    Start(u64),
    /// Within the limit: the arrival time moves on by one interval.
    Take,
    /// Over the limit: the bucket is left as it is.
    Limited,
}

impl AccessConfig {
    /// `qps` queries a second with bursts of up to `burst` (both at least 1), per client prefix
    /// of `v4_prefix` (0..=32) or `v6_prefix` (0..=128) bits.
    pub const fn with_limit(qps: u32, burst: u32, v4_prefix: u32, v6_prefix: u32) -> Self {
        let interval_ns = 1_000_000_000 / qps as u64;
        Self {
            interval_ns,
            tolerance_ns: interval_ns * (burst as u64 - 1),
            v4_mask: prefix_mask(V4_MAPPED_PREFIX + v4_prefix),
            v6_mask: prefix_mask(v6_prefix),
            v4_prefix_len: V4_MAPPED_PREFIX + v4_prefix,
            v6_prefix_len: v6_prefix,
            slip: 0,
            deny: DENY_DROP,
        }
    }

    pub const fn limits(&self) -> bool {
        self.interval_ns != 0
    }

    /// What a query over UDP at `now_ns` does to a bucket whose arrival time is `tat_ns`.
    #[inline(always)]
    pub const fn charge(&self, tat_ns: u64, now_ns: u64) -> Charge {
        self.charge_within(tat_ns, now_ns, self.tolerance_ns)
    }

    /// The same for a query over TCP, which may run one burst further ahead: the rate is the
    /// same, but a client a slip sent to TCP finds room there even while floods in its name
    /// keep the bucket full for UDP.
    pub const fn charge_tcp(&self, tat_ns: u64, now_ns: u64) -> Charge {
        self.charge_within(tat_ns, now_ns, 2 * self.tolerance_ns + self.interval_ns)
    }

    #[inline(always)]
    const fn charge_within(&self, tat_ns: u64, now_ns: u64, tolerance_ns: u64) -> Charge {
        if tat_ns <= now_ns {
            Charge::Start(now_ns + self.interval_ns)
        } else if tat_ns - now_ns > tolerance_ns {
            Charge::Limited
        } else {
            Charge::Take
        }
    }

    /// Whether the `limited`th limited query of a bucket (counting from 1) gets a TC=1 answer.
    #[inline(always)]
    pub const fn slips(&self, limited: u64) -> bool {
        self.slip != 0 && limited.is_multiple_of(self.slip as u64)
    }

    /// The bucket key of a client's 16-byte (IPv4-mapped) address.
    pub fn rate_key(&self, addr: [u8; 16], v6: bool) -> RateKey {
        let (mask, prefix_len) = if v6 {
            (self.v6_mask, self.v6_prefix_len)
        } else {
            (self.v4_mask, self.v4_prefix_len)
        };
        let mut masked = addr;
        for (b, m) in masked.iter_mut().zip(mask) {
            *b &= m;
        }
        RateKey {
            addr: masked,
            prefix_len,
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: `#[repr(C)]` plain data without padding (checked by bytemuck's Pod).
    unsafe impl aya::Pod for super::AccessConfig {}
    unsafe impl aya::Pod for super::RateKey {}
    unsafe impl aya::Pod for super::Bucket {}
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    /// Queries at the given times; true for those within the limit.
    fn run(cfg: &AccessConfig, times: &[u64]) -> [bool; 64] {
        let mut tat = 0;
        let mut out = [false; 64];
        for (i, &now) in times.iter().enumerate() {
            out[i] = match cfg.charge(tat, now) {
                Charge::Start(t) => {
                    tat = t;
                    true
                }
                Charge::Take => {
                    tat += cfg.interval_ns;
                    true
                }
                Charge::Limited => false,
            };
        }
        out
    }

    #[test]
    fn a_burst_then_the_rate() {
        let cfg = AccessConfig::with_limit(10, 5, 32, 64);
        // Twelve at once: the burst of five passes.
        let at_once = run(&cfg, &[SEC; 12]);
        assert_eq!(at_once.iter().filter(|&&ok| ok).count(), 5);
        assert!(at_once[..5].iter().all(|&ok| ok));
        // 40 queries a second for two seconds: 5 + 10 per second, give or take one.
        let times: [u64; 64] = core::array::from_fn(|i| SEC + i as u64 * SEC / 40);
        let passed = run(&cfg, &times).iter().filter(|&&ok| ok).count();
        let expected = 5 + (63 * 10 / 40);
        assert!(passed.abs_diff(expected) <= 1, "{passed} vs {expected}");
    }

    #[test]
    fn a_steady_client_at_the_rate_is_never_limited() {
        let cfg = AccessConfig::with_limit(20, 1, 32, 64);
        let times: [u64; 64] = core::array::from_fn(|i| SEC + i as u64 * SEC / 20);
        assert!(run(&cfg, &times).iter().all(|&ok| ok));
    }

    #[test]
    fn an_idle_bucket_is_full_again() {
        let cfg = AccessConfig::with_limit(1, 3, 32, 64);
        let mut times = [SEC; 8];
        times[4..].fill(10 * SEC);
        let r = run(&cfg, &times);
        assert_eq!(r[..8], [true, true, true, false, true, true, true, false]);
    }

    #[test]
    fn tcp_gets_one_more_burst_at_the_same_rate() {
        let cfg = AccessConfig::with_limit(10, 3, 32, 64);
        // UDP fills the bucket: three pass, the fourth is limited.
        let mut tat = SEC + cfg.interval_ns;
        for _ in 0..2 {
            assert_eq!(cfg.charge(tat, SEC), Charge::Take);
            tat += cfg.interval_ns;
        }
        assert_eq!(cfg.charge(tat, SEC), Charge::Limited);
        // TCP still finds three more.
        for _ in 0..3 {
            assert_eq!(cfg.charge_tcp(tat, SEC), Charge::Take);
            tat += cfg.interval_ns;
        }
        assert_eq!(cfg.charge_tcp(tat, SEC), Charge::Limited);
    }

    #[test]
    fn masks() {
        assert_eq!(prefix_mask(0), [0; 16]);
        assert_eq!(prefix_mask(128), [0xff; 16]);
        let m = prefix_mask(V4_MAPPED_PREFIX + 24);
        assert_eq!(m[..15], [0xff; 15]);
        assert_eq!(m[15], 0);
        assert_eq!(prefix_mask(61)[7], 0xf8);
    }

    #[test]
    fn rate_keys_mask_to_the_prefix() {
        let cfg = AccessConfig::with_limit(1, 1, 24, 48);
        let k = cfg.rate_key(v4_mapped([198, 18, 1, 77]), false);
        assert_eq!(k.prefix_len, 120);
        assert_eq!(k.addr, v4_mapped([198, 18, 1, 0]));
        let mut v6 = [0xfdu8; 16];
        v6[1] = 0;
        let k = cfg.rate_key(v6, true);
        assert_eq!(k.prefix_len, 48);
        assert_eq!(k.addr[..6], v6[..6]);
        assert_eq!(k.addr[6..], [0; 10]);
    }

    #[test]
    fn every_nth_limited_query_slips() {
        let mut cfg = AccessConfig::with_limit(1, 1, 32, 64);
        assert!(!cfg.slips(2));
        cfg.slip = 2;
        assert_eq!(
            [1, 2, 3, 4].map(|n| cfg.slips(n)),
            [false, true, false, true]
        );
    }
}
