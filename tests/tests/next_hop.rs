//! Answers from XDP go where the stack's would: an on-link host that puts another host's
//! address on its frames gets no answer meant for that host, while real clients are answered
//! from XDP as before. The real binary, NSD upstream; run as root (`cargo xtask test`).

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use dnsxdp_common::QTYPE_A;
use dnsxdp_tests::{
    client::{exchange_udp, query},
    daemon::Daemon,
    netns::{CLIENT_V4, SERVER_IFACE, Topology, UPSTREAM_V4, UPSTREAM_V6},
    testrun::{FrameSpec, Query, parse_frame},
    upstream::Nsd,
};
use hickory_proto::rr::RecordType;

const NAME: &str = "www.example.test.";
/// Addresses no host on the link has: one the server knows no neighbour for, and one it has
/// a neighbour entry for, with another MAC than the sender's.
const UNKNOWN: &str = "198.18.1.77";
const ELSEWHERE: &str = "198.18.1.78";
const ELSEWHERE_MAC: &str = "02:00:00:00:00:99";

fn mac(s: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = s
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("MAC {s}"))
}

/// A raw socket on the client's veth.
fn raw(topo: &Topology) -> Result<OwnedFd> {
    topo.client.enter(|| -> Result<OwnedFd> {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket call; owned below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        ensure!(fd >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
        // SAFETY: just opened.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let index = dnsxdp::local_addrs::if_index("veth0").context("veth0")?;
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index as i32;
        // SAFETY: a valid sockaddr_ll.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        ensure!(rc == 0, "bind: {}", std::io::Error::last_os_error());
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: a timeval option.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as u32,
            )
        };
        Ok(fd)
    })?
}

/// Sends a query for `NAME` from `from` with the client's own MAC; returns whether a reply
/// to `from` came back to that MAC within a second (a veth shows its peer every frame, those
/// for other MACs too).
fn spoofed_query_answered(topo: &Topology, daemon: &Daemon, from: &str) -> Result<bool> {
    let link = |ns: &dnsxdp_tests::netns::Netns| -> Result<[u8; 6]> {
        let out = ns
            .command("cat")
            .arg(format!("/sys/class/net/{SERVER_IFACE}/address"))
            .output()?;
        mac(&String::from_utf8_lossy(&out.stdout))
    };
    let mut spec = FrameSpec::between(SocketAddr::new(from.parse()?, 40053), daemon.v4);
    spec.client_mac = link(&topo.client)?;
    spec.server_mac = link(&topo.server)?;
    let frame = spec.query(&Query::new(NAME, QTYPE_A));
    let fd = raw(topo)?;
    // SAFETY: a valid buffer on a bound packet socket.
    let sent = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
    ensure!(
        sent == frame.len() as isize,
        "send: {}",
        std::io::Error::last_os_error()
    );
    let to: Ipv4Addr = from.parse()?;
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut buf = vec![0u8; 2048];
    while Instant::now() < deadline {
        // SAFETY: a valid buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n > 0
            && let Ok(p) = parse_frame(&buf[..n as usize])
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
