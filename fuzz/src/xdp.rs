//! The XDP program against the daemon, frame by frame: the real object through
//! `BPF_PROG_TEST_RUN` (needs root), its cache filled the way the daemon fills it. A frame it
//! passes must come back untouched; one it answers must be a well-formed reply, addressed back
//! and summed right, and the very answer the daemon gives the same query, TTLs aside.

use std::{cell::RefCell, sync::Arc};

use dnsxdp::{
    dns::answer::Answer,
    dns::query::{ClientQuery, Parsed, parse},
    dns::reply::{Transport, normalized, render},
    dns::ttl::TtlPolicy,
    upstream::check::scrub,
};
use dnsxdp_common::{QTYPE_A, QTYPE_AAAA, QTYPE_MX, entry::build_entry};
use dnsxdp_tests::client::without_ttls;
use dnsxdp_tests::testrun::{
    checksum::{internet_checksum, pseudo_header},
    frame::FrameSpec,
    parse::{ParsedFrame, parse_frame},
    program::XdpCache,
    query::{Edns, Query},
    response::monotonic_ns,
    run::Action,
};
use hickory_proto::{
    op::{Message, MessageType, OpCode, Query as HQuery, ResponseCode},
    rr::{Name, RData, Record, RecordType, rdata},
};

/// The loaded program and the answers it holds, as the daemon holds them.
struct Lab {
    x: XdpCache,
    cached: Vec<(ClientQuery, Arc<Answer>)>,
    specs: [FrameSpec; 2],
}

/// The names the cache holds, and their types: one per selector value.
const NAMES: [(&str, u16); 5] = [
    ("www.example.com.", QTYPE_A),
    ("www.example.com.", QTYPE_AAAA),
    ("alias.example.com.", QTYPE_A),
    ("gone.example.com.", QTYPE_A),
    ("mail.example.com.", QTYPE_MX),
];

thread_local! {
    /// Loaded once per thread: libFuzzer runs every input on one.
    static LAB: RefCell<Option<Lab>> = const { RefCell::new(None) };
}

impl Lab {
    fn new() -> Lab {
        let mut x = XdpCache::load().expect("loading the XDP program (as root)");
        let specs = [FrameSpec::v4(), FrameSpec::v6()];
        for spec in &specs {
            x.serve(spec.server).unwrap();
        }
        let now = monotonic_ns();
        let cached = NAMES
            .iter()
            .map(|&(name, qtype)| {
                let query = HQuery::query(Name::from_ascii(name).unwrap(), qtype.into());
                let msg = scrub(upstream_answer(&query), &query);
                let answer = Arc::new(Answer::from_upstream(msg, now, &TtlPolicy::default()));
                let q = ClientQuery::plain(query);
                // As the resolver fills the kernel cache.
                let wire = normalized(&q, &answer, now).expect("a kernel-cacheable answer");
                let (key, entry) = build_entry(&wire, answer.aged_at(now), 86_400).unwrap();
                x.insert(&key, &entry).unwrap();
                (q, answer)
            })
            .collect();
        Lab { x, cached, specs }
    }
}

/// What an upstream says to `query`: records for it, through a CNAME for `alias`, an MX for
/// `mail`, or NXDOMAIN with the zone's SOA for `gone`.
fn upstream_answer(query: &HQuery) -> Message {
    let mut m = Message::new();
    m.set_id(1)
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .set_recursion_available(true)
        .add_query(query.clone());
    let name = query.name().clone();
    let ttl = 86_400;
    let zone = Name::from_ascii("example.com.").unwrap();
    let www = Name::from_ascii("www.example.com.").unwrap();
    let a = |owner: &Name, last| {
        Record::from_rdata(
            owner.clone(),
            ttl,
            RData::A(rdata::A([198, 51, 100, last].into())),
        )
    };
    match (name.to_ascii().as_str(), query.query_type()) {
        ("www.example.com.", RecordType::A) => {
            m.add_answers([a(&name, 1), a(&name, 2)]);
        }
        ("www.example.com.", _) => {
            let ip = "2001:db8::1".parse().unwrap();
            m.add_answer(Record::from_rdata(name, ttl, RData::AAAA(rdata::AAAA(ip))));
        }
        ("mail.example.com.", RecordType::MX) => {
            let mx = rdata::MX::new(10, www.clone());
            m.add_answer(Record::from_rdata(name, ttl, RData::MX(mx)));
        }
        ("alias.example.com.", _) => {
            m.add_answer(Record::from_rdata(
                name,
                ttl,
                RData::CNAME(rdata::CNAME(www.clone())),
            ));
            m.add_answer(a(&www, 3));
        }
        _ => {
            let soa = rdata::SOA::new(zone.clone(), zone.clone(), 1, 3600, 600, 86_400, 3600);
            m.set_response_code(ResponseCode::NXDomain);
            m.add_name_server(Record::from_rdata(zone, 3600, RData::SOA(soa)));
        }
    }
    m
}

