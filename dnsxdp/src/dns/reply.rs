//! Wire replies: to a client, and the client-independent form the kernel cache is built from.

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, Record, RecordType, rdata::opt::EdnsOption},
};
use tracing::warn;

use crate::dns::{
    answer::{Answer, Sections},
    query::ClientQuery,
};

/// UDP payload advertised to clients and upstreams (the DNS flag day value).
pub const EDNS_UDP_SIZE: u16 = dnsxdp_common::EDNS_UDP_SIZE;
const PLAIN_UDP_SIZE: u16 = dnsxdp_common::PLAIN_UDP_SIZE;
/// The EDNS option code of an Extended DNS Error, and its info codes for a stale answer and a
/// blocked name (RFC 8914).
const EDE: u16 = 15;
const EDE_STALE_ANSWER: u16 = 3;
const EDE_BLOCKED: u16 = 15;

/// The Extended DNS Error an answer carries, if any.
fn extended_error(answer: &Answer) -> Option<EdnsOption> {
    let info = match () {
        _ if answer.stale => EDE_STALE_ANSWER,
        _ if answer.blocked_by.is_some() => EDE_BLOCKED,
        _ => return None,
    };
    Some(EdnsOption::Unknown(EDE, info.to_be_bytes().to_vec()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    /// DNS over TLS (RFC 7858).
    Tls,
    /// DNS over HTTPS (RFC 8484).
    Https,
    /// DNS over QUIC (RFC 9250).
    Quic,
}

/// The largest reply `q` can take over `transport`.
fn size_limit(q: &ClientQuery, transport: Transport) -> usize {
    match (transport, q.edns) {
        (Transport::Tcp | Transport::Tls | Transport::Https | Transport::Quic, _) => {
            u16::MAX as usize
        }
        (Transport::Udp, None) => PLAIN_UDP_SIZE as usize,
        (Transport::Udp, Some(e)) => e.max_payload.clamp(PLAIN_UDP_SIZE, EDNS_UDP_SIZE) as usize,
    }
}

/// The reply to `q` carrying `answer` at `now_ns`: the client's ID, question (as sent), RD and
/// CD; RA set; AA for local records; an OPT record only if the client sent one, saying so if
/// the answer is stale or blocked.
/// Without DO, the records are the `minimal` ones; with it, all the upstream sent that passed
/// its checks, since proofs of a wildcard or of denial are in the other sections.
/// Too large for the client, it is sent truncated, without records, so the client retries over
/// TCP.
pub fn render(q: &ClientQuery, answer: &Answer, now_ns: u64, transport: Transport) -> Vec<u8> {
    let mut msg = Message::new();
    msg.set_id(q.id)
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(q.recursion_desired)
        .set_checking_disabled(q.checking_disabled)
        .set_recursion_available(true)
        .set_authoritative(answer.local)
        // RFC 6840 §5.8: only for a client that asked for DNSSEC, as the XDP program does
        // from the entry `normalized` gives it.
        .set_authentic_data(answer.authentic_data && q.edns.is_some_and(|e| e.dnssec_ok))
        .set_response_code(answer.rcode)
        .add_query(q.query.clone());
    if let Some(client) = q.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP_SIZE)
            .set_dnssec_ok(client.dnssec_ok);
        if let Some(ede) = extended_error(answer) {
            edns.options_mut().insert(ede);
        }
        msg.set_edns(edns);
    }
    let mut header_only = msg.clone();
    let mut sections = answer.sections_at(now_ns);
    if !q.dnssec_ok() {
        sections = minimal(sections, q, answer.rcode);
    }
    let qname = q.query.name();
    msg.insert_answers(owned_as(sections.answers, qname));
    msg.insert_name_servers(owned_as(sections.authority, qname));
    msg.insert_additionals(owned_as(sections.additional, qname));
    match msg.to_vec() {
        Ok(wire) if wire.len() <= size_limit(q, transport) => wire,
        Ok(_) => encode(header_only.set_truncated(true)),
        Err(e) => {
            warn!(%e, name = %q.query.name(), "cannot encode the answer");
            encode(header_only.set_response_code(ResponseCode::ServFail))
        }
    }
}

/// Encodes a message that holds only a header, question and OPT record, which always encodes.
fn encode(msg: &Message) -> Vec<u8> {
    msg.to_vec().unwrap_or_default()
}

