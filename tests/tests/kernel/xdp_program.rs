//! The XDP program run through BPF_PROG_TEST_RUN (needs root): answers, checksums, and the
//! reason every other packet passes untouched.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    ops::RangeInclusive,
    time::Duration,
};

use dnsxdp_common::{
    CacheEntry, CacheKey, Counter, EVENT_HIT, EVENT_PREFETCH, EXPIRY_MARGIN_NS, MAX_CACHED_NAME,
    QTYPE_A, QTYPE_AAAA, RCODE_NXDOMAIN, SERVED_ANSWER, SERVED_BEHIND_VLAN, XdpSettings,
    checksum::sum_bytes,
    entry::build_entry,
    name::{QuestionKey, parse_question},
    tier::{LARGE_DATA, MEDIUM_DATA, SMALL_DATA, Tier},
};
use dnsxdp_tests::{
    client::uninterrupted,
    netns::{SERVER_IFACE, SERVER_V4, SERVER_V6, Topology},
    testrun::{
        checksum::{internet_checksum, pseudo_header},
        counters::Counters,
        frame::{ETH_HLEN, FrameSpec, fragment_header, padding_header},
        maps::update_batch,
        parse::{ParsedFrame, parse_frame},
        program::XdpCache,
        query::{Edns, Query, wire_name},
        response::{a, aaaa, big_response, cname, entry_from, monotonic_ns, record, response},
        run::{Action, Run},
    },
};
use hickory_proto::{
    op::{Message, MessageType, OpCode, ResponseCode},
    rr::{
        DNSClass, Name, RData, Record, RecordType,
        rdata::{
            HTTPS, MX, NULL, SOA, SVCB,
            opt::{EdnsCode, EdnsOption},
            svcb::{Alpn, SvcParamKey, SvcParamValue},
        },
    },
};

const NAME: &str = "www.example.com.";
const QTYPE_MX: u16 = 15;
const OPT_COOKIE: u16 = 10;
const OPT_PADDING: u16 = 12;
const NS: u64 = 1_000_000_000;

/// An upstream's answer, cached as the daemon caches it.
pub(crate) struct Cached {
    pub(crate) response: Vec<u8>,
    pub(crate) entry: CacheEntry,
}

/// An upstream's answer to `name`/A: one A record.
pub(crate) fn a_response(name: &str, ttl: u32, ip: [u8; 4]) -> Vec<u8> {
    response(name, RecordType::A, vec![record(name, ttl, a(ip)).unwrap()]).unwrap()
}

/// A loaded program answering on the default IPv4 and IPv6 servers.
pub(crate) struct Fixture {
    pub(crate) x: XdpCache,
    pub(crate) v4: FrameSpec,
    pub(crate) v6: FrameSpec,
}

/// What one run did.
pub(crate) struct Outcome {
    run: Run,
    counters: Counters,
    /// CLOCK_MONOTONIC just before and after the run.
    before_ns: u64,
    after_ns: u64,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        Self::with(XdpCache::load().unwrap_or_else(|e| panic!("{e:#}")))
    }

    /// With an A record for `NAME` cached: what most tests ask for.
    fn with_name() -> Self {
        let mut f = Self::new();
        f.cache_a(NAME, 300);
        f
    }

    /// `x`, answering on the default servers.
    fn with(mut x: XdpCache) -> Self {
        let (v4, v6) = (FrameSpec::v4(), FrameSpec::v6());
        x.serve(v4.server).unwrap();
        x.serve(v6.server).unwrap();
        Self { x, v4, v6 }
    }

    /// Caches the upstream answer to `name`/`qtype`.
    fn cache(&mut self, name: &str, qtype: RecordType, answers: Vec<Record>) -> Cached {
        self.cache_response(response(name, qtype, answers).unwrap())
    }

    fn cache_a(&mut self, name: &str, ttl: u32) -> Cached {
        self.cache_response(a_response(name, ttl, [198, 51, 100, 1]))
    }

    pub(crate) fn cache_response(&mut self, response: Vec<u8>) -> Cached {
        let (_, entry) = self.x.insert_response(&response).unwrap();
        Cached { response, entry }
    }

    fn run(&self, frame: &[u8]) -> Outcome {
        let start = self.x.counters().unwrap();
        let before_ns = monotonic_ns();
        let run = self.x.run(frame).unwrap();
        let after_ns = monotonic_ns();
        let counters = self.x.counters().unwrap().since(&start);
        Outcome {
            run,
            counters,
            before_ns,
            after_ns,
        }
    }

    /// Runs a query that must be answered; checks the frame around the answer and returns it.
    pub(crate) fn answer(&self, frame: &[u8]) -> (Outcome, Message) {
        let o = self.run(frame);
        assert_eq!(
            o.run.action,
            Action::Tx,
            "not answered, counters {:?}",
            o.counters.nonzero()
        );
        assert_eq!(
            o.counters.nonzero(),
            vec![(Counter::Packets, 1), (Counter::Hits, 1)]
        );
        let m = check_reply(frame, &o.run.data);
        (o, m)
    }

    /// Runs a query that must be answered with `cached`'s records, their TTLs counted down.
    fn answer_from(&self, frame: &[u8], cached: &Cached) -> (Outcome, Message) {
        let (o, m) = self.answer(frame);
        let ttls = ttl_range(&cached.entry, &o);
        assert_records(m.answers(), upstream(&cached.response).answers(), &ttls);
        (o, m)
    }

    /// Runs a frame that must pass untouched, counted as `reason` (none: not even a packet
    /// for us).
    fn pass(&self, frame: &[u8], reason: Option<Counter>) {
        self.pass_as("", frame, reason);
    }

    /// `pass`, naming the frame `what` in failures.
    fn pass_as(&self, what: &str, frame: &[u8], reason: Option<Counter>) {
        let o = self.run(frame);
        assert_eq!(
            o.run.action,
            Action::Pass,
            "{what}: counters {:?}",
            o.counters.nonzero()
        );
        assert!(o.run.data == frame, "{what}: a passed frame was modified");
        let want = match reason {
            Some(r) => vec![(Counter::Packets, 1), (r, 1)],
            None => vec![],
        };
        assert_eq!(o.counters.nonzero(), want, "{what}");
    }
}

/// The IPv4 header and UDP checksums of `frame` verify.
fn verify_checksums(frame: &[u8], p: &ParsedFrame) {
    if p.src.is_ipv4() {
        let header = &frame[p.l3..p.l3 + p.ip_hlen];
        assert_eq!(internet_checksum(&[header]), 0, "IPv4 header checksum");
    }
    let udp = &frame[p.udp..p.udp + p.udp_len];
    assert_ne!(&udp[6..8], &[0, 0], "UDP checksum left out");
    let pseudo = pseudo_header(p.src.ip(), p.dst.ip(), p.udp_len);
    assert_eq!(internet_checksum(&[&pseudo, udp]), 0, "UDP checksum");
}

/// Length of the question section (name, type, class) of a DNS message without compression.
fn question_len(msg: &[u8]) -> usize {
    let mut i = 12;
    while msg[i] != 0 {
        i += 1 + msg[i] as usize;
    }
    i + 1 + 4 - 12
}

