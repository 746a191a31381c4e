//! The upstream layer end to end: the real dnsxdp binary forwarding to real servers in the
//! upstream namespace (NSD, Unbound for DoT and DoH) and to scripted responders that count
//! queries and misbehave. Run as root (`cargo xtask test`).

use std::{
    net::{SocketAddr, TcpStream, UdpSocket},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use dnsxdp_tests::{
    client::{exchange_tcp, exchange_udp, query, query_edns, uninterrupted},
    daemon::Daemon,
    netns::{Topology, UPSTREAM_V4, UPSTREAM_V6},
    unbound::{DOH_PORT, DOT_PORT, TestCa, Unbound},
    upstream::{HUGE_COUNT, Nsd, SHORT_TTL},
    upstreams::{Behavior, FORGED, Responder, add_address},
};
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RData, RecordType, rdata::opt::EdnsOption},
};

const WAIT: Duration = Duration::from_secs(3);
const NSD: &str = "udp://198.18.2.2:53";
/// Unbound's address and the name in its certificate.
const UNBOUND: &str = "198.18.2.3";
const DOH_NAME: &str = "dns.example.test";
/// An address with nothing listening: queries to it are refused at once.
const DEAD: &str = "198.18.2.10";
/// Addresses for responders.
const R1: &str = "198.18.2.4";
const R2: &str = "198.18.2.5";
const R3: &str = "198.18.2.6";
const R4: &str = "198.18.2.7";

/// A topology with NSD upstream and a client socket.
/// Fields drop in order: the servers before their namespaces.
struct Lab {
    nsd: Option<Nsd>,
    client: UdpSocket,
    topo: Topology,
}

impl Lab {
    fn new() -> Result<Self> {
        let topo = Topology::new()?;
        let nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
        let client = topo.client.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
        Ok(Self {
            nsd: Some(nsd),
            client,
            topo,
        })
    }

    /// A responder on `ip`, an address added for it.
    fn responder(&self, ip: &str, behavior: Behavior) -> Result<Responder> {
        add_address(&self.topo, ip)?;
        Responder::start(&self.topo, ip, behavior)
    }

    fn daemon(&self, upstreams: &[&str], flags: &[&str]) -> Result<Daemon> {
        Daemon::start_with_upstreams(&self.topo, upstreams, flags)
    }

    fn ask(&self, daemon: &Daemon, name: &str, rtype: RecordType) -> Result<Message> {
        exchange_udp(&self.client, daemon.v4, &query(name, rtype), WAIT)
    }

    /// NSD's own answer, whole (over TCP).
    fn truth(&self, name: &str, rtype: RecordType) -> Result<Message> {
        let nsd: SocketAddr = format!("{UPSTREAM_V4}:53").parse()?;
        let mut tcp = self
            .topo
            .upstream
            .enter(move || TcpStream::connect_timeout(&nsd, WAIT))??;
        exchange_tcp(&mut tcp, &query(name, rtype), WAIT)
    }
}

/// Answer records, names lower-cased, without TTLs.
fn records(m: &Message) -> Vec<(String, RecordType, RData)> {
    let mut all: Vec<_> = m
        .answers()
        .iter()
        .map(|r| {
            (
                r.name().to_lowercase().to_ascii(),
                r.record_type(),
                r.data().clone(),
            )
        })
        .collect();
    all.sort_by_key(|r| format!("{r:?}"));
    all
}

fn forged(m: &Message) -> bool {
    m.answers()
        .iter()
        .chain(m.additionals())
        .any(|r| matches!(r.data(), RData::A(a) if a.octets() == FORGED))
}

fn counter(upstream: &serde_json::Value, name: &str) -> u64 {
    upstream[name].as_u64().unwrap_or(u64::MAX)
}

/// Waits until `daemon` reports the upstream `url` in `state`.
fn wait_state(daemon: &Daemon, url: &str, state: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if daemon.upstream(url)?["state"] == state {
            return Ok(());
        }
        sleep(Duration::from_millis(100));
    }
    bail!("{url} not {state} within 5 s: {}", daemon.upstream(url)?)
}

/// Established TCP connections to `port` on the upstream side.
fn connections(lab: &Lab, port: u16) -> Result<usize> {
    let out = lab
        .topo
        .upstream
        .command("ss")
        .args([
            "-Htn",
            "state",
            "established",
            &format!("( sport = :{port} )"),
        ])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().count())
}

