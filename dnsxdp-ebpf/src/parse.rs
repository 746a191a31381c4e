//! Parsing the frame down to the DNS question, and deciding whether the cache may answer it.

use dnsxdp_common::{
    Counter, DNS_HLEN, EDNS_UDP_SIZE, IGNORED_EDNS_OPTIONS, MAX_CACHED_NAME, PLAIN_UDP_SIZE,
    QCLASS_IN, QTYPE_OPT, ServedKey,
    checksum::{fold64, sum_le_word},
    hash::{HashKey, word_hash},
    name::{Label, label, lower_word, name_words},
    qtype::kernel_qtype,
};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{IpProto, Ipv4Hdr, Ipv6Hdr},
    udp::UdpHdr,
    vlan::VlanHdr,
};

use crate::{
    bounds::{forget, opaque, whole_words},
    packet::{Packet, be16, bounded, load},
};

// EtherTypes as they are in the frame: `EtherType`'s values are in network byte order.
const ETH_IPV4: u16 = EtherType::Ipv4 as u16;
const ETH_IPV6: u16 = EtherType::Ipv6 as u16;
const ETH_8021Q: u16 = EtherType::Ieee8021q as u16;
const ETH_8021AD: u16 = EtherType::Ieee8021ad as u16;
/// QinQ at most.
const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers followed to the UDP header; a longer chain is dropped. Linux's own
/// limit on options per header is 8 too.
const MAX_EXTENSION_HEADERS: usize = 8;
const HOP_BY_HOP: u8 = IpProto::HopOpt as u8;
const ROUTING: u8 = IpProto::Ipv6Route as u8;
const FRAGMENT: u8 = IpProto::Ipv6Frag as u8;
const DESTINATION_OPTIONS: u8 = IpProto::Ipv6Opts as u8;
const UDP: u8 = IpProto::Udp as u8;
/// IPv4's "more fragments" flag, in `Ipv4Hdr::frag_flags`.
const MORE_FRAGMENTS: u8 = 1;
/// The offset in an IPv6 fragment header's third and fourth bytes (which network-types has no
/// type for).
const IP6_OFFSET: u16 = 0xfff8;
/// Longest IPv4 header, options included.
pub const MAX_IPV4_HLEN: usize = 60;
/// Root owner, type, class, TTL and RDLENGTH of an OPT record.
pub const OPT_HLEN: usize = 11;
/// Options looked at in a query's OPT record; more go to the daemon.
const MAX_OPTIONS: usize = 4;
const EDNS_DO: u16 = 0x8000;
/// Largest UDP datagram parsed. Linear XDP frames fit in a page, so real queries are far below
/// it; the bound is what lets the verifier accept offsets derived from the UDP length.
const MAX_UDP_LEN: usize = 4096;

/// Where the headers are.
pub struct Frame {
    /// Offset of the IP header (after the Ethernet header and VLAN tag).
    pub l3: usize,
    pub v6: bool,
    /// IP header length, options included.
    pub ip_hlen: usize,
    /// IPv4 total length, or IPv6 payload length plus the fixed header.
    pub ip_len: usize,
    /// From the UDP header, not validated yet.
    pub udp_len: usize,
    pub src_port: u16,
    /// From a source the stack drops as a martian, or to a group MAC address: an answer would
    /// go where no client is.
    pub martian: bool,
    /// A fragment or IPv6 with extension headers: charged to the rate limit, then passed with
    /// this reason, never answered.
    pub charge_only: Option<Counter>,
    /// It carried a VLAN tag in the frame.
    pub tagged: bool,
}

impl Frame {
    /// The same frame with offsets the verifier no longer knows exactly, so that the paths for
    /// each VLAN tag and IPv4 header length merge.
    #[inline(always)]
    pub fn forget(self) -> Option<Self> {
        let [l3, ip_hlen] = forget([self.l3 as u8, self.ip_hlen as u8])?;
        Some(Self {
            l3: l3 as usize,
            ip_hlen: ip_hlen as usize,
            ..self
        })
    }

    /// Offset of the UDP header.
    #[inline(always)]
    pub fn udp(&self) -> usize {
        self.l3 + self.ip_hlen
    }

