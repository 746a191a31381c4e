//! Keys, values and indices of the BPF maps the XDP program and the daemon share.

use bytemuck::{Pod, Zeroable};

use crate::tier::{LARGE_DATA, MEDIUM_DATA, SMALL_DATA};

/// Longest legal name in wire format, root label included (RFC 1035 §3.1).
pub const MAX_WIRE_NAME: usize = 255;
/// Longest query name (wire format, root label included) the XDP cache serves. Longer, still
/// legal, names are answered by the daemon.
pub const MAX_CACHED_NAME: usize = 128;
/// The DNS header.
pub const DNS_HLEN: usize = 12;
/// Bytes of answer and authority records one kernel cache entry holds.
pub const MAX_RECORDS_LEN: usize = 512;
/// Records per entry whose TTL the XDP program rewrites.
pub const MAX_TTLS: usize = 16;
/// UDP payload size advertised in the OPT record of XDP answers (the DNS flag day value).
pub const EDNS_UDP_SIZE: u16 = 1232;
/// The EDNS options a cache without cookie support ignores (RFC 7873 §5.2): COOKIE and
/// PADDING. A query with any other is left to the daemon's full path, by the XDP program and
/// the daemon's wire path alike.
pub const IGNORED_EDNS_OPTIONS: [u16; 2] = [10, 12];
/// UDP payload a client without EDNS can take.
pub const PLAIN_UDP_SIZE: u16 = 512;

pub const QTYPE_A: u16 = 1;
pub const QTYPE_NS: u16 = 2;
pub const QTYPE_CNAME: u16 = 5;
pub const QTYPE_SOA: u16 = 6;
pub const QTYPE_PTR: u16 = 12;
pub const QTYPE_MX: u16 = 15;
pub const QTYPE_AAAA: u16 = 28;
pub const QTYPE_SRV: u16 = 33;
pub const QTYPE_DNAME: u16 = 39;
pub const QTYPE_OPT: u16 = 41;
pub const QTYPE_RRSIG: u16 = 46;
pub const QTYPE_NSEC: u16 = 47;
pub const QTYPE_NSEC3: u16 = 50;
pub const QCLASS_IN: u16 = 1;

pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_REFUSED: u8 = 5;

/// Names of the maps and programs in the eBPF object; the cache's maps are named by `Tier::map`.
pub const MAP_COUNTERS: &str = "COUNTERS";
pub const MAP_SERVED: &str = "SERVED";
pub const MAP_EVENTS: &str = "EVENTS";
pub const MAP_GROUPS: &str = "GROUPS";
pub const MAP_GROUP_BLOCKED: &str = "GROUP_BLOCKED";
/// Client groups, the one of clients in none (0) included.
pub const MAX_GROUPS: u32 = 64;
/// Client prefixes `GROUPS` holds.
pub const MAX_GROUP_PREFIXES: u32 = 4096;
/// The program's global holding the `hash::HashKey` of names, set when the object is loaded.
pub const GLOBAL_HASH_KEY: &str = "HASH_KEY";
/// The program's global holding its `XdpSettings`, set when the object is loaded.
pub const GLOBAL_SETTINGS: &str = "SETTINGS";
/// Changes whenever `CacheKey`, `CacheEntry` or the tiers change meaning, so that a cache
/// pinned by an older daemon is not read as this one's.
pub const CACHE_LAYOUT: u32 = 6;
pub const PROG_CACHE: &str = "dnsxdp";
/// An XDP_PASS program for the far end of a veth pair: without one, XDP_TX frames never leave
/// the peer's queue.
pub const PROG_PASS: &str = "dnsxdp_pass";

/// Key of the cache's maps: the keyed hash of the lower-cased query name (`hash` module), its
/// length, the type and whether the query had the DO bit. Twelve bytes, so the kernel's own
/// hashing of the key is a single round; the entry holds the name, which the XDP program
/// compares before answering.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, PartialEq, Eq, Hash, Debug)]
pub struct CacheKey {
    /// Low and high half of the hash: as one `u64` it would pad the key to 16 bytes.
    pub hash: [u32; 2],
    pub qtype: u16,
    /// Length of the wire name, root label included: at most `MAX_CACHED_NAME`.
    pub name_len: u8,
    /// 1 for the answer to a query with the DO bit: with its DNSSEC records, and the AD bit
    /// the upstream gave it.
    pub dnssec_ok: u8,
}

impl CacheKey {
    #[inline(always)]
    pub const fn new(hash: u64, qtype: u16, name_len: u16, dnssec_ok: bool) -> Self {
        Self {
            hash: [hash as u32, (hash >> 32) as u32],
            qtype,
            name_len: name_len as u8,
            dnssec_ok: dnssec_ok as u8,
        }
    }
}

