//! Access control and rate limits end to end: the real binary with its XDP program, clients at
//! several source addresses of the client namespace, NSD as the upstream. Run as root
//! (`cargo xtask test`).

use std::{
    collections::HashSet,
    fs,
    io::{Read as _, Write as _},
    mem::size_of,
    net::{SocketAddr, TcpStream, UdpSocket},
    process::Command,
    thread::{self, sleep},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use dnsxdp_tests::{
    client::{exchange_tcp, exchange_udp, query, tcp_from, uninterrupted},
    daemon::{Daemon, binary},
    netns::{SERVER_IFACE, Topology, UPSTREAM_V4, UPSTREAM_V6},
    upstream::Nsd,
};
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};

const WAIT: Duration = Duration::from_secs(2);
/// How long to wait for a reply that must not come.
const SILENCE: Duration = Duration::from_millis(500);
/// How soon a reload must be in force.
const RELOADED: Duration = Duration::from_secs(1);

/// The topology's own client (what the harness waits on) and two more in the allowed /25;
/// two that are denied.
const ALLOWED_V4: &str = "198.18.1.2";
const ALLOWED_V6: &str = "fd00:1::2";
const FLOODER: &str = "198.18.1.60";
const POLITE: &str = "198.18.1.61";
const DENIED_V4: &str = "198.18.1.200";
const DENIED_V6: &str = "fd00:1::c8";
const ACL: [&str; 4] = ["--allow", "198.18.1.0/25", "--allow", "fd00:1::/121"];

const CACHED: &str = "www.example.test.";

struct Sandbox {
    daemon: Daemon,
    topo: Topology,
    _nsd: Nsd,
}

impl Sandbox {
    fn new(flags: &[&str]) -> Result<Self> {
        let topo = Topology::new()?;
        for v4 in [FLOODER, POLITE, DENIED_V4] {
            topo.client
                .ip(&["addr", "add", &format!("{v4}/24"), "dev", "veth0"])?;
        }
        let v6 = format!("{DENIED_V6}/64");
        topo.client
            .ip(&["addr", "add", &v6, "dev", "veth0", "nodad"])?;
        let nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
        let daemon = Daemon::start(&topo, flags)?;
        Ok(Self {
            daemon,
            topo,
            _nsd: nsd,
        })
    }

    /// The daemon's address of `client`'s family.
    fn server(&self, client: &str) -> SocketAddr {
        if client.contains(':') {
            self.daemon.v6
        } else {
            self.daemon.v4
        }
    }

    /// A UDP socket of `client` in the client namespace.
    fn udp(&self, client: &str) -> Result<UdpSocket> {
        let at = SocketAddr::new(client.parse()?, 0);
        Ok(self.topo.client.enter(move || UdpSocket::bind(at))??)
    }

    fn ask(&self, client: &str, name: &str, rtype: RecordType) -> Result<Message> {
        exchange_udp(
            &self.udp(client)?,
            self.server(client),
            &query(name, rtype),
            WAIT,
        )
    }

    /// A TCP connection from `client` to the daemon.
    fn tcp(&self, client: &str) -> Result<TcpStream> {
        let (from, to) = (client.parse()?, self.server(client));
        self.topo.client.enter(move || tcp_from(from, to, None))?
    }

    fn ask_tcp(&self, client: &str, name: &str, rtype: RecordType) -> Result<Message> {
        exchange_tcp(&mut self.tcp(client)?, &query(name, rtype), WAIT)
    }

    /// Asks `CACHED` from the allowed client until XDP answers it.
    fn cache(&self) -> Result<()> {
        for rtype in [RecordType::A, RecordType::AAAA] {
            self.ask(ALLOWED_V4, CACHED, rtype)?;
            let hits = self.daemon.xdp("hits")?;
            self.ask(ALLOWED_V4, CACHED, rtype)?;
            assert_eq!(self.daemon.xdp("hits")?, hits + 1, "{rtype} not cached");
        }
        Ok(())
    }

    /// The id of the XDP program on the server's interface.
    fn program_id(&self) -> Result<u64> {
        let out = self
            .topo
            .server
            .command("ip")
            .args(["-j", "link", "show", SERVER_IFACE])
            .output()?;
        let links: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        links[0]["xdp"]["prog"]["id"]
            .as_u64()
            .with_context(|| format!("no XDP program: {links}"))
    }

