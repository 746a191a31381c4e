//! Query names: validation, lower-casing into a cache key, and the checksum of the name bytes.

use crate::{CacheKey, MAX_NAME};

/// ASCII lower-casing of one wire byte. Label length bytes are at most 63, below b'A', so the
/// whole wire name can be folded byte by byte.
#[inline(always)]
pub const fn lower(b: u8) -> u8 {
    if b >= b'A' && b <= b'Z' { b | 0x20 } else { b }
}

/// What a byte did to the name being parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// More bytes belong to the name.
    More,
    /// The root label ended the name; it is this many bytes long.
    End(usize),
    /// A compression pointer or a reserved label type: not a plain name.
    Invalid,
    /// The name does not fit a cache key.
    TooLong,
}

/// Byte-at-a-time parser of an uncompressed wire name, built so the XDP program can feed it
/// from a bounded loop over packet bytes and the host from a slice.
///
/// It writes the lower-cased name into a key and keeps the ones' complement sum of the bytes as
/// sent (big-endian 16-bit words counted from the first name byte), which the XDP program needs
/// for the reply's UDP checksum.
#[derive(Clone, Copy, Debug, Default)]
pub struct NameParser {
    next_label: usize,
    /// Sum of the name bytes as received.
    pub csum: u32,
}

impl NameParser {
    pub const fn new() -> Self {
        Self {
            next_label: 0,
            csum: 0,
        }
    }

    /// Takes byte `b` at offset `i` of the name; bytes must come in order from offset 0.
    #[inline(always)]
    pub fn step(&mut self, i: usize, b: u8, key: &mut CacheKey) -> Step {
        let Some(slot) = key.name.get_mut(i) else {
            return Step::TooLong;
        };
        *slot = lower(b);
        if i == self.next_label {
            if b == 0 {
                return Step::End(i + 1);
            }
            if b & 0xc0 != 0 {
                return Step::Invalid;
            }
            self.next_label = i + 1 + b as usize;
        }
        self.csum += if i & 1 == 0 {
            (b as u32) << 8
        } else {
            b as u32
        };
        Step::More
    }
}

/// Why a message's question cannot be a kernel cache key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuestionError {
    /// The message ends inside the header or the question.
    Truncated,
    /// QDCOUNT is not 1, or the name is compressed or uses a reserved label type.
    Malformed,
    /// The name is longer than `MAX_NAME`.
    TooLong,
}

/// The question of a DNS message, parsed for the cache.
#[derive(Clone, Copy, Debug)]
pub struct Question {
    /// Lower-cased name and type; the class is reported separately.
    pub key: CacheKey,
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
    let mut key = CacheKey {
        qtype: 0,
        name_len: 0,
        name: [0; MAX_NAME],
    };
    let mut parser = NameParser::new();
    let mut i = 0;
    let name_len = loop {
        let Some(&b) = msg.get(12 + i) else {
            return Err(QuestionError::Truncated);
        };
        match parser.step(i, b, &mut key) {
            Step::More => i += 1,
            Step::End(len) => break len,
            Step::Invalid => return Err(QuestionError::Malformed),
            Step::TooLong => return Err(QuestionError::TooLong),
        }
    };
    let end = 12 + name_len + 4;
    let Some(tail) = msg.get(12 + name_len..end) else {
        return Err(QuestionError::Truncated);
    };
    key.name_len = name_len as u16;
    key.qtype = u16::from_be_bytes([tail[0], tail[1]]);
    Ok(Question {
        key,
        qclass: u16::from_be_bytes([tail[2], tail[3]]),
        end,
    })
}

impl CacheKey {
    /// The wire name of the key (lower-cased, root label included).
    pub fn wire_name(&self) -> &[u8] {
        &self.name[..(self.name_len as usize).min(MAX_NAME)]
    }
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
    fn sum_covers_the_name_as_sent() {
        let name = b"\x03AbC\x00";
        let q = query(name, 1);
        let mut key = CacheKey::zeroed();
        let mut p = NameParser::new();
        for (i, &b) in name.iter().enumerate() {
            if let Step::End(_) = p.step(i, b, &mut key) {
                break;
            }
        }
        assert_eq!(
            p.csum,
            crate::checksum::sum_bytes(0, &q[12..12 + name.len()])
        );
    }

    use bytemuck::Zeroable;
}