    /// The source address, or the destination one (`dst`), as the words of its 16-byte form,
    /// IPv4 ones mapped.
    #[inline(always)]
    pub fn address(&self, pkt: &Packet, dst: bool) -> Option<[u32; 4]> {
        if self.v6 {
            let ip = unsafe { &*pkt.header::<Ipv6Hdr>(self.l3)? };
            let at = if dst { &ip.dst_addr } else { &ip.src_addr }.as_ptr();
            unsafe { Some([load(at, 0), load(at, 4), load(at, 8), load(at, 12)]) }
        } else {
            let ip = unsafe { &*pkt.header::<Ipv4Hdr>(self.l3)? };
            let at = if dst { &ip.dst_addr } else { &ip.src_addr }.as_ptr();
            Some([0, 0, V4_MAPPED_WORD, unsafe { load(at, 0) }])
        }
    }
}

/// `::ffff:0:0/96` in the third word of an address.
const V4_MAPPED_WORD: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

/// Destination address (IPv4-mapped for IPv4) and port of a datagram, the words of a
/// `ServedKey`.
pub struct Dest {
    pub addr: [u64; 2],
    /// Host byte order.
    pub port: u16,
}

impl Dest {
    #[inline(always)]
    pub fn key(&self) -> ServedKey {
        // Built from whole words so no byte-wise copy is emitted.
        ServedKey::new(
            unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>(self.addr) },
            self.port,
        )
    }
}

/// Why `frame` found no UDP datagram to look at.
pub enum NotUdp {
    /// Not UDP, or not the first fragment: none of the cache's business, passed uncounted.
    Pass,
    /// An IPv6 header chain longer than `MAX_EXTENSION_HEADERS`: whatever it carries would
    /// reach the daemon uncharged.
    LongChain,
}

/// Ethernet, IP and UDP headers of a UDP datagram, or of the first fragment of one, and its
/// destination.
#[inline(always)]
pub fn frame(pkt: &Packet) -> Result<(Frame, Dest), NotUdp> {
    let eth = pkt.header::<EthHdr>(0).ok_or(NotUdp::Pass)?;
    let mut ether_type = unsafe { (&raw const (*eth).ether_type).read_unaligned() };
    let mut l3 = EthHdr::LEN;
    // 802.1Q, or QinQ: an 802.1ad or 802.1Q tag, then an 802.1Q one.
    for _ in 0..MAX_VLAN_TAGS {
        if ether_type != ETH_8021Q && ether_type != ETH_8021AD {
            break;
        }
        let tag = pkt.header::<VlanHdr>(l3).ok_or(NotUdp::Pass)?;
        ether_type = unsafe { (&raw const (*tag).ether_type).read_unaligned() };
        l3 += VlanHdr::LEN;
    }
    let (mut frame, dest) = match ether_type {
        ETH_IPV4 => ipv4(pkt, l3).ok_or(NotUdp::Pass)?,
        ETH_IPV6 => ipv6(pkt, l3)?,
        _ => return Err(NotUdp::Pass),
    };
    frame.tagged = l3 != EthHdr::LEN;
    // The group bit of the destination MAC: multicast or broadcast.
    frame.martian |= unsafe { *(&raw const (*eth).dst_addr).cast::<u8>() } & 1 != 0;
    Ok((frame, dest))
}