    /// `dnsxdp ARGS --control ...` against the daemon: its exit status, stdout and stderr.
    fn cli(&self, args: &[&str]) -> Result<(bool, String, String)> {
        let out = Command::new(binary()?)
            .args(args)
            .arg("--control")
            .arg(&self.daemon.control)
            .output()?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ok((out.status.success(), text(&out.stdout), text(&out.stderr)))
    }
}

/// No reply comes to a UDP query from `client`.
fn silent_udp(s: &Sandbox, client: &str, name: &str, rtype: RecordType) -> Result<()> {
    let q = query(name, rtype);
    match exchange_udp(&s.udp(client)?, s.server(client), &q, SILENCE) {
        Ok(m) => bail!("{client} got an answer to {name} {rtype}: {m}"),
        Err(_) => Ok(()),
    }
}

/// The connection is closed without a reply to a query from `client`.
fn silent_tcp(s: &Sandbox, client: &str) -> Result<()> {
    let mut stream = s.tcp(client)?;
    let bytes = query(CACHED, RecordType::A).to_vec()?;
    // Closed when accepted, the connection may refuse the query already.
    let _ = stream.write_all(&[&(bytes.len() as u16).to_be_bytes()[..], &bytes].concat());
    stream.set_read_timeout(Some(WAIT))?;
    let mut buf = [0u8; 512];
    match uninterrupted(|| stream.read(&mut buf)) {
        // Closed, or reset for the query it did not read.
        Ok(0) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
        Ok(n) => bail!("{client} got {n} bytes over TCP"),
        Err(e) => bail!("{client}'s connection was neither answered nor closed: {e}"),
    }
}

/// A REFUSED answer echoing the question, with nothing else.
fn assert_refused(m: &Message, name: &str, rtype: RecordType) {
    assert_eq!(m.response_code(), ResponseCode::Refused, "{m}");
    assert_eq!(m.queries().len(), 1);
    assert_eq!(m.queries()[0].name().to_ascii(), name);
    assert_eq!(m.queries()[0].query_type(), rtype);
    assert!(m.answers().is_empty() && m.name_servers().is_empty());
    assert!(!m.truncated());
}

#[test]
fn denied_clients_get_nothing_and_allowed_ones_everything() -> Result<()> {
    let s = Sandbox::new(&ACL)?;
    s.cache()?;
    let upstream = s.daemon.counter("upstream_queries")?;
    let xdp_denied = s.daemon.xdp("denied_dropped")?;
    for (client, rtype) in [(DENIED_V4, RecordType::A), (DENIED_V6, RecordType::AAAA)] {
        silent_udp(&s, client, CACHED, rtype)?;
        silent_udp(&s, client, "short.example.test.", rtype)?;
        silent_tcp(&s, client)?;
    }
    assert_eq!(s.daemon.xdp("denied_dropped")?, xdp_denied + 4);
    assert_eq!(s.daemon.counter("denied_dropped")?, 2, "TCP queries");
    assert_eq!(s.daemon.counter("upstream_queries")?, upstream);

    for (client, rtype) in [(ALLOWED_V4, RecordType::A), (ALLOWED_V6, RecordType::AAAA)] {
        let hits = s.daemon.xdp("hits")?;
        assert!(!s.ask(client, CACHED, rtype)?.answers().is_empty());
        assert_eq!(s.daemon.xdp("hits")?, hits + 1);
        let miss = s.ask(client, "alias.example.test.", rtype)?;
        assert!(!miss.answers().is_empty(), "{client}: {miss}");
        let tcp = s.ask_tcp(client, CACHED, rtype)?;
        assert!(!tcp.answers().is_empty(), "{client}: {tcp}");
    }
    let stats = s.daemon.stats()?;
    assert_eq!(stats["xdp"]["denied_refused"], 0);
    assert!(stats["xdp"]["allowed"].as_u64() >= Some(8), "{stats}");
    assert!(stats["daemon"]["allowed"].as_u64() >= Some(4), "{stats}");
    Ok(())
}

