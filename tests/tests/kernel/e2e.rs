//! End to end: the real dnsxdp binary with its XDP program on a veth, a client namespace, and
//! NSD as the upstream. Run as root (`cargo xtask test`).

use std::{
    net::{SocketAddr, TcpStream, UdpSocket},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use dnsxdp_common::{
    name::{QuestionKey, parse_question},
    tier::Tier,
};
use dnsxdp_tests::{
    client::{exchange_raw, exchange_tcp, exchange_udp, query, query_edns},
    daemon::Daemon,
    netns::{SERVER_V4, Topology, UPSTREAM_V4, UPSTREAM_V6},
    upstream::{BIG_COUNT, HUGE_COUNT, MANY_ZONE, Nsd, SHORT_TTL, WIDE_NAME},
};
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RData, Record, RecordType, rdata::opt::EdnsOption},
};

const WAIT: Duration = Duration::from_secs(2);
/// How long to wait for a reply that must not come.
const SILENCE: Duration = Duration::from_millis(700);

/// A topology with NSD upstream and dnsxdp serving, plus client sockets.
struct Sandbox {
    daemon: Daemon,
    v4: UdpSocket,
    v6: UdpSocket,
    upstream_sock: UdpSocket,
    nsd: Nsd,
    topo: Topology,
}

impl Sandbox {
    fn new() -> Result<Self> {
        Self::with_flags(&[])
    }

    fn with_flags(flags: &[&str]) -> Result<Self> {
        let topo = Topology::new()?;
        let nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
        let daemon = Daemon::start(&topo, flags)?;
        let v4 = topo.client.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
        let v6 = topo.client.enter(|| UdpSocket::bind("[::]:0"))??;
        let upstream_sock = topo.upstream.enter(|| UdpSocket::bind("198.18.2.2:0"))??;
        Ok(Self {
            daemon,
            v4,
            v6,
            upstream_sock,
            nsd,
            topo,
        })
    }

    fn ask(&self, q: &Message) -> Result<Message> {
        exchange_udp(&self.v4, self.daemon.v4, q, WAIT)
    }

    fn ask_v6(&self, q: &Message) -> Result<Message> {
        exchange_udp(&self.v6, self.daemon.v6, q, WAIT)
    }

    fn ask_upstream(&self, q: &Message) -> Result<Message> {
        exchange_udp(&self.upstream_sock, self.nsd.addr, q, WAIT)
    }

    fn tcp(&self, addr: SocketAddr) -> Result<TcpStream> {
        Ok(self
            .topo
            .client
            .enter(move || TcpStream::connect_timeout(&addr, WAIT))??)
    }

    /// Asks `q` and returns the reply and how many XDP hits it added.
    fn ask_counting_hits(&self, q: &Message, v6: bool) -> Result<(Message, u64)> {
        let before = self.daemon.xdp("hits")?;
        let reply = if v6 { self.ask_v6(q)? } else { self.ask(q)? };
        Ok((reply, self.daemon.xdp("hits")? - before))
    }
}

/// Answer records without TTLs, for comparing with the upstream's.
fn records(m: &Message) -> Vec<(String, RecordType, Option<RData>)> {
    m.answers()
        .iter()
        .map(|r: &Record| {
            (
                r.name().to_lowercase().to_string(),
                r.record_type(),
                Some(r.data().clone()),
            )
        })
        .collect()
}

fn ttls(m: &Message) -> Vec<u32> {
    m.answers().iter().map(Record::ttl).collect()
}

