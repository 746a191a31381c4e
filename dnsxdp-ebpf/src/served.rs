//! Whether the program answers on a destination: the SERVED map, and a per-CPU memo of it.

use aya_ebpf::helpers::generated::bpf_jiffies64;
use dnsxdp_common::ServedKey;

use crate::{
    Aligned,
    maps::{SERVED, SERVED_MEMO},
    parse::Dest,
};

/// `SERVED_MEMO` has `1 << MEMO_BITS` slots.
pub const MEMO_BITS: u32 = 6;
/// Ticks a memo slot is trusted for: a change to SERVED reaches every CPU within 25 ticks,
/// 250 ms at the lowest common HZ of 100. The daemon refreshes SERVED every few seconds.
const MEMO_TICKS: u64 = 25;
/// Set in a memo slot's `answer` once filled, beside SERVED's value (0: not served).
const FILLED: u32 = 0x100;

/// What SERVED said about a destination, and when: a slot of `SERVED_MEMO`, which holds the
/// latest answers per CPU. Looking up a hash map is a helper call, and with the mitigation for
/// return address mispredictions on AMD (SRSO) the return alone costs more than the memo,
/// which the verifier inlines.
#[repr(C)]
pub struct Memo {
    addr: [u64; 2],
    port: u32,
    /// `FILLED` and SERVED's value; zero in a slot never filled.
    answer: u32,
    /// `bpf_jiffies64` when SERVED was asked.
    jiffies: u64,
}

/// SERVED's value for `dest` (`SERVED_*` bits; 0 when it is not there), as of at most
/// `MEMO_TICKS` ago.
#[inline(always)]
pub fn served(dest: &Dest) -> u8 {
    let lookup = || {
        let key = Aligned(dest.key());
        let key: &ServedKey = &key.0;
        // A u8 read at once: SERVED's values are replaced whole.
        SERVED.get_ptr(key).map_or(0, |v| unsafe { *v })
    };
    // Inlined by the verifier: a load of `jiffies_64`.
    let now = unsafe { bpf_jiffies64() };
    let port = dest.port as u32;
    // Fibonacci hashing of the destination.
    let hash = (dest.addr[0] ^ dest.addr[1] ^ port as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let Some(slot) = SERVED_MEMO.get_ptr_mut((hash >> (64 - MEMO_BITS)) as u32) else {
        return lookup();
    };
    let memo = unsafe { &mut *slot };
    if memo.answer != 0
        && memo.addr == dest.addr
        && memo.port == port
        && now.wrapping_sub(memo.jiffies) < MEMO_TICKS
    {
        return memo.answer as u8;
    }
    let served = lookup();
    *memo = Memo {
        addr: dest.addr,
        port,
        answer: FILLED | served as u32,
        jiffies: now,
    };
    served
}