/// Value of the cache's maps: a ready-made answer. Each tier (`tier` module) holds entries of
/// its own size, `N` bytes of name and records; the daemon builds and reads them at the
/// largest, `CacheEntry` without a size.
///
/// `data` holds the question's name lower-cased in wire format, zero padded to whole words,
/// then from `records_at` the answer and authority sections exactly as they follow the question
/// in the response, with every TTL field zero. Compression pointers in them are valid for a
/// response whose question is this entry's name, which every query that hits it has (same wire
/// length). Only a query for this name is answered from the entry, whatever its key's hash
/// says.
///
/// The layout covers all three kinds of entry without change:
/// - positive answers: `rcode` NOERROR, `ancount` records (a CNAME chain ends in records of
///   the question's type);
/// - negative answers: `rcode` NXDOMAIN or NOERROR with `ancount` 0 and the SOA in `nscount`;
/// - static records: `expires_ns` is `u64::MAX` and `ttl_count` 0, so the TTLs stored in
///   the records are sent as they are.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CacheEntry<const N: usize = LARGE_DATA> {
    /// The entry's own key, written when it is stored (until then only its type, name length
    /// and DO bit are set). First, so that a copy of another value into this element (the
    /// kernel reuses one as soon as an update replaces it) changes it before anything else:
    /// the XDP program checks it again after copying.
    pub key: CacheKey,
    /// The AD bit of an answer for DO queries (RFC 6840 §5.8): the upstream validated it.
    pub authentic: u8,
    /// The AA bit: a local record, which this server answers for.
    pub authoritative: u8,
    /// 1 for a blocklist's answer: to EDNS queries it carries Extended DNS Error 15, Blocked
    /// (RFC 8914), and its hits are counted apart.
    pub blocked: u8,
    /// The client group it answers (`GROUPS`), which its key's hash is mixed with
    /// (`hash::group_hash`); 0: clients in no group.
    pub group: u8,
    /// When the XDP program stops serving the entry, in CLOCK_MONOTONIC ns. It reads a coarse
    /// clock that lags, so entries expire `EXPIRY_MARGIN_NS` before their records' TTL runs out
    /// (`entry::build_entry`).
    pub expires_ns: u64,
    /// Answers served from XDP; the kernel increments it.
    pub hits: u64,
    /// From when a hit asks the daemon to refresh the entry (the last tenth of its life), in
    /// the clock of `expires_ns`; `u64::MAX`: never.
    pub prefetch_ns: u64,
    /// Ones' complement sum of the records taken as big-endian 16-bit words from their first
    /// byte (a trailing odd byte padded with zero), not folded.
    pub csum: u32,
    /// Bytes of records.
    pub len: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub rcode: u8,
    /// How many entries of `ttl_offsets` are in use.
    pub ttl_count: u8,
    /// Non-zero once the XDP program has asked for a prefetch, so it asks once.
    pub prefetch_sent: u32,
    /// Offset in the records of every TTL field the kernel fills with the remaining lifetime.
    pub ttl_offsets: [u16; MAX_TTLS],
    /// The name, then the records.
    pub data: [u8; N],
}

/// Bytes of every entry before its data, whatever its tier.
pub const ENTRY_HEAD: usize = core::mem::offset_of!(CacheEntry<0>, data);

// bytemuck cannot derive `Pod` for a generic struct, so the absence of padding is checked here:
// the fields before `data` add up to its offset (the XDP program reads the name a word at a
// time from there), and each tier's data is whole words.
const _: () = assert!(
    ENTRY_HEAD == size_of::<CacheKey>() + 4 + 3 * 8 + 4 + 3 * 2 + 2 + 4 + 2 * MAX_TTLS
        && ENTRY_HEAD.is_multiple_of(8)
);
macro_rules! pod_entries {
    ($($n:expr),*) => {$(
        const _: () = assert!(size_of::<CacheEntry<$n>>() == ENTRY_HEAD + $n && ($n as usize).is_multiple_of(8));
        // SAFETY: plain data without padding, as checked above.
        unsafe impl Zeroable for CacheEntry<$n> {}
        unsafe impl Pod for CacheEntry<$n> {}
        #[cfg(feature = "user")]
        // SAFETY: as for bytemuck's `Pod`.
        unsafe impl aya::Pod for CacheEntry<$n> {}
    )*};
}
pod_entries!(SMALL_DATA, MEDIUM_DATA, LARGE_DATA);