#[test]
fn repeat_is_answered_by_xdp_even_with_the_daemon_frozen() -> Result<()> {
    let s = Sandbox::new()?;
    let q = query("www.example.test.", RecordType::A);
    let (first, hits) = s.ask_counting_hits(&q, false)?;
    assert_eq!(hits, 0, "first query must go to the daemon");
    assert_eq!(first.answers().len(), 2);
    let upstream_before = s.daemon.counter("upstream_queries")?;

    let (second, hits) = s.ask_counting_hits(&q, false)?;
    assert_eq!(hits, 1, "repeat must be an XDP hit");
    assert_eq!(records(&second), records(&first));
    assert_eq!(s.daemon.counter("upstream_queries")?, upstream_before);

    s.daemon.signal(libc::SIGSTOP)?;
    let cached = s.ask(&query("www.example.test.", RecordType::A));
    let uncached = exchange_udp(
        &s.v4,
        s.daemon.v4,
        &query("mail.example.test.", RecordType::A),
        SILENCE,
    );
    s.daemon.signal(libc::SIGCONT)?;
    assert_eq!(
        records(&cached.context("cached name with the daemon frozen")?),
        records(&first)
    );
    assert!(
        uncached.is_err(),
        "an uncached name was answered with the daemon frozen"
    );
    Ok(())
}

#[test]
fn an_entry_evicted_from_the_kernel_is_put_back_from_the_daemon_cache() -> Result<()> {
    let s = Sandbox::new()?;
    let q = query("www.example.test.", RecordType::A);
    s.ask(&q)?;
    let mut kernel = s.daemon.kernel_cache(&s.topo)?;
    let question = dnsxdp_common::name::parse_question(&q.to_vec()?)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .key;
    // The key holds a hash under the daemon's random key: look the entry up by its name.
    let (at, key) = kernel
        .iter()
        .enumerate()
        .find_map(|(at, tier)| {
            tier.entries()
                .filter_map(Result::ok)
                .find(|(k, e)| dnsxdp_common::name::QuestionKey::of_entry(k, e) == question)
                .map(|(k, _)| (at, k))
        })
        .context("no kernel entry for the name")?;
    let filled = kernel[at].get(&key)?.context("no entry")?;
    kernel[at].remove(&key)?;
    let upstream = s.daemon.counter("upstream_queries")?;
    let (_, hits) = s.ask_counting_hits(&q, false)?;
    assert_eq!(hits, 0, "nothing left in the kernel to hit");
    assert_eq!(
        s.daemon.counter("upstream_queries")?,
        upstream,
        "daemon cache hit"
    );
    let refilled = kernel[at].get(&key)?.context("not put back")?;
    // The daemon re-derives the expiry from whole seconds of TTL left: up to 1 s earlier.
    let early = filled.expires_ns.checked_sub(refilled.expires_ns);
    assert!(
        early.is_some_and(|ns| ns < 1_000_000_000),
        "filled {}, refilled {}",
        filled.expires_ns,
        refilled.expires_ns
    );
    let (_, hits) = s.ask_counting_hits(&q, false)?;
    assert_eq!(hits, 1, "the daemon put the entry back");
    Ok(())
}

/// Whether the kernel cache's map of `tier` holds the answer to `q`.
fn kernel_holds(s: &Sandbox, q: &Message, tier: Tier) -> Result<bool> {
    let mut question = parse_question(&q.to_vec()?)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .key;
    question.dnssec_ok = q.extensions().as_ref().is_some_and(|e| e.flags().dnssec_ok);
    let kernel = s.daemon.kernel_cache(&s.topo)?;
    let mut entries = kernel[tier.index()].entries();
    Ok(entries
        .any(|item| item.is_ok_and(|(key, entry)| QuestionKey::of_entry(&key, &entry) == question)))
}

#[test]
fn each_answer_is_kept_in_the_smallest_tier_it_fits() -> Result<()> {
    let s = Sandbox::new()?;
    for (what, q, tier) in [
        (
            "one A record",
            query("one.many.example.test.", RecordType::A),
            Tier::Small,
        ),
        (
            "two A records and their signature",
            padded(query_edns("www.example.test.", RecordType::A, 1232, true)),
            Tier::Medium,
        ),
        (
            "16 AAAA records",
            padded(query_edns(WIDE_NAME, RecordType::AAAA, 1232, false)),
            Tier::Large,
        ),
    ] {
        s.ask(&q)?;
        let (_, hits) = s.ask_counting_hits(&q, false)?;
        assert_eq!(hits, 1, "{what}: the repeat from XDP");
        for other in Tier::ALL {
            assert_eq!(
                kernel_holds(&s, &q, other)?,
                other == tier,
                "{what} in {other:?}"
            );
        }
    }
    Ok(())
}

