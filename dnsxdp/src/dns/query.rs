//! Queries as clients send them.

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{DNSClass, Name},
};

use dnsxdp_common::qtype::kernel_qtype;

/// A well-formed standard query with one question.
#[derive(Clone, Debug)]
pub struct ClientQuery {
    pub id: u16,
    /// The question as sent, case preserved.
    pub query: Query,
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    pub edns: Option<ClientEdns>,
    /// The client group it is asked for (`filter::groups`), which has a cache of its own.
    pub group: u8,
}

/// What the client's OPT record asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientEdns {
    pub max_payload: u16,
    pub dnssec_ok: bool,
    pub version: u8,
}

/// What to do with a packet from a client.
#[derive(Debug)]
pub enum Parsed {
    Query(ClientQuery),
    /// Not a query we can answer: send this error instead.
    Reply(Vec<u8>),
    /// Not even a readable header, or a response: answering could feed a loop.
    Drop,
}

/// DNS header length.
const HEADER_LEN: usize = 12;

pub fn parse(packet: &[u8]) -> Parsed {
    if packet.len() < HEADER_LEN || packet[2] & 0x80 != 0 {
        return Parsed::Drop;
    }
    let Ok(msg) = Message::from_vec(packet) else {
        return Parsed::Reply(header_reply(packet, ResponseCode::FormErr));
    };
    if msg.message_type() != MessageType::Query {
        return Parsed::Drop;
    }
    if msg.op_code() != OpCode::Query {
        return Parsed::Reply(header_reply(packet, ResponseCode::NotImp));
    }
    let [query] = msg.queries() else {
        return Parsed::Reply(header_reply(packet, ResponseCode::FormErr));
    };
    Parsed::Query(ClientQuery {
        id: msg.id(),
        query: query.clone(),
        recursion_desired: msg.recursion_desired(),
        checking_disabled: msg.checking_disabled(),
        edns: msg.extensions().as_ref().map(|e| ClientEdns {
            max_payload: e.max_payload(),
            dnssec_ok: e.flags().dnssec_ok,
            version: e.version(),
        }),
        // The resolver sets it: the message does not say.
        group: 0,
    })
}

/// A bare header answering `request`: its ID, opcode and RD, no sections.
fn header_reply(request: &[u8], rcode: ResponseCode) -> Vec<u8> {
    let mut reply = vec![0u8; HEADER_LEN];
    reply[..2].copy_from_slice(&request[..2]);
    // QR, the request's opcode and RD.
    reply[2] = 0x80 | (request[2] & 0x79);
    reply[3] = u16::from(rcode) as u8 & 0x0f;
    reply
}

impl ClientQuery {
    /// `query` as the daemon asks it on its own behalf (a prefetch): RD set, no EDNS.
    pub fn plain(query: Query) -> ClientQuery {
        ClientQuery {
            id: 0,
            query,
            recursion_desired: true,
            checking_disabled: false,
            edns: None,
            group: 0,
        }
    }

    /// `plain`, with an OPT record that sets DO if `dnssec_ok`, for clients of `group`: the
    /// query a kernel cache entry answers.
    pub fn kernel(query: Query, dnssec_ok: bool, group: u8) -> ClientQuery {
        let edns = dnssec_ok.then_some(ClientEdns {
            max_payload: dnsxdp_common::EDNS_UDP_SIZE,
            dnssec_ok,
            version: 0,
        });
        ClientQuery {
            edns,
            group,
            ..ClientQuery::plain(query)
        }
    }

    pub fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|e| e.dnssec_ok)
    }

    /// The question name lower-cased: case does not change the answer.
    pub fn lower_name(&self) -> Name {
        self.query.name().to_lowercase()
    }

    /// A class IN question of a type the XDP cache holds answers for.
    pub fn is_kernel_question(&self) -> bool {
        self.query.query_class() == DNSClass::IN && kernel_qtype(u16::from(self.query.query_type()))
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::{op::Edns, rr::RecordType};

    use super::*;

    fn query_bytes(edit: impl FnOnce(&mut Message)) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(0xbeef).set_recursion_desired(true);
        m.add_query(Query::query(
            Name::from_ascii("WwW.Example.com.").unwrap(),
            RecordType::A,
        ));
        edit(&mut m);
        m.to_vec().unwrap()
    }

    #[test]
    fn parses_a_query_with_edns() {
        let bytes = query_bytes(|m| {
            let mut e = Edns::new();
            e.set_max_payload(4096).set_dnssec_ok(true);
            m.set_edns(e).set_checking_disabled(true);
        });
        let Parsed::Query(q) = parse(&bytes) else {
            panic!()
        };
        assert_eq!(q.id, 0xbeef);
        assert_eq!(q.query.name().to_ascii(), "WwW.Example.com.");
        assert_eq!(q.lower_name().to_ascii(), "www.example.com.");
        assert!(q.recursion_desired && q.checking_disabled && q.dnssec_ok());
        assert_eq!(q.edns.unwrap().max_payload, 4096);
        assert!(q.is_kernel_question());
    }

    #[test]
    fn garbage_after_a_header_is_formerr_and_short_packets_are_dropped() {
        let bytes = query_bytes(|_| ());
        let Parsed::Reply(r) = parse(&bytes[..bytes.len() - 3]) else {
            panic!()
        };
        assert_eq!(&r[..4], &[0xbe, 0xef, 0x81, 0x01]);
        assert_eq!(r.len(), 12);
        assert!(matches!(parse(&bytes[..11]), Parsed::Drop));
    }

    #[test]
    fn responses_are_dropped_and_other_opcodes_not_implemented() {
        let bytes = query_bytes(|m| {
            m.set_message_type(MessageType::Response);
        });
        assert!(matches!(parse(&bytes), Parsed::Drop));
        let bytes = query_bytes(|m| {
            m.set_op_code(OpCode::Status);
        });
        let Parsed::Reply(r) = parse(&bytes) else {
            panic!()
        };
        assert_eq!(r[2], 0x80 | (2 << 3) | 1);
        assert_eq!(r[3], 4);
    }

    #[test]
    fn two_questions_are_formerr() {
        let bytes = query_bytes(|m| {
            m.add_query(Query::query(Name::root(), RecordType::NS));
        });
        let Parsed::Reply(r) = parse(&bytes) else {
            panic!()
        };
        assert_eq!(r[3], 1);
    }
}