#[test]
fn every_transport_resolves_and_keeps_its_connection() -> Result<()> {
    let lab = Lab::new()?;
    add_address(&lab.topo, UNBOUND)?;
    let ca = TestCa::new(&lab.topo.upstream.name, &[DOH_NAME], &[UNBOUND])?;
    let stub = format!("{UPSTREAM_V4}:53").parse()?;
    let _unbound = Unbound::start(&lab.topo.upstream, UNBOUND, &ca, stub)?;
    let tcp = "tcp://198.18.2.2:53";
    let tls = format!("tls://{UNBOUND}:{DOT_PORT}#{DOH_NAME}");
    let https = format!("https://{DOH_NAME}/dns-query?bootstrap={UNBOUND}");
    let ca_file = ca.ca_file.to_string_lossy().into_owned();
    let daemon = lab.daemon(
        &[NSD, tcp, &tls, &https],
        &["--upstream-strategy", "round-robin", "--tls-ca", &ca_file],
    )?;
    // Three questions per upstream in turn; huge.example.test is too big for UDP, so the
    // plain upstream that gets it retries over TCP.
    let questions = [
        ("www.example.test.", RecordType::A),
        ("www.example.test.", RecordType::AAAA),
        ("alias.example.test.", RecordType::A),
        ("alias.example.test.", RecordType::AAAA),
        ("mail.example.test.", RecordType::MX),
        ("txt.example.test.", RecordType::TXT),
        ("big.example.test.", RecordType::A),
        ("huge.example.test.", RecordType::A),
        ("short.example.test.", RecordType::A),
        ("short.example.test.", RecordType::AAAA),
        ("nope.example.test.", RecordType::A),
        ("ns.example.test.", RecordType::AAAA),
    ];
    // Over TCP, so that the huge answer reaches the client whole.
    let addr = daemon.v4;
    let mut tcp_client = lab
        .topo
        .client
        .enter(move || TcpStream::connect_timeout(&addr, WAIT))??;
    for (name, rtype) in questions {
        let got = exchange_tcp(&mut tcp_client, &query(name, rtype), WAIT)?;
        let want = lab.truth(name, rtype)?;
        assert_eq!(got.response_code(), want.response_code(), "{name} {rtype}");
        assert_eq!(records(&got), records(&want), "{name} {rtype}");
    }
    assert_eq!(
        records(&lab.truth("huge.example.test.", RecordType::A)?).len(),
        HUGE_COUNT as usize
    );
    let tls_stats = daemon.upstream(&tls)?;
    for url in [NSD, tcp, &tls, &https] {
        let u = daemon.upstream(url)?;
        assert!(counter(&u, "queries") >= 3, "{u}");
        assert_eq!(counter(&u, "failures"), 0, "{u}");
        assert_eq!(u["state"], "up");
        assert!(u["latency_ms"].as_f64().is_some(), "{u}");
    }
    assert!(
        tls_stats["upstream"]
            .as_str()
            .unwrap()
            .starts_with("tls://")
    );
    // Every query to Unbound went over one connection per protocol.
    assert_eq!(connections(&lab, DOT_PORT)?, 1);
    assert_eq!(connections(&lab, DOH_PORT)?, 1);
    Ok(())
}

#[test]
fn a_certificate_for_another_name_is_refused() -> Result<()> {
    let lab = Lab::new()?;
    add_address(&lab.topo, UNBOUND)?;
    let ca = TestCa::new(&lab.topo.upstream.name, &[DOH_NAME], &[UNBOUND])?;
    let stub = format!("{UPSTREAM_V4}:53").parse()?;
    let _unbound = Unbound::start(&lab.topo.upstream, UNBOUND, &ca, stub)?;
    let wrong = format!("tls://{UNBOUND}:{DOT_PORT}#other.example.test");
    let ca_file = ca.ca_file.to_string_lossy().into_owned();
    let daemon = lab.daemon(&[&wrong, NSD], &["--tls-ca", &ca_file])?;
    let reply = lab.ask(&daemon, "www.example.test.", RecordType::A)?;
    assert_eq!(
        records(&reply),
        records(&lab.truth("www.example.test.", RecordType::A)?)
    );
    let u = daemon.upstream(&wrong)?;
    assert!(
        counter(&u, "failures") >= 2 && counter(&u, "queries") == counter(&u, "failures"),
        "{u}"
    );
    assert!(daemon.log().contains("certificate"), "{}", daemon.log());
    Ok(())
}

