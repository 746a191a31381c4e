//! TCP cannot be held: connections are checked against the ACL when accepted, counted per
//! client and in all, and closed when quiet or not reading (RFC 7766). The real binary, NSD
//! upstream; run as root (`cargo xtask test`).

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use dnsxdp_tests::{
    client::{exchange_tcp, query, tcp_from, uninterrupted},
    daemon::Daemon,
    netns::{CLIENT_V4, Topology, UPSTREAM_V4, UPSTREAM_V6},
    upstream::Nsd,
};
use hickory_proto::rr::RecordType;

const DENIED: &str = "198.18.1.200";
/// Hosts that open connections and never read.
const HOGS: [&str; 4] = ["198.18.1.70", "198.18.1.71", "198.18.1.72", "198.18.1.73"];
/// A name whose answer is 1.6 KB: few fill a socket buffer.
const HUGE: &str = "huge.example.test.";

struct Sandbox {
    daemon: Daemon,
    topo: Topology,
    _nsd: Nsd,
}

impl Sandbox {
    fn new(flags: &[&str]) -> Result<Self> {
        let topo = Topology::new()?;
        for ip in HOGS.iter().chain([&DENIED]) {
            topo.client
                .ip(&["addr", "add", &format!("{ip}/24"), "dev", "veth0"])?;
        }
        let nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
        let flags = [&["--allow", "198.18.1.0/25"], flags].concat();
        let daemon = Daemon::start(&topo, &flags)?;
        Ok(Self {
            daemon,
            topo,
            _nsd: nsd,
        })
    }

    /// A connection from `from` to the daemon, with a receive buffer of `rcvbuf` bytes if
    /// given.
    fn connect(&self, from: &str, rcvbuf: Option<i32>) -> Result<TcpStream> {
        let (from, to): (IpAddr, SocketAddr) = (from.parse()?, self.daemon.v4);
        self.topo.client.enter(move || tcp_from(from, to, rcvbuf))?
    }
}

/// `count` pipelined queries for `name`, each with its length prefix.
fn pipelined(name: &str, count: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..count {
        let q = query(name, RecordType::A).to_vec()?;
        out.extend_from_slice(&(q.len() as u16).to_be_bytes());
        out.extend_from_slice(&q);
    }
    Ok(out)
}

/// How long until the daemon closes `s`: reads (and drops) everything until EOF or a reset,
/// giving up after `limit`. Returns the time and the bytes read.
fn until_closed(s: &mut TcpStream, limit: Duration) -> Result<(Duration, usize)> {
    let start = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    while start.elapsed() < limit {
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        match uninterrupted(|| s.read(&mut buf)) {
            Ok(0) => return Ok((start.elapsed(), total)),
            Ok(n) => total += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return Ok((start.elapsed(), total));
            }
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("still open after {limit:?}, {total} bytes read")
}

#[test]
fn hosts_holding_hundreds_of_connections_leave_room_for_a_new_client() -> Result<()> {
    let _exclusive = crate::exclusive();
    let s = Sandbox::new(&[])?;
    // 512 connections, 128 from each hog: each asks 20 questions, never reads the answers,
    // and leaves a message half sent.
    let load = [pipelined(HUGE, 20)?, vec![0]].concat();
    let mut held = Vec::new();
    for i in 0..512 {
        let mut c = s.connect(HOGS[i % HOGS.len()], Some(4096))?;
        // Closed at once if it has already been made room for: that is fine.
        let _ = c.write_all(&load);
        held.push(c);
    }
    let start = Instant::now();
    let mut c = s.connect(CLIENT_V4, None)?;
    let reply = exchange_tcp(&mut c, &query(HUGE, RecordType::A), Duration::from_secs(2))
        .context("no TCP answer for a new client")?;
    assert_eq!(reply.answers().len(), 100);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    drop(held);

    // A denied client's connection is closed as soon as it is accepted.
    let mut denied = s.connect(DENIED, None)?;
    let (after, _) = until_closed(&mut denied, Duration::from_secs(1))?;
    assert!(after < Duration::from_millis(500), "{after:?}");
    assert!(s.daemon.counter("denied_dropped")? >= 1);
    Ok(())
}

#[test]
fn quiet_and_unread_connections_are_closed() -> Result<()> {
    let _exclusive = crate::exclusive();
    let s = Sandbox::new(&["--tcp-idle-timeout", "1s"])?;
    let mut idle = s.connect(CLIENT_V4, None)?;
    let mut partial = s.connect(CLIENT_V4, None)?;
    partial.write_all(&[0, 40, 1, 2])?;
    let opened = Instant::now();
    for (what, c) in [("idle", &mut idle), ("half a message", &mut partial)] {
        until_closed(c, Duration::from_secs(3))?;
        let after = opened.elapsed();
        assert!(
            (Duration::from_millis(800)..Duration::from_millis(2500)).contains(&after),
            "{what}: closed after {after:?}"
        );
    }
    // Asks far more than its buffers hold and never reads: the daemon stops waiting on it a
    // second after its replies stop fitting, without answering the rest.
    let mut unread = s.connect(CLIENT_V4, Some(4096))?;
    let asked = 4000;
    unread.write_all(&pipelined(HUGE, asked)?)?;
    sleep(Duration::from_secs(4));
    let (_, bytes) = until_closed(&mut unread, Duration::from_secs(5))?;
    let reply_len = 2 + exchange_tcp(
        &mut s.connect(CLIENT_V4, None)?,
        &query(HUGE, RecordType::A),
        Duration::from_secs(2),
    )?
    .to_vec()?
    .len();
    assert!(
        bytes < asked * reply_len,
        "all {asked} answered ({bytes} bytes) to a client that did not read"
    );
    Ok(())
}
