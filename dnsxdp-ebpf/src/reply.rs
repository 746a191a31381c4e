//! Turning a query into the cached answer in place.
//!
//! Headers, DNS header and question stay where they are; the records replace whatever followed
//! the question. The UDP checksum adds up the rewritten headers, the question as sent and the
//! precomputed sums of the records and of each TTL: the records are never read back.

use aya_ebpf::{
    helpers::generated::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use dnsxdp_common::{
    CacheEntry, DNS_HLEN, MAX_CACHED_NAME, MAX_RECORDS_LEN, MAX_TTLS,
    checksum::{
        EDE_BLOCKED, EDE_BLOCKED_SUM, OPT_RECORD, OPT_RECORD_BLOCKED, OPT_RECORD_BLOCKED_SUM,
        OPT_RECORD_DO, OPT_RECORD_DO_BLOCKED, OPT_RECORD_DO_BLOCKED_SUM, OPT_RECORD_DO_SUM,
        OPT_RECORD_SUM, at_offset, finish_udp, fold, fold64, sum_u32,
    },
};
use network_types::{
    eth::EthHdr,
    ip::{IpProto, Ipv4Hdr, Ipv6Hdr},
    udp::UdpHdr,
    vlan::VlanHdr,
};

use crate::{
    bounds::{opaque, whole_words},
    packet::{Packet, be32, load, set_be16, store, swap},
    parse::{Frame, MAX_IPV4_HLEN, OPT_HLEN, Query},
};

/// TTL and hop limit of answers.
pub const REPLY_TTL: u8 = 64;
const MAX_IPV4_OPTION_WORDS: usize = (MAX_IPV4_HLEN - Ipv4Hdr::LEN) / 4;
/// Most an answer may grow at the front: XDP_PACKET_HEADROOM, of which the kernel keeps some
/// for its frame descriptor, so the helper refuses a little less.
const MAX_HEAD_GROWTH: usize = 256;
/// Longest headers and question: VLAN-tagged Ethernet, IPv4 with options, UDP, DNS header,
/// longest name, type and class.
const MAX_KEEP: usize =
    EthHdr::LEN + VlanHdr::LEN + MAX_IPV4_HLEN + UdpHdr::LEN + DNS_HLEN + MAX_CACHED_NAME + 4;

/// An OPT record as the words it is stored in.
const fn opt_words(b: [u8; 11]) -> (u64, u16, u8) {
    (
        u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        u16::from_ne_bytes([b[8], b[9]]),
        b[10],
    )
}
const OPT_WORDS: (u64, u16, u8) = opt_words(OPT_RECORD);
const OPT_DO_WORDS: (u64, u16, u8) = opt_words(OPT_RECORD_DO);
const OPT_BLOCKED_WORDS: (u64, u16, u8) = opt_words(OPT_RECORD_BLOCKED);
const OPT_DO_BLOCKED_WORDS: (u64, u16, u8) = opt_words(OPT_RECORD_DO_BLOCKED);
/// `EDE_BLOCKED` as the words it is stored in.
const EDE_WORDS: (u32, u16) = (
    u32::from_ne_bytes([
        EDE_BLOCKED[0],
        EDE_BLOCKED[1],
        EDE_BLOCKED[2],
        EDE_BLOCKED[3],
    ]),
    u16::from_ne_bytes([EDE_BLOCKED[4], EDE_BLOCKED[5]]),
);
const EDE_LEN: usize = EDE_BLOCKED.len();

/// Why no answer was sent.
pub enum Fail {
    /// Nothing was changed; the query goes to the daemon.
    Pass(dnsxdp_common::Counter),
    /// The packet was already rewritten and cannot go anywhere.
    Drop,
}

/// Rewrites the query in `ctx` into the answer from `e`, with every TTL `secs`.
#[inline(always)]
pub fn build<const N: usize>(
    ctx: &XdpContext,
    f: &Frame,
    q: &Query,
    e: &CacheEntry<N>,
    secs: u32,
) -> Result<(), Fail> {
    use dnsxdp_common::Counter;

    let rec_len = e.len as usize;
    // The entry's records follow its name, which is the query's, padded to whole words.
    // Reckoned from the name's length rather than its words, whose register the comparison
    // of names narrows to one value per name length: the verifier would then walk the rest
    // of the answer once for each.
    let rec_at = (q.name_len + 7) & !7;
    // No record is shorter than a word, and `copy_records` relies on it. Two comparisons of
    // `rec_len` itself: the verifier learns nothing from a range check LLVM folds into one.
    // An entry whose records would run past its data (none is written so) is not used.
    if rec_len < 8 || rec_len > MAX_RECORDS_LEN || rec_at + rec_len > N {
        return Err(Fail::Pass(Counter::Misses));
    }
    let rec = q.dns + DNS_HLEN + q.name_len + 4;
    let blocked = e.blocked != 0;
    let opt_len = match (q.edns, blocked) {
        (false, _) => 0,
        (true, false) => OPT_HLEN,
        (true, true) => OPT_HLEN + EDE_LEN,
    };
    let dns_len = rec - q.dns + rec_len + opt_len;
    if dns_len > q.max_len {
        return Err(Fail::Pass(Counter::PassTooBig));
    }
    let frame_len = q.dns + dns_len;
    let old_len = Packet::new(ctx).len();
    let delta = frame_len as i64 - old_len as i64;
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta as i32) } != 0 && !grow_at_head(ctx, delta, rec)?
    {
        return Err(Fail::Pass(Counter::PassTooBig));
    }

    let pkt = Packet::new(ctx);
    swap_macs(&pkt).ok_or(Fail::Drop)?;
    let udp = f.udp();
    let udp_len = frame_len - udp;
    // Header words are summed as loaded, in host byte order (RFC 1071 §2(B)): no byte swaps,
    // and 32 bits at a time.
    let addr_sum = if f.v6 {
        ipv6(&pkt, f.l3, udp_len)
    } else {
        ipv4(&pkt, f.l3, f.ip_hlen, frame_len - f.l3)
    }
    .ok_or(Fail::Drop)?;
    // The UDP and DNS headers, checked at once.
    let u = pkt
        .bytes::<{ UdpHdr::LEN + DNS_HLEN }>(udp)
        .ok_or(Fail::Drop)?;
    let header_sum = unsafe {
        let h = u.cast::<UdpHdr>();
        swap(&raw mut (*h).src, &raw mut (*h).dst);
        (*h).set_len(udp_len as u16);
        (*h).set_checksum(0);
        let dns = u.add(UdpHdr::LEN);
        // QR, AA for local records, and RD; RA, CD, the RCODE, and AD if the upstream
        // validated the answer of a DO-keyed entry.
        let flags = [
            0x80 | ((e.authoritative & 1) << 2) | (*dns.add(2) & 0x01),
            0x80 | (*dns.add(3) & 0x10)
                | ((e.authentic & q.dnssec_ok as u8) << 5)
                | (e.rcode & 0x0f),
        ];
        store(dns, 2, u16::from_ne_bytes(flags));
        set_be16(dns, 6, e.ancount);
        set_be16(dns, 8, e.nscount);
        set_be16(dns, 10, q.edns as u16);
        // UDP header with a zero checksum, then the DNS header with QDCOUNT still 1.
        let mut s = addr_sum;
        let mut i = 0;
        while i < UdpHdr::LEN + DNS_HLEN {
            s += load::<u32>(u, i) as u64;
            i += 4;
        }
        s
    };
    // Network byte order from here on, like the precomputed sums. The pseudo-header adds the
    // protocol and the UDP length.
    let mut sum = fold64(header_sum).to_be() as u32 + IpProto::Udp as u32 + udp_len as u32;

    // The question as the client sent it: name, then type and class.
    let tail = rec - 4;
    let t = pkt.bytes::<4>(tail).ok_or(Fail::Drop)?;
    let rec_udp = rec - udp;
    sum += q.name_sum
        + at_offset(sum_u32(unsafe { be32(t, 0) }), tail - udp)
        + at_offset(e.csum, rec_udp);

    copy_records(&pkt, rec, e, rec_at, rec_len).ok_or(Fail::Drop)?;

    let ttl_even = fold(sum_u32(secs)) as u32;
    let ttl_odd = (ttl_even as u16).swap_bytes() as u32;
    let ttl_count = e.ttl_count as usize;
    for i in 0..MAX_TTLS {
        if i >= ttl_count {
            break;
        }
        let off = e.ttl_offsets[i] as usize & (MAX_RECORDS_LEN - 1);
        let p = pkt.bytes::<4>(rec + off).ok_or(Fail::Drop)?;
        unsafe { store(p, 0, secs.to_be()) };
        sum += if (rec_udp + off) & 1 == 0 {
            ttl_even
        } else {
            ttl_odd
        };
    }
    if q.edns {
        let o = pkt.bytes::<OPT_HLEN>(rec + rec_len).ok_or(Fail::Drop)?;
        let (words, opt_sum) = match (q.dnssec_ok, blocked) {
            (false, false) => (OPT_WORDS, OPT_RECORD_SUM),
            (true, false) => (OPT_DO_WORDS, OPT_RECORD_DO_SUM),
            (false, true) => (OPT_BLOCKED_WORDS, OPT_RECORD_BLOCKED_SUM),
            (true, true) => (OPT_DO_BLOCKED_WORDS, OPT_RECORD_DO_BLOCKED_SUM),
        };
        unsafe {
            store(o, 0, words.0);
            store(o, 8, words.1);
            store(o, 10, words.2);
        }
        sum += at_offset(opt_sum, rec_udp + rec_len);
        if blocked {
            let at = rec + rec_len + OPT_HLEN;
            let x = pkt.bytes::<EDE_LEN>(at).ok_or(Fail::Drop)?;
            unsafe {
                store(x, 0, EDE_WORDS.0);
                store(x, 4, EDE_WORDS.1);
            }
            sum += at_offset(EDE_BLOCKED_SUM, at - udp);
        }
    }

    let u = pkt.header::<UdpHdr>(udp).ok_or(Fail::Drop)?;
    unsafe { (*u).set_checksum(finish_udp(sum)) };
    Ok(())
}