/// Everything about an answer frame but its records: addressing swapped, lengths and checksums
/// right, no trailing bytes, DNS header flags, and the question exactly as the client sent it.
fn check_reply(query: &[u8], out: &[u8]) -> Message {
    let q = parse_frame(query).unwrap();
    let r = parse_frame(out).unwrap();
    assert_eq!(
        (r.dst_mac, r.src_mac),
        (q.src_mac, q.dst_mac),
        "MACs not swapped"
    );
    assert_eq!(r.vlan, q.vlan, "VLAN tag changed");
    assert_eq!(
        (r.src, r.dst),
        (q.dst, q.src),
        "addresses or ports not swapped"
    );
    assert_eq!(r.ttl, 64, "TTL / hop limit");
    assert_eq!(out.len(), r.udp + r.udp_len, "bytes after the datagram");
    assert_eq!((r.l3, r.ip_hlen), (q.l3, q.ip_hlen));
    if matches!(r.src, SocketAddr::V4(_)) {
        let ip = &out[r.l3..];
        assert_eq!(
            usize::from(u16::from_be_bytes([ip[2], ip[3]])),
            out.len() - r.l3
        );
        // Version/IHL/TOS, ID, flags/offset, protocol and options are kept.
        let (qi, ri) = (&query[q.l3..q.l3 + q.ip_hlen], &ip[..r.ip_hlen]);
        assert_eq!(
            (&ri[..2], &ri[4..8], ri[9], &ri[20..]),
            (&qi[..2], &qi[4..8], qi[9], &qi[20..])
        );
    } else {
        let ip = &out[r.l3..];
        assert_eq!(usize::from(u16::from_be_bytes([ip[4], ip[5]])), r.udp_len);
        assert_eq!(
            &ip[..4],
            &query[q.l3..q.l3 + 4],
            "traffic class / flow label"
        );
    }
    verify_checksums(out, &r);

    let (qm, rm) = (&q.payload, &r.payload);
    let m = Message::from_vec(rm).unwrap_or_else(|e| panic!("answer does not parse: {e}"));
    assert_eq!(m.id(), u16::from_be_bytes([qm[0], qm[1]]));
    assert_eq!(m.message_type(), MessageType::Response);
    assert_eq!(m.op_code(), OpCode::Query);
    assert!(m.recursion_available());
    assert!(!m.truncated());
    // The DO bit of the query, which parses: the program answers well-formed queries only.
    let query_do = Message::from_vec(qm)
        .ok()
        .and_then(|q| q.extensions().as_ref().map(|e| e.flags().dnssec_ok))
        .unwrap_or(false);
    assert!(
        !m.authentic_data() || query_do,
        "AD without DO (RFC 6840 §5.8)"
    );
    assert_eq!(m.recursion_desired(), qm[2] & 0x01 != 0, "RD not copied");
    assert_eq!(m.checking_disabled(), qm[3] & 0x10 != 0, "CD not copied");
    assert_eq!(m.query_count(), 1);
    let ql = question_len(qm);
    assert_eq!(&rm[12..12 + ql], &qm[12..12 + ql], "question not as sent");
    let query_edns = u16::from_be_bytes([qm[10], qm[11]]) == 1;
    match m.extensions() {
        Some(e) => {
            assert!(query_edns, "OPT in the answer to a query without");
            assert_eq!(e.max_payload(), 1232);
            assert_eq!(e.version(), 0);
            assert_eq!(e.flags().dnssec_ok, query_do, "DO as the query's");
            // At most a blocked name's Extended DNS Error.
            let blocked = EdnsOption::Unknown(15, vec![0, 15]);
            assert!(
                e.options().as_ref().iter().all(|(_, o)| *o == blocked),
                "options in the answer's OPT"
            );
            assert_eq!(m.additional_count(), 1);
        }
        None => {
            assert!(!query_edns, "no OPT in the answer to an EDNS query");
            assert_eq!(m.additional_count(), 0);
        }
    }
    m
}

/// The TTL an answer may carry for `entry` when run between the outcome's two timestamps. The
/// program reads the coarse clock, which may lag them by up to a tick: less than
/// `EXPIRY_MARGIN_NS`.
fn ttl_range(entry: &CacheEntry, o: &Outcome) -> RangeInclusive<u32> {
    let secs = |now: u64| ((entry.expires_ns - now) / NS) as u32;
    secs(o.after_ns)..=secs(o.before_ns - EXPIRY_MARGIN_NS)
}

/// `got` are `want` with every TTL replaced by the same value in `ttls`.
fn assert_records(got: &[Record], want: &[Record], ttls: &RangeInclusive<u32>) {
    assert_eq!(got.len(), want.len(), "record count");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.name(), w.name());
        assert_eq!(g.record_type(), w.record_type());
        assert_eq!(g.dns_class(), DNSClass::IN);
        assert_eq!(g.data(), w.data());
        assert!(ttls.contains(&g.ttl()), "TTL {} not in {ttls:?}", g.ttl());
        assert_eq!(g.ttl(), got[0].ttl(), "TTLs differ between records");
    }
}

pub(crate) fn upstream(resp: &[u8]) -> Message {
    Message::from_vec(resp).unwrap()
}

#[test]
fn verifier_budget() {
    let x = XdpCache::load().unwrap_or_else(|e| panic!("{e:#}"));
    let n = x.verified_insns().unwrap();
    eprintln!("verifier processed {n} instructions");
    // Far below the kernel's 1,000,000: changes that multiply verifier paths show up here. The
    // hit path is there once per cache tier: about 115,000 on 6.18, 340,000 on 6.1.
    assert!(n < 400_000, "verifier processed {n} instructions");
}

#[test]
fn ipv4_a_hit() {
    let mut f = Fixture::new();
    let cached = f.cache(
        NAME,
        RecordType::A,
        vec![
            record(NAME, 300, a([198, 51, 100, 1])).unwrap(),
            record(NAME, 300, a([198, 51, 100, 2])).unwrap(),
        ],
    );
    let query = f.v4.query(&Query::new("wWw.ExAmple.COM", QTYPE_A));
    let (o, m) = f.answer_from(&query, &cached);
    assert_eq!(m.id(), 0xbeef);
    assert!(m.recursion_desired() && !m.checking_disabled());
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(m.queries()[0].name().to_ascii(), "wWw.ExAmple.COM.");
    assert_eq!(m.queries()[0].query_type(), RecordType::A);
    let ttls = ttl_range(&cached.entry, &o);
    assert!(*ttls.end() <= 300 && *ttls.start() >= 298, "{ttls:?}");
    assert!(m.name_servers().is_empty());

    let key = parse_question(&query[42..]).unwrap().key;
    assert_eq!(f.x.entry(&key).unwrap().unwrap().hits, 1, "entry hit count");
}

#[test]
fn ipv6_aaaa_hit() {
    let mut f = Fixture::new();
    let cached = f.cache(
        NAME,
        RecordType::AAAA,
        vec![record(NAME, 120, aaaa("2001:db8::1")).unwrap()],
    );
    let query = f.v6.query(&Query::new("WWW.example.com", QTYPE_AAAA));
    let (_, m) = f.answer_from(&query, &cached);
    assert_eq!(m.queries()[0].query_type(), RecordType::AAAA);
}

#[test]
fn vlan_tagged_hits() {
    let mut f = Fixture::new();
    let cached_a = f.cache_a(NAME, 300);
    let cached_aaaa = f.cache(
        NAME,
        RecordType::AAAA,
        vec![record(NAME, 300, aaaa("2001:db8::6")).unwrap()],
    );
    for (spec, qtype, cached) in [
        (&f.v4, QTYPE_A, &cached_a),
        (&f.v6, QTYPE_AAAA, &cached_aaaa),
    ] {
        let query = spec
            .with(|s| s.vlan = Some(0x2064))
            .query(&Query::new(NAME, qtype));
        let (o, _) = f.answer_from(&query, cached);
        assert_eq!(&o.run.data[12..16], &[0x81, 0x00, 0x20, 0x64]);
    }
}

#[test]
fn cname_chain_hit() {
    let mut f = Fixture::new();
    let name = "shop.example.com.";
    let cached = f.cache(
        name,
        RecordType::A,
        vec![
            record(name, 3600, cname("shop.cdn.example.net.")).unwrap(),
            record(
                "shop.cdn.example.net.",
                600,
                cname("edge7.cdn.example.net."),
            )
            .unwrap(),
            record("edge7.cdn.example.net.", 60, a([203, 0, 113, 7])).unwrap(),
            record("edge7.cdn.example.net.", 60, a([203, 0, 113, 8])).unwrap(),
        ],
    );
    assert_eq!(cached.entry.ttl_count, 4);
    let query = f.v4.query(&Query::new("Shop.Example.Com", QTYPE_A));
    let (o, _) = f.answer_from(&query, &cached);
    let ttls = ttl_range(&cached.entry, &o);
    assert!(*ttls.end() <= 60, "entry lives as long as its shortest TTL");
}

#[test]
fn answers_of_other_types_hit() {
    let mut f = Fixture::new();
    let https = RData::HTTPS(HTTPS(SVCB::new(
        1,
        Name::root(),
        vec![(
            SvcParamKey::Alpn,
            SvcParamValue::Alpn(Alpn(vec!["h2".into()])),
        )],
    )));
    let mx = RData::MX(MX::new(10, Name::from_ascii("mail.example.com.").unwrap()));
    for (rtype, qtype, rdata) in [
        (RecordType::MX, QTYPE_MX, mx),
        (RecordType::HTTPS, 65, https),
    ] {
        let cached = f.cache(NAME, rtype, vec![record(NAME, 300, rdata).unwrap()]);
        let query = f.v4.query(&Query::new("wWw.Example.COM.", qtype));
        let (_, m) = f.answer_from(&query, &cached);
        assert_eq!(m.answers()[0].record_type(), rtype);
        f.pass(
            &f.v4.query(&Query::new("other.example.com.", qtype)),
            Some(Counter::Misses),
        );
    }
}

#[test]
fn rd_and_cd_are_copied() {
    let f = Fixture::with_name();
    for flags in [[0x00, 0x00], [0x01, 0x10], [0x00, 0x10], [0x01, 0x20]] {
        let mut q = Query::new(NAME, QTYPE_A);
        q.flags = flags;
        q.id = u16::from_be_bytes(flags) ^ 0x5a5a;
        let (_, m) = f.answer(&f.v4.query(&q));
        assert_eq!(m.id(), q.id);
    }
}