/// `data[0]` picks the name, family, VLAN tag and EDNS of a query frame for a cached answer;
/// the rest rewrites it: three bytes at a time, a position and the byte to put there, and a
/// last one or two bytes that cut the frame short or lengthen it.
pub fn frame(data: &[u8]) {
    let Some((&pick, edits)) = data.split_first() else {
        return;
    };
    LAB.with_borrow_mut(|lab| run(lab.get_or_insert_with(Lab::new), pick, edits));
}

/// Runs one frame and checks what became of it; returns that.
fn run(lab: &mut Lab, pick: u8, edits: &[u8]) -> Action {
    let (name, qtype) = NAMES[pick as usize % NAMES.len()];
    let mut spec = lab.specs[(pick >> 2) as usize & 1].clone();
    if pick & 0x08 != 0 {
        spec.vlan = Some(0x0123);
    }
    let mut query = Query::new(name, qtype);
    if pick & 0x10 != 0 {
        let mut edns = Edns::new(1232);
        if pick & 0x20 != 0 {
            edns = edns.option(10, &[7; 8]);
        }
        query = query.edns(edns);
    }
    let mut frame = spec.query(&query);
    let mut chunks = edits.chunks_exact(3);
    for c in &mut chunks {
        let at = u16::from_be_bytes([c[0], c[1]]) as usize % frame.len();
        frame[at] = c[2];
    }
    match *chunks.remainder() {
        [cut] => frame.truncate(frame.len().saturating_sub(cut as usize % 64).max(14)),
        [grow, byte] => frame.extend(std::iter::repeat_n(byte, grow as usize % 64)),
        _ => {}
    }
    let run = lab.x.run(&frame).expect("BPF_PROG_TEST_RUN");
    match run.action {
        Action::Pass => assert_eq!(run.data, frame, "a passed frame was changed"),
        Action::Drop => {}
        Action::Tx => check_answer(lab, &frame, &run.data),
        other => panic!("action {other:?}"),
    }
    run.action
}

/// `out`, the program's answer to `frame`, is what the daemon would send.
fn check_answer(lab: &Lab, frame: &[u8], out: &[u8]) {
    let q_frame = parse_frame(frame).expect("an answered frame that does not parse");
    let r = parse_frame(out).expect("an answer that does not parse");
    assert_eq!((r.dst_mac, r.src_mac), (q_frame.src_mac, q_frame.dst_mac));
    assert_eq!((r.src, r.dst), (q_frame.dst, q_frame.src));
    assert_eq!((r.vlan, r.outer_vlan), (q_frame.vlan, q_frame.outer_vlan));
    assert_sums(out, &r);
    let q = match parse(&q_frame.payload) {
        Parsed::Query(q) => q,
        _ => panic!("answered what the daemon does not take for a query"),
    };
    let answer = lab
        .cached
        .iter()
        .find(|(c, _)| {
            c.lower_name() == q.lower_name() && c.query.query_type() == q.query.query_type()
        })
        .map(|(_, a)| a.clone())
        .expect("answered a question that is not cached");
    let expected = render(&q, &answer, monotonic_ns(), Transport::Udp);
    let (got, want) = (ttl_free(&r.payload), ttl_free(&expected));
    assert_eq!(got, want, "the program's answer is not the daemon's");
}

/// The IPv4 header and UDP checksums of an answer check out.
fn assert_sums(out: &[u8], r: &ParsedFrame) {
    if r.src.is_ipv4() {
        assert_eq!(
            internet_checksum(&[&out[r.l3..r.l3 + r.ip_hlen]]),
            0,
            "IPv4 header checksum"
        );
    }
    let udp = &out[r.udp..r.udp + r.udp_len];
    let pseudo = pseudo_header(r.src.ip(), r.dst.ip(), r.udp_len);
    assert_eq!(internet_checksum(&[&pseudo, udp]), 0, "UDP checksum");
}

/// A message with every TTL zero: the layers count lifetimes down each its own way.
fn ttl_free(wire: &[u8]) -> Message {
    without_ttls(Message::from_vec(wire).expect("a message that parses"))
}
#[cfg(test)]
mod tests {
    use super::*;

    /// Every unedited pick is answered, and so compared with the daemon: the check is live.
    #[test]
    fn every_unedited_query_is_answered_and_matches_the_daemon() {
        let mut lab = Lab::new();
        for pick in 0..64 {
            assert_eq!(run(&mut lab, pick, &[]), Action::Tx, "pick {pick:#x}");
        }
    }
}
