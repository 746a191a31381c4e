//! Reports to the daemon through the `EVENTS` ring buffer: requests to prefetch an entry,
//! sampled hits for the query log, and denied or rate-limited clients for the security log.
//! What is reported is set by the daemon in `SETTINGS`; with everything off a hit pays for
//! two loads and compares.

use core::ptr::addr_of_mut;

use aya_ebpf::{
    bindings::xdp_action, helpers::generated::bpf_get_prandom_u32, programs::XdpContext,
};
use dnsxdp_common::{
    Counter, EVENT_DENIED, EVENT_HIT, EVENT_LIMITED, EVENT_PREFETCH, Event, XdpSettings,
};

use network_types::udp::UdpHdr;

use crate::{
    bounds::opaque,
    clock,
    counters::count,
    maps::{EVENTS, SECURITY_BUDGET, SETTINGS},
    packet::Packet,
    parse::{Frame, NameWords},
};

const NS_PER_SEC: u64 = 1_000_000_000;

/// The settings, read through a pointer LLVM cannot see into: they are only known once the
/// object is loaded.
#[inline(always)]
pub fn settings() -> &'static XdpSettings {
    unsafe { &*(opaque(&raw const SETTINGS as usize) as *const XdpSettings) }
}

/// Whether this hit is one of the one in `sample` the query log gets.
#[inline(always)]
pub fn sampled(sample: u32) -> bool {
    sample == 1 || (sample > 1 && unsafe { bpf_get_prandom_u32() } % sample == 0)
}

/// What a hit report says besides the packet and the name.
#[repr(C)]
pub struct HitFacts {
    pub now: u64,
    /// The entry's hits before this one.
    pub hits: u64,
    pub qtype: u16,
    pub name_len: u16,
    /// The answer's.
    pub rcode: u8,
    pub dnssec_ok: bool,
    pub group: u8,
    pub prefetch: bool,
    pub log: bool,
}

/// Reports a hit that asks for a prefetch, or is logged, or both, after the answer was
/// written into the frame (so the client is its destination).
///
/// Its own function: only the rare hits that report anything pay for its verification paths.
#[inline(never)]
pub fn hit(ctx: &XdpContext, f: &Frame, words: &NameWords, facts: &HitFacts) {
    if facts.prefetch {
        report(words, facts, EVENT_PREFETCH, None);
    }
    if facts.log {
        report(words, facts, EVENT_HIT, endpoint(ctx, f, true));
    }
}

#[inline(always)]
fn report(words: &NameWords, facts: &HitFacts, kind: u8, client: Option<([u32; 4], u16)>) {
    let Some(mut slot) = EVENTS.reserve::<Event>(0) else {
        count(Counter::EventsLost);
        return;
    };
    let ev = slot.as_mut_ptr();
    unsafe {
        (*ev).time_ns = facts.now;
        (*ev).hits = facts.hits;
        let name = addr_of_mut!((*ev).name) as *mut u64;
        for (i, w) in words.iter().enumerate() {
            name.add(i).write(*w);
        }
        (*ev).qtype = facts.qtype;
        (*ev).name_len = facts.name_len;
        (*ev).kind = kind;
        (*ev).rcode = facts.rcode;
        (*ev).action = 0;
        (*ev).dnssec_ok = facts.dnssec_ok as u8;
        (*ev).group = facts.group;
        (*ev)._pad = [0; 2];
        let (addr, port) = client.unwrap_or(([0; 4], 0));
        write_words(addr_of_mut!((*ev).client) as *mut u32, &addr);
        (*ev).client_port = port;
    }
    slot.submit(0);
}

/// The source or destination (`dst`) address (16-byte form, as words) and port of the frame.
#[inline(always)]
pub fn endpoint(ctx: &XdpContext, f: &Frame, dst: bool) -> Option<([u32; 4], u16)> {
    let pkt = Packet::new(ctx);
    let addr = f.address(&pkt, dst)?;
    let udp = unsafe { &*pkt.header::<UdpHdr>(f.udp())? };
    let port = if dst { udp.dst_port() } else { udp.src_port() };
    Some((addr, port))
}

/// Copies address words into an event.
#[inline(always)]
unsafe fn write_words(to: *mut u32, words: &[u32; 4]) {
    for (i, w) in words.iter().enumerate() {
        unsafe { to.add(i).write(*w) };
    }
}

/// Reports a query the ACL or the rate limit stopped, with the `Counter` of what was done,
/// unless this CPU has reported its share this second. `action` is the XDP action taken: after
/// XDP_TX the frame is the answer, and the client its destination.
///
/// Its own function: only stopped queries pay for its verification paths, and the stack of
/// `access::check` is free again when it runs.
#[inline(never)]
pub fn security(ctx: &XdpContext, f: &Frame, counter: u32, action: u32) {
    let Some(budget) = SECURITY_BUDGET.get_ptr_mut(0) else {
        return;
    };
    let now = clock::coarse_ns();
    let budget = unsafe { &mut *budget };
    let second = now / NS_PER_SEC;
    if budget[0] != second {
        *budget = [second, 0];
    }
    if budget[1] >= settings().security_per_sec as u64 {
        return;
    }
    budget[1] += 1;
    let answered = action == xdp_action::XDP_TX;
    let Some((addr, port)) = endpoint(ctx, f, answered) else {
        return;
    };
    let Some(mut slot) = EVENTS.reserve::<Event>(0) else {
        count(Counter::EventsLost);
        return;
    };
    let ev = slot.as_mut_ptr();
    let denied =
        counter == Counter::DeniedDropped as u32 || counter == Counter::DeniedRefused as u32;
    unsafe {
        // The name and the rest mean nothing here; the daemon does not read them.
        (*ev).time_ns = now;
        write_words(addr_of_mut!((*ev).client) as *mut u32, &addr);
        (*ev).client_port = port;
        (*ev).kind = if denied { EVENT_DENIED } else { EVENT_LIMITED };
        (*ev).action = counter;
    }
    slot.submit(0);
}