/// The kernel counts a hash map's memory as an element per entry, a bucket per entry rounded
/// up to a power of two, and a little for the map: two sizes under the same power of two
/// differ by their elements alone.
#[test]
fn a_small_entry_takes_at_most_256_bytes_of_kernel_memory() -> Result<()> {
    let s = Sandbox::with_flags(&["--kernel-cache-size", "1536"])?;
    let q = query("one.many.example.test.", RecordType::A);
    s.ask(&q)?;
    assert!(
        kernel_holds(&s, &q, Tier::Small)?,
        "a one-record answer is small"
    );
    let before = Tier::ALL.map(|tier| s.daemon.kernel_cache_memory(&s.topo, tier));
    let Sandbox { daemon, topo, .. } = s;
    drop(daemon);
    let daemon = Daemon::start(&topo, &["--kernel-cache-size", "2048"])?;
    for (tier, before) in Tier::ALL.into_iter().zip(before) {
        let (bytes, entries) = before?;
        let (more_bytes, more_entries) = daemon.kernel_cache_memory(&topo, tier)?;
        assert_eq!(
            (entries, more_entries),
            (tier.entries(1536), tier.entries(2048)),
            "{tier:?}"
        );
        let per_entry = (more_bytes - bytes) / u64::from(more_entries - entries);
        eprintln!("{tier:?}: {per_entry} bytes per entry, {more_bytes} for {more_entries}");
        assert!(
            per_entry <= tier.element_len() as u64,
            "{tier:?}: {per_entry} bytes"
        );
        if tier == Tier::Small {
            assert!(per_entry <= 256, "{per_entry} bytes");
        }
    }
    Ok(())
}

#[test]
fn answers_equal_the_upstreams_for_a_aaaa_and_cname_chains_over_v4_and_v6() -> Result<()> {
    let s = Sandbox::new()?;
    for (name, rtype, v6, count) in [
        ("www.example.test.", RecordType::A, false, 2),
        ("www.example.test.", RecordType::AAAA, true, 1),
        ("alias.example.test.", RecordType::A, false, 4),
        ("alias.example.test.", RecordType::AAAA, true, 3),
    ] {
        let q = query(name, rtype);
        let expected = records(&s.ask_upstream(&q)?);
        assert_eq!(expected.len(), count, "fixture {name} {rtype}");
        let (first, hits) = s.ask_counting_hits(&q, v6)?;
        assert_eq!(hits, 0, "{name} {rtype}: first from the daemon");
        assert_eq!(records(&first), expected, "{name} {rtype} from the daemon");
        let (second, hits) = s.ask_counting_hits(&q, v6)?;
        assert_eq!(
            hits,
            1,
            "{name} {rtype}: repeat from XDP; {}",
            s.daemon.stats()?
        );
        assert_eq!(records(&second), expected, "{name} {rtype} from XDP");
        assert_eq!(second.id(), q.id());
        assert!(second.recursion_available() && second.recursion_desired());
        assert_eq!(second.response_code(), ResponseCode::NoError);
        let ttl = ttls(&second);
        assert!(
            ttl.iter().all(|t| *t == ttl[0] && *t <= 300),
            "TTL-aligned: {ttl:?}"
        );
    }
    Ok(())
}

/// Every section of `m` without TTLs, with its rcode and flags: what must not differ between
/// the daemon's answer and XDP's.
fn whole(m: &Message) -> impl PartialEq + std::fmt::Debug + use<> {
    let section = |rs: &[Record]| {
        rs.iter()
            .map(|r| {
                let mut r = r.clone();
                r.set_ttl(0);
                r
            })
            .collect::<Vec<_>>()
    };
    (
        m.response_code(),
        [
            m.authoritative(),
            m.truncated(),
            m.recursion_desired(),
            m.recursion_available(),
            m.authentic_data(),
            m.checking_disabled(),
        ],
        m.queries().to_vec(),
        section(m.answers()),
        section(m.name_servers()),
        section(m.additionals()),
    )
}

