//! The per-CPU statistics the daemon sums up.

use dnsxdp_common::Counter;

use crate::maps::COUNTERS;

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // Per-CPU slot: no other writer, a plain add is enough.
        unsafe { *slot += 1 };
    }
}
