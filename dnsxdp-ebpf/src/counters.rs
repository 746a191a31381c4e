//! The per-CPU statistics the daemon sums up.

use dnsxdp_common::Counter;

use crate::maps::{COUNTERS, GROUP_BLOCKED};

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // Per-CPU slot: no other writer, a plain add is enough.
        unsafe { *slot += 1 };
    }
}

/// Counts a hit for a blocked name against the client's group.
#[inline(always)]
pub fn count_group_blocked(group: u8) {
    if let Some(slot) = GROUP_BLOCKED.get_ptr_mut(group as u32) {
        unsafe { *slot += 1 };
    }
}