#[test]
fn answers_of_every_type_come_from_xdp_as_the_daemon_gives_them() -> Result<()> {
    let s = Sandbox::new()?;
    let https = RecordType::HTTPS;
    let unknown = RecordType::Unknown(65_000);
    for (name, rtype, rcode, count) in [
        (
            "mail.example.test.",
            RecordType::MX,
            ResponseCode::NoError,
            1,
        ),
        (
            "txt.example.test.",
            RecordType::TXT,
            ResponseCode::NoError,
            1,
        ),
        ("www.example.test.", https, ResponseCode::NoError, 1),
        ("alias.example.test.", https, ResponseCode::NoError, 3),
        (
            "_sip._udp.example.test.",
            RecordType::SRV,
            ResponseCode::NoError,
            1,
        ),
        (
            "ptr.example.test.",
            RecordType::PTR,
            ResponseCode::NoError,
            1,
        ),
        ("example.test.", RecordType::CAA, ResponseCode::NoError, 1),
        ("example.test.", RecordType::NS, ResponseCode::NoError, 1),
        ("example.test.", RecordType::SOA, ResponseCode::NoError, 1),
        ("opaque.example.test.", unknown, ResponseCode::NoError, 1),
        // NODATA and NXDOMAIN, each with its SOA.
        ("mail.example.test.", https, ResponseCode::NoError, 0),
        (
            "nope.example.test.",
            RecordType::MX,
            ResponseCode::NXDomain,
            0,
        ),
    ] {
        let what = format!("{name} {rtype}");
        let upstream = s.ask_upstream(&query(name, rtype))?;
        assert_eq!(
            (upstream.response_code(), upstream.answers().len()),
            (rcode, count),
            "fixture {what}"
        );
        let first = s.ask(&query(name, rtype))?;
        assert_eq!(
            records(&first),
            records(&upstream),
            "{what} from the daemon"
        );
        // Again in another spelling, and with EDNS: from XDP over UDP, as the daemon gives it
        // over TCP.
        for q in [
            query(&name.to_uppercase(), rtype),
            query_edns(name, rtype, 1232, false),
        ] {
            let (xdp, hits) = s.ask_counting_hits(&q, false)?;
            let daemon = exchange_tcp(&mut s.tcp(s.daemon.v4)?, &q, WAIT)?;
            let what = format!("{what}, EDNS {}", q.extensions().is_some());
            assert_eq!(hits, 1, "{what}: repeat from XDP");
            assert_eq!(xdp.id(), q.id());
            assert_eq!(xdp.queries(), q.queries(), "{what}: the client's spelling");
            assert_eq!(whole(&xdp), whole(&daemon), "{what}");
            let payload = |m: &Message| m.extensions().as_ref().map(|e| e.max_payload());
            assert_eq!(payload(&xdp), payload(&daemon), "{what}");
        }
    }
    // Meta types stay with the daemon.
    let (any, hits) = s.ask_counting_hits(&query("www.example.test.", RecordType::ANY), false)?;
    let (_, again) = s.ask_counting_hits(&query("www.example.test.", RecordType::ANY), false)?;
    assert_eq!((hits, again), (0, 0), "{any}");
    Ok(())
}