#[test]
fn edns_query_gets_opt_1232() {
    let mut f = Fixture::new();
    let cached = f.cache_a(NAME, 300);
    for size in [512, 1232, 4096] {
        let query = f.v4.query(&Query::new(NAME, QTYPE_A).edns(Edns::new(size)));
        let (_, m) = f.answer_from(&query, &cached);
        assert!(m.extensions().is_some());
    }
}

#[test]
fn cookie_and_padding_options_are_ignored() {
    let mut f = Fixture::new();
    let cached = f.cache(
        NAME,
        RecordType::AAAA,
        vec![record(NAME, 300, aaaa("2001:db8::99")).unwrap()],
    );
    let client_cookie = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];
    let edns_variants = [
        Edns::new(1232).option(OPT_COOKIE, &client_cookie),
        Edns::new(1232)
            .option(OPT_COOKIE, &client_cookie)
            .option(OPT_PADDING, &[0; 61]),
        Edns::new(1400).option(OPT_PADDING, &[]),
    ];
    for edns in edns_variants {
        for spec in [&f.v4, &f.v6] {
            // No cookie echoed: the answer's OPT carries no options (checked by check_reply).
            let query = spec.query(&Query::new(NAME, QTYPE_AAAA).edns(edns.clone()));
            f.answer_from(&query, &cached);
        }
    }
}

/// An A answer with its signature, validated upstream (AD), as a query with DO gets it.
fn signed_response() -> Vec<u8> {
    let rrsig = RData::Unknown {
        code: RecordType::RRSIG,
        rdata: NULL::with(vec![
            0, 1, 13, 3, 0, 0, 1, 44, 0xf0, 0, 0, 0, 0x60, 0, 0, 0, 0x30, 0x39,
        ]),
    };
    let mut m = upstream(&a_response(NAME, 300, [198, 51, 100, 1]));
    m.add_answer(record(NAME, 300, rrsig).unwrap());
    let mut edns = hickory_proto::op::Edns::new();
    edns.set_dnssec_ok(true);
    m.set_authentic_data(true).set_edns(edns);
    m.to_vec().unwrap()
}

#[test]
fn do_queries_get_the_entry_for_do_with_its_signatures_and_ad() {
    let mut f = Fixture::with_name();
    let with = |cd: bool| {
        let mut q = Query::new(NAME, QTYPE_A).edns(Edns {
            dnssec_ok: true,
            ..Edns::new(1232)
        });
        q.flags[1] |= if cd { 0x10 } else { 0 };
        q
    };
    // The entry for queries without DO is not theirs.
    f.pass(&f.v4.query(&with(false)), Some(Counter::Misses));
    let signed = f.cache_response(signed_response());
    for cd in [false, true] {
        let (_, m) = f.answer_from(&f.v6.query(&with(cd)), &signed);
        let types: Vec<_> = m.answers().iter().map(Record::record_type).collect();
        assert_eq!(types, [RecordType::A, RecordType::RRSIG]);
        assert!(m.authentic_data(), "AD, as the upstream said");
        assert_eq!(m.checking_disabled(), cd);
        let opt = m.extensions().as_ref().expect("an OPT record");
        assert!(opt.flags().dnssec_ok && opt.max_payload() == 1232);
    }
    // Without DO: the other entry, without signatures or AD.
    let (_, m) = f.answer(&f.v4.query(&Query::new(NAME, QTYPE_A).edns(Edns::new(1232))));
    assert_eq!(m.answers().len(), 1);
    assert!(!m.authentic_data());
    assert!(!m.extensions().as_ref().unwrap().flags().dnssec_ok);
}

#[test]
fn unknown_option_or_version_passes() {
    let f = Fixture::with_name();
    for edns in [
        Edns::new(1232).option(8, &[0, 1, 24, 0, 192, 0, 2]), // client subnet
        Edns::new(1232).option(OPT_COOKIE, &[1; 8]).option(3, &[]), // NSID after a cookie
        Edns {
            version: 1,
            ..Edns::new(1232)
        },
        // More options than the program looks at.
        (0..5).fold(Edns::new(1232), |e, _| e.option(OPT_PADDING, &[])),
    ] {
        f.pass(
            &f.v4.query(&Query::new(NAME, QTYPE_A).edns(edns)),
            Some(Counter::PassEdns),
        );
    }
}

#[test]
fn too_big_without_edns_passes_and_fits_with_it() {
    let mut f = Fixture::new();
    let name = "big.example.com.";
    let cached = f.cache_response(big_response(name).unwrap());
    let len = cached.response.len();
    assert!(len > 512 && len + 11 <= 1232);

    f.pass(
        &f.v4.query(&Query::new(name, QTYPE_A)),
        Some(Counter::PassTooBig),
    );
    f.pass(
        &f.v4.query(&Query::new(name, QTYPE_A).edns(Edns::new(512))),
        Some(Counter::PassTooBig),
    );
    for spec in [&f.v4, &f.v6] {
        let query = spec.query(&Query::new(name, QTYPE_A).edns(Edns::new(1232)));
        f.answer_from(&query, &cached);
    }
}

#[test]
fn expired_entry_passes() {
    let mut f = Fixture::new();
    let resp = a_response(NAME, 300, [192, 0, 2, 1]);
    let query = f.v4.query(&Query::new(NAME, QTYPE_A));
    let (key, mut entry) = entry_from(&resp, 300).unwrap();
    entry.expires_ns = 1;
    f.x.insert(&key, &entry).unwrap();
    f.pass(&query, Some(Counter::Expired));
    // Records whose TTL of a second ran out just now: the lag of the program's coarse clock is
    // made up for by the entry expiring early.
    let (key, entry) = build_entry(&resp, monotonic_ns() - NS, 1).unwrap();
    f.x.insert(&key, &entry).unwrap();
    f.pass(&query, Some(Counter::Expired));
    let mut entry = entry;
    // Less than a second left: still served, with TTL 0.
    entry.expires_ns = monotonic_ns() + NS / 2;
    f.x.insert(&key, &entry).unwrap();
    let (o, m) = f.answer(&query);
    assert_eq!(ttl_range(&entry, &o), 0..=0);
    assert_eq!(m.answers()[0].ttl(), 0);
}

#[test]
fn cached_names_are_not_answered_to_loop_prone_ports() {
    let f = Fixture::with_name();
    for spec in [&f.v4, &f.v6] {
        let o = f.run(
            &spec
                .with(|s| s.client.set_port(19))
                .query(&Query::new(NAME, QTYPE_A)),
        );
        assert_eq!(o.run.action, Action::Drop);
        assert_eq!(
            o.counters.nonzero(),
            vec![(Counter::Packets, 1), (Counter::DroppedSourcePort, 1)]
        );
    }
    f.answer(&f.v4.query(&Query::new(NAME, QTYPE_A)));
}

#[test]
fn sources_the_stack_drops_and_group_macs_pass() {
    let f = Fixture::with_name();
    let q = Query::new(NAME, QTYPE_A);
    let from = |source: &str| {
        let ip: IpAddr = source.parse().unwrap();
        let spec = if ip.is_ipv4() { &f.v4 } else { &f.v6 };
        spec.with(|s| s.client.set_ip(ip)).query(&q)
    };
    let sources = [
        "0.1.2.3",
        "127.0.0.1",
        "224.0.0.251",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "ff02::fb",
        "::ffff:192.0.2.10",
    ];
    for source in sources {
        f.pass(&from(source), Some(Counter::PassMartian));
    }
    for mac in [
        [0x01, 0, 0x5e, 0, 0, 0xfb],
        [0xff; 6],
        [0x33, 0x33, 0, 0, 0, 1],
    ] {
        let frame = f.v4.with(|s| s.server_mac = mac).query(&q);
        f.pass(&frame, Some(Counter::PassMartian));
    }
    // Link-local and private sources are ordinary clients.
    for source in ["169.254.1.1", "10.0.0.1", "fe80::1"] {
        f.answer(&from(source));
    }
}

