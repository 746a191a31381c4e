//! The query sent upstream for a client's question.

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query},
    rr::{Name, RecordType},
};

use crate::dns::reply::EDNS_UDP_SIZE;

/// The question and flags sent upstream.
pub struct Question<'a> {
    pub query: &'a Query,
    pub dnssec_ok: bool,
    pub checking_disabled: bool,
}

impl Question<'_> {
    /// The query with `id`: RD, the client's CD, and an OPT record with our UDP size and the
    /// client's DO bit.
    pub fn wire(&self, id: u16) -> Vec<u8> {
        let mut msg = Message::new();
        msg.set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .set_checking_disabled(self.checking_disabled)
            .add_query(self.query.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP_SIZE)
            .set_dnssec_ok(self.dnssec_ok);
        msg.set_edns(edns);
        msg.to_vec().expect("a single question always encodes")
    }
}

/// What health probes ask: the root's name servers, which any resolver can answer.
pub fn probe() -> Query {
    Query::query(Name::root(), RecordType::NS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_carries_edns_and_client_bits() {
        let q = Query::query(Name::from_ascii("Www.T.").unwrap(), RecordType::A);
        let wire = Question {
            query: &q,
            dnssec_ok: true,
            checking_disabled: true,
        }
        .wire(0x1234);
        let m = Message::from_vec(&wire).unwrap();
        assert_eq!(m.id(), 0x1234);
        assert!(m.recursion_desired() && m.checking_disabled());
        assert_eq!(m.queries()[0].name().to_ascii(), "Www.T.");
        let e = m.extensions().as_ref().unwrap();
        assert_eq!(e.max_payload(), EDNS_UDP_SIZE);
        assert!(e.flags().dnssec_ok);
    }
}
