//! Answers made of the query's own header and question, made in place by the rules of
//! `dnsxdp_common::bare_reply`: REFUSED for a denied client, TC=1 for a slipped one.

use aya_ebpf::{helpers::generated::bpf_xdp_adjust_tail, programs::XdpContext};
use dnsxdp_common::{
    DNS_HLEN,
    bare_reply::{Kind, MAX_BARE_REPLY, answerable, flags, question_len},
    checksum::finish_udp,
};

use crate::{
    bounds::forget,
    packet::{Packet, be16, load, set_be16, store},
    parse::{Frame, MAX_IPV4_HLEN, UDP_HLEN},
    sum::{fold, sum, udp_pseudo},
};

/// The longest run summed: the UDP header and the answer.
const SUM_MAX: usize = UDP_HLEN + MAX_BARE_REPLY;
const REPLY_TTL: u8 = 64;

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
    if f.ip_len < f.ip_hlen + UDP_HLEN
        || f.l3 + f.ip_len > pkt.len()
        || f.udp_len < UDP_HLEN + DNS_HLEN
        || f.udp_len > f.ip_len - f.ip_hlen
    {
        return None;
    }
    let udp = f.udp();
    let dns = udp + UDP_HLEN;
    let h = pkt.bytes::<DNS_HLEN>(dns)?;
    if unsafe { !answerable(*h.add(2), be16(h, 4)) } {
        return None;
    }
    let question = dns + DNS_HLEN;
    let msg_len =
        DNS_HLEN + question_len(|at| pkt.bytes::<1>(question + at).map(|p| unsafe { *p }))?;
    if msg_len > f.udp_len - UDP_HLEN {
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
    let eth = pkt.bytes::<12>(0)?;
    unsafe {
        let (d0, d1) = (load::<u32>(eth, 0), load::<u16>(eth, 4));
        store(eth, 0, load::<u32>(eth, 6));
        store(eth, 4, load::<u16>(eth, 10));
        store(eth, 6, d0);
        store(eth, 10, d1);
    }
    let udp_len = UDP_HLEN + msg_len;
    // Checksums are summed in host byte order (RFC 1071 §2(B)) and stored as they come out.
    let addr_sum = if f.v6 {
        let ip = pkt.bytes::<40>(f.l3)?;
        swap::<16>(ip, 8, 24);
        unsafe {
            set_be16(ip, 4, udp_len as u16);
            *ip.add(7) = REPLY_TTL;
        }
        sum::<SUM_MAX>(&pkt, f.l3 + 8, 32)?
    } else {
        let ip = pkt.bytes::<20>(f.l3)?;
        swap::<4>(ip, 12, 16);
        unsafe {
            set_be16(ip, 2, (frame_len - f.l3) as u16);
            *ip.add(8) = REPLY_TTL;
            store::<u16>(ip, 10, 0);
        }
        let ip_sum = sum::<SUM_MAX>(&pkt, f.l3, f.ip_hlen.min(MAX_IPV4_HLEN))?;
        unsafe { store::<u16>(ip, 10, !fold(ip_sum)) };
        sum::<SUM_MAX>(&pkt, f.l3 + 12, 8)?
    };

    let u = pkt.bytes::<{ UDP_HLEN + DNS_HLEN }>(udp)?;
    unsafe {
        swap::<2>(u, 0, 2);
        set_be16(u, 4, udp_len as u16);
        store::<u16>(u, 6, 0);
        let answer = flags(kind, [*u.add(10), *u.add(11)]);
        store(u, 10, u16::from_ne_bytes(answer));
        // One question, no records.
        store::<u32>(u, 14, 0);
        store::<u16>(u, 18, 0);
    }
    let pseudo = udp_pseudo(udp_len);
    let udp_sum = addr_sum + pseudo + sum::<SUM_MAX>(&pkt, udp, udp_len)?;
    unsafe { store::<u16>(u, 6, finish_udp(fold(udp_sum) as u32)) };
    Some(())
}

/// Swaps the `N` bytes at `a` with those at `b`.
#[inline(always)]
fn swap<const N: usize>(p: *mut u8, a: usize, b: usize) {
    let mut i = 0;
    while i < N {
        unsafe {
            if N - i >= 4 {
                let (x, y) = (load::<u32>(p, a + i), load::<u32>(p, b + i));
                store(p, a + i, y);
                store(p, b + i, x);
                i += 4;
            } else {
                let (x, y) = (load::<u16>(p, a + i), load::<u16>(p, b + i));
                store(p, a + i, y);
                store(p, b + i, x);
                i += 2;
            }
        }
    }
}
