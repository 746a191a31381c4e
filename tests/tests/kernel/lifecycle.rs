//! The cache over time, end to end: negative answers served by XDP, TTL clamps, prefetch of
//! popular names, the kernel cache kept across a restart, and the query and security logs.
//! Run as root (`cargo xtask test`).

use std::{
    net::UdpSocket,
    path::PathBuf,
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::Result;
use dnsxdp_tests::{
    client::{exchange_udp, query},
    daemon::Daemon,
    netns::{CLIENT_V4, Topology, UPSTREAM_V4, UPSTREAM_V6},
    upstream::{Nsd, SHORT_TTL, too_long_for_the_kernel},
};
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RData, Record, RecordType},
};

const WAIT: Duration = Duration::from_secs(2);

/// NSD upstream, dnsxdp started with `flags`, and a client socket.
struct Sandbox {
    daemon: Daemon,
    sock: UdpSocket,
    _nsd: Nsd,
    topo: Topology,
}

impl Sandbox {
    fn new(flags: &[&str]) -> Result<Self> {
        let topo = Topology::new()?;
        let nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
        let daemon = Daemon::start(&topo, flags)?;
        let sock = topo.client.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
        Ok(Self {
            daemon,
            sock,
            _nsd: nsd,
            topo,
        })
    }

    fn ask(&self, name: &str, rtype: RecordType) -> Result<Message> {
        exchange_udp(&self.sock, self.daemon.v4, &query(name, rtype), WAIT)
    }

    /// Asks and returns the reply with how many XDP hits and upstream queries it added.
    fn ask_counting(&self, name: &str, rtype: RecordType) -> Result<(Message, u64, u64)> {
        let (hits, upstream) = (self.xdp("hits"), self.daemon("upstream_queries"));
        let reply = self.ask(name, rtype)?;
        Ok((
            reply,
            self.xdp("hits") - hits,
            self.daemon("upstream_queries") - upstream,
        ))
    }

    fn xdp(&self, counter: &str) -> u64 {
        self.daemon.xdp(counter).unwrap()
    }

    fn daemon(&self, counter: &str) -> u64 {
        self.daemon.counter(counter).unwrap()
    }
}

/// The least TTL an answer fetched with `ttl` after `asked` may carry now: the whole seconds
/// left, less the 50 ms the XDP program stops early. Timed rather than assumed, so that a slow
/// machine (an emulated one) gets the same check.
fn least_ttl(ttl: u32, asked: Instant) -> u32 {
    ttl.saturating_sub((asked.elapsed().as_secs_f64() + 0.05).ceil() as u32)
}

fn soa_ttl(m: &Message) -> u32 {
    match m.name_servers() {
        [soa] if matches!(soa.data(), RData::SOA(_)) => soa.ttl(),
        other => panic!("authority is not one SOA: {other:?}"),
    }
}

fn ttls(records: &[Record]) -> Vec<u32> {
    records.iter().map(Record::ttl).collect()
}

#[test]
fn nxdomain_and_nodata_are_served_by_xdp_until_their_negative_ttl_runs_out() -> Result<()> {
    let s = Sandbox::new(&["--max-negative-ttl", "3"])?;
    for (name, rtype, rcode) in [
        ("nope.example.test.", RecordType::A, ResponseCode::NXDomain),
        (
            "mail.example.test.",
            RecordType::AAAA,
            ResponseCode::NoError,
        ),
    ] {
        let asked = Instant::now();
        let (first, hits, upstream) = s.ask_counting(name, rtype)?;
        assert_eq!((first.response_code(), hits, upstream), (rcode, 0, 1));
        assert!(first.answers().is_empty());
        // The zone's SOA (TTL 300, MINIMUM 60) capped by --max-negative-ttl, and counted down
        // from the start (README, Cache lifetime).
        assert_eq!(soa_ttl(&first), 2);

        let (second, hits, upstream) = s.ask_counting(name, rtype)?;
        assert_eq!((second.response_code(), hits, upstream), (rcode, 1, 0));
        assert!(second.answers().is_empty());
        assert!(
            (least_ttl(3, asked)..=3).contains(&soa_ttl(&second)),
            "{second:?}"
        );
        sleep(Duration::from_millis(1100));
        let (later, hits, _) = s.ask_counting(name, rtype)?;
        assert_eq!(hits, 1);
        let ttl = soa_ttl(&later);
        assert!(
            ttl < soa_ttl(&second) && ttl >= least_ttl(3, asked),
            "SOA TTL {ttl} did not count down"
        );
    }
    // Both have expired two seconds later: the program passes them, the upstream is asked.
    sleep(Duration::from_millis(2100));
    let expired = s.xdp("expired");
    for (name, rtype) in [
        ("nope.example.test.", RecordType::A),
        ("mail.example.test.", RecordType::AAAA),
    ] {
        let (reply, hits, upstream) = s.ask_counting(name, rtype)?;
        assert_eq!((hits, upstream), (0, 1), "{name} {rtype}");
        assert_eq!(soa_ttl(&reply), 2);
    }
    assert_eq!(s.xdp("expired") - expired, 2);
    Ok(())
}