#[test]
fn frames_with_checksums_the_stack_rejects_pass() {
    let f = Fixture::with_name();
    let query = Query::new(NAME, QTYPE_A);
    // Offsets of the IPv4 header checksum and of each family's UDP checksum.
    let (ip_sum, udp_sum_v4, udp_sum_v6) = (14 + 10, 14 + 20 + 6, 14 + 40 + 6);
    let corrupt = |mut frame: Vec<u8>, at: usize| {
        frame[at] ^= 0x5a;
        frame
    };
    for (frame, at) in [
        (f.v4.query(&query), udp_sum_v4),
        (f.v4.query(&query), ip_sum),
        (f.v6.query(&query), udp_sum_v6),
        // A payload byte (of the DNS ID) changed under a checksum made for the original.
        (f.v4.query(&query), 14 + 20 + 8),
    ] {
        f.pass(&corrupt(frame, at), Some(Counter::PassChecksum));
    }
    // No checksum: allowed over IPv4 (RFC 768), not over IPv6 (RFC 8200 §8.1).
    let mut frame = f.v4.query(&query);
    frame[udp_sum_v4..udp_sum_v4 + 2].fill(0);
    f.answer(&frame);
    let mut frame = f.v6.query(&query);
    frame[udp_sum_v6..udp_sum_v6 + 2].fill(0);
    f.pass(&frame, Some(Counter::PassChecksum));
    // Left to offload by a sender on this host: the pseudo-header's sum alone. Off a wire
    // (the default) it is forged, and the stack drops it; from local senders only it is
    // taken.
    let partial: Vec<Vec<u8>> = [&f.v4, &f.v6]
        .into_iter()
        .map(|spec| {
            let mut frame = spec.query(&query);
            let udp_len = query.to_wire().len() + 8;
            let pseudo = pseudo_header(spec.client.ip(), spec.server.ip(), udp_len);
            let at = if spec.client.is_ipv4() {
                udp_sum_v4
            } else {
                udp_sum_v6
            };
            frame[at..at + 2].copy_from_slice(&(!internet_checksum(&[&pseudo])).to_be_bytes());
            frame
        })
        .collect();
    for frame in &partial {
        f.pass(frame, Some(Counter::PassChecksum));
    }
    let local = XdpSettings {
        local_senders: 1,
        ..XdpSettings::OFF
    };
    let mut l = Fixture::with(XdpCache::load_reporting(local).unwrap());
    l.cache_a(NAME, 300);
    for frame in &partial {
        l.answer(frame);
    }
    // Options are covered by the header checksum too.
    let spec = f.v4.with(|s| s.ip_options = vec![1, 1, 1, 0]);
    f.answer(&spec.query(&query));
    f.pass(
        &corrupt(spec.query(&query), ip_sum),
        Some(Counter::PassChecksum),
    );
}

#[test]
fn miss_passes() {
    let f = Fixture::with_name();
    f.pass(
        &f.v4.query(&Query::new("www.example.org", QTYPE_A)),
        Some(Counter::Misses),
    );
    // Same name, other type.
    f.pass(
        &f.v4.query(&Query::new(NAME, QTYPE_AAAA)),
        Some(Counter::Misses),
    );
    f.pass(
        &f.v6.query(&Query::new(NAME, QTYPE_AAAA)),
        Some(Counter::Misses),
    );
}

/// A dotted name, all `c`, whose wire form is `len` (3..=255) bytes long.
pub(crate) fn name_of_wire_len(len: usize, c: char) -> String {
    // Labels of up to 63 characters, none shorter than one: `len - 1` bytes of labels.
    let mut left = len - 1;
    let mut name = String::new();
    while left > 0 {
        let mut take = left.min(64);
        if left - take == 1 {
            take -= 1;
        }
        name += &c.to_string().repeat(take - 1);
        name.push('.');
        left -= take;
    }
    name
}

#[test]
fn names_of_every_length_hit() {
    let mut f = Fixture::new();
    for len in 3..=MAX_CACHED_NAME {
        let name = name_of_wire_len(len, 'h');
        assert_eq!(wire_name(&name).len(), len);
        let cached = f.cache_a(&name, 300);
        f.answer_from(
            &f.v4.query(&Query::new(&name.to_uppercase(), QTYPE_A)),
            &cached,
        );
    }
}

#[test]
fn an_entry_under_another_names_key_is_a_miss() {
    let mut f = Fixture::new();
    // Names of one, two and sixteen words, and ones that end inside a word.
    for len in [8, 9, 16, 17, 100, MAX_CACHED_NAME] {
        let name = name_of_wire_len(len, 'h');
        let question = parse_question(&Query::new(&name, QTYPE_A).to_wire()).unwrap();
        let key = f.x.cache_key(&question.key);
        // Same length and type, one byte different: the first, one in the middle or the last.
        // Its entry is stored under `name`'s key, as if their hashes collided.
        for at in [0, len / 2, len - 3] {
            let mut other = name.clone().into_bytes();
            let at = if other[at] == b'.' { at + 1 } else { at };
            other[at] = b'x';
            let other = String::from_utf8(other).unwrap();
            let (_, entry) = entry_from(&a_response(&other, 300, [192, 0, 2, 66]), 300).unwrap();
            f.x.insert_at(&key, &entry).unwrap();
            f.pass(
                &f.v4.query(&Query::new(&name, QTYPE_A)),
                Some(Counter::Misses),
            );
        }
        // Under its own key, the name is answered.
        f.cache_a(&name, 300);
        f.answer(&f.v4.query(&Query::new(&name, QTYPE_A)));
    }
}

#[test]
fn unserved_address_or_port_passes_uncounted() {
    let f = Fixture::with_name();
    let q = Query::new(NAME, QTYPE_A);
    let to =
        |spec: &FrameSpec, server: SocketAddr| FrameSpec::between(spec.client, server).query(&q);
    for spec in [&f.v4, &f.v6] {
        f.pass(&to(spec, SocketAddr::new(spec.server.ip(), 5353)), None);
        let other_addr = match spec.server.ip() {
            IpAddr::V4(_) => SocketAddr::new(Ipv4Addr::new(198, 18, 0, 53).into(), 53),
            IpAddr::V6(_) => SocketAddr::new("2001:db8:1::53".parse().unwrap(), 53),
        };
        // Traffic routed through the box to another resolver.
        f.pass(&to(spec, other_addr), None);
    }
    // The same IPv4 address, not mapped, as an IPv6 destination.
    let v4_as_v6 = "::c000:235".parse().unwrap();
    f.pass(&to(&f.v6, SocketAddr::new(v4_as_v6, 53)), None);
}

#[test]
fn destinations_sharing_memo_slots_are_told_apart() {
    let f = Fixture::with_name();
    let q = Query::new(NAME, QTYPE_A);
    let to =
        |spec: &FrameSpec, server: SocketAddr| FrameSpec::between(spec.client, server).query(&q);
    // Far more destinations than the per-CPU memo of SERVED has slots, the served ones among
    // them, in turn and twice over.
    for _ in 0..2 {
        for i in 0..200u16 {
            for spec in [&f.v4, &f.v6] {
                f.pass(&to(spec, SocketAddr::new(spec.server.ip(), 1000 + i)), None);
            }
            let other = SocketAddr::new(Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8).into(), 53);
            f.pass(&to(&f.v4, other), None);
            if i % 50 == 0 {
                f.answer(&f.v4.query(&q));
                f.answer(&f.v6.query(&q));
            }
        }
    }
}

#[test]
fn an_address_no_longer_served_passes() {
    let mut f = Fixture::with_name();
    let query = f.v4.query(&Query::new(NAME, QTYPE_A));
    f.answer(&query);
    f.x.unserve(f.v4.server).unwrap();
    // The memo of SERVED trusts an answer for 25 ticks: 250 ms at HZ=100.
    std::thread::sleep(Duration::from_millis(300));
    f.pass(&query, None);
    f.x.serve(f.v4.server).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    f.answer(&query);
}

#[test]
fn responses_and_other_opcodes_pass() {
    let f = Fixture::with_name();
    for flags in [
        [0x81, 0x80], // a response
        [0x80, 0x00],
        [0x28, 0x00], // UPDATE
        [0x10, 0x00], // STATUS
        [0x21, 0x00], // NOTIFY with RD
    ] {
        let mut q = Query::new(NAME, QTYPE_A);
        q.flags = flags;
        f.pass(&f.v4.query(&q), Some(Counter::PassNotQuery));
    }
}

#[test]
fn unsupported_questions_pass() {
    let f = Fixture::with_name();
    let mut chaos = Query::new(NAME, QTYPE_A);
    chaos.qclass = 3;
    let mut truncated = Query::new(NAME, QTYPE_A);
    truncated.flags[0] |= 0x02;
    // Type 0, OPT, AXFR and ANY: no cached record set answers them.
    let meta = [0, 41, 252, 255].map(|t| Query::new(NAME, t));
    for q in meta.into_iter().chain([chaos, truncated]) {
        f.pass(&f.v4.query(&q), Some(Counter::PassUnsupported));
    }
}