/// Copies the `len` (8..=MAX_RECORDS_LEN) record bytes at `at` in the data of `e` to `rec` a
/// word at a time: cheaper than a `bpf_xdp_store_bytes` call. The last word ends at `len`,
/// rewriting part of the one before with the same bytes, so nothing past the records is
/// touched.
#[inline(always)]
fn copy_records<const N: usize>(
    pkt: &Packet,
    rec: usize,
    e: &CacheEntry<N>,
    at: usize,
    len: usize,
) -> Option<()> {
    let src = e.data.as_ptr();
    let words = whole_words::<8>(len);
    for i in 0..N.min(MAX_RECORDS_LEN) / 8 {
        if i >= words {
            break;
        }
        let off = i * 8;
        // Each offset into the entry is checked on the very register used for it: from one
        // check of `at` the verifier cannot tell that `at + off` stays inside the entry for
        // every word.
        let from = opaque(at + off);
        if from > N - 8 {
            return None;
        }
        let p = pkt.bytes::<8>(rec + off)?;
        unsafe { store(p, 0, load::<u64>(src, from)) };
    }
    // Checked again on the very register used as the entry's offset: LLVM may reload `len`
    // after the caller's check, and the 6.1 verifier then knows nothing of its range. A `len`
    // under 8 wraps and fails it too.
    let last = opaque(len.wrapping_sub(8));
    if last > MAX_RECORDS_LEN - 8 {
        return None;
    }
    let from = opaque(at + last);
    if from > N - 8 {
        return None;
    }
    let p = pkt.bytes::<8>(rec + last)?;
    unsafe { store(p, 0, load::<u64>(src, from)) };
    Some(())
}