/// How much earlier than their records' TTL entries stop being served: more than the XDP
/// program's clock can lag CLOCK_MONOTONIC. It reads CLOCK_MONOTONIC_COARSE once per tick
/// (`clock.rs` in dnsxdp-ebpf), which can be up to three ticks behind, plus however late the
/// tick comes: timekeeping accumulates whole tick intervals only, the clock then stands still
/// for a tick, and a reading taken between the jiffies and timekeeping updates is one more tick
/// old. Three ticks are 30 ms at the lowest common HZ, 100; late ticks made the coarse clock
/// lag by 17 ms (four ticks) at HZ=250 on a loaded VM. Within this margin of a whole second, an
/// answer's TTL is one less than the whole seconds its records have left.
pub const EXPIRY_MARGIN_NS: u64 = 50_000_000;

/// In a `SERVED` value: the XDP program answers on the address and port.
pub const SERVED_ANSWER: u8 = 1;
/// In a `SERVED` value: the address is on a VLAN interface (or one stacked on a VLAN), so its
/// queries arrive tagged, and one that arrives without its tag lost it to VLAN offload.
pub const SERVED_BEHIND_VLAN: u8 = 2;

/// Key of the `SERVED` map: a local address and UDP port the XDP program answers on. IPv4
/// addresses are stored IPv4-mapped (`::ffff:a.b.c.d`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, PartialEq, Eq, Debug)]
pub struct ServedKey {
    pub addr: [u8; 16],
    /// Host byte order.
    pub port: u16,
    pub _pad: u16,
}

impl ServedKey {
    pub fn new(addr: [u8; 16], port: u16) -> Self {
        Self {
            addr,
            port,
            _pad: 0,
        }
    }

    pub fn v4(addr: [u8; 4], port: u16) -> Self {
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&addr);
        Self::new(mapped, port)
    }
}

/// Declares `Counter`, `COUNTER_COUNT`, `Counter::ALL` and `Counter::name` from one list, so
/// that they cannot disagree. A counter's place in the list is its index in `COUNTERS`, which
/// the daemon reads and a pinned program keeps writing: new ones go at the end.
macro_rules! counters {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Indices into the per-CPU `COUNTERS` array.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Counter {
            $($(#[$doc])* $variant,)*
        }

        pub const COUNTER_COUNT: u32 = Counter::ALL.len() as u32;

        impl Counter {
            pub const ALL: [Counter; [$(Counter::$variant),*].len()] = [$(Counter::$variant),*];

            /// Name used in `dnsxdp stats`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)*
                }
            }
        }
    };
}

counters! {
    /// UDP packets to a served address and port.
    Packets => "packets",
    /// Answered from the cache with XDP_TX.
    Hits => "hits",
    /// Cacheable query with no entry.
    Misses => "misses",
    /// Cacheable query whose entry has expired.
    Expired => "expired",
    /// Passed: a response, or an opcode other than QUERY.
    PassNotQuery => "pass_not_query",
    /// Passed: a type, class or name the cache does not serve.
    PassUnsupported => "pass_unsupported",
    /// Passed: EDNS options or an EDNS version the cache does not handle.
    PassEdns => "pass_edns",
    /// Passed: the answer is larger than the client can take.
    PassTooBig => "pass_too_big",
    /// Passed: truncated or ill-formed.
    PassMalformed => "pass_malformed",
    /// Dropped: the client is denied.
    DeniedDropped => "denied_dropped",
    /// Answered REFUSED: the client is denied.
    DeniedRefused => "denied_refused",
    /// Dropped: the client is over its rate limit.
    LimitedDropped => "limited_dropped",
    /// Answered with TC=1 (a slip): the client is over its rate limit.
    LimitedSlipped => "limited_slipped",
    /// A report for the daemon (a prefetch request, a logged hit, a security event) lost
    /// because the ring buffer was full.
    EventsLost => "events_lost",
    /// Dropped: sent from a port no answer may go to (`ports::reflective_port`).
    DroppedSourcePort => "dropped_source_port",
    /// Passed: from a source the stack drops (unspecified, loopback, multicast, broadcast,
    /// class E, IPv4-mapped) or to a group MAC address; an answer would go where no client is.
    PassMartian => "pass_martian",
    /// Passed: a bad IPv4 header or UDP checksum, which the stack drops.
    PassChecksum => "pass_checksum",
    /// Passed once the ACL and the rate limit let it: the first fragment of a datagram, which
    /// the stack reassembles for the daemon.
    PassFragment => "pass_fragment",
    /// Passed once the ACL and the rate limit let it: IPv6 with extension headers.
    PassExtensionHeaders => "pass_extension_headers",
    /// Dropped: an IPv6 chain of more extension headers than the program follows, behind which
    /// a query would escape the rate limit.
    DroppedHeaderChain => "dropped_header_chain",
    /// Dropped after the answer was made: the entry it was copied from changed meanwhile (an
    /// LRU element is reused as soon as an update replaces it). The client asks again.
    DroppedEntryChanged => "dropped_entry_changed",
    /// Passed once the ACL and the rate limit let it: untagged, to an address on a VLAN, so
    /// the NIC took its tag off (VLAN offload) and an answer from XDP would go out untagged.
    PassVlanOffload => "pass_vlan_offload",
    /// Passed: the route to the client does not lead back to the frame's Ethernet source
    /// (another host's address, or a neighbour not yet resolved); the stack answers.
    PassNextHop => "pass_next_hop",
    /// Of `hits`, those for a name a blocklist blocks.
    HitsBlocked => "hits_blocked",
}

