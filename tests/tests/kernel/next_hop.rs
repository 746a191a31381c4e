//! Answers from XDP go where the stack's would: an on-link host that puts another host's
//! address on its frames gets no answer meant for that host, while real clients are answered
//! from XDP as before. The real binary, NSD upstream; run as root (`cargo xtask test`).

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};
use dnsxdp_common::QTYPE_A;
use dnsxdp_tests::{
    client::{exchange_udp, query},
    daemon::Daemon,
    netns::{CLIENT_V4, SERVER_IFACE, Topology, UPSTREAM_V4, UPSTREAM_V6},
    raw::{link_mac, packet_socket, recv, send},
    testrun::{frame::FrameSpec, parse::parse_frame, query::Query},
    upstream::Nsd,
};
use hickory_proto::rr::RecordType;

const NAME: &str = "www.example.test.";
/// Addresses no host on the link has: one the server knows no neighbour for, and one it has
/// a neighbour entry for, with another MAC than the sender's.
const UNKNOWN: &str = "198.18.1.77";
const ELSEWHERE: &str = "198.18.1.78";
const ELSEWHERE_MAC: &str = "02:00:00:00:00:99";

/// Sends a query for `NAME` from `from` with the client's own MAC; returns whether a reply
/// to `from` came back to that MAC within a second (a veth shows its peer every frame, those
/// for other MACs too).
fn spoofed_query_answered(topo: &Topology, daemon: &Daemon, from: &str) -> Result<bool> {
    let mut spec = FrameSpec::between(SocketAddr::new(from.parse()?, 40053), daemon.v4);
    spec.client_mac = link_mac(&topo.client, "veth0")?;
    spec.server_mac = link_mac(&topo.server, SERVER_IFACE)?;
    let frame = spec.query(&Query::new(NAME, QTYPE_A));
    let fd = topo
        .client
        .enter(|| packet_socket("veth0", 1 << 20, Duration::from_millis(100)))??;
    send(&fd, &frame)?;
    let to: Ipv4Addr = from.parse()?;
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut buf = vec![0u8; 2048];
    while Instant::now() < deadline {
        if let Some(n) = recv(&fd, &mut buf)
            && let Ok(p) = parse_frame(&buf[..n])
            && p.src.port() == 53
            && p.dst.ip() == to
            && p.dst_mac == spec.client_mac
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[test]
fn an_on_link_host_using_another_hosts_address_gets_no_answer_from_xdp() -> Result<()> {
    let topo = Topology::new()?;
    let _nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
    // A gateway forwards: the kernel looks routes up for XDP only then.
    let out = topo
        .server
        .command("sysctl")
        .args(["-qw", "net.ipv4.conf.all.forwarding=1"])
        .output()?;
    ensure!(out.status.success(), "sysctl: {out:?}");
    let daemon = Daemon::start(&topo, &[])?;
    topo.server.ip(&[
        "neigh",
        "add",
        ELSEWHERE,
        "lladdr",
        ELSEWHERE_MAC,
        "dev",
        SERVER_IFACE,
    ])?;
    // A real client: the daemon answers first, then XDP.
    let sock = topo
        .client
        .enter(|| UdpSocket::bind(format!("{CLIENT_V4}:0")))??;
    let ask = || {
        exchange_udp(
            &sock,
            daemon.v4,
            &query(NAME, RecordType::A),
            Duration::from_secs(2),
        )
    };
    ask()?;
    let hits = daemon.xdp("hits")?;
    ask()?;
    assert_eq!(
        daemon.xdp("hits")?,
        hits + 1,
        "a real client is not answered from XDP"
    );
    // Another host's address on the client's frames: passed, and the stack's answer goes to
    // that host, not to the sender.
    let packets = daemon.xdp("packets")?;
    for from in [UNKNOWN, ELSEWHERE] {
        assert!(
            !spoofed_query_answered(&topo, &daemon, from)?,
            "a query from {from} was answered to the sender"
        );
    }
    assert_eq!(daemon.xdp("packets")?, packets + 2);
    assert_eq!(daemon.xdp("pass_next_hop")?, 2);
    assert_eq!(daemon.xdp("hits")?, hits + 1);
    Ok(())
}