/// The reply to `q` as every client with its DO bit and no EDNS options would get it, for
/// the kernel cache: ID 0, RD set, CD clear, the question lower-cased, the records `render`
/// sends, and with DO an OPT record that says so and the AD bit. A blocked answer's OPT record
/// carries its Extended DNS Error, with or without DO. `None` when there are additional
/// records, which kernel entries do not hold.
pub fn normalized(q: &ClientQuery, answer: &Answer, now_ns: u64) -> Option<Vec<u8>> {
    let mut sections = answer.sections_at(now_ns);
    if !q.dnssec_ok() {
        sections = minimal(sections, q, answer.rcode);
    }
    if !sections.additional.is_empty() {
        return None;
    }
    let mut query = Query::query(q.lower_name(), q.query.query_type());
    query.set_query_class(q.query.query_class());
    let mut msg = Message::new();
    msg.set_id(0)
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .set_recursion_available(true)
        .set_authoritative(answer.local)
        .set_authentic_data(answer.authentic_data && q.dnssec_ok())
        .set_response_code(answer.rcode)
        .add_query(query);
    let ede = extended_error(answer);
    if q.dnssec_ok() || ede.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP_SIZE)
            .set_dnssec_ok(q.dnssec_ok());
        if let Some(ede) = ede {
            edns.options_mut().insert(ede);
        }
        msg.set_edns(edns);
    }
    msg.insert_answers(owned_as(sections.answers, &q.lower_name()));
    msg.insert_name_servers(owned_as(sections.authority, &q.lower_name()));
    msg.to_vec().ok()
}

/// The records a client without DO gets, as with Unbound's `minimal-responses`: the answer
/// section, and for NXDOMAIN and NODATA the SOA that says how long the name is known not to
/// exist. Glue and the zone's NS records are left out; the kernel cache carries exactly these.
fn minimal(sections: Sections, q: &ClientQuery, rcode: ResponseCode) -> Sections {
    let qtype = q.query.query_type();
    let negative = rcode == ResponseCode::NXDomain
        || !sections.answers.iter().any(|r| r.record_type() == qtype);
    let mut authority = sections.authority;
    authority.retain(|r| negative && r.record_type() == RecordType::SOA);
    Sections {
        answers: sections.answers,
        authority,
        additional: Vec::new(),
    }
}

