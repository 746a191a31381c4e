//! Query names: validation, lower-casing, and the cache key of a question.

use crate::{
    CacheEntry, CacheKey, MAX_CACHED_NAME,
    hash::{HashKey, group_hash, name_hash},
};

/// ASCII lower-casing of one wire byte. Label length bytes are at most 63, below b'A', so the
/// whole wire name can be folded byte by byte.
#[inline(always)]
pub const fn lower(b: u8) -> u8 {
    if b >= b'A' && b <= b'Z' { b | 0x20 } else { b }
}

/// ASCII lower-casing of eight wire bytes at once: `lower` of each byte of `w`.
#[inline(always)]
pub const fn lower_word(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let low7 = w & !HIGH;
    // The high bit of each byte says whether its low seven bits are at least b'A', resp. more
    // than b'Z'. No byte carries into the next one.
    let from_a = low7 + ONES * (0x80 - b'A' as u64);
    let past_z = low7 + ONES * (0x80 - b'Z' as u64 - 1);
    let upper = from_a & !past_z & !w & HIGH;
    w | upper >> 2
}

/// What a label length byte says about an uncompressed wire name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    /// The next label starts at this offset.
    Next(usize),
    /// The root label ended the name; it is this many bytes long.
    End(usize),
    /// A compression pointer or a reserved label type: not a plain name.
    Invalid,
    /// The name does not fit in the bytes allowed.
    TooLong,
}

/// One step of walking a wire name label by label: `len` is the byte at offset `at`, where a
/// label starts. Both sides walk names with it, so they agree on which ones the cache takes.
#[inline(always)]
pub const fn label(at: usize, len: u8) -> Label {
    label_within(at, len, MAX_CACHED_NAME)
}

/// `label` for names of at most `max` bytes.
#[inline(always)]
pub const fn label_within(at: usize, len: u8, max: usize) -> Label {
    if len == 0 {
        return Label::End(at + 1);
    }
    if len & 0xc0 != 0 {
        return Label::Invalid;
    }
    let next = at + 1 + len as usize;
    // The root label needs a byte too.
    if next >= max {
        Label::TooLong
    } else {
        Label::Next(next)
    }
}

/// Words of a zero-padded name of `len` bytes, as the name hash and the comparison of names
/// take them.
#[inline(always)]
pub const fn name_words(len: usize) -> usize {
    len.div_ceil(8)
}

/// A question as the kernel cache answers it: the name lower-cased in wire format, zero
/// padded, the type, and whether the query had the DO bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuestionKey {
    pub qtype: u16,
    /// Length of the wire name in `name`, root label included.
    pub name_len: u16,
    pub name: [u8; MAX_CACHED_NAME],
    pub dnssec_ok: bool,
    /// The client group whose answer it is (`CacheEntry::group`).
    pub group: u8,
}

impl QuestionKey {
    /// The question a kernel cache entry answers, from its key and the name it holds.
    pub fn of_entry<const N: usize>(key: &CacheKey, entry: &CacheEntry<N>) -> QuestionKey {
        let mut name = [0; MAX_CACHED_NAME];
        let held = entry.name();
        let len = held.len().min(MAX_CACHED_NAME);
        name[..len].copy_from_slice(&held[..len]);
        QuestionKey {
            qtype: key.qtype,
            name_len: key.name_len.into(),
            name,
            dnssec_ok: key.dnssec_ok != 0,
            group: entry.group,
        }
    }

    /// The wire name (lower-cased, root label included).
    pub fn wire_name(&self) -> &[u8] {
        &self.name[..(self.name_len as usize).min(MAX_CACHED_NAME)]
    }

    /// The `CACHE` key of the question under the program's hash key.
    pub fn cache_key(&self, key: &HashKey) -> CacheKey {
        let words = self
            .name
            .chunks_exact(8)
            .take(name_words(self.name_len as usize));
        let hash = name_hash(
            key,
            words.map(|w| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])),
        );
        let hash = group_hash(hash, self.group);
        CacheKey::new(hash, self.qtype, self.name_len, self.dnssec_ok)
    }
}

/// Why a message's question cannot be a kernel cache key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuestionError {
    /// The message ends inside the header or the question.
    Truncated,
    /// QDCOUNT is not 1, or the name is compressed or uses a reserved label type.
    Malformed,
    /// The name is longer than `MAX_CACHED_NAME`.
    TooLong,
}

/// The question of a DNS message, parsed for the cache.
#[derive(Clone, Copy, Debug)]
pub struct Question {
    /// Lower-cased name and type; the class is reported separately.
    pub key: QuestionKey,
    pub qclass: u16,
    /// Offset of the first byte after the question (12 + name + 4).
    pub end: usize,
}