#[test]
fn denied_clients_are_refused_by_xdp_even_with_the_daemon_frozen() -> Result<()> {
    let s = Sandbox::new(&[&ACL[..], &["--acl-action", "refuse"]].concat())?;
    s.cache()?;
    s.daemon.signal(libc::SIGSTOP)?;
    let answers: Vec<Result<Message>> = [
        (DENIED_V4, CACHED, RecordType::A),
        (DENIED_V4, "short.example.test.", RecordType::A),
        (DENIED_V6, "short.example.test.", RecordType::AAAA),
    ]
    .iter()
    .map(|&(client, name, rtype)| s.ask(client, name, rtype))
    .collect();
    s.daemon.signal(libc::SIGCONT)?;
    for (answer, (name, rtype)) in answers.into_iter().zip([
        (CACHED, RecordType::A),
        ("short.example.test.", RecordType::A),
        ("short.example.test.", RecordType::AAAA),
    ]) {
        assert_refused(&answer.context("with the daemon frozen")?, name, rtype);
    }
    assert_eq!(s.daemon.xdp("denied_refused")?, 3);

    // Over TCP a denied client has a connection to hold rather than an answer to get: it is
    // closed when accepted, refuse or not.
    for client in [DENIED_V4, DENIED_V6] {
        assert!(
            s.ask_tcp(client, CACHED, RecordType::AAAA).is_err(),
            "{client}"
        );
    }
    assert_eq!(s.daemon.counter("denied_dropped")?, 2);
    assert!(
        !s.ask(ALLOWED_V4, CACHED, RecordType::A)?
            .answers()
            .is_empty()
    );
    Ok(())
}

/// Sends `count` queries for `CACHED` from `sock` to `to` over `span`, with distinct IDs from
/// `first_id`, on CPU `cpu`. Returns when the last one left.
fn paced(sock: &UdpSocket, to: SocketAddr, first_id: u16, count: u16, span: Duration, cpu: usize) {
    // SAFETY: a CPU set of one CPU for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
    let start = Instant::now();
    for i in 0..count {
        let mut q = query(CACHED, RecordType::A);
        q.set_id(first_id + i);
        let _ = sock.send_to(&q.to_vec().expect("encodes"), to);
        let due = start + span * u32::from(i + 1) / u32::from(count);
        sleep(due.saturating_duration_since(Instant::now()));
    }
}

/// The replies `sock` gets until none has come for `SILENCE`, by ID.
fn replies(sock: &UdpSocket) -> Result<Vec<Message>> {
    sock.set_read_timeout(Some(SILENCE))?;
    let (mut seen, mut out) = (HashSet::new(), Vec::new());
    let mut buf = [0u8; 4096];
    while let Ok(n) = uninterrupted(|| sock.recv(&mut buf)) {
        let m = Message::from_vec(&buf[..n])?;
        if seen.insert(m.id()) {
            out.push(m);
        }
    }
    Ok(out)
}

#[test]
fn a_flooding_client_is_held_to_its_limit_and_a_polite_one_loses_nothing() -> Result<()> {
    let _exclusive = crate::exclusive();
    let (qps, burst) = (50.0, 50.0);
    let s = Sandbox::new(
        &[
            &ACL[..],
            &["--ratelimit-qps", "50", "--ratelimit-burst", "50"],
        ]
        .concat(),
    )?;
    s.cache()?;
    let flood = s.udp(FLOODER)?;
    let polite = s.udp(POLITE)?;
    let (to, span) = (s.daemon.v4, Duration::from_millis(1500));
    let (answered, polite_answered) = thread::scope(|scope| -> Result<_> {
        // Read as they come: a full socket buffer would drop answers.
        let receiver = scope.spawn(|| replies(&flood).map(|r| r.len()));
        // 2 x 600 queries in 1.5 s, from both CPUs: 800 a second, 16 times the limit.
        let senders: Vec<_> = (0..2u16)
            .map(|cpu| {
                let sock = flood.try_clone().expect("clone");
                scope.spawn(move || paced(&sock, to, cpu * 1000, 600, span, cpu.into()))
            })
            .collect();
        // Ten a second: within the limit, every one answered.
        let mut polite_answered = 0;
        for _ in 0..15 {
            let q = query(CACHED, RecordType::A);
            if exchange_udp(&polite, to, &q, WAIT).is_ok() {
                polite_answered += 1;
            }
            sleep(Duration::from_millis(100));
        }
        for sender in senders {
            sender.join().expect("sender");
        }
        Ok((receiver.join().expect("receiver")?, polite_answered))
    })?;
    let expected = burst + qps * span.as_secs_f64();
    assert!(
        (answered as f64 - expected).abs() <= expected * 0.1 + 1.0,
        "{answered} answered, {expected:.0} expected"
    );
    assert_eq!(polite_answered, 15, "the polite client lost queries");
    let limited = s.daemon.xdp("limited_dropped")?;
    assert_eq!(limited, 1200 - answered as u64);

    let (ok, out, err) = s.cli(&["stats", "--top", "3", "--json"])?;
    assert!(ok, "{err}");
    let top: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(top[0]["prefix"], format!("{FLOODER}/32"), "{top}");
    assert_eq!(top[0]["limited"], limited, "{top}");
    assert_eq!(top.as_array().map(Vec::len), Some(1), "{top}");
    let (ok, out, err) = s.cli(&["stats", "--top"])?;
    assert!(
        ok && out.lines().nth(1).unwrap_or_default().starts_with(FLOODER),
        "{out}{err}"
    );
    Ok(())
}

