//! The EDNS options a stream listener adds to a reply when the query carried them: the TCP
//! keepalive timeout (RFC 7828), over TCP and TLS, and padding to a multiple of 468 bytes
//! (RFC 7830, RFC 8467's block padding), over TLS and HTTPS, so that the size of an encrypted
//! reply says little about the name.

use std::time::Duration;

use dnsxdp_common::{DNS_HLEN, QTYPE_OPT, name::parse_question};
use hickory_proto::{
    op::Message,
    rr::rdata::opt::{EdnsCode, EdnsOption},
};

use crate::dns::wire_hit::edns_options;

const KEEPALIVE: u16 = 11;
const PADDING: u16 = 12;
/// RFC 8467 §4.1: responses are padded to a multiple of this.
const PAD_BLOCK: usize = 468;

/// What the query asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Asked {
    pub keepalive: bool,
    pub padding: bool,
}

impl Asked {
    /// The options in the OPT record of `query`, a plain query of one question.
    pub fn of(query: &[u8]) -> Asked {
        let mut asked = Asked::default();
        let Some(h) = query.get(..DNS_HLEN) else {
            return asked;
        };
        let count = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
        if count(6) != 0 || count(8) != 0 || count(10) != 1 {
            return asked;
        }
        let Ok(q) = parse_question(query) else {
            return asked;
        };
        // Root owner, TYPE, CLASS, TTL, RDLENGTH.
        let Some(opt) = query.get(q.end..q.end + 11) else {
            return asked;
        };
        if opt[0] != 0 || u16::from_be_bytes([opt[1], opt[2]]) != QTYPE_OPT {
            return asked;
        }
        for (code, _) in edns_options(&query[q.end + 11..]).map_while(|o| o) {
            match code {
                KEEPALIVE => asked.keepalive = true,
                PADDING => asked.padding = true,
                _ => {}
            }
        }
        asked
    }
}

/// `reply` with the options `asked` for that the listener gives: the keepalive `timeout` if
/// it has one, padding if it `pads`. A reply without an OPT record (a bare error) is left as
/// it is.
pub fn apply(reply: Vec<u8>, asked: Asked, timeout: Option<Duration>, pads: bool) -> Vec<u8> {
    let keepalive = timeout.filter(|_| asked.keepalive);
    let pad = pads && asked.padding;
    if keepalive.is_none() && !pad {
        return reply;
    }
    let Ok(mut m) = Message::from_vec(&reply) else {
        return reply;
    };
    let Some(edns) = m.extensions_mut().as_mut() else {
        return reply;
    };
    if let Some(t) = keepalive {
        // In units of 100 ms.
        let units = u16::try_from(t.as_millis() / 100).unwrap_or(u16::MAX);
        let option = EdnsOption::Unknown(KEEPALIVE, units.to_be_bytes().to_vec());
        edns.options_mut().remove(EdnsCode::Keepalive);
        edns.options_mut().insert(option);
    }
    if !pad {
        return m.to_vec().unwrap_or(reply);
    }
    edns.options_mut().remove(EdnsCode::Padding);
    edns.options_mut()
        .insert(EdnsOption::Unknown(PADDING, Vec::new()));
    let Ok(unpadded) = m.to_vec() else {
        return reply;
    };
    let fill = (PAD_BLOCK - unpadded.len() % PAD_BLOCK) % PAD_BLOCK;
    if let Some(edns) = m.extensions_mut().as_mut() {
        edns.options_mut().remove(EdnsCode::Padding);
        edns.options_mut()
            .insert(EdnsOption::Unknown(PADDING, vec![0; fill]));
    }
    m.to_vec().unwrap_or(unpadded)
}

#[cfg(test)]
mod tests {
    use hickory_proto::{
        op::{Edns, Message, MessageType, Query},
        rr::{Name, RData, Record, RecordType, rdata::A},
    };

    use super::*;

    fn query(options: &[u16]) -> Message {
        let mut m = Message::new();
        m.add_query(Query::query(
            Name::from_ascii("www.example.").unwrap(),
            RecordType::A,
        ));
        let mut edns = Edns::new();
        for &code in options {
            let data = if code == PADDING {
                vec![0; 40]
            } else {
                Vec::new()
            };
            edns.options_mut().insert(EdnsOption::Unknown(code, data));
        }
        m.set_edns(edns);
        m
    }

    fn reply(q: &Message) -> Vec<u8> {
        let mut m = q.clone();
        m.set_message_type(MessageType::Response);
        let options = m.extensions_mut().as_mut().unwrap().options_mut();
        options.remove(EdnsCode::Padding);
        options.remove(EdnsCode::Keepalive);
        m.add_answer(Record::from_rdata(
            Name::from_ascii("www.example.").unwrap(),
            60,
            RData::A(A::new(198, 18, 0, 1)),
        ));
        m.to_vec().unwrap()
    }

    #[test]
    fn the_options_of_the_query_are_found() {
        let q = query(&[10, KEEPALIVE, PADDING]);
        let asked = Asked::of(&q.to_vec().unwrap());
        assert_eq!(
            asked,
            Asked {
                keepalive: true,
                padding: true
            }
        );
        assert_eq!(Asked::of(&query(&[]).to_vec().unwrap()), Asked::default());
        assert_eq!(Asked::of(b"\0\0"), Asked::default());
    }

    #[test]
    fn replies_are_padded_to_the_block_and_say_the_keepalive() {
        let q = query(&[KEEPALIVE, PADDING]);
        let asked = Asked::of(&q.to_vec().unwrap());
        let padded = apply(reply(&q), asked, Some(Duration::from_secs(10)), true);
        assert_eq!(padded.len(), PAD_BLOCK);
        let m = Message::from_vec(&padded).unwrap();
        assert_eq!(m.answers().len(), 1);
        let edns = m.extensions().as_ref().unwrap();
        let keepalive = edns.option(EdnsCode::Keepalive);
        assert_eq!(
            keepalive,
            Some(&EdnsOption::Unknown(KEEPALIVE, vec![0, 100]))
        );
        // Not asked, or not given by this listener: the reply as it was.
        let plain = reply(&query(&[]));
        assert_eq!(apply(plain.clone(), Asked::default(), None, true), plain);
        let unpadded = apply(reply(&q), asked, None, false);
        assert_eq!(unpadded, reply(&q));
    }
}
