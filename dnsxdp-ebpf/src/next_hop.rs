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
    helpers::generated::bpf_fib_lookup,
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
};

use crate::{
    packet::{Packet, load},
    parse::Frame,
};

/// Look up as the stack's own output would, from the ingress interface.
const BPF_FIB_LOOKUP_OUTPUT: u32 = 1 << 1;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_UDP: u8 = 17;

/// The kernel's `struct bpf_fib_lookup`, without its unions.
#[repr(C)]
struct Lookup {
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

/// Kept per CPU rather than on the stack, which the main program has little of left.
#[map]
static LOOKUP: PerCpuArray<Lookup> = PerCpuArray::with_max_entries(1, 0);

/// Whether the routing table sends a reply to the frame's source address back to the frame's
/// Ethernet source. An unresolved neighbour or any other outcome says no: the stack answers.
#[inline(always)]
pub fn reply_goes_to_sender(ctx: &XdpContext, pkt: &Packet, f: &Frame) -> bool {
    check(ctx, pkt, f).unwrap_or(false)
}

#[inline(always)]
fn check(ctx: &XdpContext, pkt: &Packet, f: &Frame) -> Option<bool> {
    let client = f.address(pkt, false)?;
    let server = f.address(pkt, true)?;
    let eth = pkt.bytes::<14>(0)?;
    let l = unsafe { &mut *LOOKUP.get_ptr_mut(0)? };
    *l = Lookup {
        family: if f.v6 { AF_INET6 } else { AF_INET },
        l4_protocol: IPPROTO_UDP,
        sport: 0,
        dport: 0,
        tot_len: 0,
        ifindex: ctx.ingress_ifindex() as u32,
        flowinfo: 0,
        src: [0; 4],
        dst: [0; 4],
        vlan_proto: 0,
        vlan_tci: 0,
        smac: [0; 6],
        dmac: [0; 6],
    };
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
    let sender_hi = unsafe { load::<u32>(eth, 6) };
    let sender_lo = unsafe { load::<u16>(eth, 10) };
    let next_hop_hi = u32::from_ne_bytes([l.dmac[0], l.dmac[1], l.dmac[2], l.dmac[3]]);
    let next_hop_lo = u16::from_ne_bytes([l.dmac[4], l.dmac[5]]);
    Some(sender_hi == next_hop_hi && sender_lo == next_hop_lo)
}
