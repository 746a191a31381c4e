//! Internet checksum arithmetic (RFC 1071) in the pieces the XDP program assembles a reply from.
//!
//! Sums are kept unfolded in a `u32` and folded once at the end. A run of bytes placed at an odd
//! offset contributes the byte-swapped sum of the same run placed at an even one (RFC 1071
//! §2(B)), which is how a cached entry's precomputed sum is reused wherever the reply puts it.

/// Adds `bytes`, as big-endian 16-bit words from `bytes[0]`, to `sum`.
pub const fn sum_bytes(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut i = 0;
    while i + 1 < bytes.len() {
        sum += ((bytes[i] as u32) << 8) | bytes[i + 1] as u32;
        i += 2;
    }
    if i < bytes.len() {
        sum += (bytes[i] as u32) << 8;
    }
    sum
}

/// Folds a 32-bit sum into 16 bits with end-around carry.
#[inline(always)]
pub const fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Adds eight bytes loaded from memory as a little-endian word, as two 32-bit halves. Folded
/// with `fold64` and byte-swapped, a sum of such words is the big-endian sum of the bytes
/// (RFC 1071 §2(B)): no byte swaps per word.
#[inline(always)]
pub const fn sum_le_word(sum: u64, word: u64) -> u64 {
    sum + (word & 0xffff_ffff) + (word >> 32)
}

/// Folds a sum of 32-bit words into 16 bits with end-around carry.
#[inline(always)]
pub const fn fold64(sum: u64) -> u16 {
    let s = (sum & 0xffff_ffff) + (sum >> 32);
    let s = (s & 0xffff_ffff) + (s >> 32);
    fold(s as u32)
}

/// Folded sum of a run that starts at an odd offset, given its sum from an even one.
#[inline(always)]
pub const fn at_offset(sum: u32, offset: usize) -> u32 {
    let folded = fold(sum);
    if offset & 1 == 1 {
        folded.swap_bytes() as u32
    } else {
        folded as u32
    }
}

/// Sum of a 32-bit big-endian field, such as a TTL.
#[inline(always)]
pub const fn sum_u32(value: u32) -> u32 {
    (value >> 16) + (value & 0xffff)
}

/// The final UDP checksum field for a folded sum: complemented, and 0 sent as 0xffff.
#[inline(always)]
pub const fn finish_udp(sum: u32) -> u16 {
    let c = !fold(sum);
    if c == 0 { 0xffff } else { c }
}

/// The EDNS option of an answer for a blocked name: Extended DNS Error 15, Blocked (RFC 8914),
/// without text.
pub const EDE_BLOCKED: [u8; 6] = [0, 15, 0, 2, 0, 15];
pub const EDE_BLOCKED_SUM: u32 = sum_bytes(0, &EDE_BLOCKED);

/// The OPT record of XDP answers to EDNS queries: root owner, TYPE 41, class = UDP size 1232,
/// extended RCODE 0, version 0, the query's DO bit, then `EDE_BLOCKED` if `blocked`.
pub const fn opt_record(dnssec_ok: bool, blocked: bool) -> [u8; 11] {
    let size = crate::EDNS_UDP_SIZE.to_be_bytes();
    let flags = if dnssec_ok { 0x80 } else { 0 };
    let rdlen = if blocked { EDE_BLOCKED.len() as u8 } else { 0 };
    [0, 0, 41, size[0], size[1], 0, 0, flags, 0, 0, rdlen]
}
pub const OPT_RECORD: [u8; 11] = opt_record(false, false);
pub const OPT_RECORD_DO: [u8; 11] = opt_record(true, false);
pub const OPT_RECORD_BLOCKED: [u8; 11] = opt_record(false, true);
pub const OPT_RECORD_DO_BLOCKED: [u8; 11] = opt_record(true, true);
/// `sum_bytes(0, ..)` of each.
pub const OPT_RECORD_SUM: u32 = sum_bytes(0, &OPT_RECORD);
pub const OPT_RECORD_DO_SUM: u32 = sum_bytes(0, &OPT_RECORD_DO);
pub const OPT_RECORD_BLOCKED_SUM: u32 = sum_bytes(0, &OPT_RECORD_BLOCKED);
pub const OPT_RECORD_DO_BLOCKED_SUM: u32 = sum_bytes(0, &OPT_RECORD_DO_BLOCKED);

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: the folded sum of `bytes` laid out from offset 0.
    fn reference(bytes: &[u8]) -> u16 {
        fold(sum_bytes(0, bytes))
    }

    #[test]
    fn odd_offset_sum_is_swapped_even_sum() {
        let run = [0x12u8, 0x34, 0x56, 0x78, 0x9a];
        let mut laid = [0u8; 6];
        laid[1..].copy_from_slice(&run);
        assert_eq!(at_offset(sum_bytes(0, &run), 1) as u16, reference(&laid));
        assert_eq!(at_offset(sum_bytes(0, &run), 0) as u16, reference(&run));
    }

    #[test]
    fn little_endian_words_sum_to_the_swapped_sum() {
        let mut bytes = [0u8; 64];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(151).wrapping_add(7) | 0x80;
        }
        for words in 0..=8 {
            let run = &bytes[..words * 8];
            let sum = run.chunks_exact(8).fold(0, |s, w| {
                sum_le_word(s, u64::from_le_bytes(w.try_into().unwrap()))
            });
            assert_eq!(fold64(sum).swap_bytes(), reference(run), "{words} words");
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2.
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(reference(&b), 0xddf2);
    }

    #[test]
    fn u32_field_matches_bytes() {
        let v = 0xdead_beef_u32;
        assert_eq!(fold(sum_u32(v)), reference(&v.to_be_bytes()));
    }

    #[test]
    fn zero_checksum_is_sent_as_ones() {
        assert_eq!(finish_udp(0xffff), 0xffff);
        assert_eq!(finish_udp(0x1234), !0x1234);
    }
}