#[test]
fn name_length_limit() {
    let mut f = Fixture::new();
    // 1 + 63 + 1 + 62 + root: exactly MAX_CACHED_NAME bytes, still served.
    let longest = format!("{}.{}.", "a".repeat(63), "b".repeat(62));
    assert_eq!(wire_name(&longest).len(), MAX_CACHED_NAME);
    f.cache_a(&longest, 300);
    f.answer(&f.v4.query(&Query::new(&longest.to_uppercase(), QTYPE_A)));

    let too_long = format!("{}.{}.", "a".repeat(63), "b".repeat(63));
    f.pass(
        &f.v4.query(&Query::new(&too_long, QTYPE_A)),
        Some(Counter::PassUnsupported),
    );
    let legal_max = format!("{0}.{0}.{0}.{1}.", "c".repeat(63), "d".repeat(61));
    assert_eq!(wire_name(&legal_max).len(), 255);
    f.pass(
        &f.v4.query(&Query::new(&legal_max, QTYPE_A)),
        Some(Counter::PassUnsupported),
    );
}

#[test]
fn malformed_messages_pass() {
    let f = Fixture::with_name();
    let base = Query::new(NAME, QTYPE_A).to_wire();
    let edns = Query::new(NAME, QTYPE_A).edns(Edns::new(1232)).to_wire();
    let with = |msg: &[u8], at: usize, bytes: &[u8]| {
        let mut m = msg.to_vec();
        m[at..at + bytes.len()].copy_from_slice(bytes);
        m
    };
    let name_end = 12 + wire_name(NAME).len();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("QDCOUNT 2", with(&base, 4, &[0, 2])),
        ("QDCOUNT 0", with(&base, 4, &[0, 0])),
        ("ANCOUNT 1", with(&base, 6, &[0, 1])),
        ("NSCOUNT 1", with(&base, 8, &[0, 1])),
        ("ARCOUNT 2", with(&edns, 10, &[0, 2])),
        ("ARCOUNT 1 without a record", with(&base, 10, &[0, 1])),
        ("header only", base[..12].to_vec()),
        ("short header", base[..7].to_vec()),
        ("no QCLASS", base[..base.len() - 2].to_vec()),
        ("label past the end", base[..20].to_vec()),
        ("reserved label type", with(&base, 12, &[0x43])),
        ("extended label type", with(&base, 16, &[0x81])),
        ("OPT owner not root", with(&edns, name_end + 4, &[1])),
        ("OPT type not 41", with(&edns, name_end + 5, &[0, 1])),
        ("OPT RDLENGTH too long", with(&edns, name_end + 13, &[0, 4])),
        ("OPT cut short", edns[..edns.len() - 2].to_vec()),
    ];
    // A compression pointer back to the header area, and one to a copy of the name.
    let mut pointer = base[..12].to_vec();
    pointer.extend_from_slice(&[3, b'w', b'w', b'w', 0xc0, 12, 0, 1, 0, 1]);
    cases.push(("compression pointer", pointer));
    let mut root_pointer = base[..12].to_vec();
    root_pointer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    cases.push(("name is a pointer", root_pointer));
    // Bytes after the question, or after the OPT record.
    let mut extra = base.clone();
    extra.push(0);
    cases.push(("byte after the question", extra));
    let mut extra = edns.clone();
    extra.extend_from_slice(&[0, 0, 0, 0]);
    cases.push(("bytes after the OPT record", extra));
    // An option running past the OPT record.
    let mut bad_option = Query::new(NAME, QTYPE_A)
        .edns(Edns::new(1232).option(OPT_COOKIE, &[7; 8]))
        .to_wire();
    let at = bad_option.len() - 10;
    bad_option[at] = 0x10;
    cases.push(("option longer than RDATA", bad_option));
    // A second question-like record instead of OPT.
    let mut not_opt = base.clone();
    not_opt[11] = 1;
    not_opt.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
    cases.push(("additional A record", not_opt));

    for (what, msg) in cases {
        for spec in [&f.v4, &f.v6] {
            f.pass_as(what, &spec.build(&msg), Some(Counter::PassMalformed));
        }
    }
}

#[test]
fn udp_length_is_checked() {
    let f = Fixture::with_name();
    for spec in [&f.v4, &f.v6] {
        let good = spec.query(&Query::new(NAME, QTYPE_A));
        let p = parse_frame(&good).unwrap();
        let set_udp_len = |len: usize| {
            let mut fr = good.clone();
            fr[p.udp + 4..p.udp + 6].copy_from_slice(&(len as u16).to_be_bytes());
            fr
        };
        // Longer than the IP payload, shorter than a DNS header, shorter than a UDP header.
        for len in [p.udp_len + 1, p.udp_len + 100, 8 + 11, 7, 0] {
            f.pass(&set_udp_len(len), Some(Counter::PassMalformed));
        }
        // IP length past the end of the frame.
        let mut fr = good.clone();
        let (at, len) = match spec.server {
            SocketAddr::V4(_) => (p.l3 + 2, good.len() - p.l3 + 1),
            SocketAddr::V6(_) => (p.l3 + 4, p.udp_len + 1),
        };
        fr[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
        f.pass(&fr, Some(Counter::PassMalformed));
    }
}

#[test]
fn truncated_frames_never_answer() {
    let f = Fixture::with_name();
    let vlan = f.v4.with(|s| s.vlan = Some(7));
    for (spec, edns) in [(&f.v4, false), (&f.v4, true), (&f.v6, true), (&vlan, false)] {
        let mut q = Query::new(NAME, QTYPE_A);
        if edns {
            q = q.edns(Edns::new(1232).option(OPT_COOKIE, &[9; 8]));
        }
        let full = spec.query(&q);
        let udp_end = parse_frame(&full).unwrap().udp + 8;
        f.answer(&full);
        // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header.
        for len in ETH_HLEN..full.len() {
            let counted = (len >= udp_end).then_some(Counter::PassMalformed);
            f.pass_as(&format!("length {len}"), &full[..len], counted);
        }
    }
}

/// xorshift64*, so the garbage is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn garbage_never_answers() {
    let f = Fixture::with_name();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..3000 {
        let len = (rng.next() % 300) as usize;
        let frame = match i % 3 {
            // Anything at all.
            0 => rng.bytes(ETH_HLEN + len),
            // Valid headers to the served address, random DNS payload.
            1 => f.v4.build(&rng.bytes(len)),
            // A valid header, question count and garbage after it.
            _ => {
                let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
                m.extend(rng.bytes(len));
                f.v6.build(&m)
            }
        };
        let o = f.run(&frame);
        assert_ne!(
            o.run.action,
            Action::Tx,
            "garbage frame {i} answered: {frame:02x?}"
        );
        assert_eq!(o.run.action, Action::Pass);
        assert_eq!(o.counters.get(Counter::Hits), 0);
        let reasons: u64 = o.counters.0[1..].iter().sum();
        assert_eq!(
            o.counters.get(Counter::Packets),
            reasons,
            "one reason per counted packet"
        );
    }
}

#[test]
fn mutated_queries_answer_only_well_formed() {
    let f = Fixture::with_name();
    let query = Query::new(NAME, QTYPE_A).edns(Edns::new(1232).option(OPT_COOKIE, &[5; 8]));
    let frame = f.v4.query(&query);
    let dns = parse_frame(&frame).unwrap().udp + 8;
    for at in dns..frame.len() {
        for v in [0x00, 0x01, 0x3f, 0x40, 0x80, 0xc0, 0xff] {
            let mut m = frame.clone();
            m[at] = v;
            let o = f.run(&m);
            if o.run.action == Action::Tx {
                // Whatever was answered must be a complete, consistent answer to it.
                check_reply(&m, &o.run.data);
            } else {
                assert_eq!(o.run.action, Action::Pass);
                assert!(o.run.data == m);
            }
        }
    }
}

#[test]
fn first_fragments_pass_counted_and_later_ones_uncounted() {
    let f = Fixture::with_name();
    let q = Query::new(NAME, QTYPE_A);
    // MF alone and MF with DF: the first fragment, charged and passed for the stack to
    // reassemble. An offset: a later fragment, not a datagram of its own.
    for (frag, reason) in [
        (0x2000, Some(Counter::PassFragment)),
        (0x6000, Some(Counter::PassFragment)),
        (0x0001, None),
        (0x0100, None),
        (0x4001, None),
        (0x2001, None),
    ] {
        f.pass(&f.v4.with(|s| s.frag = frag).query(&q), reason);
    }
    for (offset_flags, reason) in [
        (0x0001, Counter::PassFragment),
        // Atomic: a whole datagram, which the stack reassembles all the same.
        (0x0000, Counter::PassFragment),
    ] {
        let spec =
            f.v6.with(|s| s.ipv6_extensions = vec![fragment_header(offset_flags)]);
        f.pass(&spec.query(&q), Some(reason));
    }
    let later =
        f.v6.with(|s| s.ipv6_extensions = vec![fragment_header(0x0009)]);
    f.pass(&later.query(&q), None);
    // DF alone is not a fragment.
    f.answer(&f.v4.with(|s| s.frag = 0x4000).query(&q));
}

