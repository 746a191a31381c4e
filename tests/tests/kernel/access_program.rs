//! The XDP program's ACL and rate limit through BPF_PROG_TEST_RUN (needs root), with the rules
//! written by the daemon's own code: what denied and limited queries get, and the REFUSED and
//! TC=1 answers byte by byte.

use std::net::{IpAddr, SocketAddr};

use dnsxdp::{
    access::acl::DenyAction,
    access::ratelimit::LimitAction,
    access::settings::Settings,
    access::{AccessPolicy, Tables as _, kernel::KernelTables},
};
use dnsxdp_common::{Counter, EVENT_DENIED, EVENT_LIMITED, QTYPE_A, QTYPE_AAAA, XdpSettings};
use dnsxdp_tests::testrun::{
    checksum::pseudo_header,
    frame::{FrameSpec, fragment_header, padding_header},
    parse::parse_frame,
    program::XdpCache,
    query::{Edns, FLAG_CD, FLAG_RD, Query},
    response::{a, aaaa, record, response},
    run::{Action, Run},
};
use hickory_proto::rr::RecordType;

const NAME: &str = "www.example.com.";
const SERVER_V4: &str = "198.18.1.1";
const SERVER_V6: &str = "fd00:1::1";

struct Fixture {
    x: XdpCache,
    tables: KernelTables,
}

impl Fixture {
    /// The program with A and AAAA answers for `NAME` cached and `settings`' access rules.
    fn new(settings: Settings) -> Fixture {
        Fixture::reporting(settings, XdpSettings::OFF)
    }

    /// The same, with the program reporting as `reports` say.
    fn reporting(settings: Settings, reports: XdpSettings) -> Fixture {
        let mut x = XdpCache::load_reporting(reports).unwrap_or_else(|e| panic!("{e:#}"));
        x.serve(server(SERVER_V4)).unwrap();
        x.serve(server(SERVER_V6)).unwrap();
        let answers = [
            (RecordType::A, a([198, 51, 100, 1])),
            (RecordType::AAAA, aaaa("2001:db8::1")),
        ];
        for (qtype, rdata) in answers {
            let answers = vec![record(NAME, 300, rdata).unwrap()];
            x.insert_response(&response(NAME, qtype, answers).unwrap())
                .unwrap();
        }
        let tables = KernelTables::take(x.ebpf()).unwrap();
        let mut f = Fixture { x, tables };
        f.apply(settings);
        f
    }

    fn apply(&mut self, settings: Settings) {
        let policy = AccessPolicy::from_settings(&settings).unwrap();
        self.tables
            .apply(&policy.entries(), &policy.config())
            .unwrap();
    }

    /// Runs `frame`; returns what became of it and the counters it moved.
    fn run(&self, frame: &[u8]) -> (Run, Vec<(Counter, u64)>) {
        let before = self.x.counters().unwrap();
        let run = self.x.run(frame).unwrap();
        (run, self.x.counters().unwrap().since(&before).nonzero())
    }

    /// Runs `frame`, which must get `action`, counted as `counter`.
    fn expect(&self, frame: &[u8], action: Action, counter: Counter) -> Run {
        let (run, counters) = self.run(frame);
        assert_eq!(run.action, action, "counters {counters:?}");
        assert_eq!(counters, [(Counter::Packets, 1), (counter, 1)]);
        run
    }
}

fn server(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 53)
}

/// Frames from `client` to the server of its family.
fn from(client: &str) -> FrameSpec {
    let client: IpAddr = client.parse().unwrap();
    let to = if client.is_ipv4() {
        SERVER_V4
    } else {
        SERVER_V6
    };
    FrameSpec::between(SocketAddr::new(client, 40000), server(to))
}

fn query(qtype: u16) -> Query {
    Query::new("Www.Example.com", qtype)
}

/// 198.18.1.0/25 and fd00:1::/121 may ask; 198.18.1.200 and fd00:1::c8 may not.
fn acl(action: DenyAction) -> Settings {
    Settings {
        allow: Some(vec!["198.18.1.0/25".into(), "fd00:1::/121".into()]),
        acl_action: Some(action),
        ..Default::default()
    }
}

fn limit(qps: u32, burst: u32, action: LimitAction) -> Settings {
    Settings {
        allow: Some(vec!["198.18.0.0/15".into()]),
        ratelimit_qps: Some(qps),
        ratelimit_burst: Some(burst),
        ratelimit_action: Some(action),
        ..Default::default()
    }
}