#[test]
fn do_queries_get_their_signatures_and_proofs_from_xdp_as_from_the_daemon() -> Result<()> {
    let s = Sandbox::new()?;
    for (name, rtype, rcode, authority) in [
        ("www.example.test.", RecordType::A, ResponseCode::NoError, 0),
        // NODATA: the SOA and the NSEC that proves it, each with its signature.
        (
            "mail.example.test.",
            RecordType::AAAA,
            ResponseCode::NoError,
            4,
        ),
    ] {
        let what = format!("{name} {rtype} with DO");
        let q = padded(query_edns(name, rtype, 1232, true));
        let upstream = s.ask_upstream(&q)?;
        let signatures = |m: &Message| {
            let all = m.answers().iter().chain(m.name_servers());
            all.filter(|r| r.record_type() == RecordType::RRSIG).count()
        };
        assert_eq!(
            (upstream.response_code(), upstream.name_servers().len()),
            (rcode, authority),
            "fixture {what}: {upstream}"
        );
        assert!(signatures(&upstream) > 0, "fixture {what}");
        let (first, hits) = s.ask_counting_hits(&q, false)?;
        assert_eq!(hits, 0, "{what}: first from the daemon");
        assert_eq!(whole(&first), whole(&upstream_as_forwarded(upstream)));
        // Without DO, no signatures, from XDP's other entry once the daemon filled it.
        let plain = query_edns(name, rtype, 1232, false);
        s.ask(&plain)?;
        let (unsigned, hits) = s.ask_counting_hits(&plain, false)?;
        assert_eq!((hits, signatures(&unsigned)), (1, 0), "{what}: {unsigned}");

        let (xdp, hits) = s.ask_counting_hits(&q, true)?;
        let daemon = exchange_tcp(&mut s.tcp(s.daemon.v4)?, &q, WAIT)?;
        assert_eq!(hits, 1, "{what}: repeat from XDP");
        assert_eq!(whole(&xdp), whole(&daemon), "{what}");
        assert!(
            xdp.extensions()
                .as_ref()
                .is_some_and(|e| e.flags().dnssec_ok)
        );
    }
    Ok(())
}

/// `q`, an EDNS query, padded with 300 bytes (RFC 7830, ignored by the cache): a veth frame
/// has room to grow by 256 bytes only, less than some answers need; a real NIC has more.
fn padded(mut q: Message) -> Message {
    q.extensions_mut()
        .as_mut()
        .expect("EDNS")
        .options_mut()
        .insert(EdnsOption::Unknown(12, vec![0; 300]));
    q
}

/// The upstream's answer as the daemon forwards it: RA set, AA clear, the OPT record its own.
fn upstream_as_forwarded(mut m: Message) -> Message {
    m.set_authoritative(false).set_recursion_available(true);
    m
}

#[test]
fn ttl_counts_down_and_an_expired_entry_is_not_served() -> Result<()> {
    let s = Sandbox::new()?;
    let q = query("short.example.test.", RecordType::A);
    let filled = Instant::now();
    let (first, _) = s.ask_counting_hits(&q, false)?;
    // Counted down from the start, by the rule both layers follow.
    assert_eq!(ttls(&first), vec![SHORT_TTL - 1]);
    sleep(Duration::from_millis(1200));
    let (second, hits) = s.ask_counting_hits(&q, false)?;
    assert_eq!(hits, 1);
    let ttl = ttls(&second)[0];
    assert!(ttl < SHORT_TTL - 1, "TTL {ttl} did not count down");

    sleep(
        (filled + Duration::from_millis(SHORT_TTL as u64 * 1000 + 300))
            .saturating_duration_since(Instant::now()),
    );
    let expired_before = s.daemon.xdp("expired")?;
    let (third, hits) = s.ask_counting_hits(&q, false)?;
    assert_eq!(hits, 0, "expired entry served from XDP");
    assert_eq!(s.daemon.xdp("expired")?, expired_before + 1);
    assert_eq!(
        records(&third),
        records(&first),
        "the daemon answers after expiry"
    );
    Ok(())
}

