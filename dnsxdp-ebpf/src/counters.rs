//! The per-CPU statistics the daemon sums up.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use dnsxdp_common::{COUNTER_COUNT, Counter};

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // Per-CPU slot: no other writer, a plain add is enough.
        unsafe { *slot += 1 };
    }
}