#[inline(always)]
fn ipv4(pkt: &Packet, l3: usize) -> Option<(Frame, Dest)> {
    let ip = unsafe { &*pkt.header::<Ipv4Hdr>(l3)? };
    let ip_hlen = ip.ihl() as usize;
    // Only the first fragment has the UDP header; the datagram is charged by it.
    if ip.version() != 4
        || ip_hlen < Ipv4Hdr::LEN
        || ip.frag_offset() != 0
        || ip.proto != IpProto::Udp as u8
    {
        return None;
    }
    let u = unsafe { &*pkt.header::<UdpHdr>(l3 + ip_hlen)? };
    // Bytes 8..16 of ::ffff:a.b.c.d.
    let [a, b, c, d] = unsafe { load::<u32>(ip.dst_addr.as_ptr(), 0) }.to_ne_bytes();
    let mapped = u64::from_ne_bytes([0, 0, 0xff, 0xff, a, b, c, d]);
    Some((
        Frame {
            l3,
            v6: false,
            ip_hlen,
            ip_len: bounded(ip.tot_len()) as usize,
            udp_len: bounded(u.len()) as usize,
            src_port: u.src_port(),
            // This network (0/8), loopback, multicast, class E and broadcast.
            martian: matches!(ip.src_addr[0], 0 | 127 | 224..),
            charge_only: (ip.frag_flags() & MORE_FRAGMENTS != 0).then_some(Counter::PassFragment),
            tagged: false,
        },
        Dest {
            addr: [0, mapped],
            port: u.dst_port(),
        },
    ))
}

#[inline(always)]
fn ipv6(pkt: &Packet, l3: usize) -> Result<(Frame, Dest), NotUdp> {
    let ip = unsafe { &*pkt.header::<Ipv6Hdr>(l3).ok_or(NotUdp::Pass)? };
    if ip.version() != 6 {
        return Err(NotUdp::Pass);
    }
    let mut next = ip.next_hdr;
    let mut udp = l3 + Ipv6Hdr::LEN;
    let mut charge_only = None;
    // Each extension header starts with the next header's protocol; the others' second byte is
    // their length in 8-byte units, not counting the first 8 bytes.
    for _ in 0..MAX_EXTENSION_HEADERS {
        let (h, len) = match next {
            HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS => {
                let h = pkt.bytes::<2>(udp).ok_or(NotUdp::Pass)?;
                (h, unsafe { (*h.add(1) as usize + 1) * 8 })
            }
            FRAGMENT => {
                let h = pkt.bytes::<8>(udp).ok_or(NotUdp::Pass)?;
                if unsafe { be16(h, 2) } & IP6_OFFSET != 0 {
                    return Err(NotUdp::Pass);
                }
                charge_only = Some(Counter::PassFragment);
                (h, 8)
            }
            _ => break,
        };
        next = unsafe { *h };
        charge_only = charge_only.or(Some(Counter::PassExtensionHeaders));
        udp += len;
    }
    if matches!(next, HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS | FRAGMENT) {
        return Err(NotUdp::LongChain);
    }
    if next != UDP {
        return Err(NotUdp::Pass);
    }
    let u = unsafe { &*pkt.header::<UdpHdr>(udp).ok_or(NotUdp::Pass)? };
    let (src, dst) = (ip.src_addr.as_ptr(), ip.dst_addr.as_ptr());
    unsafe {
        Ok((
            Frame {
                l3,
                v6: true,
                // Without extension headers; a frame that has them is only charged, and the
                // UDP header's offset is not needed again.
                ip_hlen: Ipv6Hdr::LEN,
                ip_len: Ipv6Hdr::LEN + bounded(ip.payload_len()) as usize,
                udp_len: bounded(u.len()) as usize,
                src_port: u.src_port(),
                martian: martian_v6(load(src, 0), load(src, 8)),
                charge_only,
                tagged: false,
            },
            Dest {
                addr: [load(dst, 0), load(dst, 8)],
                port: u.dst_port(),
            },
        ))
    }
}

/// Whether the IPv6 source whose halves, loaded in host byte order, are `hi` and `lo` is one
/// the stack drops: unspecified, loopback, multicast or IPv4-mapped.
#[inline(always)]
fn martian_v6(hi: u64, lo: u64) -> bool {
    let [first, ..] = hi.to_ne_bytes();
    let [.., last] = lo.to_ne_bytes();
    let low_words = u32::from_ne_bytes([0, 0, 0xff, 0xff]);
    first == 0xff || (hi == 0 && (lo & !(0xff << 56) == 0 && last <= 1 || lo as u32 == low_words))
}

/// The query name lower-cased, as words of `CacheEntry::name`.
pub type NameWords = [u64; MAX_CACHED_NAME / 8];