#[test]
fn ttls_are_raised_to_min_ttl_and_capped_at_max_ttl_in_both_layers() -> Result<()> {
    let s = Sandbox::new(&["--min-ttl", "20", "--max-ttl", "100"])?;
    let short = "short.example.test.";
    let asked = Instant::now();
    let (miss, _, _) = s.ask_counting(short, RecordType::A)?;
    // Raised, and counted down from the start.
    assert_eq!(ttls(miss.answers()), [19]);
    let (hit, hits, _) = s.ask_counting(short, RecordType::A)?;
    assert_eq!(hits, 1);
    assert!(
        (least_ttl(20, asked)..=20).contains(&hit.answers()[0].ttl()),
        "{hit:?}"
    );
    // Still served after the record's own TTL.
    sleep(Duration::from_secs(u64::from(SHORT_TTL)));
    let (later, hits, upstream) = s.ask_counting(short, RecordType::A)?;
    assert_eq!((hits, upstream), (1, 0));
    assert!(later.answers()[0].ttl() <= 17);

    let (www, _, _) = s.ask_counting("www.example.test.", RecordType::A)?;
    assert_eq!(ttls(www.answers()), [99, 99]);
    // A name XDP does not serve, from the daemon's cache.
    let long = too_long_for_the_kernel();
    let (first, _, _) = s.ask_counting(&long, RecordType::A)?;
    assert_eq!(ttls(first.answers()), [99]);
    let cache_hits = s.daemon("cache_hits");
    let again = s.ask(&long, RecordType::A)?;
    assert_eq!(s.daemon("cache_hits") - cache_hits, 1);
    assert!(again.answers()[0].ttl() <= 100);
    Ok(())
}

#[test]
fn a_popular_short_ttl_name_never_misses_while_prefetch_refreshes_it() -> Result<()> {
    let s = Sandbox::new(&[])?;
    let short = "short.example.test.";
    s.ask(short, RecordType::A)?;
    let (upstream, expired, misses) = (
        s.daemon("upstream_queries"),
        s.xdp("expired"),
        s.xdp("misses"),
    );
    // Four TTL periods, ten queries a second.
    let end = Instant::now() + Duration::from_secs(4 * u64::from(SHORT_TTL));
    let mut asked = 0;
    while Instant::now() < end {
        let reply = s.ask(short, RecordType::A)?;
        assert_eq!(reply.answers().len(), 1, "{reply:?}");
        asked += 1;
        sleep(Duration::from_millis(100));
    }
    assert!(asked > 80, "only {asked} queries");
    assert_eq!(s.xdp("expired") - expired, 0, "an answer expired in XDP");
    assert_eq!(s.xdp("misses") - misses, 0);
    // Every client query was an XDP hit; refreshes went upstream on their own.
    assert_eq!(s.daemon("upstream_queries"), upstream);
    let prefetches = s.daemon("prefetches");
    assert!((3..=5).contains(&prefetches), "{prefetches} prefetches");
    Ok(())
}

#[test]
fn an_unpopular_name_expires_instead_of_being_prefetched() -> Result<()> {
    let s = Sandbox::new(&["--prefetch-min-hits", "5"])?;
    let short = "short.example.test.";
    s.ask(short, RecordType::AAAA)?;
    // Two hits, the second in the last tenth of the TTL: too few for a refresh.
    s.ask(short, RecordType::AAAA)?;
    sleep(Duration::from_millis(u64::from(SHORT_TTL) * 1000 - 200));
    s.ask(short, RecordType::AAAA)?;
    sleep(Duration::from_millis(400));
    let (_, hits, upstream) = s.ask_counting(short, RecordType::AAAA)?;
    assert_eq!((hits, upstream), (0, 1));
    assert_eq!(s.daemon("prefetches"), 0);
    Ok(())
}

