//! Where the stack would send the answer. XDP_TX sends it back to the frame's Ethernet source,
//! but the ACL and the rate limit key on the IP source: an on-link host could put another
//! host's address on its own frames and get answers the ACL would give that host only. The
//! stack sends a reply to the neighbour (or gateway) the routing table names for the client,
//! so the program answers only if that is the frame's sender. The kernel looks routes up for
//! XDP only on interfaces that forward, as a gateway's do; elsewhere it cannot tell, and the
//! program answers as before.

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_FWD_DISABLED, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams,
    },
    helpers::generated::{bpf_fib_lookup, bpf_jiffies64},
    programs::XdpContext,
};

use network_types::{eth::EthHdr, ip::IpProto};

use crate::{
    maps::{LOOKUP, NEXT_HOP_MEMO},
    packet::{Packet, load},
    parse::Frame,
};

/// Look up as the stack's own output would, from the ingress interface.
const BPF_FIB_LOOKUP_OUTPUT: u32 = 1 << 1;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// The kernel's `struct bpf_fib_lookup`, without its unions.
#[repr(C)]
pub struct Lookup {
    family: u8,
    l4_protocol: u8,
    sport: u16,
    dport: u16,
    tot_len: u16,
    ifindex: u32,
    flowinfo: u32,
    src: [u32; 4],
    dst: [u32; 4],
    vlan_proto: u16,
    vlan_tci: u16,
    smac: [u8; 6],
    dmac: [u8; 6],
}

const _: () = assert!(size_of::<Lookup>() == 64);

/// `NEXT_HOP_MEMO` has `1 << MEMO_BITS` slots.
pub const MEMO_BITS: u32 = 8;
/// Ticks a verdict is trusted for: a quarter of a second at HZ=100. A route or neighbour
/// change reaches the program within it.
const MEMO_TICKS: u64 = 25;
const SAME: u32 = 1;
const OTHER: u32 = 2;

/// A verdict on a client address and the MAC its frames came from: a slot of `NEXT_HOP_MEMO`,
/// which holds the latest verdicts per CPU. The lookup is a helper call that costs about as
/// much again as the rest of a hit.
#[repr(C)]
pub struct Memo {
    client: [u32; 4],
    mac_hi: u32,
    mac_lo: u32,
    /// `SAME` or `OTHER`; zero in a slot never filled.
    verdict: u32,
    _pad: u32,
    jiffies: u64,
}

/// Whether the routing table sends a reply to the frame's source address back to the frame's
/// Ethernet source, as of at most `MEMO_TICKS` ago. An unresolved neighbour or any other
/// outcome says no: the stack answers.
///
/// A function of its own, so that its locals take a frame of their own, not the main
/// program's, which with the access check's is near the verifier's 512 bytes.
#[inline(never)]
pub fn reply_goes_to_sender(ctx: &XdpContext, pkt: &Packet, f: &Frame) -> bool {
    memoized(ctx, pkt, f).unwrap_or(false)
}

#[inline(always)]
fn memoized(ctx: &XdpContext, pkt: &Packet, f: &Frame) -> Option<bool> {
    let client = f.address(pkt, false)?;
    let eth = pkt.header::<EthHdr>(0)?;
    let mac = unsafe { (&raw const (*eth).src_addr).cast::<u8>() };
    let (mac_hi, mac_lo) = unsafe { (load::<u32>(mac, 0), load::<u16>(mac, 4) as u32) };
    let now = unsafe { bpf_jiffies64() };
    // Fibonacci hashing of the client.
    let words = client[0] ^ client[1] ^ client[2] ^ client[3];
    let hash = (words as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let memo = unsafe { &mut *NEXT_HOP_MEMO.get_ptr_mut((hash >> (64 - MEMO_BITS)) as u32)? };
    if memo.verdict != 0
        && memo.client == client
        && memo.mac_hi == mac_hi
        && memo.mac_lo == mac_lo
        && now.wrapping_sub(memo.jiffies) < MEMO_TICKS
    {
        return Some(memo.verdict == SAME);
    }
    let same = look_up(ctx, pkt, f, client, mac_hi, mac_lo)?;
    memo.client = client;
    memo.mac_hi = mac_hi;
    memo.mac_lo = mac_lo;
    memo.verdict = if same { SAME } else { OTHER };
    memo.jiffies = now;
    Some(same)
}

#[inline(always)]
fn look_up(
    ctx: &XdpContext,
    pkt: &Packet,
    f: &Frame,
    client: [u32; 4],
    mac_hi: u32,
    mac_lo: u32,
) -> Option<bool> {
    let server = f.address(pkt, true)?;
    let l = unsafe { &mut *LOOKUP.get_ptr_mut(0)? };
    // Field by field: a struct literal would be built on the stack first.
    l.family = if f.v6 { AF_INET6 } else { AF_INET };
    l.l4_protocol = IpProto::Udp as u8;
    l.sport = 0;
    l.dport = 0;
    l.tot_len = 0;
    l.ifindex = ctx.ingress_ifindex() as u32;
    l.flowinfo = 0;
    l.src = [0; 4];
    l.dst = [0; 4];
    l.vlan_proto = 0;
    l.vlan_tci = 0;
    // The reply's addresses: from us to the client. An IPv4 address is the last word of
    // its mapped form, and the first of the lookup's.
    if f.v6 {
        l.src = server;
        l.dst = client;
    } else {
        l.src[0] = server[3];
        l.dst[0] = client[3];
    }
    let ret = unsafe {
        bpf_fib_lookup(
            ctx.ctx.cast(),
            (l as *mut Lookup).cast::<FibParams>(),
            size_of::<Lookup>() as i32,
            BPF_FIB_LOOKUP_OUTPUT,
        )
    };
    // A host that does not forward has no route to check against (the kernel refuses the
    // lookup); it answers as the stack's reply would go on a plain link, to the sender.
    if ret == BPF_FIB_LKUP_RET_FWD_DISABLED as i64 {
        return Some(true);
    }
    if ret != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        return Some(false);
    }
    let next_hop_hi = u32::from_ne_bytes([l.dmac[0], l.dmac[1], l.dmac[2], l.dmac[3]]);
    let next_hop_lo = u16::from_ne_bytes([l.dmac[4], l.dmac[5]]) as u32;
    Some(mac_hi == next_hop_hi && mac_lo == next_hop_lo)
}