#[test]
fn round_robin_takes_turns() -> Result<()> {
    let lab = Lab::new()?;
    let rs = [
        lab.responder(R1, Behavior::Forward)?,
        lab.responder(R2, Behavior::Forward)?,
        lab.responder(R3, Behavior::Forward)?,
    ];
    let urls: Vec<String> = rs.iter().map(Responder::url).collect();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let daemon = lab.daemon(&urls, &["--upstream-strategy", "round-robin"])?;
    for i in 0..30 {
        lab.ask(&daemon, &format!("rr{i}.example.test."), RecordType::A)?;
    }
    let counts: Vec<usize> = rs.iter().map(|r| r.count("rr")).collect();
    assert_eq!(counts, [10, 10, 10]);
    Ok(())
}

#[test]
fn weighted_follows_the_weights() -> Result<()> {
    let lab = Lab::new()?;
    let (heavy, light) = (
        lab.responder(R1, Behavior::Forward)?,
        lab.responder(R2, Behavior::Forward)?,
    );
    let heavy_url = format!("{}?weight=3", heavy.url());
    let daemon = lab.daemon(
        &[&heavy_url, &light.url()],
        &["--upstream-strategy", "weighted"],
    )?;
    for i in 0..40 {
        lab.ask(&daemon, &format!("w{i}.example.test."), RecordType::A)?;
    }
    assert_eq!((heavy.count("w"), light.count("w")), (30, 10));
    Ok(())
}

#[test]
fn fastest_prefers_the_quick_one_and_still_tries_the_other() -> Result<()> {
    let lab = Lab::new()?;
    let slow = lab.responder(R1, Behavior::Slow(Duration::from_millis(100)))?;
    let fast = lab.responder(R2, Behavior::Forward)?;
    let daemon = lab.daemon(
        &[&slow.url(), &fast.url()],
        &["--upstream-strategy", "fastest"],
    )?;
    for i in 0..48 {
        lab.ask(&daemon, &format!("f{i}.example.test."), RecordType::A)?;
    }
    // One query in 16 explores.
    let (slow, fast) = (slow.count("f"), fast.count("f"));
    assert!(
        (2..=4).contains(&slow) && slow + fast == 48,
        "slow {slow}, fast {fast}"
    );
    Ok(())
}

/// Ordered sends everything to the first; when it stops answering it is taken down after
/// --upstream-max-fails and the second serves; once it answers probes it is first again.
#[test]
fn ordered_fails_over_and_comes_back() -> Result<()> {
    let lab = Lab::new()?;
    let (first, second) = (
        lab.responder(R1, Behavior::Forward)?,
        lab.responder(R2, Behavior::Forward)?,
    );
    let (first_url, second_url) = (first.url(), second.url());
    let daemon = lab.daemon(
        &[&first_url, &second_url],
        &["--upstream-timeout", "300ms", "--upstream-max-fails", "2"],
    )?;
    for i in 0..10 {
        lab.ask(&daemon, &format!("a{i}.example.test."), RecordType::A)?;
    }
    assert_eq!((first.count("a"), second.count("a")), (10, 0));

    first.set(Behavior::Silent);
    for i in 0..5 {
        let start = Instant::now();
        let reply = lab.ask(&daemon, &format!("b{i}.example.test."), RecordType::A)?;
        assert_eq!(reply.response_code(), ResponseCode::NXDomain);
        // Each waits out the timeout until the first is down, then none does.
        let took = start.elapsed();
        assert_eq!(
            took > Duration::from_millis(250),
            i < 2,
            "query {i} took {took:?}"
        );
    }
    assert_eq!((first.count("b"), second.count("b")), (2, 5));
    let u = daemon.upstream(&first_url)?;
    assert_eq!(
        (u["state"].as_str(), counter(&u, "timeouts")),
        (Some("down"), 2),
        "{u}"
    );

    first.set(Behavior::Forward);
    wait_state(&daemon, &first_url, "up")?;
    for i in 0..5 {
        lab.ask(&daemon, &format!("c{i}.example.test."), RecordType::A)?;
    }
    assert_eq!((first.count("c"), second.count("c")), (5, 0));
    Ok(())
}