/// Records owned by the question name written exactly as `qname`: the cached copy has the
/// case of whoever asked first, and name compression only points at an identical spelling.
fn owned_as(mut records: Vec<Record>, qname: &Name) -> Vec<Record> {
    for r in &mut records {
        // Name equality is case-insensitive.
        if r.name() == qname {
            r.set_name(qname.clone());
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use hickory_proto::{
        op::{Edns, Message},
        rr::{RData, RecordType, rdata::NS},
    };

    use super::*;
    use crate::{
        dns::answer::tests::{a, response, soa},
        dns::query::{Parsed, parse},
    };

    fn client(edns: Option<u16>, dnssec_ok: bool) -> ClientQuery {
        client_of(&packet(edns, dnssec_ok))
    }

    fn client_of(packet: &[u8]) -> ClientQuery {
        let Parsed::Query(q) = parse(packet) else {
            panic!()
        };
        q
    }

    /// A query for `WwW.t.` A with CD.
    fn packet(edns: Option<u16>, dnssec_ok: bool) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(0x4242)
            .set_recursion_desired(true)
            .set_checking_disabled(true)
            .add_query(Query::query(
                Name::from_ascii("WwW.t.").unwrap(),
                RecordType::A,
            ));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size).set_dnssec_ok(dnssec_ok);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn many_a(n: u8) -> Answer {
        let records: Vec<Record> = (0..n).map(|i| a("www.t.", 300, i)).collect();
        Answer::from_upstream(
            response(ResponseCode::NoError, records, vec![]),
            0,
            &crate::dns::ttl::TtlPolicy::default(),
        )
    }

    #[test]
    fn reply_mirrors_the_client() {
        let q = client(Some(4096), true);
        let wire = render(&q, &many_a(2), 0, Transport::Udp);
        let m = Message::from_vec(&wire).unwrap();
        assert_eq!(m.id(), 0x4242);
        assert_eq!(m.message_type(), MessageType::Response);
        assert!(m.recursion_desired() && m.recursion_available() && m.checking_disabled());
        assert_eq!(m.queries()[0].name().to_ascii(), "WwW.t.");
        assert_eq!(m.answers().len(), 2);
        let edns = m.extensions().as_ref().unwrap();
        assert_eq!(edns.max_payload(), EDNS_UDP_SIZE);
        assert!(edns.flags().dnssec_ok);
        let plain = Message::from_vec(&render(&client(None, false), &many_a(2), 0, Transport::Udp))
            .unwrap();
        assert!(plain.extensions().is_none());
    }

    #[test]
    fn ad_is_set_only_for_clients_that_set_do() {
        let mut authentic = many_a(1);
        authentic.authentic_data = true;
        let ad = |q: &ClientQuery, answer: &Answer| {
            Message::from_vec(&render(q, answer, 0, Transport::Udp))
                .unwrap()
                .authentic_data()
        };
        assert!(ad(&client(Some(1232), true), &authentic));
        assert!(!ad(&client(Some(1232), false), &authentic));
        assert!(!ad(&client(None, false), &authentic));
        assert!(!ad(&client(Some(1232), true), &many_a(1)));
    }

    #[test]
    fn owners_take_the_client_spelling_and_compress() {
        let wire = render(&client(None, false), &many_a(2), 0, Transport::Udp);
        let m = Message::from_vec(&wire).unwrap();
        assert!(m.answers().iter().all(|r| r.name().to_ascii() == "WwW.t."));
        // Both owners are pointers to the question at offset 12.
        assert_eq!(wire.windows(2).filter(|w| w == &[0xc0, 12]).count(), 2);
        let norm = normalized(&client(None, false), &many_a(1), 0).unwrap();
        assert_eq!(
            Message::from_vec(&norm).unwrap().answers()[0]
                .name()
                .to_ascii(),
            "www.t."
        );
    }

    #[test]
    fn clients_without_do_get_minimal_responses() {
        let policy = crate::dns::ttl::TtlPolicy::default();
        let ns = Record::from_rdata(
            Name::from_ascii("t.").unwrap(),
            300,
            RData::NS(NS(Name::from_ascii("ns.t.").unwrap())),
        );
        let sections = |q: &ClientQuery, answer: &Answer| {
            let m = Message::from_vec(&render(q, answer, 0, Transport::Udp)).unwrap();
            let types = |rs: &[Record]| rs.iter().map(Record::record_type).collect::<Vec<_>>();
            (types(m.name_servers()), types(m.additionals()))
        };
        let mut upstream = response(
            ResponseCode::NoError,
            vec![a("www.t.", 300, 1)],
            vec![ns.clone()],
        );
        upstream.add_additional(a("ns.t.", 300, 2));
        let positive = Answer::from_upstream(upstream, 0, &policy);
        assert_eq!(sections(&client(None, false), &positive), (vec![], vec![]));
        assert_eq!(
            sections(&client(Some(1232), true), &positive),
            (vec![RecordType::NS], vec![RecordType::A])
        );
        let negative = Answer::from_upstream(
            response(ResponseCode::NXDomain, vec![], vec![soa(60, 60), ns]),
            0,
            &policy,
        );
        let (authority, additional) = sections(&client(Some(1232), false), &negative);
        assert_eq!((authority, additional), (vec![RecordType::SOA], vec![]));
    }

    #[test]
    fn udp_replies_beyond_the_client_limit_are_truncated() {
        // 40 A records: 12 + 10 + 40 * 16 bytes, over 512 but under 1232.
        let big = many_a(40);
        let m = Message::from_vec(&render(&client(None, false), &big, 0, Transport::Udp)).unwrap();
        assert!(m.truncated());
        assert!(m.answers().is_empty());
        assert_eq!(m.queries().len(), 1);
        let m = Message::from_vec(&render(&client(Some(1232), false), &big, 0, Transport::Udp))
            .unwrap();
        assert!(!m.truncated());
        assert_eq!(m.answers().len(), 40);
        // A client claiming less than 512 still gets 512.
        let m = Message::from_vec(&render(
            &client(Some(100), false),
            &many_a(20),
            0,
            Transport::Udp,
        ))
        .unwrap();
        assert!(!m.truncated());
        let m = Message::from_vec(&render(&client(None, false), &big, 0, Transport::Tcp)).unwrap();
        assert_eq!(m.answers().len(), 40);
    }

    #[test]
    fn stale_answers_say_so_to_edns_clients() {
        let stale = many_a(1).as_stale(0);
        let m = Message::from_vec(&render(
            &client(Some(1232), false),
            &stale,
            0,
            Transport::Udp,
        ))
        .unwrap();
        assert_eq!(m.answers()[0].ttl(), crate::dns::answer::STALE_TTL);
        let ede = m.extensions().as_ref().unwrap().option(EDE.into());
        assert_eq!(ede, Some(&EdnsOption::Unknown(EDE, vec![0, 3])));
        let fresh = Message::from_vec(&render(
            &client(Some(1232), false),
            &many_a(1),
            0,
            Transport::Udp,
        ))
        .unwrap();
        assert!(
            fresh
                .extensions()
                .as_ref()
                .unwrap()
                .option(EDE.into())
                .is_none()
        );
    }

    /// A blocked answer says so with EDE 15 to EDNS clients, in the rendered reply and in the
    /// kernel-entry form alike, byte for byte.
    #[test]
    fn blocked_answers_carry_extended_error_15_in_both_forms() {
        let blocked = many_a(1).blocked(0, "t");
        for (edns, dnssec_ok) in [(Some(1232), false), (Some(1232), true), (None, false)] {
            let packet = packet(edns, dnssec_ok);
            let q = client_of(&packet);
            let rendered = render(&q, &blocked, 0, Transport::Udp);
            let m = Message::from_vec(&rendered).unwrap();
            let ede = m.extensions().as_ref().map(|e| e.option(EDE.into()));
            let expected = Some(EdnsOption::Unknown(EDE, vec![0, 15]));
            assert_eq!(ede.flatten(), expected.as_ref().filter(|_| edns.is_some()));
            let (_, entry) = dnsxdp_common::entry::build_entry(
                &normalized(&q, &blocked, 0).unwrap(),
                blocked.aged_at(0),
                86400,
            )
            .unwrap();
            assert_eq!(entry.blocked, 1);
            let wire = crate::dns::wire_hit::read(&packet).unwrap();
            let from_wire = crate::dns::wire_hit::WireAnswer::of(&entry)
                .reply(&packet, &wire, 0)
                .unwrap();
            assert_eq!(from_wire, rendered, "{edns:?} DO {dnssec_ok}");
        }
        let m = Message::from_vec(&render(
            &client(Some(1232), false),
            &many_a(1),
            0,
            Transport::Udp,
        ))
        .unwrap();
        assert!(
            m.extensions()
                .as_ref()
                .unwrap()
                .option(EDE.into())
                .is_none()
        );
    }

    #[test]
    fn errors_carry_no_records() {
        let m = Message::from_vec(&render(
            &client(None, false),
            &Answer::error(ResponseCode::ServFail),
            0,
            Transport::Udp,
        ))
        .unwrap();
        assert_eq!(m.response_code(), ResponseCode::ServFail);
        assert_eq!(m.id(), 0x4242);
        assert_eq!(m.queries().len(), 1);
    }

    #[test]
    fn normalized_form_is_client_independent_and_kernel_cacheable() {
        let ans = Answer::from_upstream(
            response(
                ResponseCode::NoError,
                vec![a("www.t.", 300, 1)],
                vec![soa(60, 60)],
            ),
            0,
            &crate::dns::ttl::TtlPolicy::default(),
        );
        let one = normalized(&client(Some(4096), false), &ans, 0).unwrap();
        let two = normalized(&client(None, false), &ans, 0).unwrap();
        assert_eq!(one, two);
        assert_eq!(&one[..4], &[0, 0, 0x81, 0x80]);
        let (key, entry) = dnsxdp_common::entry::build_entry(&one, ans.aged_at(0), 86400).unwrap();
        assert_eq!(key.wire_name(), b"\x03www\x01t\x00");
        assert_eq!((key.dnssec_ok, entry.ancount, entry.nscount), (false, 1, 0));
        assert_eq!(entry.remaining_secs(0), Some(300));
        // With DO: every section, and an OPT record that says DO, for an entry of its own.
        let signed = normalized(&client(Some(1232), true), &ans, 0).unwrap();
        let m = Message::from_vec(&signed).unwrap();
        assert_eq!((m.answer_count(), m.name_server_count()), (1, 1));
        assert!(m.extensions().as_ref().is_some_and(|e| e.flags().dnssec_ok));
    }

    #[test]
    fn negative_answers_keep_only_their_soa_for_the_kernel() {
        let policy = crate::dns::ttl::TtlPolicy::default();
        for rcode in [ResponseCode::NXDomain, ResponseCode::NoError] {
            let ans =
                Answer::from_upstream(response(rcode, vec![], vec![soa(600, 60)]), 0, &policy);
            let wire = normalized(&client(None, false), &ans, 0).unwrap();
            let m = Message::from_vec(&wire).unwrap();
            assert_eq!(m.response_code(), rcode);
            assert_eq!((m.answer_count(), m.name_server_count()), (0, 1));
            let (_, entry) =
                dnsxdp_common::entry::build_entry(&wire, ans.aged_at(0), 86400).unwrap();
            assert_eq!((entry.rcode, entry.nscount), (u16::from(rcode) as u8, 1));
            assert_eq!(entry.remaining_secs(0), Some(60));
        }
    }
}