/// Parses the single question of `msg` (header included) into a cache key.
pub fn parse_question(msg: &[u8]) -> Result<Question, QuestionError> {
    if msg.len() < 12 {
        return Err(QuestionError::Truncated);
    }
    if u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return Err(QuestionError::Malformed);
    }
    let mut at = 0;
    let name_len = loop {
        let Some(&len) = msg.get(12 + at) else {
            return Err(QuestionError::Truncated);
        };
        match label(at, len) {
            Label::Next(next) => at = next,
            Label::End(len) => break len,
            Label::Invalid => return Err(QuestionError::Malformed),
            Label::TooLong => return Err(QuestionError::TooLong),
        }
    };
    let mut key = QuestionKey {
        qtype: 0,
        name_len: name_len as u16,
        name: [0; MAX_CACHED_NAME],
        // The question does not say: `entry::build_entry` reads the OPT record.
        dnssec_ok: false,
        // Nor whose it is.
        group: 0,
    };
    for (to, &b) in key.name.iter_mut().zip(&msg[12..12 + name_len]) {
        *to = lower(b);
    }
    let end = 12 + name_len + 4;
    let Some(tail) = msg.get(12 + name_len..end) else {
        return Err(QuestionError::Truncated);
    };
    key.qtype = u16::from_be_bytes([tail[0], tail[1]]);
    Ok(Question {
        key,
        qclass: u16::from_be_bytes([tail[2], tail[3]]),
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16) -> [u8; 64] {
        let mut m = [0u8; 64];
        m[5] = 1;
        m[12..12 + name.len()].copy_from_slice(name);
        let t = 12 + name.len();
        m[t..t + 2].copy_from_slice(&qtype.to_be_bytes());
        m[t + 3] = 1;
        m
    }

    #[test]
    fn lower_cases_labels_but_not_lengths() {
        let q = parse_question(&query(b"\x03WwW\x07ExAmPlE\x03cOm\x00", 1)).unwrap();
        assert_eq!(q.key.wire_name(), b"\x03www\x07example\x03com\x00");
        assert_eq!(q.key.qtype, 1);
        assert_eq!(q.qclass, 1);
        assert_eq!(q.end, 12 + 17 + 4);
    }

    #[test]
    fn keys_differing_only_in_case_are_equal() {
        let a = parse_question(&query(b"\x01A\x02Bc\x00", 28)).unwrap();
        let b = parse_question(&query(b"\x01a\x02bC\x00", 28)).unwrap();
        assert_eq!(a.key, b.key);
    }

    #[test]
    fn root_name() {
        let q = parse_question(&query(b"\x00", 1)).unwrap();
        assert_eq!(q.key.name_len, 1);
    }

    #[test]
    fn rejects_compression_and_reserved_labels() {
        assert_eq!(
            parse_question(&query(b"\x01a\xc0\x0c", 1)).unwrap_err(),
            QuestionError::Malformed
        );
        assert_eq!(
            parse_question(&query(b"\x41a\x00", 1)).unwrap_err(),
            QuestionError::Malformed
        );
    }

    #[test]
    fn rejects_wrong_qdcount_and_truncation() {
        let mut m = query(b"\x01a\x00", 1);
        m[5] = 2;
        assert_eq!(parse_question(&m).unwrap_err(), QuestionError::Malformed);
        let m = query(b"\x01a\x00", 1);
        assert_eq!(
            parse_question(&m[..16]).unwrap_err(),
            QuestionError::Truncated
        );
    }

    #[test]
    fn rejects_names_longer_than_a_key() {
        let mut m = [0u8; 300];
        m[5] = 1;
        for l in 0..4 {
            m[12 + l * 64] = 63;
            for j in 1..64 {
                m[12 + l * 64 + j] = b'x';
            }
        }
        assert_eq!(parse_question(&m).unwrap_err(), QuestionError::TooLong);
    }

    #[test]
    fn longest_name_fits_and_one_more_byte_does_not() {
        let mut m = [0u8; 160];
        m[5] = 1;
        // Labels of 63 and 62 bytes and the root: MAX_CACHED_NAME bytes.
        m[12] = 63;
        m[12 + 64] = 62;
        let q = parse_question(&m).unwrap();
        assert_eq!(q.key.name_len as usize, MAX_CACHED_NAME);
        m[12 + 64] = 63;
        assert_eq!(parse_question(&m).unwrap_err(), QuestionError::TooLong);
    }

    #[test]
    fn word_lower_casing_is_byte_lower_casing() {
        for b in 0..=255u8 {
            for at in 0..8 {
                // Neighbours that are upper case, lower case or have the high bit set.
                for fill in [b'Q', b'q', 0xc1, 0x5b, 0x40] {
                    let mut bytes = [fill; 8];
                    bytes[at] = b;
                    let want = bytes.map(lower);
                    let got = lower_word(u64::from_le_bytes(bytes)).to_le_bytes();
                    assert_eq!(got, want, "{bytes:02x?}");
                }
            }
        }
    }

    #[test]
    fn cache_keys_ignore_case_only() {
        let key: HashKey =
            core::array::from_fn(|i| 0x1234_5678_9abc_def1_u64.rotate_left(i as u32));
        let k = |name: &[u8], qtype: u16| {
            parse_question(&query(name, qtype))
                .unwrap()
                .key
                .cache_key(&key)
        };
        let www = k(b"\x03www\x07example\x03com\x00", 1);
        assert_eq!(www, k(b"\x03WWW\x07eXample\x03COM\x00", 1));
        assert_eq!((www.qtype, www.name_len), (1, 17));
        assert_ne!(www, k(b"\x03www\x07example\x03com\x00", 28));
        assert_ne!(www, k(b"\x03www\x07example\x03org\x00", 1));
        let q = parse_question(&query(b"\x03www\x07example\x03com\x00", 1)).unwrap();
        let mut other_key = key;
        other_key[1] += 1;
        assert_ne!(www.hash, q.key.cache_key(&other_key).hash);
    }
}
