//! What an upstream's reply must be before it is used or cached: the response to our query,
//! carrying only records about the question's name and its CNAME chain.

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query},
    rr::{Name, RData, Record, RecordType},
};

/// `bytes` parsed, if it is the response with `id` to a query for `query`: QR set, opcode
/// QUERY, and one question equal to ours (names compare case-insensitively).
pub fn accept(bytes: &[u8], id: u16, query: &Query) -> Option<Message> {
    let msg = Message::from_vec(bytes).ok()?;
    let same_question = match msg.queries() {
        [answered] => {
            answered.name() == query.name()
                && answered.query_type() == query.query_type()
                && answered.query_class() == query.query_class()
        }
        _ => false,
    };
    (msg.message_type() == MessageType::Response
        && msg.op_code() == OpCode::Query
        && msg.id() == id
        && same_question)
        .then_some(msg)
}

/// DNAME has no variant of its own in hickory-proto.
const DNAME: RecordType = RecordType::Unknown(39);

/// `msg` without the records a resolver answering `query` has no business sending, which an
/// attacker on the path (or a broken upstream) could use to plant data:
/// - answer: records owned by the question name or a name its CNAME chain reaches, and DNAME
///   records (and signatures) owned by an ancestor of those names;
/// - authority: records owned by such a name or an ancestor (the SOA of a negative answer, NS
///   and DS at zone cuts), and denial-of-existence proofs under the zones those name;
/// - additional: records owned by a chain name.
pub fn scrub(mut msg: Message, query: &Query) -> Message {
    let answers = msg.take_answers();
    let chain = cname_chain(query.name(), &answers);
    let in_chain = |name: &Name| chain.iter().any(|c| c == name);
    let above_chain = |name: &Name| chain.iter().any(|c| name.zone_of(c));
    msg.insert_answers(
        answers
            .into_iter()
            .filter(|r| {
                in_chain(r.name())
                    || (matches!(r.record_type(), DNAME | RecordType::RRSIG)
                        && above_chain(r.name()))
            })
            .collect(),
    );
    let authority = msg.take_name_servers();
    let zones: Vec<Name> = authority
        .iter()
        .filter(|r| matches!(r.record_type(), RecordType::SOA | RecordType::NS))
        .filter(|r| above_chain(r.name()))
        .map(|r| r.name().clone())
        .collect();
    msg.insert_name_servers(
        authority
            .into_iter()
            .filter(|r| {
                above_chain(r.name())
                    || (matches!(
                        r.record_type(),
                        RecordType::NSEC | RecordType::NSEC3 | RecordType::RRSIG
                    ) && zones.iter().any(|z| z.zone_of(r.name())))
            })
            .collect(),
    );
    let additional = msg.take_additionals();
    msg.insert_additionals(
        additional
            .into_iter()
            .filter(|r| in_chain(r.name()))
            .collect(),
    );
    msg
}

