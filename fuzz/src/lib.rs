//! What the fuzz targets check, one function per target: each takes the fuzzer's bytes and
//! panics on a defect. The targets in `fuzz_targets/` call them under libFuzzer
//! (`cargo xtask fuzz`); `tests/corpus.rs` runs every kept input and reproducer through them.

pub mod xdp;

use dnsxdp::{
    config::Settings,
    dns::answer::Answer,
    dns::query::{Parsed, parse},
    dns::reply::{Transport, normalized, render},
    dns::ttl::TtlPolicy,
    dns::wire_hit,
    ops::control::Request,
    upstream::check::{accept, scrub},
};
use dnsxdp_common::{
    MAX_RECORDS_LEN, checksum::sum_bytes, entry::build_entry, name::parse_question,
};
use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RecordType},
    serialize::binary::BinDecodable as _,
};

/// A target's checks: panics on a defect.
pub type Check = fn(&[u8]);

/// The targets, by name: what `cargo xtask fuzz` runs and the corpus test replays.
pub const TARGETS: [(&str, Check); 6] = [
    ("client_query", client_query),
    ("build_entry", entry),
    ("upstream_reply", upstream_reply),
    ("config", config),
    ("control", control),
    ("xdp", xdp::frame),
];

/// A client's message: the daemon parses it, and whatever it sends back is a well-formed
/// reply to it, with its ID, never a query. What the wire path reads of it, the full parse
/// reads the same way.
pub fn client_query(data: &[u8]) {
    if let Some(w) = wire_hit::read(data) {
        let Parsed::Query(q) = parse(data) else {
            panic!("the wire path reads what the full parse refuses");
        };
        let name = Name::from_bytes(w.question.wire_name()).expect("a name that parses");
        assert_eq!(name.to_string(), q.lower_name().to_string());
        assert_eq!(w.question.qtype, u16::from(q.query.query_type()));
        assert_eq!(w.question.dnssec_ok, q.dnssec_ok());
        assert!(q.is_kernel_question() && q.edns.is_none_or(|e| e.version == 0));
    }
    match parse(data) {
        Parsed::Query(q) => {
            // A reply from a cached answer and one from an empty error answer.
            let answer = Answer::error(hickory_proto::op::ResponseCode::ServFail);
            for transport in [Transport::Udp, Transport::Tcp] {
                let reply = render(&q, &answer, 0, transport);
                let m = Message::from_vec(&reply).expect("a reply that parses");
                assert_eq!(m.id(), q.id);
                assert_eq!(m.queries(), std::slice::from_ref(&q.query));
                assert!(m.header().message_type() == hickory_proto::op::MessageType::Response);
            }
        }
        Parsed::Reply(reply) => {
            assert!(reply.len() >= 12, "a reply shorter than a header");
            assert_eq!(reply[..2], data[..2], "the ID is not echoed");
            assert!(reply[2] & 0x80 != 0, "QR not set");
        }
        Parsed::Drop => {}
    }
}

/// Any response: `build_entry` takes it or says why not, and an entry it makes is one the
/// XDP program can serve within its bounds.
pub fn entry(data: &[u8]) {
    let Ok((key, e)) = build_entry(data, 1_000, 86_400) else {
        return;
    };
    let len = e.len as usize;
    assert!(len <= MAX_RECORDS_LEN);
    let records = e.records();
    assert_eq!(records.len(), len, "records past the entry");
    assert!(e.tier().is_some(), "an entry no tier holds");
    assert_eq!(
        e.csum,
        sum_bytes(0, records),
        "the sum is not of the records"
    );
    for &off in &e.ttl_offsets[..e.ttl_count as usize] {
        let off = off as usize;
        assert!(off + 4 <= len, "a TTL outside the records");
        assert_eq!(records[off..off + 4], [0; 4], "a TTL left in");
    }
    let question = parse_question(data).expect("an entry from a response without a question");
    assert_eq!(question.key, key);
    assert!(e.ttl_at(1_000).is_some(), "an entry born expired");
}

/// The question every upstream reply below answers.
fn upstream_question() -> Query {
    Query::query(
        Name::from_ascii("www.example.test.").unwrap(),
        RecordType::A,
    )
}

/// An upstream's reply to a query with the ID in its first two bytes: what the checks accept
/// is scrubbed, cached, and rendered into well-formed replies, and the kernel's copy of it
/// is one `build_entry` takes or refuses without fault.
pub fn upstream_reply(data: &[u8]) {
    let Some(id) = data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return;
    };
    let question = upstream_question();
    let Some(msg) = accept(data, id, &question) else {
        return;
    };
    let msg = scrub(msg, &question);
    let answer = Answer::from_upstream(msg, 0, &TtlPolicy::default());
    let q = match parse(&client_query_bytes()) {
        Parsed::Query(q) => q,
        _ => unreachable!("the client query parses"),
    };
    for transport in [Transport::Udp, Transport::Tcp] {
        let reply = render(&q, &answer, 0, transport);
        let m = Message::from_vec(&reply).expect("a reply that parses");
        assert_eq!(m.id(), q.id);
        if transport == Transport::Udp {
            assert!(
                reply.len() <= 512,
                "a UDP reply larger than the client takes"
            );
        }
    }
    if let Some(wire) = normalized(&q, &answer, 0) {
        let _ = build_entry(&wire, answer.aged_at(0), 86_400);
    }
}

/// A plain client query for `upstream_question`, without EDNS.
fn client_query_bytes() -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(7).set_recursion_desired(true);
    m.add_query(upstream_question());
    m.to_vec().unwrap()
}

/// A config file: parsed, or refused with one line that names what is wrong.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Settings::from_toml(text) {
        assert!(!e.contains('\n'), "a multi-line error: {e}");
        assert!(!e.is_empty());
    }
}

/// A control request line: parsed, and its names checked, without fault.
pub fn control(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(request) = serde_json::from_str::<Request>(text) {
        let _ = serde_json::to_string(&request).expect("a request serializes back");
    }
}
