//! Per-client token buckets, one table for all CPUs.
//!
//! A bucket is updated without a lock: the program is built for BPF CPU v1, which has atomic
//! add but no compare-and-exchange. A query within the limit adds its interval to the bucket's
//! arrival time atomically, so concurrent CPUs never lose a charge and the rate holds exactly
//! over time; CPUs checking at the same instant can let through one query each past the burst.
//! Only an idle bucket is restarted with a plain store, which at worst forgets one charge.

use core::{
    intrinsics::{AtomicOrdering, atomic_xadd},
    ptr::{read_volatile, write_volatile},
};

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::generated::bpf_ktime_get_ns};
use dnsxdp_common::acl::{AccessConfig, Bucket, Charge, RateKey};

use crate::maps::RATE;

pub enum Limit {
    Within,
    /// Over the limit; `slip`: this one gets a TC=1 answer.
    Over {
        slip: bool,
    },
}

#[repr(C, align(8))]
struct Aligned<T>(T);

/// Charges one query from `addr` (the words of its 16-byte form) to its prefix's bucket.
#[inline(always)]
pub fn charge(cfg: &AccessConfig, addr: [u32; 4], v6: bool) -> Limit {
    let (mask, prefix_len) = if v6 {
        (cfg.v6_mask, cfg.v6_prefix_len)
    } else {
        (cfg.v4_mask, cfg.v4_prefix_len)
    };
    let mask: [u32; 4] = unsafe { core::mem::transmute(mask) };
    let masked = [
        addr[0] & mask[0],
        addr[1] & mask[1],
        addr[2] & mask[2],
        addr[3] & mask[3],
    ];
    let key = Aligned(RateKey {
        addr: unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(masked) },
        prefix_len,
    });
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(bucket) = RATE.get_ptr_mut(&key.0) else {
        // A client not seen lately: a full bucket, less this query. Should another CPU have
        // made it first, this query goes uncharged.
        let fresh = Bucket {
            tat_ns: now + cfg.interval_ns,
            limited: 0,
        };
        let _ = RATE.insert(&key.0, &fresh, BPF_NOEXIST as u64);
        return Limit::Within;
    };
    let tat = unsafe { &raw mut (*bucket).tat_ns };
    match cfg.charge(unsafe { read_volatile(tat) }, now) {
        Charge::Start(t) => unsafe { write_volatile(tat, t) },
        Charge::Take => unsafe {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(tat, cfg.interval_ns);
        },
        Charge::Limited => {
            let limited = unsafe { &raw mut (*bucket).limited };
            // CPU v1's atomic add returns nothing; reading the count back may see another
            // CPU's query too, which only shifts which query slips.
            let n = unsafe {
                atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(limited, 1);
                read_volatile(limited)
            };
            return Limit::Over { slip: cfg.slips(n) };
        }
    }
    Limit::Within
}