#[test]
fn the_ttl_factor_shortens_the_life_in_both_layers() -> Result<()> {
    let s = Sandbox::with_flags(&["--ttl-factor", "0.67"])?;
    // 3 s scaled by 0.67, rounded down.
    let scaled = 2;
    let q = query("short.example.test.", RecordType::A);
    let filled = Instant::now();
    let (first, _) = s.ask_counting_hits(&q, false)?;
    assert_eq!(ttls(&first), vec![scaled - 1]);
    let (second, hits) = s.ask_counting_hits(&q, false)?;
    assert_eq!(hits, 1);
    assert!(ttls(&second)[0] < scaled, "{:?}", ttls(&second));

    // Past the scaled life, short of the record's own TTL: neither layer serves it.
    sleep(
        (filled + Duration::from_millis(scaled as u64 * 1000 + 300))
            .saturating_duration_since(Instant::now()),
    );
    assert!(filled.elapsed() < Duration::from_secs(SHORT_TTL as u64));
    let expired_before = s.daemon.xdp("expired")?;
    let upstream_before = s.daemon.counter("upstream_queries")?;
    let (_, hits) = s.ask_counting_hits(&q, false)?;
    assert_eq!(hits, 0, "XDP served it past its scaled life");
    assert_eq!(s.daemon.xdp("expired")?, expired_before + 1);
    assert_eq!(
        s.daemon.counter("upstream_queries")?,
        upstream_before + 1,
        "the daemon cache served it past its scaled life"
    );
    Ok(())
}

#[test]
fn mixed_case_queries_hit_and_get_their_own_case_back() -> Result<()> {
    let s = Sandbox::new()?;
    s.ask(&query("WwW.ExAmPlE.tEsT.", RecordType::A))?;
    let q = query("wWW.example.TEST.", RecordType::A);
    let before = s.daemon.xdp("hits")?;
    let raw = exchange_raw(&s.v4, s.daemon.v4, &q.to_vec()?, WAIT)?;
    assert_eq!(s.daemon.xdp("hits")? - before, 1);
    let sent = q.to_vec()?;
    // Header (12) then the question as the client wrote it.
    let question_len = "wWW.example.TEST.".len() + 1 + 4;
    assert_eq!(&raw[12..12 + question_len], &sent[12..12 + question_len]);
    Ok(())
}

#[test]
fn edns_plain_and_oversized_answers() -> Result<()> {
    let s = Sandbox::new()?;
    let edns = query_edns("www.example.test.", RecordType::A, 1232, false);
    s.ask(&edns)?;
    let (reply, hits) = s.ask_counting_hits(
        &query_edns("www.example.test.", RecordType::A, 4096, false),
        false,
    )?;
    assert_eq!(hits, 1);
    assert_eq!(
        reply.extensions().as_ref().map(|e| e.max_payload()),
        Some(1232)
    );
    let (plain, hits) = s.ask_counting_hits(&query("www.example.test.", RecordType::A), false)?;
    assert_eq!(hits, 1);
    assert!(
        plain.extensions().is_none(),
        "no OPT without EDNS in the query"
    );

    // 16 AAAA under a long name: a kernel entry that fits EDNS replies but not 512 bytes.
    let padded = || padded(query_edns(WIDE_NAME, RecordType::AAAA, 1232, false));
    s.ask(&padded())?;
    let (reply, hits) = s.ask_counting_hits(&padded(), false)?;
    assert_eq!(
        (hits, reply.answers().len()),
        (1, 16),
        "{}",
        s.daemon.stats()?
    );
    let too_big = s.daemon.xdp("pass_too_big")?;
    let (reply, hits) = s.ask_counting_hits(&query(WIDE_NAME, RecordType::AAAA), false)?;
    assert_eq!(hits, 0);
    assert_eq!(s.daemon.xdp("pass_too_big")?, too_big + 1);
    assert!(
        reply.truncated(),
        "a 512-byte client must be told to use TCP"
    );
    let mut tcp = s.tcp(s.daemon.v4)?;
    assert_eq!(
        exchange_tcp(&mut tcp, &query(WIDE_NAME, RecordType::AAAA), WAIT)?
            .answers()
            .len(),
        16
    );

    // Larger than a kernel entry: userspace only, truncated for plain UDP, whole over TCP.
    let big = query("big.example.test.", RecordType::A);
    assert!(s.ask(&big)?.truncated());
    assert_eq!(
        s.ask(&query_edns("big.example.test.", RecordType::A, 1232, false))?
            .answers()
            .len(),
        BIG_COUNT as usize
    );
    assert_eq!(
        exchange_tcp(&mut tcp, &big, WAIT)?.answers().len(),
        BIG_COUNT as usize
    );
    // Larger than the upstream's UDP reply: the daemon must retry it over TCP.
    let huge = query("huge.example.test.", RecordType::A);
    assert_eq!(
        exchange_tcp(&mut tcp, &huge, WAIT)?.answers().len(),
        HUGE_COUNT as usize
    );
    Ok(())
}

