#![no_std]
#![no_main]
// The BPF target has no compare-and-swap, so core's atomics lack fetch_add; the intrinsic
// lowers to BPF's atomic add.
#![feature(core_intrinsics)]
#![allow(internal_features)]
// For `bounds::opaque`.
#![feature(asm_experimental_arch)]

mod access;
mod bare_reply;
mod bounds;
mod clock;
mod counters;
mod debug_log;
mod events;
mod maps;
mod next_hop;
mod packet;
mod parse;
mod ratelimit;
mod reply;
mod served;
mod sum;
mod verify;

use core::{
    intrinsics::{AtomicOrdering, atomic_xadd},
    mem::size_of,
    ptr::read_volatile,
};

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use dnsxdp_common::{
    CacheEntry, CacheKey, Counter, SERVED_ANSWER, SERVED_BEHIND_VLAN,
    hash::{HashKey, group_hash},
    ports::reflective_port,
};

use crate::{
    bounds::opaque,
    counters::count,
    maps::{CACHE_LARGE, CACHE_MEDIUM, CACHE_SMALL, HASH_KEY, NAME_WORDS},
    packet::{Packet, load},
    parse::{Frame, NameWords, NotUdp, Query},
    reply::Fail,
};

/// Keys live on the stack; 8-byte alignment lets LLVM write them in whole words.
#[repr(C, align(8))]
struct Aligned<T>(T);

// Inlined into the entry point `#[xdp]` wraps it in: with a copy of the hit path per cache
// tier it is past LLVM's size for inlining, and a BPF-to-BPF call would cost every packet.
#[xdp]
#[inline(always)]
pub fn dnsxdp(ctx: XdpContext) -> u32 {
    let pkt = Packet::new(&ctx);
    let (frame, dest) = match parse::frame(&pkt) {
        Ok(found) => found,
        Err(NotUdp::Pass) => return xdp_action::XDP_PASS,
        Err(NotUdp::LongChain) => {
            count(Counter::DroppedHeaderChain);
            return xdp_action::XDP_DROP;
        }
    };
    let served = served::served(&dest);
    if served & SERVED_ANSWER == 0 {
        return xdp_action::XDP_PASS;
    }
    count(Counter::Packets);
    if frame.martian {
        return not_answered(&ctx, Counter::PassMartian, xdp_action::XDP_PASS);
    }
    // Before the ACL, whose REFUSED would be an answer too.
    if reflective_port(frame.src_port) {
        return not_answered(&ctx, Counter::DroppedSourcePort, xdp_action::XDP_DROP);
    }
    // For an address on a VLAN, a frame without a tag lost it to the NIC's VLAN offload,
    // which XDP cannot see: an answer would go out untagged. The stack answers it.
    let mut frame = frame;
    if served & SERVED_BEHIND_VLAN != 0 && !frame.tagged {
        frame.charge_only = frame.charge_only.or(Some(Counter::PassVlanOffload));
    }
    let Some(frame) = frame.forget() else {
        return xdp_action::XDP_PASS;
    };
    let verdict = access::Verdict(access::check(&ctx, &frame));
    let action = verdict.action();
    if action != access::SERVE {
        if verdict.stopped_by() != 0 && events::settings().security_per_sec != 0 {
            events::security(&ctx, &frame, verdict.stopped_by(), action);
        }
        // Counted by the access check.
        if let Some(reason) = verdict.reason() {
            debug_log::not_answered(&ctx, reason);
        }
        return action;
    }
    if let Some(reason) = frame.charge_only {
        return not_answered(&ctx, reason, xdp_action::XDP_PASS);
    }

    let Some(words) = NAME_WORDS.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    let ptr = words.cast::<u64>();
    for i in 0..size_of::<NameWords>() / 8 {
        // Volatile, so LLVM does not fold the stores back into a memset call, which the BPF
        // backend does not inline.
        unsafe { ptr.add(i).write_volatile(0) };
    }
    let words = unsafe { &mut *words };
    // Read through a pointer LLVM cannot see into: the key is only known once the object is
    // loaded.
    let hash_key = unsafe { &*(opaque(&raw const HASH_KEY as usize) as *const HashKey) };
    let query = match parse::query(&pkt, &frame, hash_key, words) {
        Ok(q) => q,
        Err(reason) => return not_answered(&ctx, reason, xdp_action::XDP_PASS),
    };
    let group = verdict.group();
    let key = Aligned(CacheKey::new(
        group_hash(query.hash, group),
        query.qtype,
        query.name_len as u16,
        query.dnssec_ok,
    ));
    let key: &CacheKey = &key.0;
    // Smallest tier first: most answers are small, and a miss pays for the other lookups.
    if let Some(entry) = CACHE_SMALL.get_ptr_mut(key) {
        return answer(&ctx, &pkt, &frame, &query, words, key, entry);
    }
    if let Some(entry) = CACHE_MEDIUM.get_ptr_mut(key) {
        return answer(&ctx, &pkt, &frame, &query, words, key, entry);
    }
    match CACHE_LARGE.get_ptr_mut(key) {
        Some(entry) => answer(&ctx, &pkt, &frame, &query, words, key, entry),
        None => not_answered(&ctx, Counter::Misses, xdp_action::XDP_PASS),
    }
}