#[test]
fn slips_carry_tc_and_the_client_gets_through_over_tcp() -> Result<()> {
    let s = Sandbox::new(
        &[
            &ACL[..],
            &[
                "--ratelimit-qps",
                "5",
                "--ratelimit-burst",
                "5",
                "--ratelimit-action",
                "slip:2",
            ],
        ]
        .concat(),
    )?;
    s.cache()?;
    let sock = s.udp(FLOODER)?;
    for id in 0..45u16 {
        let mut q = query(CACHED, RecordType::A);
        q.set_id(id);
        sock.send_to(&q.to_vec()?, s.daemon.v4)?;
    }
    let replies = replies(&sock)?;
    let (slips, answers): (Vec<&Message>, Vec<&Message>) =
        replies.iter().partition(|m| m.truncated());
    assert!(
        (5..=6).contains(&answers.len()),
        "{} answers",
        answers.len()
    );
    assert!(
        answers.iter().all(|m| m.answers().len() == 2),
        "{answers:?}"
    );
    // Of about 40 limited queries, every second one slips.
    assert!((19..=21).contains(&slips.len()), "{} slips", slips.len());
    for m in &slips {
        assert!(m.answers().is_empty() && m.response_code() == ResponseCode::NoError);
        assert_eq!(m.queries()[0].name().to_ascii(), CACHED);
    }
    assert_eq!(s.daemon.xdp("limited_slipped")?, slips.len() as u64);
    let tcp = s.ask_tcp(FLOODER, CACHED, RecordType::A)?;
    assert_eq!(tcp.answers().len(), 2, "the retry over TCP: {tcp}");
    Ok(())
}

#[test]
fn a_reload_changes_the_rules_live_and_keeps_cache_and_program() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("dnsxdp-access-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let file = dir.join("dnsxdp.toml");
    let write = |text: &str| fs::write(&file, text);
    write("allow = [\"198.18.1.0/25\", \"fd00::/8\"]\n")?;
    let path = file.to_str().context("path")?.to_owned();
    let s = Sandbox::new(&["--config", &path])?;
    s.cache()?;
    let program = s.program_id()?;
    silent_udp(&s, DENIED_V4, CACHED, RecordType::A)?;
    let upstream = s.daemon.counter("upstream_queries")?;

    // `dnsxdp reload`: the stranger is let in, and served from the kernel cache.
    write("allow = [\"198.18.0.0/15\", \"fd00::/8\"]\n")?;
    let (ok, out, err) = s.cli(&["reload"])?;
    assert!(ok && out.starts_with("reloaded: "), "{out}{err}");
    let hits = s.daemon.xdp("hits")?;
    let answer = until(RELOADED, || s.ask(DENIED_V4, CACHED, RecordType::A))?;
    assert_eq!(answer.answers().len(), 2);
    assert_eq!(s.daemon.xdp("hits")?, hits + 1, "not from the kernel cache");
    assert_eq!(s.daemon.counter("upstream_queries")?, upstream);

    // SIGHUP: denied again, refused this time, and a rate limit.
    write(
        "allow = [\"198.18.1.0/25\", \"fd00::/8\"]\nacl-action = \"refuse\"\n\
         ratelimit-qps = 100\n",
    )?;
    s.daemon.signal(libc::SIGHUP)?;
    let refused = until(RELOADED, || {
        let m = s.ask(DENIED_V4, CACHED, RecordType::A)?;
        match m.response_code() {
            ResponseCode::Refused => Ok(m),
            rcode => bail!("{rcode}"),
        }
    })?;
    assert_refused(&refused, CACHED, RecordType::A);

    // A bad file changes nothing, by either way, and says why in one line.
    write("allow = [\"198.18.1.0/8\"]\n")?;
    let (ok, _, err) = s.cli(&["reload"])?;
    assert!(!ok && err.trim().lines().count() == 1, "{err}");
    assert!(
        err.contains("allow: invalid prefix '198.18.1.0/8'"),
        "{err}"
    );
    s.daemon.signal(libc::SIGHUP)?;
    sleep(RELOADED);
    assert!(s.daemon.log().contains("SIGHUP: reload failed"));
    let m = s.ask(DENIED_V4, CACHED, RecordType::A)?;
    assert_eq!(m.response_code(), ResponseCode::Refused);
    let hits = s.daemon.xdp("hits")?;
    assert_eq!(s.ask(ALLOWED_V4, CACHED, RecordType::A)?.answers().len(), 2);
    assert_eq!(s.daemon.xdp("hits")?, hits + 1);
    assert_eq!(s.program_id()?, program, "the program was replaced");
    assert_eq!(s.daemon.counter("upstream_queries")?, upstream);
    fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn without_xdp_the_daemon_applies_the_same_rules() -> Result<()> {
    let s = Sandbox::new(
        &[
            &ACL[..],
            &[
                "--no-xdp",
                "--acl-action",
                "refuse",
                "--ratelimit-qps",
                "5",
                "--ratelimit-burst",
                "5",
            ],
        ]
        .concat(),
    )?;
    let m = s.ask(DENIED_V6, CACHED, RecordType::AAAA)?;
    assert_refused(&m, CACHED, RecordType::AAAA);
    let sock = s.udp(FLOODER)?;
    for id in 0..20u16 {
        let mut q = query(CACHED, RecordType::A);
        q.set_id(id);
        sock.send_to(&q.to_vec()?, s.daemon.v4)?;
    }
    let answered = replies(&sock)?.len();
    assert!((5..=6).contains(&answered), "{answered} answered");
    let stats = s.daemon.stats()?;
    assert!(stats["xdp"].is_null());
    assert_eq!(stats["daemon"]["denied_refused"], 1);
    assert_eq!(stats["daemon"]["limited_dropped"], 20 - answered as u64);
    Ok(())
}

/// `f`'s first success within `limit`, tried every 50 ms.
fn until<T>(limit: Duration, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e.context("not within the limit")),
            Err(_) => sleep(Duration::from_millis(50)),
        }
    }
}

