//! Ones' complement sums (RFC 1071) of runs of the packet, for checksums made or checked whole.

use dnsxdp_common::checksum;
use network_types::ip::IpProto;

use crate::{
    bounds::whole_words,
    packet::{Packet, load},
};

/// Ones' complement sum, unfolded, of the `len` (at most `MAX`) bytes at `off` as 16-bit words
/// in host byte order, a trailing odd byte padded with zero. Eight bytes a step keep the
/// verifier's walk of the loop short.
#[inline(always)]
pub fn sum<const MAX: usize>(pkt: &Packet, off: usize, len: usize) -> Option<u64> {
    // Also what tells the verifier that `len` is not negative.
    if len > MAX {
        return None;
    }
    let mut sum = 0u64;
    // Counted against a copy the verifier does not link to `len`: narrowing `len` itself at
    // each step would leave one state per word count after the loop, and the sums of a reply
    // multiply them past what older verifiers (6.1) accept.
    let words = whole_words::<8>(len);
    for i in 0..MAX / 8 {
        if i >= words {
            break;
        }
        let w = unsafe { load::<u64>(pkt.bytes::<8>(off + i * 8)?, 0) };
        sum += (w & 0xffff_ffff) + (w >> 32);
    }
    // The rest, at offsets written without a subtraction so the verifier sees no negative.
    if len & 4 != 0 {
        sum += unsafe { load::<u32>(pkt.bytes::<4>(off + (len & !7))?, 0) } as u64;
    }
    if len & 2 != 0 {
        sum += unsafe { load::<u16>(pkt.bytes::<2>(off + (len & !3))?, 0) } as u64;
    }
    if len & 1 != 0 {
        let last = unsafe { *pkt.bytes::<1>(off + (len & !1))? };
        sum += u16::from_ne_bytes([last, 0]) as u64;
    }
    Some(sum)
}

/// Folds an unfolded sum to 16 bits.
#[inline(always)]
pub fn fold(sum: u64) -> u16 {
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    checksum::fold(sum as u32)
}

/// The UDP pseudo-header's protocol and length (RFC 768), as the words they would be loaded
/// as; the addresses are summed apart.
#[inline(always)]
pub fn udp_pseudo(udp_len: usize) -> u64 {
    (IpProto::Udp as u16).to_be() as u64 + (udp_len as u16).to_be() as u64
}