/// A query for www.example.test. A with the given tweak applied to its wire bytes.
fn raw_query(tweak: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = query("www.example.test.", RecordType::A).to_vec().unwrap();
    tweak(&mut bytes);
    bytes
}

#[test]
fn malformed_packets_are_never_answered_by_xdp_and_do_not_disturb_the_daemon() -> Result<()> {
    let s = Sandbox::new()?;
    let good = query("www.example.test.", RecordType::A);
    s.ask(&good)?;
    let before = s.daemon.stats()?["xdp"].clone();

    let mut overlong = raw_query(|_| {});
    overlong.truncate(12);
    for _ in 0..5 {
        overlong.push(63);
        overlong.extend([b'x'; 63]);
    }
    overlong.extend([0, 0, 1, 0, 1]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated header", raw_query(|b| b.truncate(9))),
        ("truncated question", raw_query(|b| b.truncate(b.len() - 3))),
        (
            "garbage",
            (0..60u8)
                .map(|i| i.wrapping_mul(97).wrapping_add(13))
                .collect(),
        ),
        ("QDCOUNT=2", raw_query(|b| b[5] = 2)),
        (
            "compression pointer",
            raw_query(|b| {
                b.truncate(12);
                b.extend([3, b'w', b'w', b'w', 0xc0, 12, 0, 1, 0, 1]);
            }),
        ),
        ("overlong name", overlong),
    ];
    for (what, bytes) in &cases {
        // A reply may come from the daemon (FORMERR); it must not be an answer.
        if let Ok(reply) = exchange_raw(&s.v4, s.daemon.v4, bytes, SILENCE) {
            let rcode = Message::from_vec(&reply).map(|m| m.response_code());
            assert!(
                matches!(rcode, Ok(ResponseCode::FormErr) | Err(_)) || reply.len() <= 12,
                "{what}: answered with {rcode:?}"
            );
        }
    }
    let after = s.daemon.stats()?["xdp"].clone();
    let delta = |c: &str| after[c].as_u64().unwrap() - before[c].as_u64().unwrap();
    assert_eq!(delta("hits"), 0, "XDP answered a malformed packet: {after}");
    // Each packet was seen and passed up for a reason; none was looked up.
    let passed: u64 = ["pass_malformed", "pass_not_query", "pass_unsupported"]
        .into_iter()
        .map(delta)
        .sum();
    assert_eq!(
        (delta("packets"), passed),
        (cases.len() as u64, cases.len() as u64),
        "{after}"
    );
    assert!(delta("pass_malformed") >= 4, "{after}");
    assert_eq!(records(&s.ask(&good)?).len(), 2, "the daemon still serves");
    Ok(())
}

#[test]
fn tcp_queries_work_over_v4_and_v6() -> Result<()> {
    let s = Sandbox::new()?;
    for addr in [s.daemon.v4, s.daemon.v6] {
        let mut tcp = s.tcp(addr)?;
        for rtype in [
            RecordType::A,
            RecordType::AAAA,
            RecordType::MX,
            RecordType::TXT,
        ] {
            let reply = exchange_tcp(&mut tcp, &query("www.example.test.", rtype), WAIT)?;
            assert_eq!(
                reply.response_code(),
                ResponseCode::NoError,
                "{addr} {rtype}"
            );
        }
        let reply = exchange_tcp(&mut tcp, &query("nope.example.test.", RecordType::A), WAIT)?;
        assert_eq!(reply.response_code(), ResponseCode::NXDomain);
    }
    Ok(())
}