/// Sends the frame back where it came from.
#[inline(always)]
pub fn swap_macs(pkt: &Packet) -> Option<()> {
    let eth = pkt.header::<EthHdr>(0)?;
    unsafe { swap(&raw mut (*eth).dst_addr, &raw mut (*eth).src_addr) };
    Some(())
}

/// Grows the frame by `grow` bytes at the front and moves its first `keep` bytes (headers and
/// question) to the new start, leaving the frame as long as if its tail had grown. For when the
/// tail cannot grow: veth and generic XDP give a frame just the tailroom of its cache-line
/// rounding, while XDP guarantees headroom. False if nothing was changed.
#[inline(always)]
fn grow_at_head(ctx: &XdpContext, grow: i64, keep: usize) -> Result<bool, Fail> {
    let (grow, keep) = (opaque(grow as usize), opaque(keep));
    if grow == 0 || grow > MAX_HEAD_GROWTH || !(8..=MAX_KEEP).contains(&keep) {
        return Ok(false);
    }
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(grow as i32)) } != 0 {
        return Ok(false);
    }
    let pkt = Packet::new(ctx);
    // Copying word by word upwards reads every source word before anything overwrites it,
    // since the destination lies below the source. The last, partial word is read first.
    // Offsets ending in `- 8` go through `opaque` so that LLVM does not fold the subtraction
    // into a negative load offset, which the verifier refuses.
    let last = pkt.bytes::<8>(opaque(grow + keep - 8)).ok_or(Fail::Drop)?;
    let last = unsafe { load::<u64>(last, 0) };
    let words = whole_words::<8>(keep);
    for i in 0..MAX_KEEP / 8 {
        if i >= words {
            break;
        }
        let off = i * 8;
        let from = pkt.bytes::<8>(grow + off).ok_or(Fail::Drop)?;
        let to = pkt.bytes::<8>(off).ok_or(Fail::Drop)?;
        unsafe { store(to, 0, load::<u64>(from, 0)) };
    }
    let to = pkt.bytes::<8>(opaque(keep - 8)).ok_or(Fail::Drop)?;
    unsafe { store(to, 0, last) };
    Ok(true)
}

