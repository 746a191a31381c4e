//! Answers made of the query's own header and question, made in place by the rules of
//! `dnsxdp_common::bare_reply`: REFUSED for a denied client, TC=1 for a slipped one.

use core::mem::offset_of;

use aya_ebpf::{helpers::generated::bpf_xdp_adjust_tail, programs::XdpContext};
use dnsxdp_common::{
    DNS_HLEN,
    bare_reply::{Kind, MAX_BARE_REPLY, answerable, flags, question_len},
    checksum::finish_udp,
};

use network_types::{
    ip::{Ipv4Hdr, Ipv6Hdr},
    udp::UdpHdr,
};

use crate::{
    bounds::forget,
    packet::{Packet, be16, store, swap},
    parse::{Frame, MAX_IPV4_HLEN},
    reply::{REPLY_TTL, swap_macs},
    sum::{fold, sum, udp_pseudo},
};

/// The longest run summed: the UDP header and the answer.
const SUM_MAX: usize = UdpHdr::LEN + MAX_BARE_REPLY;

/// Rewrites the query in `ctx` into the answer. False if it has no readable question (it may be
/// partly rewritten then, and must be dropped).
#[inline(always)]
pub fn send(ctx: &XdpContext, f: &Frame, kind: Kind) -> bool {
    build(ctx, f, kind).is_some()
}

#[inline(always)]
fn build(ctx: &XdpContext, f: &Frame, kind: Kind) -> Option<()> {
    let pkt = Packet::new(ctx);
    // Lengths from the IP and UDP headers, checked as the parser does.
    if f.ip_len < f.ip_hlen + UdpHdr::LEN
        || f.l3 + f.ip_len > pkt.len()
        || f.udp_len < UdpHdr::LEN + DNS_HLEN
        || f.udp_len > f.ip_len - f.ip_hlen
    {
        return None;
    }
    let udp = f.udp();
    let dns = udp + UdpHdr::LEN;
    let h = pkt.bytes::<DNS_HLEN>(dns)?;
    if unsafe { !answerable(*h.add(2), be16(h, 4)) } {
        return None;
    }
    let question = dns + DNS_HLEN;
    let msg_len =
        DNS_HLEN + question_len(|at| pkt.bytes::<1>(question + at).map(|p| unsafe { *p }))?;
    if msg_len > f.udp_len - UdpHdr::LEN {
        return None;
    }
    // One path per question length would be too many for the verifier.
    let [a, b] = forget((msg_len as u16).to_le_bytes())?;
    let msg_len = u16::from_le_bytes([a, b]) as usize;
    if msg_len > MAX_BARE_REPLY {
        return None;
    }
    let frame_len = dns + msg_len;
    let delta = frame_len as i64 - pkt.len() as i64;
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta as i32) } != 0 {
        return None;
    }

    let pkt = Packet::new(ctx);
    swap_macs(&pkt)?;
    let udp_len = UdpHdr::LEN + msg_len;
    // Checksums are summed in host byte order (RFC 1071 §2(B)) and stored as they come out.
    let addr_sum = if f.v6 {
        let ip = pkt.header::<Ipv6Hdr>(f.l3)?;
        unsafe {
            swap(&raw mut (*ip).src_addr, &raw mut (*ip).dst_addr);
            (*ip).set_payload_len(udp_len as u16);
            (*ip).hop_limit = REPLY_TTL;
        }
        sum::<SUM_MAX>(&pkt, f.l3 + offset_of!(Ipv6Hdr, src_addr), 32)?
    } else {
        let ip = pkt.header::<Ipv4Hdr>(f.l3)?;
        unsafe {
            swap(&raw mut (*ip).src_addr, &raw mut (*ip).dst_addr);
            (*ip).set_tot_len((frame_len - f.l3) as u16);
            (*ip).ttl = REPLY_TTL;
            (*ip).check = [0; 2];
        }
        let ip_sum = sum::<SUM_MAX>(&pkt, f.l3, f.ip_hlen.min(MAX_IPV4_HLEN))?;
        unsafe { (*ip).check = (!fold(ip_sum)).to_ne_bytes() };
        sum::<SUM_MAX>(&pkt, f.l3 + offset_of!(Ipv4Hdr, src_addr), 8)?
    };

    let u = pkt.bytes::<{ UdpHdr::LEN + DNS_HLEN }>(udp)?;
    let h = u.cast::<UdpHdr>();
    unsafe {
        swap(&raw mut (*h).src, &raw mut (*h).dst);
        (*h).set_len(udp_len as u16);
        (*h).check = [0; 2];
        let dns = u.add(UdpHdr::LEN);
        let answer = flags(kind, [*dns.add(2), *dns.add(3)]);
        store(dns, 2, u16::from_ne_bytes(answer));
        // One question, no records.
        store::<u32>(dns, 6, 0);
        store::<u16>(dns, 10, 0);
    }
    let pseudo = udp_pseudo(udp_len);
    let udp_sum = addr_sum + pseudo + sum::<SUM_MAX>(&pkt, udp, udp_len)?;
    unsafe { (*h).check = finish_udp(fold(udp_sum) as u32).to_ne_bytes() };
    Some(())
}