/// Answers `query` from `entry`, found under `key` in the tier whose entries hold `N` bytes of
/// name and records: a copy of the hit path for each tier, so that the verifier knows the size
/// of the entry it reads.
#[inline(always)]
fn answer<const N: usize>(
    ctx: &XdpContext,
    pkt: &Packet,
    frame: &Frame,
    query: &Query,
    words: &NameWords,
    key: &CacheKey,
    entry: *mut CacheEntry<N>,
) -> u32 {
    let e = unsafe { &*entry };
    // A different name whose hash, length and type are the same: as good as not cached.
    if !same_name(words, query.name_words, e) {
        return not_answered(ctx, Counter::Misses, xdp_action::XDP_PASS);
    }
    // The coarse clock costs less than CLOCK_MONOTONIC; `build_entry` makes up for its lag.
    let now = clock::coarse_ns();
    let (expires, csum) = unsafe {
        (
            read_volatile(&raw const (*entry).expires_ns),
            read_volatile(&raw const (*entry).csum),
        )
    };
    let Some(ttl) = e.ttl_at(now) else {
        return not_answered(ctx, Counter::Expired, xdp_action::XDP_PASS);
    };
    // Last, so that only answers pay for the sums and the route.
    if !verify::checksums_ok(pkt, frame) {
        return not_answered(ctx, Counter::PassChecksum, xdp_action::XDP_PASS);
    }
    if events::settings().check_next_hop != 0 && !next_hop::reply_goes_to_sender(ctx, pkt, frame) {
        return not_answered(ctx, Counter::PassNextHop, xdp_action::XDP_PASS);
    }
    match reply::build(ctx, frame, query, e, ttl) {
        Ok(()) => {
            // An update hands the element it replaces back to the free list at once, and the
            // next insert may be filling it while this CPU copies from it. The kernel copies a
            // value from its first byte on: if the key (first) and the expiry and sum (before
            // the name and records) are still those read before, the records copied are
            // theirs. Every tier's entries start alike.
            let reused = unsafe {
                let words = entry.cast::<u32>();
                let key_words = (key as *const CacheKey).cast::<u32>();
                read_volatile(words) != *key_words
                    || read_volatile(words.add(1)) != *key_words.add(1)
                    || read_volatile(words.add(2)) != *key_words.add(2)
                    || read_volatile(&raw const (*entry).expires_ns) != expires
                    || read_volatile(&raw const (*entry).csum) != csum
            };
            if reused {
                return not_answered(ctx, Counter::DroppedEntryChanged, xdp_action::XDP_DROP);
            }
            count(Counter::Hits);
            if e.blocked != 0 {
                count(Counter::HitsBlocked);
                counters::count_group_blocked(e.group);
            }
            let settings = events::settings();
            // Once per entry, give or take a race between CPUs: the daemon refreshes a name
            // once however often it is asked.
            let prefetch = now >= e.prefetch_ns
                && e.prefetch_sent == 0
                && e.hits >= settings.prefetch_min_hits;
            let log = settings.log_sample != 0 && events::sampled(settings.log_sample);
            if prefetch {
                unsafe { (*entry).prefetch_sent = 1 };
            }
            if prefetch || log {
                let facts = events::HitFacts {
                    now,
                    hits: unsafe { read_volatile(&raw const (*entry).hits) },
                    qtype: query.qtype,
                    name_len: query.name_len as u16,
                    rcode: e.rcode,
                    dnssec_ok: query.dnssec_ok,
                    group: e.group,
                    prefetch,
                    log,
                };
                events::hit(ctx, frame, words, &facts);
            }
            // Shared by all CPUs answering this name.
            unsafe {
                atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*entry).hits, 1)
            };
            xdp_action::XDP_TX
        }
        Err(Fail::Pass(reason)) => not_answered(ctx, reason, xdp_action::XDP_PASS),
        Err(Fail::Drop) => xdp_action::XDP_DROP,
    }
}

/// Counts a query to us that is not answered from the cache under `reason`, logs why if the
/// daemon asked for it, and returns `action`.
#[inline(always)]
fn not_answered(ctx: &XdpContext, reason: Counter, action: u32) -> u32 {
    count(reason);
    debug_log::not_answered(ctx, reason);
    action
}

/// Whether the entry's name, its first `count` words, is `words`.
#[inline(always)]
fn same_name<const N: usize>(words: &NameWords, count: usize, e: &CacheEntry<N>) -> bool {
    // A name longer than the tier's entries hold is not one of theirs.
    if count > N / 8 {
        return false;
    }
    for (i, &word) in words.iter().take(N / 8).enumerate() {
        if i >= count {
            break;
        }
        if word != unsafe { load::<u64>(e.data.as_ptr(), i * 8) } {
            return false;
        }
    }
    true
}

/// For the peer end of a veth pair, whose frames are only seen by XDP if a program is attached.
#[xdp]
pub fn dnsxdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
