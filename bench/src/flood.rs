//! `cargo xtask flood`: a flood of malformed and hostile frames at the XDP program from raw
//! sockets in the client namespace, while a legitimate client asks a query every millisecond.
//!
//! Every flood frame is a query for a cached name, then damaged at a few random bytes
//! anywhere past the Ethernet header: IP and UDP headers, lengths, flags, checksums, name,
//! counts, OPT. Each comes from its own address and port, so a reply says which frame it
//! answers; the frame is rebuilt from its number and the reply checked against it. A reply is
//! wrong if it answers a frame the stack drops (a bad checksum, a fragment), goes to a port no
//! answer may go to, does not echo the ID and question, or gives records other than the cached
//! ones for a cached question.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    os::fd::OwnedFd,
    sync::atomic::{AtomicBool, Ordering::Relaxed},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Result, bail, ensure};
use dnsxdp_common::{QTYPE_A, QTYPE_AAAA, ports::reflective_port};
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RData, RecordType},
};

use dnsxdp_tests::{
    client::{exchange_udp, query},
    daemon::Daemon,
    netns::{CLIENT_V4, SERVER_IFACE, Topology, UPSTREAM_V4, UPSTREAM_V6},
    raw::{link_mac, packet_socket, recv, send},
    testrun::{
        checksum::{internet_checksum, pseudo_header},
        frame::FrameSpec,
        parse::parse_frame,
        query::{Edns, Query},
    },
    upstream::Nsd,
};

/// Flood sources: 198.18.1.128/26 on the client's veth, each sending from every port above
/// 1023, so that an address and port name one frame.
const SOURCES: u32 = 64;
const FIRST_SOURCE: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 128);
const FIRST_PORT: u32 = 1024;
const PORTS: u32 = 65536 - FIRST_PORT;
/// Where an undamaged frame has its IPv4 source address and UDP source port.
const SOURCE_BYTES: std::ops::Range<usize> = 26..30;
const SOURCE_PORT_BYTES: std::ops::Range<usize> = 34..36;

/// The cached questions the frames start from.
const QUESTIONS: [(&str, u16); 4] = [
    ("www.example.test", QTYPE_A),
    ("www.example.test", QTYPE_AAAA),
    ("alias.example.test", QTYPE_A),
    ("short.example.test", QTYPE_AAAA),
];

pub struct Options {
    pub packets: u64,
}

/// Frame `i`: its source, then a query damaged at one to four bytes chosen from `i`.
fn frame(i: u64, server_mac: [u8; 6], client_mac: [u8; 6], server: Ipv4Addr) -> Vec<u8> {
    let mut rng = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (src, port) = source(i);
    let mut spec = FrameSpec::between(
        SocketAddr::new(src.into(), port),
        SocketAddr::new(server.into(), 53),
    );
    spec.server_mac = server_mac;
    spec.client_mac = client_mac;
    let (name, qtype) = QUESTIONS[next() as usize % QUESTIONS.len()];
    let mut q = Query::new(name, qtype);
    q.id = next() as u16;
    if next() % 2 == 0 {
        q = q.edns(Edns::new(1232));
    }
    let mut f = spec.query(&q);
    for _ in 0..1 + next() % 4 {
        let at = 14 + next() as usize % (f.len() - 14);
        // Not the source address and port, which name the frame a reply answers.
        if !(SOURCE_BYTES.contains(&at) || SOURCE_PORT_BYTES.contains(&at)) {
            f[at] = next() as u8;
        }
    }
    match next() % 8 {
        0 => f.truncate(14 + next() as usize % (f.len() - 14)),
        1 => f.extend(std::iter::repeat_n(next() as u8, next() as usize % 32)),
        _ => {}
    }
    f
}

/// The address and port frame `i` is sent from.
fn source(i: u64) -> (Ipv4Addr, u16) {
    let n = (i % (u64::from(SOURCES) * u64::from(PORTS))) as u32;
    let addr = Ipv4Addr::from(u32::from(FIRST_SOURCE) + n % SOURCES);
    (addr, (FIRST_PORT + n / SOURCES) as u16)
}

