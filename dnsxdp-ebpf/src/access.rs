//! Who may ask: the ACL and the rate limit, applied to every query to us before it is parsed.

use core::ptr::write_volatile;

use aya_ebpf::{bindings::xdp_action, maps::lpm_trie::Key, programs::XdpContext};
use dnsxdp_common::{
    Counter,
    acl::{ACL_ALLOW, ACL_EXEMPT, DENY_REFUSE},
    bare_reply::Kind,
};

use crate::{
    bare_reply,
    counters::count,
    events,
    maps::{ACCESS, ACL, GROUPS},
    packet::Packet,
    parse::Frame,
    ratelimit::{self, Limit},
};

/// An LPM trie key on the stack: prefix length, then the address.
#[repr(C, align(8))]
struct AclKey([u32; 5]);

/// `check`'s action for a query that is to be served.
pub const SERVE: u32 = u32::MAX;

/// What `check` decided, packed in one register: the XDP action (or `SERVE`) in the low half,
/// and in the high half the `Counter` of what was done to a stopped query, or the client's
/// group for one to serve.
pub struct Verdict(pub u64);

impl Verdict {
    #[inline(always)]
    pub fn action(&self) -> u32 {
        self.0 as u32
    }

    /// The client's group, for a query to serve.
    #[inline(always)]
    pub fn group(&self) -> u8 {
        (self.0 >> 32) as u8
    }

    /// The counter of a query the ACL or the rate limit stopped.
    #[inline(always)]
    pub fn stopped_by(&self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// `stopped_by` as the `Counter` it is.
    #[inline(always)]
    pub fn reason(&self) -> Option<Counter> {
        let stopped = [
            Counter::DeniedDropped,
            Counter::DeniedRefused,
            Counter::LimitedDropped,
            Counter::LimitedSlipped,
        ];
        stopped.into_iter().find(|&c| c as u32 == self.stopped_by())
    }
}

/// The verdict on a query.
///
/// A function of its own for the verifier: whichever way a query went through it, the main
/// program goes on in the same state (only the return value differs), so what follows is not
/// verified once per way. It returns a register rather than a struct: the caller's stack and
/// its own together are at the verifier's limit.
#[inline(never)]
pub fn check(ctx: &XdpContext, f: &Frame) -> u64 {
    match verdict(ctx, f) {
        Ok(group) => ((group as u64) << 32) | SERVE as u64,
        Err((action, counter)) => ((counter as u64) << 32) | action as u64,
    }
}

/// The client's group for a query to serve, or the action and counter for one that is not.
#[inline(always)]
fn verdict(ctx: &XdpContext, f: &Frame) -> Result<u8, (u32, Counter)> {
    let (Some(addr), Some(cfg)) = (f.address(&Packet::new(ctx), false), ACCESS.get(0)) else {
        return Ok(0);
    };
    let mut key = AclKey([0; 5]);
    let words = key.0.as_mut_ptr();
    // Volatile word stores: LLVM would merge them into 8-byte stores at offset 4, and the
    // verifier refuses misaligned stack access.
    unsafe {
        write_volatile(words, 128);
        for (i, w) in addr.iter().enumerate() {
            write_volatile(words.add(1 + i), *w);
        }
    }
    let key = unsafe { &*(key.0.as_ptr() as *const Key<[u8; 16]>) };
    let rule = ACL.get(key).copied().unwrap_or(ACL_ALLOW);
    let denied = rule & ACL_ALLOW == 0;
    if denied && cfg.deny != DENY_REFUSE {
        return Err(discard(Counter::DeniedDropped));
    }
    // REFUSED is an answer too, so it is held to the rate limit like any other: a flood with
    // spoofed sources is not reflected one for one.
    let limit = match (denied || rule & ACL_EXEMPT == 0) && cfg.limits() {
        true => ratelimit::charge(cfg, addr, f.v6),
        false => Limit::Within,
    };
    // What the query gets if it is not served: an answer, counted as the first counter, or,
    // without one, nothing, counted as the second.
    let (kind, answered, dropped) = match (denied, limit) {
        (true, Limit::Within) => (
            Kind::Refused,
            Counter::DeniedRefused,
            Counter::DeniedDropped,
        ),
        (true, Limit::Over { .. }) => return Err(discard(Counter::DeniedDropped)),
        // The same key finds the client's group.
        (false, Limit::Within) if events::settings().groups != 0 => {
            return Ok(GROUPS.get(key).copied().unwrap_or(0));
        }
        (false, Limit::Within) => return Ok(0),
        (false, Limit::Over { slip: false }) => return Err(discard(Counter::LimitedDropped)),
        (false, Limit::Over { slip: true }) => (
            Kind::Truncated,
            Counter::LimitedSlipped,
            Counter::LimitedDropped,
        ),
    };
    // Answers are made from whole datagrams only: the daemon refuses a fragment the ACL
    // denies, uncharged again, and a limited one is dropped rather than slipped.
    if f.charge_only.is_some() {
        return match kind {
            Kind::Refused => Ok(0),
            Kind::Truncated => Err(discard(dropped)),
        };
    }
    // The one place the answer is made, so the verifier walks its loops once.
    if bare_reply::send(ctx, f, kind) {
        count(answered);
        return Err((xdp_action::XDP_TX, answered));
    }
    Err(discard(dropped))
}

#[inline(always)]
fn discard(counter: Counter) -> (u32, Counter) {
    count(counter);
    (xdp_action::XDP_DROP, counter)
}