/// A dead, a slow, a SERVFAIL-ing and a spoofing upstream ahead of a good one: the answer
/// comes from the good one within the client's patience, nothing forged is served or cached,
/// and once the silent ones are down queries no longer wait for them.
#[test]
fn dead_slow_servfailing_and_spoofing_upstreams_are_survived() -> Result<()> {
    let lab = Lab::new()?;
    add_address(&lab.topo, DEAD)?;
    let slow = lab.responder(R1, Behavior::Slow(Duration::from_secs(3)))?;
    let servfail = lab.responder(R2, Behavior::ServFail)?;
    let spoof = lab.responder(R3, Behavior::Spoof)?;
    let dead = format!("udp://{DEAD}:53");
    let bad = [dead.clone(), slow.url(), servfail.url(), spoof.url()];
    let mut upstreams: Vec<&str> = bad.iter().map(String::as_str).collect();
    upstreams.push(NSD);
    let daemon = lab.daemon(
        &upstreams,
        &[
            "--upstream-timeout",
            "300ms",
            "--upstream-max-fails",
            "3",
            "--upstream-retries",
            "4",
        ],
    )?;
    // The readiness query went through all of them once already.
    for (name, rtype) in [
        ("www.example.test.", RecordType::A),
        ("www.example.test.", RecordType::AAAA),
    ] {
        let start = Instant::now();
        let reply = lab.ask(&daemon, name, rtype)?;
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(!forged(&reply), "{reply:?}");
        assert_eq!(records(&reply), records(&lab.truth(name, rtype)?));
    }
    // The SERVFAIL-ing one failed as often but answers, so it stays up: a zone broken upstream
    // must not take an upstream down.
    for url in &bad {
        let u = daemon.upstream(url)?;
        let state = if *url == servfail.url() { "up" } else { "down" };
        assert_eq!(
            (u["state"].as_str(), counter(&u, "failures")),
            (Some(state), 3),
            "{u}"
        );
    }
    for url in [slow.url(), spoof.url()] {
        assert_eq!(counter(&daemon.upstream(&url)?, "timeouts"), 3);
    }
    let start = Instant::now();
    let mail = lab.ask(&daemon, "mail.example.test.", RecordType::MX)?;
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        records(&mail),
        records(&lab.truth("mail.example.test.", RecordType::MX)?)
    );
    // From the caches now: the kernel's and the daemon's hold the real answer.
    let hits = daemon.xdp("hits")?;
    let again = lab.ask(&daemon, "www.example.test.", RecordType::A)?;
    assert_eq!(daemon.xdp("hits")?, hits + 1);
    assert!(!forged(&again));
    assert_eq!(counter(&daemon.upstream(NSD)?, "failures"), 0);
    Ok(())
}

#[test]
fn records_outside_the_cname_chain_are_dropped() -> Result<()> {
    let lab = Lab::new()?;
    let poison = lab.responder(R4, Behavior::Poison)?;
    let daemon = lab.daemon(&[&poison.url()], &[])?;
    for (name, count) in [("www.example.test.", 2), ("alias.example.test.", 4)] {
        let first = lab.ask(&daemon, name, RecordType::A)?;
        let hits = daemon.xdp("hits")?;
        let again = lab.ask(&daemon, name, RecordType::A)?;
        assert_eq!(daemon.xdp("hits")?, hits + 1, "{name} from XDP");
        for reply in [&first, &again] {
            assert!(!forged(reply), "{name}: {reply:?}");
            assert_eq!(records(reply), records(&lab.truth(name, RecordType::A)?));
            assert_eq!(reply.answers().len(), count);
        }
    }
    Ok(())
}

#[test]
fn a_burst_of_identical_misses_costs_one_upstream_query() -> Result<()> {
    let lab = Lab::new()?;
    let slow = lab.responder(R1, Behavior::Slow(Duration::from_millis(300)))?;
    let daemon = lab.daemon(&[&slow.url()], &[])?;
    let before = daemon.stats()?["daemon"].clone();
    let mut ids = Vec::new();
    for i in 0..100u16 {
        let mut q = query("www.example.test.", RecordType::A);
        q.set_id(0x1000 + i);
        lab.client.send_to(&q.to_vec()?, daemon.v4)?;
        ids.push(q.id());
    }
    let mut buf = [0u8; 4096];
    lab.client.set_read_timeout(Some(WAIT))?;
    let truth = records(&lab.truth("www.example.test.", RecordType::A)?);
    while !ids.is_empty() {
        let (len, _) = uninterrupted(|| lab.client.recv_from(&mut buf))
            .context("waiting for the burst's replies")?;
        let reply = Message::from_vec(&buf[..len])?;
        assert_eq!(records(&reply), truth);
        ids.retain(|&id| id != reply.id());
    }
    assert_eq!(slow.count("www."), 1);
    let after = daemon.stats()?["daemon"].clone();
    let delta = |c: &str| counter(&after, c) - counter(&before, c);
    assert_eq!(
        (delta("upstream_queries"), delta("coalesced")),
        (1, 99),
        "{after}"
    );
    Ok(())
}

