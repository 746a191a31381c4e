//! Debug log lines for an operator wondering why the program did not answer a query to us: the
//! reason (the counter it was counted under) and the client, through aya-log to the daemon's
//! log. Never on the hit path.
//!
//! Off unless the daemon logs at debug level or finer (`XdpSettings::debug_log`). The switch is
//! a global, which the verifier reads as a constant: with logging off it never follows the calls
//! below and the kernel drops them as dead code, so not even the packets they are about pay for
//! them. aya-log-ebpf's own switch, its `AYA_LOG_LEVEL` global, is left as it is: it lets every
//! line through unless the loader lowers it, so a program loaded by anything but the daemon
//! would fill a ring buffer nobody reads.

use aya_ebpf::{bindings::xdp_md, programs::XdpContext};
use aya_log_ebpf::debug;
use dnsxdp_common::Counter;

use crate::{events, packet::Packet, parse};

/// Logs, if the daemon asked for it, that the query in `ctx` was not answered from the cache,
/// and why: `reason`, which it was counted under.
#[inline(always)]
pub fn not_answered(ctx: &XdpContext, reason: Counter) {
    if events::settings().debug_log != 0 {
        dnsxdp_log_not_answered(ctx.ctx, reason);
    }
}

/// A global function, which the verifier checks once on its own, for any `reason`, rather
/// than again at every call with the caller's state: the calls would take the program past its
/// budget. (It returns a number only because the verifier takes no other global functions.)
/// The client is found in the frame again rather than handed over, which would keep more
/// values alive across the main program's exits, the hit's included. The question's type is
/// left out: walking the name again would take the verifier near its budget.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn dnsxdp_log_not_answered(ctx: *mut xdp_md, reason: Counter) -> u32 {
    let ctx = &XdpContext::new(ctx);
    let Ok((f, _)) = parse::frame(&Packet::new(ctx)) else {
        return 0;
    };
    // Once the frame holds an answer, the client is its destination.
    let answered = matches!(
        reason,
        Counter::DeniedRefused | Counter::LimitedSlipped | Counter::DroppedEntryChanged
    );
    let Some((addr, port)) = events::endpoint(ctx, &f, answered) else {
        return 0;
    };
    // IPv4 addresses are mapped, and shown as such.
    let addr = unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(addr) };
    debug!(ctx, target: "xdp", "{}: from {:i} port {}", reason.name(), addr, port);
    0
}
