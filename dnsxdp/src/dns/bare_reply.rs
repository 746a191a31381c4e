//! The answers the XDP program makes for denied and slipped queries, made by the daemon for
//! those it screens, by the same rules (`dnsxdp_common::bare_reply`): the query's header and
//! question, nothing else.

use dnsxdp_common::{
    DNS_HLEN,
    bare_reply::{answerable, flags, question_len},
};

pub use dnsxdp_common::bare_reply::Kind;

/// The answer to `query`: QR set, opcode, RD and CD as asked, the question echoed, no records.
/// `None` for a response (answering could start a loop) or a message without exactly one
/// readable question.
pub fn bare_reply(query: &[u8], kind: Kind) -> Option<Vec<u8>> {
    let header = query.get(..DNS_HLEN)?;
    if !answerable(header[2], u16::from_be_bytes([header[4], header[5]])) {
        return None;
    }
    let end = DNS_HLEN + question_len(|at| query.get(DNS_HLEN + at).copied())?;
    let mut reply = query.get(..end)?.to_vec();
    reply[2..4].copy_from_slice(&flags(kind, [header[2], header[3]]));
    reply[6..DNS_HLEN].fill(0);
    Some(reply)
}

#[cfg(test)]
mod tests {
    use hickory_proto::{
        op::{Edns, Message, MessageType, Query, ResponseCode},
        rr::{Name, RecordType},
    };

    use super::*;

    fn query() -> Message {
        let mut m = Message::new();
        m.set_id(0x1234)
            .set_recursion_desired(true)
            .set_checking_disabled(true)
            .add_query(Query::query(
                Name::from_ascii("Www.Example.test.").unwrap(),
                RecordType::AAAA,
            ))
            .set_edns(Edns::new());
        m
    }

    #[test]
    fn refused_echoes_the_question_and_drops_the_opt() {
        let q = query();
        let r =
            Message::from_vec(&bare_reply(&q.to_vec().unwrap(), Kind::Refused).unwrap()).unwrap();
        assert_eq!(r.id(), 0x1234);
        assert_eq!(r.message_type(), MessageType::Response);
        assert_eq!(r.response_code(), ResponseCode::Refused);
        assert!(r.recursion_desired() && r.checking_disabled());
        assert!(!r.recursion_available() && !r.truncated());
        assert_eq!(r.queries(), q.queries());
        assert!(r.extensions().is_none() && r.answer_count() == 0);
    }

    #[test]
    fn truncated_says_so() {
        let r = bare_reply(&query().to_vec().unwrap(), Kind::Truncated).unwrap();
        let r = Message::from_vec(&r).unwrap();
        assert!(r.truncated() && r.recursion_available());
        assert_eq!(r.response_code(), ResponseCode::NoError);
    }

    #[test]
    fn responses_and_questionless_messages_get_nothing() {
        let mut q = query().to_vec().unwrap();
        assert!(bare_reply(&q[..20], Kind::Refused).is_none());
        q[2] |= 0x80;
        assert!(bare_reply(&q, Kind::Refused).is_none());
        q[2] &= !0x80;
        q[12] = 0xc0;
        assert!(bare_reply(&q, Kind::Refused).is_none());
        q[5] = 0;
        assert!(bare_reply(&q, Kind::Refused).is_none());
    }
}