/// A query the cache can answer, once its key is found. Everything else the answer needs is
/// still in the packet: headers and question stay in place.
pub struct Query {
    /// Hash of the name (`CacheKey::hash`).
    pub hash: u64,
    pub qtype: u16,
    /// Offset of the DNS header.
    pub dns: usize,
    /// Wire length of the question name.
    pub name_len: usize,
    /// Words of the name in `NameWords`.
    pub name_words: usize,
    /// Sum of the name bytes as sent (even offset), folded.
    pub name_sum: u32,
    /// The query had an OPT record, so the answer gets one.
    pub edns: bool,
    /// The OPT record had the DO bit: the answer is the DO-keyed entry, and its OPT says DO.
    pub dnssec_ok: bool,
    /// Largest DNS message the client takes.
    pub max_len: usize,
}

/// Validates the datagram and its DNS message, and puts the lower-cased question name into
/// `words` (zeroed by the caller). The error is the counter of the reason the packet passes.
#[inline(always)]
pub fn query(
    pkt: &Packet,
    f: &Frame,
    hash_key: &HashKey,
    words: &mut NameWords,
) -> Result<Query, Counter> {
    // Lengths come from the IP and UDP headers: a short frame may carry Ethernet padding.
    if f.ip_len < f.ip_hlen + UdpHdr::LEN
        || f.l3 + f.ip_len > pkt.len()
        || f.udp_len < UdpHdr::LEN + DNS_HLEN
        || f.udp_len > f.ip_len - f.ip_hlen
    {
        return Err(Counter::PassMalformed);
    }
    if f.udp_len > MAX_UDP_LEN {
        return Err(Counter::PassUnsupported);
    }
    let dns = f.udp() + UdpHdr::LEN;
    let end = f.udp() + f.udp_len;
    let h = pkt.bytes::<DNS_HLEN>(dns).ok_or(Counter::PassMalformed)?;
    let (flags, qd, an, ns, ar) =
        unsafe { (*h.add(2), be16(h, 4), be16(h, 6), be16(h, 8), be16(h, 10)) };
    // QR or an opcode other than QUERY.
    if flags & 0xf8 != 0 {
        return Err(Counter::PassNotQuery);
    }
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return Err(Counter::PassMalformed);
    }
    // TC on a query: the rest comes over TCP.
    if flags & 0x02 != 0 {
        return Err(Counter::PassUnsupported);
    }

    let name = dns + DNS_HLEN;
    let mut at = 0;
    let mut name_len = 0;
    // Label by label: one bounds check per label. Bytes are checked against the frame only;
    // the end of the name is checked against the message below, so bytes read from padding
    // never make a question. Labels take two bytes or more, so the loop reaches the root label
    // of every name that fits.
    for _ in 0..MAX_CACHED_NAME / 2 {
        let p = pkt.bytes::<1>(name + at).ok_or(Counter::PassMalformed)?;
        match label(at, unsafe { *p }) {
            Label::Next(next) => at = next,
            Label::End(len) => {
                name_len = len;
                break;
            }
            Label::Invalid => return Err(Counter::PassMalformed),
            Label::TooLong => break,
        }
    }
    if name_len == 0 {
        return Err(if name + MAX_CACHED_NAME > end {
            Counter::PassMalformed
        } else {
            Counter::PassUnsupported
        });
    }
    // One path per name length from here on would be too many for the verifier.
    let [name_len] = forget([name_len as u8]).ok_or(Counter::PassMalformed)?;
    let name_len = name_len as usize;

    let q = name + name_len;
    let t = match pkt.bytes::<4>(q) {
        Some(t) if q + 4 <= end => t,
        _ => return Err(Counter::PassMalformed),
    };
    let (qtype, qclass) = unsafe { (be16(t, 0), be16(t, 2)) };
    if qclass != QCLASS_IN || !kernel_qtype(qtype) {
        return Err(Counter::PassUnsupported);
    }

    let after = q + 4;
    let (mut max_len, mut dnssec_ok) = (PLAIN_UDP_SIZE as usize, false);
    if ar == 1 {
        (max_len, dnssec_ok) = opt(pkt, after, end)?;
    } else if after != end {
        return Err(Counter::PassMalformed);
    }
    // Only now, so that queries which pass anyway do not pay for the hash.
    let (hash, name_sum) = lower_name(pkt, name, name_len, hash_key, words)?;
    Ok(Query {
        hash,
        qtype,
        dns,
        name_len,
        // Hidden from LLVM, which would otherwise compare the words of the name as its length
        // again and so split the verifier's paths by length.
        name_words: opaque(name_words(name_len)),
        name_sum,
        edns: ar == 1,
        dnssec_ok,
        max_len,
    })
}