/// The question name and every name CNAME records in `answers` lead to from it, in any order.
fn cname_chain(qname: &Name, answers: &[Record]) -> Vec<Name> {
    let mut chain = vec![qname.clone()];
    // Each pass adds at least one name, so there are at most as many as records.
    for _ in 0..answers.len() {
        let next = answers.iter().find_map(|r| match r.data() {
            RData::CNAME(target)
                if chain.iter().any(|c| c == r.name()) && !chain.iter().any(|c| c == &target.0) =>
            {
                Some(target.0.clone())
            }
            _ => None,
        });
        match next {
            Some(name) => chain.push(name),
            None => break,
        }
    }
    chain
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::{
        DNSClass,
        rdata::{A, CNAME, NS},
    };

    use super::*;
    use crate::dns::answer::tests::{name, soa};

    fn a(owner: &str, last: u8) -> Record {
        Record::from_rdata(
            name(owner),
            60,
            RData::A(A(Ipv4Addr::new(198, 18, 0, last))),
        )
    }

    fn cname(owner: &str, target: &str) -> Record {
        Record::from_rdata(name(owner), 60, RData::CNAME(CNAME(name(target))))
    }

    fn reply(id: u16, qname: &str, qtype: RecordType) -> Message {
        let mut m = Message::new();
        m.set_id(id).set_message_type(MessageType::Response);
        m.add_query(Query::query(name(qname), qtype));
        m
    }

    fn query() -> Query {
        Query::query(name("Www.T."), RecordType::A)
    }

    fn accepts(m: &Message) -> bool {
        accept(&m.to_vec().unwrap(), 7, &query()).is_some()
    }

    #[test]
    fn accepts_the_matching_reply_in_any_case() {
        assert!(accepts(&reply(7, "www.t.", RecordType::A)));
        assert!(accepts(&reply(7, "WWW.T.", RecordType::A)));
    }

    #[test]
    fn rejects_wrong_id_question_type_or_class() {
        assert!(!accepts(&reply(8, "www.t.", RecordType::A)));
        assert!(!accepts(&reply(7, "www.u.", RecordType::A)));
        assert!(!accepts(&reply(7, "www.t.", RecordType::AAAA)));
        let mut chaos = reply(7, "www.t.", RecordType::A);
        chaos.take_queries();
        let mut q = query();
        q.set_query_class(DNSClass::CH);
        chaos.add_query(q);
        assert!(!accepts(&chaos));
        let mut two = reply(7, "www.t.", RecordType::A);
        two.add_query(query());
        assert!(!accepts(&two));
    }

    #[test]
    fn rejects_queries_other_opcodes_and_garbage() {
        let mut m = reply(7, "www.t.", RecordType::A);
        m.set_message_type(MessageType::Query);
        assert!(!accepts(&m));
        let mut m = reply(7, "www.t.", RecordType::A);
        m.set_op_code(OpCode::Update);
        assert!(!accepts(&m));
        assert!(accept(&[0, 7, 0x80], 7, &query()).is_none());
    }

    fn owners(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| r.name().to_ascii()).collect()
    }

    #[test]
    fn keeps_the_chain_and_drops_the_rest() {
        let mut m = reply(7, "www.t.", RecordType::A);
        // Out of order, with a record for another name and one the chain never reaches.
        m.insert_answers(vec![
            a("End.T.", 1),
            cname("www.t.", "mid.t."),
            a("victim.t.", 6),
            cname("Mid.t.", "end.t."),
            a("unrelated.t.", 7),
        ]);
        m.insert_name_servers(vec![
            soa(60, 60),
            Record::from_rdata(name("other."), 60, RData::NS(NS(name("ns.evil.")))),
        ]);
        m.insert_additionals(vec![a("ns.evil.", 9), a("end.t.", 1)]);
        let m = scrub(m, &query());
        assert_eq!(owners(m.answers()), ["End.T.", "www.t.", "Mid.t."]);
        assert_eq!(owners(m.name_servers()), ["t."]);
        assert_eq!(owners(m.additionals()), ["end.t."]);
    }

    #[test]
    fn a_cname_loop_ends() {
        let mut m = reply(7, "www.t.", RecordType::A);
        m.insert_answers(vec![cname("www.t.", "b.t."), cname("b.t.", "www.t.")]);
        assert_eq!(scrub(m, &query()).answers().len(), 2);
    }

    #[test]
    fn dname_and_denial_proofs_under_the_zone_stay() {
        let dname = Record::from_rdata(
            name("t."),
            60,
            RData::Unknown {
                code: DNAME,
                rdata: hickory_proto::rr::rdata::NULL::with(vec![0]),
            },
        );
        let nsec = Record::from_rdata(
            name("a.t."),
            60,
            RData::Unknown {
                code: RecordType::NSEC,
                rdata: hickory_proto::rr::rdata::NULL::with(vec![0]),
            },
        );
        let stray = Record::from_rdata(
            name("a.u."),
            60,
            RData::Unknown {
                code: RecordType::NSEC,
                rdata: hickory_proto::rr::rdata::NULL::with(vec![0]),
            },
        );
        let mut m = reply(7, "www.t.", RecordType::A);
        m.insert_answers(vec![dname]);
        m.insert_name_servers(vec![soa(60, 60), nsec, stray]);
        let m = scrub(m, &query());
        assert_eq!(owners(m.answers()), ["t."]);
        assert_eq!(owners(m.name_servers()), ["t.", "a.t."]);
    }
}