/// Each worker reads a UDP socket of its own, which the kernel spreads clients over by their
/// port: queries from many ports are all answered, so every socket is read.
#[test]
fn every_worker_reads_its_own_socket() -> Result<()> {
    let s = Sandbox::with_flags(&["--no-xdp", "--workers", "3"])?;
    let udp = s.topo.server.command("cat").arg("/proc/net/udp").output()?;
    // 198.18.1.1:53 as /proc/net/udp writes it.
    let on_53 = String::from_utf8_lossy(&udp.stdout)
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("010112C6:0035"))
        .count();
    assert_eq!(on_53, 3);
    let addr = s.daemon.v4;
    let answered = s.topo.client.enter(move || -> Result<usize> {
        let mut answered = 0;
        for i in 0..48 {
            let sock = UdpSocket::bind("0.0.0.0:0")?;
            let q = query(&format!("w{i}.{MANY_ZONE}"), RecordType::A);
            if exchange_udp(&sock, addr, &q, WAIT).is_ok() {
                answered += 1;
            }
        }
        Ok(answered)
    })??;
    assert_eq!(answered, 48);
    Ok(())
}

#[test]
fn startup_errors_are_one_clear_line() -> Result<()> {
    let topo = Topology::new()?;
    let bin = dnsxdp_tests::daemon::binary()?;
    let run = |args: &[&str]| -> Result<(bool, String)> {
        let out = topo
            .server
            .command(bin.to_str().unwrap())
            .arg("run")
            .args(args)
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    };
    let upstream = format!("{UPSTREAM_V4}:53");
    let (ok, err) = run(&[
        "--iface",
        "nosuch0",
        "--upstream",
        &upstream,
        "--control",
        "/tmp/dnsxdp-e1.sock",
    ])?;
    assert!(
        !ok && err.contains("nosuch0") && err.lines().count() == 1,
        "{err}"
    );

    let listen = format!("{SERVER_V4}:53");
    let _taken = topo.server.enter({
        let listen = listen.clone();
        move || UdpSocket::bind(listen)
    })??;
    let (ok, err) = run(&[
        "--no-xdp",
        "--listen",
        &listen,
        "--upstream",
        &upstream,
        "--control",
        "/tmp/dnsxdp-e2.sock",
    ])?;
    assert!(
        !ok && err.contains("in use") && err.lines().count() == 1,
        "{err}"
    );

    let (ok, err) = run(&[
        "--iface",
        "veth0",
        "--control",
        "/tmp/dnsxdp-e3.sock",
        "--upstream",
        "not an address",
    ])?;
    assert!(
        !ok && err.contains("upstream") && err.lines().count() == 1,
        "{err}"
    );
    Ok(())
}

/// A stale answer is for when no upstream answers in time (RFC 8767), and NSD answers every
/// query here: with REFUSED for names outside its zone, which once counted as upstream
/// failures, marked it down after three, and had an expired CNAME chain served stale.
#[test]
fn refusals_for_other_names_never_make_an_expired_chain_stale() -> Result<()> {
    // Answers live a second, and could then be served stale for a minute.
    let s = Sandbox::with_flags(&["--max-ttl", "1", "--serve-stale", "60s"])?;
    let chain = || query_edns("alias.example.test.", RecordType::A, 1232, false);
    s.ask(&chain())?;
    sleep(Duration::from_millis(1300));
    for i in 0..5 {
        let refused = s.ask(&query(&format!("n{i}.elsewhere.test."), RecordType::A))?;
        assert_ne!(refused.response_code(), ResponseCode::NoError);
    }
    let upstream_before = s.daemon.counter("upstream_queries")?;
    let again = s.ask(&chain())?;
    let stale = again.extensions().as_ref().is_some_and(|e| {
        e.options()
            .as_ref()
            .iter()
            .any(|(c, _)| u16::from(*c) == 15)
    });
    assert!(!stale, "an Extended DNS Error (stale answer): {again:?}");
    assert_eq!(records(&again).len(), 4, "{again:?}");
    assert_eq!(s.daemon.counter("upstream_queries")?, upstream_before + 1);
    assert_eq!(s.daemon.counter("stale_answers")?, 0);
    Ok(())
}