/// RFC 1071 sum of `bytes`, folded.
fn ones_sum(bytes: &[u8]) -> u16 {
    let mut sum: u64 = bytes
        .chunks(2)
        .map(|w| (u64::from(w[0]) << 8) | u64::from(*w.get(1).unwrap_or(&0)))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// `out` is the bare answer to `query`: addressing swapped, lengths and checksums right, the
/// header with QR, `tc` and `rcode` set, and the question as sent, nothing after it.
fn check_bare(query: &[u8], out: &[u8], rcode: u8, tc: bool) {
    let (q, r) = (parse_frame(query).unwrap(), parse_frame(out).unwrap());
    assert_eq!((r.dst_mac, r.src_mac), (q.src_mac, q.dst_mac));
    assert_eq!((r.src, r.dst, r.vlan, r.ttl), (q.dst, q.src, q.vlan, 64));
    assert_eq!(out.len(), r.udp + r.udp_len, "bytes after the datagram");
    let pseudo = pseudo_header(r.src.ip(), r.dst.ip(), r.udp_len);
    let udp = &out[r.udp..r.udp + r.udp_len];
    assert_eq!(ones_sum(&[&pseudo, udp].concat()), 0xffff, "UDP checksum");
    if r.src.is_ipv4() {
        assert_eq!(
            ones_sum(&out[r.l3..r.l3 + r.ip_hlen]),
            0xffff,
            "IPv4 checksum"
        );
        let total = u16::from_be_bytes([out[r.l3 + 2], out[r.l3 + 3]]);
        assert_eq!(usize::from(total), out.len() - r.l3);
        assert_eq!(
            &out[r.l3 + 20..r.udp],
            &query[q.l3 + 20..q.udp],
            "IPv4 options"
        );
    }
    let (qm, rm) = (&q.payload, &r.payload);
    let mut question = 12;
    while qm[question] != 0 {
        question += 1 + usize::from(qm[question]);
    }
    question += 1 + 4;
    assert_eq!(rm.len(), question, "records after the question");
    assert_eq!(&rm[12..], &qm[12..question], "question not as sent");
    assert_eq!(rm[..2], qm[..2], "ID");
    let flags = [
        0x80 | (qm[2] & 0x79) | if tc { 0x02 } else { 0 },
        if tc { 0x80 } else { 0 } | (qm[3] & 0x10) | rcode,
    ];
    assert_eq!(rm[2..4], flags, "flags");
    assert_eq!(rm[4..12], [0, 1, 0, 0, 0, 0, 0, 0], "counts");
}

#[test]
fn denied_clients_are_dropped_before_the_cache() {
    let f = Fixture::new(acl(DenyAction::Drop));
    let allowed = from("198.18.1.2").query(&query(QTYPE_A));
    f.expect(&allowed, Action::Tx, Counter::Hits);
    let allowed = from("fd00:1::2").query(&query(QTYPE_AAAA));
    f.expect(&allowed, Action::Tx, Counter::Hits);
    for client in ["198.18.1.200", "fd00:1::c8"] {
        let hit = from(client).query(&query(QTYPE_AAAA));
        f.expect(&hit, Action::Drop, Counter::DeniedDropped);
        let miss = from(client).query(&Query::new("nothere.example.com", QTYPE_A));
        f.expect(&miss, Action::Drop, Counter::DeniedDropped);
    }
}

#[test]
fn queries_from_loop_prone_ports_are_dropped_before_refused() {
    let f = Fixture::new(acl(DenyAction::Refuse));
    for port in [0, 7, 13, 17, 19, 37, 69, 123] {
        for client in ["198.18.1.200", "198.18.1.2", "fd00:1::c8"] {
            let mut spec = from(client);
            spec.client.set_port(port);
            f.expect(
                &spec.query(&query(QTYPE_A)),
                Action::Drop,
                Counter::DroppedSourcePort,
            );
        }
    }
    // The port after chargen is an ordinary client's.
    let mut spec = from("198.18.1.200");
    spec.client.set_port(20);
    f.expect(
        &spec.query(&query(QTYPE_A)),
        Action::Tx,
        Counter::DeniedRefused,
    );
}

#[test]
fn refusals_are_held_to_the_rate_limit() {
    let f = Fixture::new(Settings {
        ratelimit_qps: Some(1),
        ratelimit_burst: Some(2),
        ..acl(DenyAction::Refuse)
    });
    let frame = from("198.18.1.200").query(&query(QTYPE_A));
    for _ in 0..2 {
        f.expect(&frame, Action::Tx, Counter::DeniedRefused);
    }
    for _ in 0..3 {
        f.expect(&frame, Action::Drop, Counter::DeniedDropped);
    }
}

/// Frames the program only charges, never answers: IPv4 and IPv6 first fragments and IPv6
/// with a Destination Options header, each from its own client.
fn charge_only_frames() -> [(Vec<u8>, Counter); 3] {
    let mut frag4 = from("198.18.1.7");
    frag4.frag = 0x2000;
    let mut frag6 = from("fd00:1::7");
    frag6.ipv6_extensions = vec![fragment_header(0x0001)];
    let mut opts6 = from("fd00:1:100::7");
    opts6.ipv6_extensions = vec![padding_header(60)];
    let q = query(QTYPE_A);
    [
        (frag4.query(&q), Counter::PassFragment),
        (frag6.query(&q), Counter::PassFragment),
        (opts6.query(&q), Counter::PassExtensionHeaders),
    ]
}

#[test]
fn fragments_and_extension_headers_are_charged_and_never_slipped() {
    let mut s = limit(1, 2, LimitAction::Slip(1));
    s.allow = Some(vec!["198.18.0.0/15".into(), "fd00::/8".into()]);
    let f = Fixture::new(s);
    for (frame, passed) in charge_only_frames() {
        for _ in 0..2 {
            f.expect(&frame, Action::Pass, passed);
        }
        // Every limited query would slip, but a TC answer is made from a whole datagram only.
        for _ in 0..2 {
            f.expect(&frame, Action::Drop, Counter::LimitedDropped);
        }
    }
}

#[test]
fn denied_fragments_are_left_to_the_daemon_to_refuse() {
    let f = Fixture::new(Settings {
        ratelimit_qps: Some(1),
        ratelimit_burst: Some(1),
        allow: Some(vec!["192.0.2.0/24".into()]),
        acl_action: Some(DenyAction::Refuse),
        ..Default::default()
    });
    for (frame, passed) in charge_only_frames() {
        // Charged: the daemon, which refuses it, does not charge it again.
        f.expect(&frame, Action::Pass, passed);
        f.expect(&frame, Action::Drop, Counter::DeniedDropped);
    }
    let f = Fixture::new(acl(DenyAction::Drop));
    let mut denied = from("198.18.1.200");
    denied.frag = 0x2000;
    f.expect(
        &denied.query(&query(QTYPE_A)),
        Action::Drop,
        Counter::DeniedDropped,
    );
}

#[test]
fn denied_clients_are_refused_with_their_question() {
    let mut f = Fixture::new(acl(DenyAction::Refuse));
    let mut vlan_options = from("198.18.1.200");
    vlan_options.vlan = Some(7);
    vlan_options.ip_options = vec![1, 1, 1, 0];
    let mut odd = Query::new("a.example.com", QTYPE_A);
    odd.flags = [FLAG_RD, FLAG_CD];
    let frames = [
        from("198.18.1.200").query(&query(QTYPE_A)),
        from("198.18.1.200").query(&query(QTYPE_A).edns(Edns::new(1232).option(10, &[7; 8]))),
        // An even-length message, where the other three are odd.
        from("fd00:1::c8").query(&Query::new("ab.example.com", QTYPE_AAAA)),
        vlan_options.query(&odd),
    ];
    for frame in &frames {
        let run = f.expect(frame, Action::Tx, Counter::DeniedRefused);
        check_bare(frame, &run.data, 5, false);
    }
    // Nothing to answer: a response, and a question that does not parse.
    let mut response = query(QTYPE_A);
    response.flags[0] |= 0x80;
    let mut pointer = query(QTYPE_A);
    pointer.name = vec![0xc0, 12];
    for q in [response, pointer] {
        let frame = from("198.18.1.200").query(&q);
        f.expect(&frame, Action::Drop, Counter::DeniedDropped);
    }
    // Allowed clients are untouched, and a new rule takes effect at once.
    f.expect(
        &from("198.18.1.2").query(&query(QTYPE_A)),
        Action::Tx,
        Counter::Hits,
    );
    f.apply(Settings {
        allow: Some(vec!["198.18.1.200/32".into()]),
        ..Default::default()
    });
    f.expect(&frames[0], Action::Tx, Counter::Hits);
    f.expect(
        &from("198.18.1.2").query(&query(QTYPE_A)),
        Action::Drop,
        Counter::DeniedDropped,
    );
}

#[test]
fn buckets_are_per_prefix_and_exempt_prefixes_are_free() {
    let mut s = limit(1, 3, LimitAction::Drop);
    s.ratelimit_v4_prefix = Some(24);
    s.ratelimit_exempt = Some(vec!["198.18.1.9/32".into()]);
    let f = Fixture::new(s);
    let hit = |client: &str| from(client).query(&query(QTYPE_A));
    for client in ["198.18.1.2", "198.18.1.3", "198.18.1.2"] {
        f.expect(&hit(client), Action::Tx, Counter::Hits);
    }
    // The /24 has had its burst; the next /24 and the exempt address have not.
    f.expect(&hit("198.18.1.3"), Action::Drop, Counter::LimitedDropped);
    f.expect(&hit("198.18.1.4"), Action::Drop, Counter::LimitedDropped);
    f.expect(&hit("198.18.2.2"), Action::Tx, Counter::Hits);
    for _ in 0..5 {
        f.expect(&hit("198.18.1.9"), Action::Tx, Counter::Hits);
    }
    let limited: Vec<(String, u64)> = f
        .tables
        .buckets()
        .unwrap()
        .into_iter()
        .filter(|(_, b)| b.limited > 0)
        .map(|(k, b)| {
            let prefix = dnsxdp::access::acl::Cidr::from_key(k.addr, k.prefix_len);
            (prefix.to_string(), b.limited)
        })
        .collect();
    assert_eq!(limited, [("198.18.1.0/24".to_string(), 2)]);
}

#[test]
fn every_second_limited_query_slips_with_tc() {
    let f = Fixture::new(limit(1, 1, LimitAction::Slip(2)));
    let frame = from("198.18.1.2").query(&query(QTYPE_A).edns(Edns::new(1232)));
    f.expect(&frame, Action::Tx, Counter::Hits);
    for i in 1..=6 {
        let (run, counters) = f.run(&frame);
        if i % 2 == 0 {
            assert_eq!(run.action, Action::Tx, "limited query {i}");
            assert_eq!(
                counters,
                [(Counter::Packets, 1), (Counter::LimitedSlipped, 1)]
            );
            check_bare(&frame, &run.data, 0, true);
        } else {
            assert_eq!(run.action, Action::Drop, "limited query {i}");
            assert_eq!(
                counters,
                [(Counter::Packets, 1), (Counter::LimitedDropped, 1)]
            );
        }
    }
}

#[test]
fn stopped_queries_are_reported_a_few_a_second() {
    let reports = XdpSettings {
        security_per_sec: 3,
        ..XdpSettings::OFF
    };
    let mut f = Fixture::reporting(acl(DenyAction::Refuse), reports);
    for _ in 0..10 {
        f.expect(
            &from("198.18.1.200").query(&query(QTYPE_A)),
            Action::Tx,
            Counter::DeniedRefused,
        );
    }
    let events = f.x.events().unwrap();
    // Three, unless the test crossed a second of the program's clock: then up to six.
    assert!((3..=6).contains(&events.len()), "{} events", events.len());
    for ev in &events {
        assert_eq!(
            (ev.kind, ev.action),
            (EVENT_DENIED, Counter::DeniedRefused as u32)
        );
        // The client, although the frame was already turned into the answer to it.
        assert_eq!(ev.client[10..], [0xff, 0xff, 198, 18, 1, 200]);
        assert_eq!(ev.client_port, 40000);
    }

    let mut f = Fixture::reporting(limit(1, 1, LimitAction::Drop), reports);
    let frame = from("198.18.1.2").query(&query(QTYPE_A));
    f.expect(&frame, Action::Tx, Counter::Hits);
    f.expect(&frame, Action::Drop, Counter::LimitedDropped);
    let events = f.x.events().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EVENT_LIMITED);
    assert_eq!(events[0].client[10..], [0xff, 0xff, 198, 18, 1, 2]);

    // Off: nothing, however many.
    let mut f = Fixture::new(acl(DenyAction::Drop));
    for _ in 0..5 {
        f.expect(
            &from("198.18.1.200").query(&query(QTYPE_A)),
            Action::Drop,
            Counter::DeniedDropped,
        );
    }
    assert!(f.x.events().unwrap().is_empty());
}