#[test]
fn extension_headers_are_followed_to_udp_and_passed_counted() {
    let f = Fixture::with_name();
    let q = Query::new(NAME, QTYPE_A);
    let chain = |headers: Vec<(u8, Vec<u8>)>| f.v6.with(|s| s.ipv6_extensions = headers).query(&q);
    let routing = (43, vec![0, 0, 0, 0, 0, 0, 0, 0]);
    f.pass(
        &chain(vec![padding_header(60)]),
        Some(Counter::PassExtensionHeaders),
    );
    f.pass(
        &chain(vec![padding_header(0), routing.clone(), padding_header(60)]),
        Some(Counter::PassExtensionHeaders),
    );
    f.pass(
        &chain(vec![padding_header(0), fragment_header(0)]),
        Some(Counter::PassFragment),
    );
    // A longer Destination Options header: 16 bytes.
    let long = (60, [vec![0, 1, 1, 12], vec![0; 12]].concat());
    f.pass(&chain(vec![long]), Some(Counter::PassExtensionHeaders));
    // As many as the program follows, and one more, which it drops.
    let eight = vec![padding_header(60); 8];
    f.pass(&chain(eight), Some(Counter::PassExtensionHeaders));
    let nine = chain(vec![padding_header(60); 9]);
    let o = f.run(&nine);
    assert_eq!(o.run.action, Action::Drop);
    assert_eq!(
        o.counters.nonzero(),
        [(Counter::DroppedHeaderChain, 1)],
        "a long chain is dropped before anything else is counted"
    );
    // Not UDP at the end of the chain (ESP): none of the cache's business.
    let mut esp = chain(vec![padding_header(60)]);
    esp[ETH_HLEN + 40] = 50;
    f.pass(&esp, None);
}

#[test]
fn untagged_queries_to_an_address_on_a_vlan_are_left_to_the_stack() {
    let mut f = Fixture::with_name();
    // The server's address is on a VLAN: a query for it without a tag had it taken off by
    // the NIC, and an answer from here would go out untagged, on the wrong VLAN.
    f.x.serve_with(f.v4.server, SERVED_ANSWER | SERVED_BEHIND_VLAN)
        .unwrap();
    let q = Query::new(NAME, QTYPE_A);
    f.pass(&f.v4.query(&q), Some(Counter::PassVlanOffload));
    // With the tag in the frame it is answered, tagged.
    let (o, _) = f.answer(&f.v4.with(|s| s.vlan = Some(10)).query(&q));
    assert_eq!(&o.run.data[12..16], &[0x81, 0x00, 0x00, 0x0a]);
    // The same address off any VLAN, once the memo of SERVED has let go (25 ticks): answered
    // untagged as ever.
    f.x.serve(f.v4.server).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    f.answer(&f.v4.query(&q));
}

#[test]
fn qinq_tagged_hits_keep_both_tags() {
    let mut f = Fixture::new();
    let cached = f.cache_a(NAME, 300);
    let spec =
        f.v4.with(|s| (s.outer_vlan, s.vlan) = (Some(0x0123), Some(0x0456)));
    let (o, _) = f.answer_from(&spec.query(&Query::new(NAME, QTYPE_A)), &cached);
    assert_eq!(
        &o.run.data[12..22],
        &[0x88, 0xa8, 0x01, 0x23, 0x81, 0x00, 0x04, 0x56, 0x08, 0x00]
    );
}

#[test]
fn non_udp_and_odd_headers_pass_uncounted() {
    let f = Fixture::with_name();
    let good4 = f.v4.query(&Query::new(NAME, QTYPE_A));
    let good6 = f.v6.query(&Query::new(NAME, QTYPE_A));
    let patched = |frame: &[u8], at: usize, v: u8| {
        let mut fr = frame.to_vec();
        fr[at] = v;
        fr
    };
    f.pass(&patched(&good4, 14 + 9, 6), None); // TCP
    f.pass(&patched(&good4, 14, 0x44), None); // IHL 4
    f.pass(&patched(&good4, 14, 0x65), None); // version 6 in an IPv4 frame
    f.pass(&patched(&good6, 14 + 6, 0), None); // hop-by-hop header first
    f.pass(&patched(&good6, 14 + 6, 44), None); // fragment header first
    f.pass(&patched(&good4, 12, 0x88), None); // another ethertype
    // Three tags: more than QinQ.
    let spec = f.v4.with(|s| (s.outer_vlan, s.vlan) = (Some(5), Some(6)));
    let mut three = spec.query(&Query::new(NAME, QTYPE_A));
    three.splice(16..16, [0x81, 0x00, 0x00, 0x07]);
    f.pass(&three, None);
}

#[test]
fn ipv4_options_are_kept() {
    let mut f = Fixture::new();
    let cached = f.cache_a(NAME, 300);
    // Router alert, then NOPs up to 12 bytes; and the longest header, 40 bytes of options.
    let options = [
        vec![
            0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00,
        ],
        [vec![0x01; 39], vec![0x00]].concat(),
    ];
    for opts in options {
        let spec = f.v4.with(|s| s.ip_options = opts);
        for edns in [false, true] {
            let mut q = Query::new("Www.Example.Com", QTYPE_A);
            if edns {
                q = q.edns(Edns::new(1232));
            }
            f.answer_from(&spec.query(&q), &cached);
        }
    }
}

#[test]
fn ethernet_padding_is_not_echoed() {
    let mut f = Fixture::new();
    // The shortest query: the root name. 59 bytes, so a NIC pads it to the 60-byte minimum.
    let root = f.cache_a(".", 300);
    let www = f.cache_a(NAME, 300);
    for (name, cached) in [(".", &root), (NAME, &www)] {
        for spec in [&f.v4, &f.v6] {
            let mut frame = spec.query(&Query::new(name, QTYPE_A));
            let datagram_end = frame.len();
            frame.resize(datagram_end.max(60) + 6, 0xee);
            // check_reply also asserts the answer ends with its datagram.
            f.answer_from(&frame, cached);
        }
    }
}

#[test]
fn negative_and_static_entries() {
    let mut f = Fixture::new();
    // NXDOMAIN with the zone's SOA, as the daemon stores it.
    let name = "nope.example.com.";
    let soa = record(
        "example.com.",
        900,
        RData::SOA(SOA::new(
            Name::from_ascii("ns.example.com.").unwrap(),
            Name::from_ascii("hostmaster.example.com.").unwrap(),
            2024010101,
            7200,
            3600,
            1209600,
            300,
        )),
    )
    .unwrap();
    let mut m = Message::new();
    m.set_id(1)
        .set_message_type(MessageType::Response)
        .set_recursion_available(true)
        .set_response_code(ResponseCode::NXDomain)
        .add_query(hickory_proto::op::Query::query(
            Name::from_ascii(name).unwrap(),
            RecordType::A,
        ))
        .add_name_server(soa.clone());
    let (key, entry) = entry_from(&m.to_vec().unwrap(), u32::MAX).unwrap();
    assert_eq!(
        (entry.nscount, entry.rcode, entry.ttl_count),
        (1, RCODE_NXDOMAIN, 1)
    );
    assert_eq!(entry.remaining_secs(monotonic_ns()), Some(899));
    f.x.insert(&key, &entry).unwrap();
    let (o, reply) = f.answer(&f.v6.query(&Query::new(name, QTYPE_A)));
    assert_eq!(reply.response_code(), ResponseCode::NXDomain);
    assert!(reply.answers().is_empty());
    assert_records(reply.name_servers(), &[soa], &ttl_range(&entry, &o));

    // A static record: never expires, TTL sent as stored.
    let name = "router.lan.";
    let resp = response(
        name,
        RecordType::A,
        vec![record(name, 3600, a([10, 0, 0, 1])).unwrap()],
    )
    .unwrap();
    let q = parse_question(&resp).unwrap();
    let mut entry = CacheEntry::new(&q.key);
    let records = &resp[q.end..];
    entry.len = records.len() as u16;
    entry.records_mut()[..records.len()].copy_from_slice(records);
    entry.ancount = 1;
    entry.expires_ns = u64::MAX;
    entry.csum = sum_bytes(0, records);
    f.x.insert(&q.key, &entry).unwrap();
    let (_, reply) = f.answer(&f.v4.query(&Query::new(name, QTYPE_A)));
    assert_records(reply.answers(), upstream(&resp).answers(), &(3600..=3600));
    assert!(!reply.authoritative());

    // A local record is sent with AA; a blocked name's answer to an EDNS query with Extended
    // DNS Error 15, Blocked, its hit counted apart. Both checksummed like any answer.
    entry.authoritative = 1;
    entry.blocked = 1;
    f.x.insert(&q.key, &entry).unwrap();
    for edns in [None, Some(Edns::new(1232))] {
        let mut query = Query::new(name, QTYPE_A);
        query.edns = edns.clone();
        let o = f.run(&f.v4.query(&query));
        assert_eq!(o.run.action, Action::Tx);
        assert_eq!(
            o.counters.nonzero(),
            vec![
                (Counter::Packets, 1),
                (Counter::Hits, 1),
                (Counter::HitsBlocked, 1)
            ]
        );
        let reply = check_reply(&f.v4.query(&query), &o.run.data);
        assert!(reply.authoritative());
        assert_records(reply.answers(), upstream(&resp).answers(), &(3600..=3600));
        let ede = reply
            .extensions()
            .as_ref()
            .and_then(|e| e.option(EdnsCode::Unknown(15)));
        let expected = EdnsOption::Unknown(15, vec![0, 15]);
        assert_eq!(ede, edns.map(|_| &expected));
    }
}

