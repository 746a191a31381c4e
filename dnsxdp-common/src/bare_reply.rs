//! Answers made of the query's own header and question and nothing else: REFUSED for a denied
//! client, and TC=1 for a rate-limited one whose query slips, so a real client retries over TCP.
//! The XDP program makes them in place, the daemon for the queries it screens; both by these
//! rules.
//!
//! The question is echoed so stub resolvers match the answer to their query (glibc ignores one
//! whose question differs); whatever followed it, an OPT record included, is cut off. A query
//! whose question cannot be found is not answered.

use crate::{
    DNS_HLEN, MAX_WIRE_NAME, RCODE_REFUSED,
    name::{Label, label_within},
};

/// Labels in a name of `MAX_WIRE_NAME` bytes at most, the root label included: each other
/// label takes two bytes or more.
pub const MAX_WIRE_LABELS: usize = MAX_WIRE_NAME.div_ceil(2);
/// Longest bare answer: header, longest name, type and class.
pub const MAX_BARE_REPLY: usize = DNS_HLEN + MAX_WIRE_NAME + 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Refused,
    /// TC=1: ask again over TCP.
    Truncated,
}

/// Whether a message whose header has `flags` as its third byte and `qdcount` questions may
/// be answered: never a response, which could start a loop, and only with one question to echo.
#[inline(always)]
pub const fn answerable(flags: u8, qdcount: u16) -> bool {
    flags & 0x80 == 0 && qdcount == 1
}

/// Header bytes 2 and 3 (flags and RCODE) of the answer to a query that had `query` there: QR;
/// opcode and RD as asked; CD copied (RFC 6840 §5.9); TC and RA for a slip, REFUSED for a
/// denial; the rest clear.
#[inline(always)]
pub const fn flags(kind: Kind, query: [u8; 2]) -> [u8; 2] {
    let (tc, ra, rcode) = match kind {
        Kind::Refused => (0, 0, RCODE_REFUSED),
        Kind::Truncated => (0x02, 0x80, 0),
    };
    [
        0x80 | (query[0] & 0x79) | tc,
        ra | (query[1] & 0x10) | rcode,
    ]
}

/// Length of the question (an uncompressed name, type and class) whose byte at offset `at` is
/// `byte_at(at)`, if it has one: `None` past the end of the message. The type and class are
/// not read.
#[inline(always)]
pub fn question_len(mut byte_at: impl FnMut(usize) -> Option<u8>) -> Option<usize> {
    let mut at = 0;
    for _ in 0..MAX_WIRE_LABELS {
        match label_within(at, byte_at(at)?, MAX_WIRE_NAME) {
            Label::Next(next) => at = next,
            Label::End(name_len) => return Some(name_len + 4),
            Label::Invalid | Label::TooLong => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_of(name: &[u8]) -> Option<usize> {
        question_len(|at| name.get(at).copied())
    }

    #[test]
    fn only_queries_with_one_question_are_answered() {
        assert!(answerable(0x01, 1));
        assert!(!answerable(0x81, 1));
        assert!(!answerable(0x01, 0));
        assert!(!answerable(0x01, 2));
    }

    #[test]
    fn flags_keep_opcode_rd_and_cd_only() {
        // Opcode 2, AA, TC and RD set; RA, Z, AD, CD set and RCODE 15.
        let query = [0x10 | 0x04 | 0x02 | 0x01, 0xff];
        assert_eq!(flags(Kind::Refused, query), [0x91, 0x10 | RCODE_REFUSED]);
        assert_eq!(flags(Kind::Truncated, query), [0x93, 0x90]);
        assert_eq!(flags(Kind::Refused, [0, 0]), [0x80, RCODE_REFUSED]);
        assert_eq!(flags(Kind::Truncated, [0, 0]), [0x82, 0x80]);
    }

    #[test]
    fn question_length_counts_name_type_and_class() {
        assert_eq!(len_of(b"\x03www\x07example\x04test\x00"), Some(18 + 4));
        assert_eq!(len_of(b"\x00"), Some(1 + 4));
    }

    #[test]
    fn names_up_to_the_legal_length_are_echoed() {
        // 127 one-byte labels and the root: 255 bytes in 128 labels.
        let mut name = [1u8; MAX_WIRE_NAME];
        name[MAX_WIRE_NAME - 1] = 0;
        assert_eq!(len_of(&name), Some(MAX_WIRE_NAME + 4));
        // Labels of 63, 63, 63, 62 bytes and the root: 255 bytes, longer than a cached name.
        let mut name = [b'x'; MAX_WIRE_NAME];
        for at in [0, 64, 128] {
            name[at] = 63;
        }
        name[192] = 61;
        name[254] = 0;
        assert_eq!(len_of(&name), Some(MAX_WIRE_NAME + 4));
        // One byte more.
        name[192] = 62;
        assert_eq!(len_of(&name), None);
    }

    #[test]
    fn compressed_truncated_and_reserved_names_are_not() {
        assert_eq!(len_of(b"\x01a\xc0\x0c"), None);
        assert_eq!(len_of(b"\x41a\x00"), None);
        assert_eq!(len_of(b"\x03www"), None);
        assert_eq!(len_of(b""), None);
    }
}
