//! The clock entries expire by: CLOCK_MONOTONIC_COARSE, read once per tick and CPU.

use aya_ebpf::helpers::generated::{bpf_jiffies64, bpf_ktime_get_coarse_ns};

use crate::maps::LAST_READING;

/// A reading of the coarse clock and the tick it was taken in, kept per CPU.
#[repr(C)]
pub struct Reading {
    jiffies: u64,
    ns: u64,
}

/// CLOCK_MONOTONIC_COARSE in ns, as of this tick. The coarse clock only moves when the tick
/// updates timekeeping, right after it advances jiffies, which the verifier inlines as a load:
/// so the helper, a call whose return is costly with the SRSO mitigation, runs once per tick
/// and CPU. A reading taken between the two updates stays one tick behind until the next tick;
/// `EXPIRY_MARGIN_NS` covers that too.
#[inline(always)]
pub fn coarse_ns() -> u64 {
    let jiffies = unsafe { bpf_jiffies64() };
    let Some(last) = LAST_READING.get_ptr_mut(0) else {
        return unsafe { bpf_ktime_get_coarse_ns() };
    };
    let last = unsafe { &mut *last };
    // A slot never written has ns 0.
    if last.jiffies != jiffies || last.ns == 0 {
        *last = Reading {
            jiffies,
            ns: unsafe { bpf_ktime_get_coarse_ns() },
        };
    }
    last.ns
}