#[test]
fn checksums_for_every_name_parity_and_layout() {
    let mut f = Fixture::new();
    let vlan6 = f.v6.with(|s| s.vlan = Some(1));
    let opts4 = f.v4.with(|s| s.ip_options = vec![1, 1, 1, 0]);
    // Names of wire length 3 to 22 put the records and every TTL at both parities; three
    // TTLs, so a parity mix-up cannot cancel out.
    for len in 1..=20 {
        let name = format!("{}.", "q".repeat(len));
        let cached = f.cache(
            &name,
            RecordType::A,
            vec![
                record(&name, 100, cname("t.example.")).unwrap(),
                record("t.example.", 100, a([192, 0, 2, len as u8])).unwrap(),
                record("t.example.", 100, a([192, 0, 2, 100 + len as u8])).unwrap(),
            ],
        );
        for spec in [&f.v4, &f.v6, &vlan6, &opts4] {
            for edns in [false, true] {
                let mut q = Query::new(&name.to_uppercase(), QTYPE_A);
                q.id = len as u16 * 257;
                if edns {
                    q = q.edns(Edns::new(1232));
                }
                f.answer_from(&spec.query(&q), &cached);
            }
        }
    }
}

/// A CNAME chain of `links` 16-byte names ending in an A record: about 40 bytes per link.
fn chain(name: &str, links: usize) -> Vec<Record> {
    let mut records = Vec::new();
    let mut owner = name.to_string();
    for i in 0..links {
        let target = format!("hop{i:02}-abcdefghijkl.example.net.");
        records.push(record(&owner, 300, cname(&target)).unwrap());
        owner = target;
    }
    records.push(record(&owner, 300, a([198, 51, 100, links as u8])).unwrap());
    records
}