/// Reads the `len` bytes of the name at `name` a word at a time into `words`, lower-cased, and
/// returns their keyed hash and the sum of the bytes as sent. A last partial word is read so
/// that it ends with the name, which the DNS header before it leaves room for, and shifted
/// down: the bytes after the name are never read.
#[inline(always)]
fn lower_name(
    pkt: &Packet,
    name: usize,
    len: usize,
    hash_key: &HashKey,
    words: &mut NameWords,
) -> Result<(u64, u32), Counter> {
    let (mut hash, mut sum) = (0u64, 0);
    let (full, rest) = (whole_words::<8>(len), opaque(len) % 8);
    for (i, slot) in words.iter_mut().enumerate() {
        let word = if i < full {
            let p = pkt.bytes::<8>(name + i * 8).ok_or(Counter::PassMalformed)?;
            unsafe { load::<u64>(p, 0) }
        } else if i == full && rest != 0 {
            // Offsets ending in `- 8` go through `opaque` so that LLVM does not fold the
            // subtraction into a negative load offset.
            let p = pkt
                .bytes::<8>(opaque(name + len - 8))
                .ok_or(Counter::PassMalformed)?;
            unsafe { load::<u64>(p, 0) >> ((8 - rest) * 8) }
        } else {
            break;
        };
        sum = sum_le_word(sum, word);
        let word = lower_word(word);
        *slot = word;
        hash = hash.wrapping_add(word_hash(hash_key, i, word));
    }
    Ok((hash, fold64(sum).swap_bytes() as u32))
}

/// Checks the OPT record at `off`, which must end the message at `end`, and returns the
/// largest answer the client takes and whether it set DO.
#[inline(always)]
fn opt(pkt: &Packet, off: usize, end: usize) -> Result<(usize, bool), Counter> {
    let o = match pkt.bytes::<OPT_HLEN>(off) {
        Some(o) if off + OPT_HLEN <= end => o,
        _ => return Err(Counter::PassMalformed),
    };
    let (owner, rtype, size, version, flags, rdlen) = unsafe {
        (
            *o,
            be16(o, 1),
            be16(o, 3),
            *o.add(6),
            be16(o, 7),
            be16(o, 9) as usize,
        )
    };
    if owner != 0 || rtype != QTYPE_OPT || off + OPT_HLEN + rdlen != end {
        return Err(Counter::PassMalformed);
    }
    if version != 0 {
        return Err(Counter::PassEdns);
    }
    options(pkt, off + OPT_HLEN, end)?;
    let size = size.clamp(PLAIN_UDP_SIZE, EDNS_UDP_SIZE) as usize;
    Ok((size, flags & EDNS_DO != 0))
}

/// Accepts the options a cache without cookie support ignores (RFC 7873 §5.2) and nothing
/// else.
#[inline(always)]
fn options(pkt: &Packet, mut off: usize, end: usize) -> Result<(), Counter> {
    for _ in 0..MAX_OPTIONS {
        if off >= end {
            return Ok(());
        }
        let o = match pkt.bytes::<4>(off) {
            Some(o) if off + 4 <= end => o,
            _ => return Err(Counter::PassMalformed),
        };
        let (code, len) = unsafe { (be16(o, 0), be16(o, 2) as usize) };
        off = opaque(off + 4 + len);
        if off > end {
            return Err(Counter::PassMalformed);
        }
        if !IGNORED_EDNS_OPTIONS.contains(&code) {
            return Err(Counter::PassEdns);
        }
    }
    if off < end {
        return Err(Counter::PassEdns);
    }
    Ok(())
}