/// Settings the daemon gives the XDP program when it loads it (`GLOBAL_SETTINGS`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Debug, PartialEq, Eq)]
pub struct XdpSettings {
    /// Hits an entry needs before a hit in its prefetch window asks for a refresh;
    /// `u64::MAX`: prefetch is off.
    pub prefetch_min_hits: u64,
    /// One hit in this many is reported as an `EVENT_HIT`; 0: none (no query log).
    pub log_sample: u32,
    /// `EVENT_DENIED` and `EVENT_LIMITED` a CPU may report per second; 0: none.
    pub security_per_sec: u32,
    /// Non-zero when every interface the program is attached to is a veth or tap with rx
    /// checksum offload, whose frames come from senders on this host and which the stack
    /// takes as checked: a UDP checksum left to offload (the pseudo-header's sum alone) is
    /// then one the stack takes. Off a wire, it is forged.
    pub local_senders: u32,
    /// Non-zero: answer only when the route to the client leads back to the frame's
    /// Ethernet source (`bpf_fib_lookup`), as the stack's reply would.
    pub check_next_hop: u32,
    /// Non-zero: log, at debug level through aya-log, why a query to us was passed or dropped.
    pub debug_log: u32,
    /// Non-zero: client groups are set (`GROUPS`), so each query looks its client's up.
    pub groups: u32,
}

impl XdpSettings {
    /// Reports nothing and never prefetches: what a program nobody configured does.
    pub const OFF: XdpSettings = XdpSettings {
        prefetch_min_hits: u64::MAX,
        log_sample: 0,
        security_per_sec: 0,
        local_senders: 0,
        check_next_hop: 0,
        debug_log: 0,
        groups: 0,
    };
}

/// `Event::kind`: a hit in an entry's prefetch window (`name`, `qtype`, `hits` set).
pub const EVENT_PREFETCH: u8 = 1;
/// A sampled hit, for the query log (`name`, `qtype`, `client`, `rcode` set).
pub const EVENT_HIT: u8 = 2;
/// A query from a denied client (`client`, `action` set).
pub const EVENT_DENIED: u8 = 3;
/// A query over its client's rate limit (`client`, `action` set).
pub const EVENT_LIMITED: u8 = 4;

/// What the XDP program reports to the daemon through the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Debug)]
pub struct Event {
    /// CLOCK_MONOTONIC_COARSE when it happened, in ns.
    pub time_ns: u64,
    /// The entry's hits before this one.
    pub hits: u64,
    /// The client's address, IPv4 ones mapped (`::ffff:a.b.c.d`).
    pub client: [u8; 16],
    /// The question's name lower-cased in wire format and zero padded.
    pub name: [u8; MAX_CACHED_NAME],
    pub qtype: u16,
    pub name_len: u16,
    /// The client's UDP port, host byte order.
    pub client_port: u16,
    /// One of the `EVENT_*` values.
    pub kind: u8,
    /// The answer's RCODE, for `EVENT_HIT`.
    pub rcode: u8,
    /// The `Counter` of what was done, for `EVENT_DENIED` and `EVENT_LIMITED`.
    pub action: u32,
    /// 1 if the entry answers queries with the DO bit.
    pub dnssec_ok: u8,
    /// The client group of the entry, for `EVENT_PREFETCH`.
    pub group: u8,
    pub _pad: [u8; 2],
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all are `#[repr(C)]` plain data without padding (checked by bytemuck's Pod).
    unsafe impl aya::Pod for super::CacheKey {}
    unsafe impl aya::Pod for super::ServedKey {}
    unsafe impl aya::Pod for super::XdpSettings {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_indexed_in_list_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{}", c.name());
        }
        assert_eq!(COUNTER_COUNT as usize, Counter::ALL.len());
        // Appended last: the indices a running program writes have not moved.
        assert_eq!(Counter::PassNextHop as u32, 22);
        assert_eq!(Counter::PassNextHop.name(), "pass_next_hop");
    }

    #[test]
    fn counter_names_are_distinct() {
        for (i, a) in Counter::ALL.iter().enumerate() {
            assert!(Counter::ALL[..i].iter().all(|b| b.name() != a.name()));
        }
    }
}
