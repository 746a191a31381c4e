//! Every map of the program, and the globals its loader sets. The daemon finds them by name
//! (`MAP_*` and `GLOBAL_*` in dnsxdp-common); the modules that use them import them from here.
//! One more, `AYA_LOGS`, is aya-log-ebpf's own: the ring buffer of the `debug_log` lines.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use dnsxdp_common::{
    COUNTER_COUNT, CacheEntry, CacheKey, MAX_CACHED_NAME, MAX_GROUP_PREFIXES, MAX_GROUPS,
    ServedKey, XdpSettings,
    acl::{AccessConfig, Bucket, MAX_ACL_RULES, RATE_ENTRIES, RateKey},
    hash::HashKey,
    tier::{LARGE_DATA, MEDIUM_DATA, SMALL_DATA},
};

use crate::{clock, next_hop, parse::NameWords, served};

// Shared with the daemon.

// Answers by query name and type, in three sizes of entry (`Tier`), each map named by its
// `Tier::map`. The daemon sets their sizes when it loads the object.

#[map]
pub static CACHE_SMALL: LruHashMap<CacheKey, CacheEntry<SMALL_DATA>> =
    LruHashMap::with_max_entries(65536, 0);

#[map]
pub static CACHE_MEDIUM: LruHashMap<CacheKey, CacheEntry<MEDIUM_DATA>> =
    LruHashMap::with_max_entries(8192, 0);

#[map]
pub static CACHE_LARGE: LruHashMap<CacheKey, CacheEntry<LARGE_DATA>> =
    LruHashMap::with_max_entries(2048, 0);

/// The per-CPU statistics the daemon sums up, indexed by `Counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

/// Local addresses and ports to answer on, with `SERVED_*` bits; other DNS traffic through the
/// box is left alone.
#[map]
pub static SERVED: HashMap<ServedKey, u8> = HashMap::with_max_entries(64, 0);

/// Reports to the daemon (`events` module). Room for a few thousand between two reads.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Allow/deny and rate-limit exemption by client prefix (`ACL_*` bits). An address no rule
/// covers is allowed, so a program nobody configured serves everyone; the daemon always writes
/// rules for `0.0.0.0/0` and `::/0`.
#[map]
pub static ACL: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(MAX_ACL_RULES, 0);

/// Client groups by client prefix: each group's answers are cached under keys of its own. Looked
/// up only when `XdpSettings::groups` says there are groups; an address no prefix covers is in
/// group 0.
#[map]
pub static GROUPS: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(MAX_GROUP_PREFIXES, 0);

/// Hits for blocked names, per CPU, by client group.
#[map]
pub static GROUP_BLOCKED: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_GROUPS, 0);

/// The daemon's settings: rate limit and what denied queries get.
#[map]
pub static ACCESS: Array<AccessConfig> = Array::with_max_entries(1, 0);

/// Token buckets by client prefix, shared by all CPUs so the limit holds whichever queue a
/// client's packets arrive on.
#[map]
pub static RATE: LruHashMap<RateKey, Bucket> = LruHashMap::with_max_entries(RATE_ENTRIES, 0);

// The program's own: scratch space and memos, per CPU.

/// The query's name as words, kept per CPU rather than on the stack: there, they would take
/// the main program and the access check it calls past the 6.1 verifier's 512-byte stack.
#[map]
pub static NAME_WORDS: PerCpuArray<NameWords> = PerCpuArray::with_max_entries(1, 0);

/// One word to round-trip values through (`bounds::forget`).
#[map]
pub static SCRATCH: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The latest answers of SERVED, direct-mapped by destination (`served` module).
#[map]
pub static SERVED_MEMO: PerCpuArray<served::Memo> =
    PerCpuArray::with_max_entries(1 << served::MEMO_BITS, 0);

/// The latest next-hop verdicts, direct-mapped by client (`next_hop` module).
#[map]
pub static NEXT_HOP_MEMO: PerCpuArray<next_hop::Memo> =
    PerCpuArray::with_max_entries(1 << next_hop::MEMO_BITS, 0);

/// The route lookup's parameters, kept per CPU rather than on the stack, which the main
/// program has little of left.
#[map]
pub static LOOKUP: PerCpuArray<next_hop::Lookup> = PerCpuArray::with_max_entries(1, 0);

/// The second (of the coarse clock) security events were last reported in, and how many were.
#[map]
pub static SECURITY_BUDGET: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// The latest reading of the coarse clock (`clock` module).
#[map]
pub static LAST_READING: PerCpuArray<clock::Reading> = PerCpuArray::with_max_entries(1, 0);

// Globals: read-only to the program, set by the loader. Read them through `bounds::opaque`,
// or LLVM folds in the values below.

/// The key of the name hash (`GLOBAL_HASH_KEY`), random at each load.
#[unsafe(no_mangle)]
pub static HASH_KEY: HashKey = [0; MAX_CACHED_NAME / 8];

/// What to report (`GLOBAL_SETTINGS`).
#[unsafe(no_mangle)]
pub static SETTINGS: XdpSettings = XdpSettings::OFF;
