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
mod counters;
mod packet;
mod parse;
mod ratelimit;
mod reply;

use core::{
    intrinsics::{AtomicOrdering, atomic_xadd},
    mem::{MaybeUninit, size_of},
};

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::{HashMap, LruHashMap},
    programs::XdpContext,
};
use dnsxdp_common::{CacheEntry, CacheKey, Counter, ServedKey};

use crate::{counters::count, packet::Packet, reply::Fail};

/// Answers by query name and type. The daemon sets its size when it loads the object.
#[map]
static CACHE: LruHashMap<CacheKey, CacheEntry> = LruHashMap::with_max_entries(65536, 0);

/// Local addresses and ports to answer on; other DNS traffic through the box is left alone.
#[map]
static SERVED: HashMap<ServedKey, u8> = HashMap::with_max_entries(64, 0);

/// Keys live on the stack; 8-byte alignment lets LLVM write them in whole words.
#[repr(C, align(8))]
struct Aligned<T>(T);

#[xdp]
pub fn dnsxdp(ctx: XdpContext) -> u32 {
    let pkt = Packet::new(&ctx);
    let Some((frame, dest)) = parse::frame(&pkt) else {
        return xdp_action::XDP_PASS;
    };
    let served = Aligned(dest.key());
    let served: &ServedKey = &served.0;
    if SERVED.get_ptr(served).is_none() {
        return xdp_action::XDP_PASS;
    }
    count(Counter::Packets);
    let Some(frame) = frame.forget() else {
        return xdp_action::XDP_PASS;
    };
    let action = access::check(&ctx, &frame);
    if action != access::SERVE {
        return action;
    }

    let mut key = MaybeUninit::<Aligned<CacheKey>>::uninit();
    let words = key.as_mut_ptr().cast::<u64>();
    for i in 0..size_of::<Aligned<CacheKey>>() / 8 {
        // Volatile, so LLVM does not fold the stores back into a memset call, which the BPF
        // backend does not inline.
        unsafe { words.add(i).write_volatile(0) };
    }
    let key = unsafe { &mut key.assume_init_mut().0 };
    let query = match parse::query(&pkt, &frame, key) {
        Ok(q) => q,
        Err(reason) => {
            count(reason);
            return xdp_action::XDP_PASS;
        }
    };
    let Some(entry) = CACHE.get_ptr_mut(key) else {
        count(Counter::Misses);
        return xdp_action::XDP_PASS;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let e = unsafe { &*entry };
    if now >= e.expires_ns {
        count(Counter::Expired);
        return xdp_action::XDP_PASS;
    }
    match reply::build(&ctx, &frame, &query, e, e.expires_ns - now) {
        Ok(()) => {
            count(Counter::Hits);
            // Shared by all CPUs answering this name.
            unsafe {
                atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*entry).hits, 1)
            };
            xdp_action::XDP_TX
        }
        Err(Fail::Pass(reason)) => {
            count(reason);
            xdp_action::XDP_PASS
        }
        Err(Fail::Drop) => xdp_action::XDP_DROP,
    }
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