#[test]
fn a_restart_keeps_the_kernel_cache_unless_told_otherwise() -> Result<()> {
    let s = Sandbox::new(&[])?;
    let www = "www.example.test.";
    s.ask(www, RecordType::A)?;
    let (_, hits, _) = s.ask_counting(www, RecordType::A)?;
    assert_eq!(hits, 1);
    let Sandbox {
        daemon, sock, topo, ..
    } = s;
    assert!(daemon.stop()?.success());

    // The new daemon's program answers from the old map's entries, with its own hash key.
    let daemon = Daemon::start(&topo, &[])?;
    assert!(daemon.log().contains("live entries kept from the last run"));
    let (hits, upstream) = (daemon.xdp("hits")?, daemon.counter("upstream_queries")?);
    let reply = exchange_udp(&sock, daemon.v4, &query(www, RecordType::A), WAIT)?;
    assert_eq!(reply.answers().len(), 2);
    assert_eq!(daemon.xdp("hits")? - hits, 1);
    assert_eq!(daemon.counter("upstream_queries")?, upstream);
    assert!(daemon.stop()?.success());

    let daemon = Daemon::start(&topo, &["--fresh-cache"])?;
    let (hits, upstream) = (daemon.xdp("hits")?, daemon.counter("upstream_queries")?);
    exchange_udp(&sock, daemon.v4, &query(www, RecordType::A), WAIT)?;
    assert_eq!(daemon.xdp("hits")? - hits, 0);
    assert_eq!(daemon.counter("upstream_queries")? - upstream, 1);
    Ok(())
}

/// A local record's entry never expires: it does not outlive the run, or a record taken out
/// of the config would be served for ever.
#[test]
fn local_records_are_not_kept_across_a_restart() -> Result<()> {
    let local = "nas.example.test.";
    let s = Sandbox::new(&["--local-record", "nas.example.test A 198.18.10.99"])?;
    let www = "www.example.test.";
    s.ask(local, RecordType::A)?;
    s.ask(www, RecordType::A)?;
    let (_, hits, _) = s.ask_counting(local, RecordType::A)?;
    assert_eq!(hits, 1, "the local record is an XDP hit");
    let Sandbox {
        daemon, sock, topo, ..
    } = s;
    assert!(daemon.stop()?.success());

    let daemon = Daemon::start(&topo, &[])?;
    let (hits, upstream) = (daemon.xdp("hits")?, daemon.counter("upstream_queries")?);
    let reply = exchange_udp(&sock, daemon.v4, &query(local, RecordType::A), WAIT)?;
    assert_eq!(reply.response_code(), ResponseCode::NXDomain, "{reply}");
    assert_eq!(daemon.counter("upstream_queries")? - upstream, 1);
    // An upstream's answer is kept as ever.
    exchange_udp(&sock, daemon.v4, &query(www, RecordType::A), WAIT)?;
    assert_eq!(daemon.xdp("hits")? - hits, 1);
    Ok(())
}

#[test]
fn entries_kept_from_the_last_run_are_held_to_lowered_ttl_caps() -> Result<()> {
    let s = Sandbox::new(&[])?;
    let (www, nope) = ("www.example.test.", "nope.example.test.");
    assert_eq!(ttls(s.ask(www, RecordType::A)?.answers()), [299, 299]);
    assert_eq!(soa_ttl(&s.ask(nope, RecordType::A)?), 59);
    let Sandbox {
        daemon, sock, topo, ..
    } = s;
    assert!(daemon.stop()?.success());

    let daemon = Daemon::start(&topo, &["--max-ttl", "10", "--max-negative-ttl", "5"])?;
    let (hits, upstream) = (daemon.xdp("hits")?, daemon.counter("upstream_queries")?);
    let kept = exchange_udp(&sock, daemon.v4, &query(www, RecordType::A), WAIT)?;
    let negative = exchange_udp(&sock, daemon.v4, &query(nope, RecordType::A), WAIT)?;
    assert_eq!(daemon.xdp("hits")? - hits, 2);
    assert_eq!(daemon.counter("upstream_queries")?, upstream);
    assert!(ttls(kept.answers()).iter().all(|&t| t <= 10), "{kept:?}");
    assert!(soa_ttl(&negative) <= 5, "{negative:?}");
    Ok(())
}