/// One datagram from `port` of `client`, and whatever comes back within `SILENCE`.
fn from_port(s: &Sandbox, client: &str, port: u16, payload: &[u8]) -> Result<Option<Vec<u8>>> {
    let at = SocketAddr::new(client.parse()?, port);
    let sock = s.topo.client.enter(move || UdpSocket::bind(at))??;
    sock.send_to(payload, s.server(client))?;
    sock.set_read_timeout(Some(SILENCE))?;
    let mut buf = [0u8; 1500];
    Ok(uninterrupted(|| sock.recv(&mut buf))
        .ok()
        .map(|n| buf[..n].to_vec()))
}

#[test]
fn nothing_is_sent_to_loop_prone_ports_by_either_layer() -> Result<()> {
    // Denied clients get REFUSED, so even they would be answered.
    let flags = [&ACL[..], &["--acl-action", "refuse"]].concat();
    let s = Sandbox::new(&flags)?;
    s.cache()?;
    let cached = query(CACHED, RecordType::A).to_vec()?;
    // A header and garbage: FORMERR from the daemon.
    let garbage = [&cached[..12], &[0xff; 9]].concat();
    // Ports that are not loop-prone get their answers: what follows can tell.
    assert!(from_port(&s, ALLOWED_V4, 20, &cached)?.is_some());
    assert!(from_port(&s, ALLOWED_V4, 20, &garbage)?.is_some());
    let (xdp, daemon) = (s.daemon.xdp("hits")?, s.daemon.counter("queries")?);
    for port in [7, 19] {
        assert_eq!(from_port(&s, ALLOWED_V4, port, &cached)?, None, "{port}");
        assert_eq!(from_port(&s, DENIED_V4, port, &cached)?, None, "{port}");
        assert_eq!(from_port(&s, ALLOWED_V6, port, &garbage)?, None, "{port}");
    }
    assert_eq!(s.daemon.xdp("hits")?, xdp);
    assert_eq!(s.daemon.xdp("dropped_source_port")?, 6);
    assert_eq!(s.daemon.counter("queries")?, daemon);
    drop(s);

    let s = Sandbox::new(&[&flags[..], &["--no-xdp"]].concat())?;
    for port in [7, 19] {
        assert_eq!(from_port(&s, ALLOWED_V4, port, &cached)?, None, "{port}");
        assert_eq!(from_port(&s, DENIED_V4, port, &cached)?, None, "{port}");
        assert_eq!(from_port(&s, ALLOWED_V6, port, &garbage)?, None, "{port}");
    }
    assert_eq!(s.daemon.counter("dropped_source_port")?, 6);
    assert!(from_port(&s, ALLOWED_V4, 20, &garbage)?.is_some());
    Ok(())
}
