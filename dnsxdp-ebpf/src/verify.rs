//! The checksums the stack verifies before a socket sees a datagram. A frame it would drop must
//! not be answered from XDP either: the daemon would never have seen the query.

use core::mem::offset_of;

use network_types::{
    ip::{Ipv4Hdr, Ipv6Hdr},
    udp::UdpHdr,
};

use crate::{
    events,
    packet::Packet,
    parse::{Frame, MAX_IPV4_HLEN},
    sum::{fold, sum, udp_pseudo},
};

/// Longest query whose checksum is verified; a longer one passes unanswered. The cache
/// answers at most 1232 bytes, and queries are far shorter.
const MAX_DATAGRAM: usize = 512;

/// Whether the IPv4 header checksum (IPv4) and the UDP checksum are right. A zero UDP
/// checksum means none over IPv4 (RFC 768), and is invalid over IPv6 (RFC 8200 §8.1); one left
/// to checksum offload holds the pseudo-header's sum, taken from local senders only.
#[inline(always)]
pub fn checksums_ok(pkt: &Packet, f: &Frame) -> bool {
    check(pkt, f).unwrap_or(false)
}

#[inline(always)]
fn check(pkt: &Packet, f: &Frame) -> Option<bool> {
    let udp = f.udp();
    // As stored, like the sums it is compared with.
    let stored = u16::from_ne_bytes(unsafe { (*pkt.header::<UdpHdr>(udp)?).check });
    let addr_sum = if f.v6 {
        if stored == 0 {
            return Some(false);
        }
        sum::<32>(pkt, f.l3 + offset_of!(Ipv6Hdr, src_addr), 32)?
    } else {
        // Summed with its own checksum, a correct header folds to all ones.
        if fold(sum::<MAX_IPV4_HLEN>(pkt, f.l3, f.ip_hlen)?) != 0xffff {
            return Some(false);
        }
        if stored == 0 {
            return Some(true);
        }
        sum::<8>(pkt, f.l3 + offset_of!(Ipv4Hdr, src_addr), 8)?
    };
    let pseudo = addr_sum + udp_pseudo(f.udp_len);
    // A sender on this host that leaves the checksum to offload (a container's or VM's veth
    // or tap) stores the pseudo-header's sum alone, and the stack takes that datagram; from
    // a wire, such a sum is forged, and the stack drops it.
    if stored == fold(pseudo) && events::settings().local_senders != 0 {
        return Some(true);
    }
    let datagram = sum::<MAX_DATAGRAM>(pkt, udp, f.udp_len)?;
    Some(fold(pseudo + datagram) == 0xffff)
}