/// A query log file named for this test, removed when dropped.
struct LogFile(PathBuf);

impl LogFile {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("dnsxdp-{name}-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        LogFile(path)
    }

    /// The lines written so far, once at least `want` of them are ones to `keep`.
    fn lines_where(
        &self,
        want: usize,
        keep: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = std::fs::read_to_string(&self.0).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
            if lines.iter().filter(|l| keep(l)).count() >= want || Instant::now() > deadline {
                return lines;
            }
            sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn the_query_log_records_answers_from_every_layer() -> Result<()> {
    let log = LogFile::new("query-log");
    let path = log.0.to_string_lossy().into_owned();
    let s = Sandbox::new(&["--query-log", &path])?;
    s.ask("www.example.test.", RecordType::A)?;
    s.ask("WWW.example.test.", RecordType::A)?;
    // The repeat comes from the daemon's cache.
    let long = too_long_for_the_kernel();
    s.ask(&long, RecordType::TXT)?;
    s.ask(&long, RecordType::TXT)?;
    s.ask("nope.example.test.", RecordType::MX)?;
    // Without the harness's readiness probes, of which a slow start sends several.
    let probe = |l: &serde_json::Value| l["name"] == "ns.example.test.";
    let lines: Vec<_> = log
        .lines_where(5, |l| !probe(l))
        .into_iter()
        .filter(|l| !probe(l))
        .collect();
    let seen: Vec<(&str, &str, &str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap(),
                l["type"].as_str().unwrap(),
                l["rcode"].as_str().unwrap(),
                l["layer"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("www.example.test.", "A", "NOERROR", "upstream"),
            ("www.example.test.", "A", "NOERROR", "xdp"),
            (long.as_str(), "TXT", "NOERROR", "upstream"),
            (long.as_str(), "TXT", "NOERROR", "cache"),
            ("nope.example.test.", "MX", "NXDOMAIN", "upstream"),
        ]
    );
    let client_port = s.sock.local_addr()?.port();
    for l in lines {
        assert_eq!(l["client"], format!("{CLIENT_V4}:{client_port}"), "{l}");
        assert!(l["time"].as_str().unwrap().ends_with('Z'), "{l}");
        match l["layer"].as_str() {
            Some("xdp") => assert!(l["latency_us"].is_null(), "{l}"),
            _ => assert!(l["latency_us"].as_u64().unwrap() < 2_000_000, "{l}"),
        }
    }
    Ok(())
}

/// A client address of the client namespace besides `CLIENT_V4`, for a client to deny.
const DENIED_V4: &str = "198.18.1.50";

#[test]
fn denied_queries_are_logged_a_few_lines_a_second() -> Result<()> {
    let s = Sandbox::new(&[
        "--allow",
        "198.18.0.0/15",
        "--deny",
        &format!("{DENIED_V4}/32"),
    ])?;
    s.topo
        .client
        .ip(&["addr", "add", &format!("{DENIED_V4}/24"), "dev", "veth0"])?;
    let sock = s
        .topo
        .client
        .enter(|| UdpSocket::bind(format!("{DENIED_V4}:0")))??;
    let q = query("www.example.test.", RecordType::A).to_vec()?;
    // In bursts the veth's queue (256 frames) takes whole.
    for _ in 0..10 {
        for _ in 0..50 {
            sock.send_to(&q, s.daemon.v4)?;
        }
        sleep(Duration::from_millis(2));
    }
    // What a second suppressed is summed up when the next second's first event comes.
    sleep(Duration::from_millis(1100));
    sock.send_to(&q, s.daemon.v4)?;
    sleep(Duration::from_millis(300));
    // Far more than the program reports in a second.
    let denied = s.xdp("denied_dropped");
    assert!((100..=501).contains(&denied), "{denied} denied");
    let log = s.daemon.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("dnsxdp::security"))
        .collect();
    let one_by_one = lines
        .iter()
        .filter(|l| {
            l.contains(&format!("client={DENIED_V4}"))
                && l.contains("layer=\"xdp\"")
                && l.contains("denied by the ACL: dropped")
        })
        .count();
    assert!(
        (1..=21).contains(&one_by_one),
        "{one_by_one} lines:\n{}",
        lines.join("\n")
    );
    assert!(
        lines.iter().any(|l| l.contains("not logged one by one")),
        "no summary:\n{}",
        lines.join("\n")
    );
    Ok(())
}