/// RFC 8767: an expired answer is served with TTL 30 (by the daemon, never XDP) while no
/// upstream answers, and fresh ones again once the upstream is back.
#[test]
fn stale_answers_while_all_upstreams_are_down_until_one_is_back() -> Result<()> {
    let mut lab = Lab::new()?;
    let daemon = lab.daemon(
        &[NSD],
        &["--upstream-timeout", "300ms", "--upstream-max-fails", "1"],
    )?;
    let name = "short.example.test.";
    let fresh = lab.ask(&daemon, name, RecordType::A)?;
    let cached_at = Instant::now();
    // Counted down from the start (README, Cache lifetime).
    assert_eq!(fresh.answers()[0].ttl(), SHORT_TTL - 1);
    lab.nsd = None;
    sleep(
        (cached_at + Duration::from_millis(SHORT_TTL as u64 * 1000 + 300))
            .saturating_duration_since(Instant::now()),
    );

    let hits = daemon.xdp("hits")?;
    for _ in 0..3 {
        let start = Instant::now();
        let stale = exchange_udp(
            &lab.client,
            daemon.v4,
            &query_edns(name, RecordType::A, 1232, false),
            WAIT,
        )?;
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(records(&stale), records(&fresh));
        assert!(stale.answers().iter().all(|r| r.ttl() == 30), "{stale:?}");
        let ede = stale
            .extensions()
            .as_ref()
            .and_then(|e| e.option(15.into()));
        assert_eq!(
            ede,
            Some(&EdnsOption::Unknown(15, vec![0, 3])),
            "Stale Answer EDE"
        );
    }
    assert_eq!(
        daemon.xdp("hits")?,
        hits,
        "stale answers come from the daemon"
    );
    assert_eq!(counter(&daemon.stats()?["daemon"], "stale_answers"), 3);
    assert_eq!(daemon.upstream(NSD)?["state"], "down");
    // Nothing was cached for a name never asked before.
    let never = lab.ask(&daemon, "www.example.test.", RecordType::A)?;
    assert_eq!(never.response_code(), ResponseCode::ServFail);

    lab.nsd = Some(Nsd::start(&lab.topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?);
    wait_state(&daemon, NSD, "up")?;
    let back = lab.ask(&daemon, name, RecordType::A)?;
    assert!(
        back.answers().iter().all(|r| r.ttl() <= SHORT_TTL),
        "{back:?}"
    );
    let hits = daemon.xdp("hits")?;
    lab.ask(&daemon, name, RecordType::A)?;
    assert_eq!(
        daemon.xdp("hits")?,
        hits + 1,
        "live again, so in the kernel again"
    );
    Ok(())
}

#[test]
fn bad_upstream_settings_are_one_line_naming_the_key() -> Result<()> {
    let topo = Topology::new()?;
    let bin = dnsxdp_tests::daemon::binary()?;
    let dir = std::env::temp_dir().join(format!("dnsxdp-conf-{}", topo.server.name));
    std::fs::create_dir_all(&dir)?;
    // Bounded, in case a bad value were taken and it kept running.
    let run = |args: &[&str]| -> Result<String> {
        let out = topo
            .server
            .command("timeout")
            .arg("10")
            .arg(&bin)
            .arg("run")
            .args(args)
            .output()?;
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        Ok(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    };
    let control = dir.join("c.sock");
    let control = control.to_str().unwrap();
    let base = [
        "--no-xdp",
        "--listen",
        "198.18.1.1:53",
        "--control",
        control,
    ];
    let e = run(&[&base[..], &["--upstream", "https://dns.example/dns-query"]].concat())?;
    assert!(e.contains("bootstrap") && e.lines().count() == 1, "{e}");
    let e = run(&[
        &base[..],
        &[
            "--upstream",
            NSD,
            "--tls-ca",
            "/nonexistent.pem",
            "--upstream",
            "tls://198.18.2.3",
        ],
    ]
    .concat())?;
    assert!(
        e.contains("tls-ca /nonexistent.pem") && e.lines().count() == 1,
        "{e}"
    );
    for (line, key) in [
        ("upstream-strategy = \"random\"", "upstream-strategy"),
        ("serve-stale = \"forever\"", "serve-stale"),
        ("query-timeout = \"0\"", "query-timeout"),
    ] {
        let file = dir.join("dnsxdp.toml");
        std::fs::write(&file, format!("upstream = [\"{NSD}\"]\n{line}\n"))?;
        let e = run(&[&base[..], &["--config", file.to_str().unwrap()]].concat())?;
        assert!(e.contains(key) && e.lines().count() == 1, "{e}");
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