/// The frame number of a reply to `addr`:`port`, the last one sent from there.
fn frame_of(addr: Ipv4Addr, port: u16, sent: u64) -> Option<u64> {
    let a = u32::from(addr).checked_sub(u32::from(FIRST_SOURCE))?;
    let p = u32::from(port).checked_sub(FIRST_PORT)?;
    if a >= SOURCES {
        return None;
    }
    let n = u64::from(p * SOURCES + a);
    let period = u64::from(SOURCES) * u64::from(PORTS);
    (n < sent).then(|| n + (sent - 1 - n) / period * period)
}

/// What a flood run measured.
pub struct Report {
    pub sent: u64,
    pub seconds: f64,
    pub replies: u64,
    pub wrong: Vec<String>,
    pub legit_asked: usize,
    pub legit_answered: usize,
    pub legit_p50_ms: f64,
    pub legit_p99_ms: f64,
    pub xdp: serde_json::Value,
}

pub fn run(opts: &Options) -> Result<Report> {
    let topo = Topology::new()?;
    let _nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
    for i in 0..SOURCES {
        let addr = Ipv4Addr::from(u32::from(FIRST_SOURCE) + i);
        topo.client
            .ip(&["addr", "add", &format!("{addr}/24"), "dev", "veth0"])?;
    }
    // A veth trusts the checksums of frames its peer sent (rx checksum offload), where a NIC
    // without offload, or with it, would have checked them: the stack must drop what the
    // program passes for a bad sum, as it would on a real link.
    let out = topo
        .server
        .command("ethtool")
        .args(["-K", SERVER_IFACE, "rx", "off"])
        .output()?;
    ensure!(
        out.status.success(),
        "ethtool -K {SERVER_IFACE} rx off: {out:?}"
    );
    let daemon = Daemon::start(&topo, &[])?;
    let legit = topo
        .client
        .enter(|| UdpSocket::bind(format!("{CLIENT_V4}:0")))??;
    // Cached in both layers.
    for (name, qtype) in QUESTIONS {
        exchange_udp(
            &legit,
            daemon.v4,
            &query(name, qtype.into()),
            Duration::from_secs(2),
        )?;
    }
    let cached: HashMap<(String, u16), Vec<RData>> = QUESTIONS
        .iter()
        .map(|&(name, qtype)| -> Result<_> {
            let reply = exchange_udp(
                &legit,
                daemon.v4,
                &query(name, qtype.into()),
                Duration::from_secs(2),
            )?;
            let records = reply.answers().iter().map(|r| r.data().clone()).collect();
            Ok(((format!("{name}."), qtype), records))
        })
        .collect::<Result<_>>()?;
    let (server_mac, client_mac) = (
        link_mac(&topo.server, SERVER_IFACE)?,
        link_mac(&topo.client, "veth0")?,
    );
    let server: Ipv4Addr = match daemon.v4.ip() {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => bail!("IPv4 server expected"),
    };
    let socket = || packet_socket("veth0", 256 << 20, Duration::from_millis(100));
    let (tx, rx) = (topo.client.enter(socket)??, topo.client.enter(socket)??);
    let done = AtomicBool::new(false);
    let packets = opts.packets;
    let (captured, sent_for, seconds, legit_rtts) = thread::scope(|s| {
        let capture = s.spawn(|| capture(&rx, server, &done));
        let asking = s.spawn(|| ask_legitimately(&legit, daemon.v4, &done));
        let start = Instant::now();
        let mut buf = Vec::new();
        for i in 0..packets {
            buf.clear();
            buf.extend(frame(i, server_mac, client_mac, server));
            // A frame the link cannot take is one fewer in the flood, no more.
            let _ = send(&tx, &buf);
        }
        let seconds = start.elapsed().as_secs_f64();
        thread::sleep(Duration::from_secs(2));
        done.store(true, Relaxed);
        (
            capture.join().expect("capture"),
            packets,
            seconds,
            asking.join().expect("legit client"),
        )
    });
    let mut wrong = Vec::new();
    let replies = captured.len() as u64;
    for reply in &captured {
        if let Some(why) = check(reply, sent_for, server_mac, client_mac, server, &cached) {
            wrong.push(why);
        }
    }
    let mut rtts = legit_rtts.iter().flatten().copied().collect::<Vec<f64>>();
    rtts.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        rtts.get(((rtts.len() as f64 * p) as usize).min(rtts.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok(Report {
        sent: sent_for,
        seconds,
        replies,
        wrong,
        legit_asked: legit_rtts.len(),
        legit_answered: rtts.len(),
        legit_p50_ms: pct(0.50),
        legit_p99_ms: pct(0.99),
        xdp: daemon.stats()?["xdp"].clone(),
    })
}

/// Frames from the server to a flood source, until `done`.
fn capture(fd: &OwnedFd, server: Ipv4Addr, done: &AtomicBool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !done.load(Relaxed) {
        let Some(n) = recv(fd, &mut buf) else {
            continue;
        };
        let f = &buf[..n];
        if let Ok(p) = parse_frame(f)
            && p.src.ip() == IpAddr::V4(server)
            && p.src.port() == 53
            && matches!(p.dst.ip(), IpAddr::V4(a) if u32::from(a).wrapping_sub(u32::from(FIRST_SOURCE)) < SOURCES)
        {
            out.push(f.to_vec());
        }
    }
    out
}

/// A query for a cached name every millisecond until `done`: each round trip in ms, or
/// `None` for a query not answered within a second.
fn ask_legitimately(sock: &UdpSocket, server: SocketAddr, done: &AtomicBool) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    let mut i = 0usize;
    while !done.load(Relaxed) {
        let (name, qtype) = QUESTIONS[i % QUESTIONS.len()];
        i += 1;
        let start = Instant::now();
        let answered = exchange_udp(
            sock,
            server,
            &query(name, RecordType::from(qtype)),
            Duration::from_secs(1),
        );
        out.push(
            answered
                .ok()
                .map(|_| start.elapsed().as_secs_f64() * 1000.0),
        );
        thread::sleep(Duration::from_millis(1).saturating_sub(start.elapsed()));
    }
    out
}

/// Why `reply` is wrong, if it is.
fn check(
    reply: &[u8],
    sent: u64,
    server_mac: [u8; 6],
    client_mac: [u8; 6],
    server: Ipv4Addr,
    cached: &HashMap<(String, u16), Vec<RData>>,
) -> Option<String> {
    let r = parse_frame(reply).ok()?;
    let (IpAddr::V4(to), port) = (r.dst.ip(), r.dst.port()) else {
        return None;
    };
    let i = frame_of(to, port, sent)?;
    let query = frame(i, server_mac, client_mac, server);
    let wrong = |why: &str| Some(format!("frame {i}: {why}: query {query:02x?}"));
    if reflective_port(port) {
        return wrong("answered to a loop-prone port");
    }
    let Ok(q) = parse_frame(&query) else {
        return wrong("answered a frame that does not parse");
    };
    let ip = &query[q.l3..q.l3 + q.ip_hlen];
    if internet_checksum(&[ip]) != 0 {
        return wrong("answered a bad IPv4 header checksum");
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & 0x3fff != 0 {
        return wrong("answered a fragment");
    }
    let udp = &query[q.udp..q.udp + q.udp_len];
    let stored = u16::from_be_bytes([udp[6], udp[7]]);
    let pseudo = pseudo_header(q.src.ip(), q.dst.ip(), q.udp_len);
    if stored != 0 && internet_checksum(&[&pseudo, udp]) != 0 {
        return wrong("answered a bad UDP checksum");
    }
    let Ok(m) = Message::from_vec(&r.payload) else {
        return wrong("a reply that does not parse");
    };
    if q.payload.len() < 2 || m.id() != u16::from_be_bytes([q.payload[0], q.payload[1]]) {
        return wrong("the ID is not echoed");
    }
    // Errors and empty answers carry nothing wrong to give.
    if m.answers().is_empty() {
        return None;
    }
    let Ok(asked) = Message::from_vec(&q.payload) else {
        return wrong("records for a query that does not parse");
    };
    if m.queries() != asked.queries() {
        return wrong("the question is not echoed");
    }
    let question = asked.queries().first()?;
    let key = (
        question.name().to_lowercase().to_ascii(),
        u16::from(question.query_type()),
    );
    if let Some(records) = cached.get(&key)
        && m.response_code() == ResponseCode::NoError
        && !m.answers().is_empty()
    {
        let got: Vec<RData> = m.answers().iter().map(|r| r.data().clone()).collect();
        if &got != records {
            return wrong("records other than the cached ones");
        }
    }
    None
}