/// On veth, as in generic XDP, a frame has only its cache-line rounding as tailroom, so answers
/// longer than that grow at the head instead. Through a real veth pair, with the client's
/// kernel checking every checksum.
#[test]
fn veth_answers_that_outgrow_the_tailroom() {
    let topo = Topology::new().unwrap();
    let mut x = topo
        .server
        .enter(|| -> anyhow::Result<XdpCache> {
            let mut x = XdpCache::load()?;
            x.attach(SERVER_IFACE)?;
            Ok(x)
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("{e:#}"));
    let v4: SocketAddr = format!("{SERVER_V4}:53").parse().unwrap();
    let v6: SocketAddr = format!("[{SERVER_V6}]:53").parse().unwrap();
    x.serve(v4).unwrap();
    x.serve(v6).unwrap();
    let sockets = topo
        .client
        .enter(move || -> std::io::Result<(UdpSocket, UdpSocket)> {
            let s4 = UdpSocket::bind("0.0.0.0:0")?;
            s4.connect(v4)?;
            let s6 = UdpSocket::bind("[::]:0")?;
            s6.connect(v6)?;
            for s in [&s4, &s6] {
                s.set_read_timeout(Some(Duration::from_millis(300)))?;
            }
            Ok((s4, s6))
        })
        .unwrap()
        .unwrap();
    let ask = |s: &UdpSocket, q: &Query| -> Option<Message> {
        s.send(&q.to_wire()).unwrap();
        let mut buf = [0u8; 2048];
        let n = uninterrupted(|| s.recv(&mut buf)).ok()?;
        Some(Message::from_vec(&buf[..n]).unwrap())
    };

    // Growth from a few bytes up to about 200.
    for links in [0, 1, 3, 5] {
        let name = format!("chain{links}.example.com.");
        let resp = response(&name, RecordType::A, chain(&name, links)).unwrap();
        x.insert_response(&resp).unwrap();
        for (s, edns) in [(&sockets.0, false), (&sockets.1, true)] {
            let mut q = Query::new(&name, QTYPE_A);
            if edns {
                q = q.edns(Edns::new(1232));
            }
            let before = x.counters().unwrap();
            let m = ask(s, &q).unwrap_or_else(|| {
                panic!(
                    "{links} links: no answer, {:?}",
                    x.counters().unwrap().since(&before).nonzero()
                )
            });
            assert_eq!(m.id(), q.id);
            assert_eq!(m.answers().len(), links + 1);
            assert_records(m.answers(), upstream(&resp).answers(), &(295..=300));
            assert_eq!(x.counters().unwrap().since(&before).get(Counter::Hits), 1);
        }
    }

    // About 480 bytes more than the query: more than veth's headroom. Either answered in full,
    // or passed as too big for the frame (nobody listens on the server, so no answer at all).
    let name = "big.example.com.";
    let resp = big_response(name).unwrap();
    x.insert_response(&resp).unwrap();
    let q = Query::new(name, QTYPE_A).edns(Edns::new(1232));
    let before = x.counters().unwrap();
    match ask(&sockets.0, &q) {
        Some(m) => assert_records(m.answers(), upstream(&resp).answers(), &(295..=300)),
        None => assert_eq!(
            x.counters().unwrap().since(&before).nonzero(),
            vec![(Counter::Packets, 1), (Counter::PassTooBig, 1)]
        ),
    }
}

/// A loaded program reporting as `settings` say, answering on the default servers, with
/// `NAME` cached and in its prefetch window from the start.
fn reporting(settings: XdpSettings) -> (Fixture, QuestionKey) {
    let x = XdpCache::load_reporting(settings).unwrap_or_else(|e| panic!("{e:#}"));
    let mut f = Fixture::with(x);
    let (key, mut entry) = entry_from(&a_response(NAME, 300, [198, 51, 100, 1]), u32::MAX).unwrap();
    // A second ago: the program's coarse clock may lag a few ticks.
    entry.prefetch_ns = monotonic_ns() - NS;
    f.x.insert(&key, &entry).unwrap();
    (f, key)
}

#[test]
fn a_popular_entry_in_its_last_tenth_asks_once_for_a_prefetch() {
    let settings = XdpSettings {
        prefetch_min_hits: 2,
        ..XdpSettings::OFF
    };
    let (mut f, key) = reporting(settings);
    let query = f.v4.query(&Query::new(NAME, QTYPE_A));
    let mut asked = Vec::new();
    for _ in 0..5 {
        f.answer(&query);
        asked.push(f.x.events().unwrap().len());
    }
    // Hits before each: 0 and 1 are too few; 2 asks; then it has asked.
    assert_eq!(asked, [0, 0, 1, 0, 0]);
    assert_eq!(f.x.entry(&key).unwrap().unwrap().prefetch_sent, 1);

    let (mut f, key) = reporting(settings);
    f.answer(&query);
    f.answer(&query);
    f.answer(&query);
    let ev = f.x.events().unwrap();
    assert_eq!(ev.len(), 1);
    let ev = ev[0];
    assert_eq!((ev.kind, ev.qtype, ev.hits), (EVENT_PREFETCH, QTYPE_A, 2));
    assert_eq!(&ev.name[..ev.name_len as usize], key.wire_name());

    // Outside the window, or with prefetch off, a hit asks for nothing.
    let (mut f, key) = reporting(settings);
    let mut entry = f.x.entry(&key).unwrap().unwrap();
    entry.prefetch_ns = monotonic_ns() + 60 * NS;
    f.x.insert(&key, &entry).unwrap();
    for _ in 0..4 {
        f.answer(&query);
    }
    assert!(f.x.events().unwrap().is_empty());
    let (mut f, _) = reporting(XdpSettings::OFF);
    for _ in 0..4 {
        f.answer(&query);
    }
    assert!(f.x.events().unwrap().is_empty());
}

#[test]
fn sampled_hits_are_reported_with_their_client() {
    let settings = XdpSettings {
        log_sample: 1,
        ..XdpSettings::OFF
    };
    let (mut f, key) = reporting(settings);
    let query = f.v4.query(&Query::new("WWW.example.com", QTYPE_A));
    f.answer(&query);
    let ev = f.x.events().unwrap();
    assert_eq!(ev.len(), 1);
    let ev = ev[0];
    assert_eq!((ev.kind, ev.qtype, ev.rcode), (EVENT_HIT, QTYPE_A, 0));
    assert_eq!(&ev.name[..ev.name_len as usize], key.wire_name());
    let IpAddr::V4(client) = f.v4.client.ip() else {
        panic!("not IPv4")
    };
    assert_eq!(ev.client[..12], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
    assert_eq!(ev.client[12..], client.octets());
    assert_eq!(ev.client_port, f.v4.client.port());
    let now = monotonic_ns();
    assert!(ev.time_ns <= now && now - ev.time_ns < 60 * NS);

    // One in four, at random: about a quarter of 400 hits.
    let (mut f, _) = reporting(XdpSettings {
        log_sample: 4,
        ..XdpSettings::OFF
    });
    for _ in 0..400 {
        f.answer(&query);
    }
    let n = f.x.events().unwrap().len();
    assert!((50..=150).contains(&n), "{n} of 400 sampled at 1 in 4");
}

#[test]
fn reports_a_full_ring_buffer_has_no_room_for_are_counted() {
    let (mut f, _) = reporting(XdpSettings {
        log_sample: 1,
        ..XdpSettings::OFF
    });
    let query = f.v4.query(&Query::new(NAME, QTYPE_A));
    let start = f.x.counters().unwrap();
    // More hits than a megabyte of events holds, none read meanwhile.
    let hits = 6000;
    for _ in 0..hits {
        assert_eq!(f.x.run(&query).unwrap().action, Action::Tx);
    }
    let counted = f.x.counters().unwrap().since(&start);
    let lost = counted.get(Counter::EventsLost);
    let kept = f.x.events().unwrap().len() as u64;
    assert!(lost > 0, "nothing lost");
    assert_eq!(kept + lost, hits);
    assert_eq!(counted.get(Counter::Hits), hits);
}

/// The kernel hands an LRU element back to its free list as soon as an update replaces it,
/// and may fill it with another name's answer while the program, on another CPU, is still
/// copying from it. The program checks the name again after the copy: an answer that was
/// read from an element given to another name in between is dropped, never sent. In every
/// tier, with answers of its size.
#[test]
fn an_entry_reused_while_it_is_read_never_answers_another_name() {
    let _exclusive = crate::exclusive();
    // Maps as full as can be, so that an update takes the element the one before freed.
    let mut x = XdpCache::load_tiers([4; 3]).unwrap();
    let spec = FrameSpec::v4();
    x.serve(spec.server).unwrap();
    for (tier, records) in [(Tier::Small, 1), (Tier::Medium, 6), (Tier::Large, 16)] {
        let names: Vec<String> = (0..4)
            .map(|i| format!("{}{i}.example.com.", tier.name()))
            .collect();
        let responses: Vec<Vec<u8>> = names
            .iter()
            .enumerate()
            .map(|(i, name)| a_records_response(name, records, i as u8))
            .collect();
        // Keyed as the daemon keys them: each entry carries its key.
        let entries: Vec<(CacheKey, CacheEntry)> = responses
            .iter()
            .map(|r| {
                let (q, entry) = entry_from(r, u32::MAX).unwrap();
                assert_eq!(entry.tier(), Some(tier));
                let key = x.cache_key(&q);
                (key, CacheEntry { key, ..entry })
            })
            .collect();
        let keys: Vec<CacheKey> = entries.iter().map(|(key, _)| *key).collect();
        // Each round's entries expire a nanosecond apart from the last's, as the daemon's
        // fills, each made at its own time, do: an element that went to other names and back
        // within one read is then told apart.
        let values = |round: u64| -> Vec<u8> {
            entries
                .iter()
                .flat_map(|(_, entry)| {
                    let expires_ns = entry.expires_ns - round;
                    sized(
                        tier,
                        &CacheEntry {
                            expires_ns,
                            ..*entry
                        },
                    )
                })
                .collect()
        };
        let map = x.cache_fd(tier).unwrap();
        update_batch(map, &keys, &values(0)).unwrap();
        let want = answers(&upstream(&responses[0]));
        let stop = std::sync::atomic::AtomicBool::new(false);
        let query = spec.query(&Query::new(&names[0], QTYPE_A));
        const ENOUGH: u64 = 100;
        let (mut answered, mut wrong, mut dropped) = (0u64, 0u64, 0u64);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                // Every name rewritten in turn, on the other CPU, in one call: each update
                // frees an element that the next one takes.
                for round in 1.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let _ = update_batch(map, &keys, &values(round));
                }
            });
            // Three seconds, or on a slow emulated kernel as long as it takes to answer
            // `ENOUGH`, up to a minute.
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(3)
                || (answered < ENOUGH && start.elapsed() < Duration::from_secs(60))
            {
                let run = x.run(&query).unwrap();
                match run.action {
                    Action::Tx => {
                        answered += 1;
                        let payload = parse_frame(&run.data).unwrap().payload;
                        wrong += u64::from(answers(&Message::from_vec(&payload).unwrap()) != want);
                    }
                    Action::Drop => dropped += 1,
                    _ => {}
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        eprintln!("{tier:?}: {answered} answered, {dropped} dropped, {wrong} wrong");
        // Tens of thousands here; under emulation (the 6.1 runs), a few hundred.
        assert!(answered >= ENOUGH, "{tier:?}: {answered} answered");
        assert_eq!(wrong, 0, "{tier:?}: answers for another name's records");
    }
}

/// The bytes of `entry` as a value of `tier`'s map.
fn sized(tier: Tier, entry: &CacheEntry) -> Vec<u8> {
    let bytes = match tier {
        Tier::Small => bytemuck::bytes_of(&entry.resized::<SMALL_DATA>().unwrap()).to_vec(),
        Tier::Medium => bytemuck::bytes_of(&entry.resized::<MEDIUM_DATA>().unwrap()).to_vec(),
        Tier::Large => bytemuck::bytes_of(&entry.resized::<LARGE_DATA>().unwrap()).to_vec(),
    };
    assert_eq!(bytes.len(), tier.value_len());
    bytes
}

/// A response to `name`/A with `count` A records, in 198.51.`net`.0/24.
pub(crate) fn a_records_response(name: &str, count: usize, net: u8) -> Vec<u8> {
    let records = (0..count)
        .map(|i| record(name, 300, a([198, 51, net, i as u8])).unwrap())
        .collect();
    response(name, RecordType::A, records).unwrap()
}

/// The answer section's owners and data, without TTLs.
pub(crate) fn answers(m: &Message) -> Vec<(Name, RData)> {
    m.answers()
        .iter()
        .map(|r| (r.name().clone(), r.data().clone()))
        .collect()
}

/// A daemon-cache hit puts its answer back into the kernel cache only if no flush came in
/// between: the check is made under the kernel cache's write lock, which a flush's removals
/// take after the flush has counted itself.
#[test]
fn a_fill_a_flush_came_before_writes_nothing() {
    let x = XdpCache::load().unwrap();
    let kernel =
        dnsxdp::kernel::cache::KernelCache::new(x.cache_maps().unwrap(), x.hash_key()).unwrap();
    let (key, entry) = entry_from(&a_response(NAME, 300, [198, 51, 100, 1]), u32::MAX).unwrap();
    let now = monotonic_ns();
    kernel.insert(key, entry, dnsxdp::kernel::cache::Fill::IfAbsent, || false);
    assert!(
        kernel.get(&key, now).unwrap().is_none(),
        "written after a flush"
    );
    kernel.insert(key, entry, dnsxdp::kernel::cache::Fill::IfAbsent, || true);
    assert!(kernel.get(&key, now).unwrap().is_some(), "not written");
}

/// The walks behind `dnsxdp stats` and the cache commands read a map of several thousand
/// entries whole, a batch of system calls at a time.
#[test]
fn walks_see_every_entry_of_a_big_cache() {
    use dnsxdp::kernel::cache::{Fill, KernelCache};
    // Room to spare: the LRU map starts evicting before it is quite full.
    let x = XdpCache::load_with(8192).unwrap();
    let kernel = KernelCache::new(x.cache_maps().unwrap(), x.hash_key()).unwrap();
    let count = 3000;
    for i in 0..count {
        let name = format!("n{i}.example.com.");
        let (key, entry) =
            entry_from(&a_response(&name, 300, [198, 51, 100, 1]), u32::MAX).unwrap();
        kernel.insert(key, entry, Fill::Replace, || true);
    }
    let now = monotonic_ns();
    let size = kernel.size(now).unwrap();
    assert_eq!(
        (size.entries, size.occupancy, size.evictions),
        (count, count, 0)
    );
    assert_eq!(kernel.entries(now).unwrap().len() as u64, count);
    let odd = |q: &dnsxdp_common::name::QuestionKey| q.wire_name().len() % 2 == 1;
    let removed = kernel.remove_where(odd).unwrap();
    let left = kernel.entries(now).unwrap();
    assert_eq!(left.len() as u64 + removed, count);
    assert!(removed > 0 && left.iter().all(|e| !odd(&e.question)));
}