/// Swaps the addresses and sets TTL, total length and header checksum. Returns the sum of the
/// addresses (host byte order) for the UDP pseudo-header.
#[inline(always)]
fn ipv4(pkt: &Packet, l3: usize, hlen: usize, total_len: usize) -> Option<u64> {
    let ip = pkt.header::<Ipv4Hdr>(l3)?;
    let (addr_sum, mut sum);
    unsafe {
        let (src, dst) = (&raw mut (*ip).src_addr, &raw mut (*ip).dst_addr);
        swap(src, dst);
        (*ip).set_tot_len(total_len as u16);
        (*ip).ttl = REPLY_TTL;
        (*ip).check = [0; 2];
        addr_sum = load::<u32>(src.cast(), 0) as u64 + load::<u32>(dst.cast(), 0) as u64;
        // The words before the addresses.
        let words = ip.cast::<u8>();
        sum = addr_sum
            + load::<u32>(words, 0) as u64
            + load::<u32>(words, 4) as u64
            + load::<u32>(words, 8) as u64;
    }
    let options = (hlen - Ipv4Hdr::LEN) / 4;
    for i in 0..MAX_IPV4_OPTION_WORDS {
        if i >= options {
            break;
        }
        let w = pkt.bytes::<4>(l3 + Ipv4Hdr::LEN + i * 4)?;
        sum += unsafe { load::<u32>(w, 0) } as u64;
    }
    unsafe { (*ip).check = (!fold64(sum)).to_ne_bytes() };
    Some(addr_sum)
}

/// Swaps the addresses, sets hop limit and payload length. Returns the sum of the addresses
/// (host byte order).
#[inline(always)]
fn ipv6(pkt: &Packet, l3: usize, payload_len: usize) -> Option<u64> {
    let ip = pkt.header::<Ipv6Hdr>(l3)?;
    let mut sum = 0;
    unsafe {
        let (src, dst) = (&raw mut (*ip).src_addr, &raw mut (*ip).dst_addr);
        swap(src, dst);
        (*ip).set_payload_len(payload_len as u16);
        (*ip).hop_limit = REPLY_TTL;
        let mut i = 0;
        while i < 16 {
            sum += load::<u32>(src.cast(), i) as u64 + load::<u32>(dst.cast(), i) as u64;
            i += 4;
        }
    }
    Some(sum)
}
