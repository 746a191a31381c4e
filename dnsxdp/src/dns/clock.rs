//! The monotonic clock shared with the XDP program.

const NS_PER_SEC: u64 = 1_000_000_000;

/// CLOCK_MONOTONIC in nanoseconds: the clock `bpf_ktime_get_ns` reads, so expiry times written
/// to the kernel map mean the same thing on both sides.
pub fn now_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

/// CLOCK_MONOTONIC_COARSE in nanoseconds: up to a few ticks behind `now_ns`, and cheaper to
/// read, for ages that need no better.
pub fn coarse_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC_COARSE)
}

fn read(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * NS_PER_SEC + ts.tv_nsec as u64
}

/// Whole seconds in a nanosecond span.
pub const fn secs(ns: u64) -> u64 {
    ns / NS_PER_SEC
}

/// Nanoseconds in `secs` seconds.
pub const fn ns(secs: u32) -> u64 {
    secs as u64 * NS_PER_SEC
}
