//! Every UDP query is charged to the rate limit exactly once, whichever way it reaches the
//! daemon: plain, over a VLAN or QinQ stacked on the XDP interface, to a broadcast address the
//! program does not serve, as IPv4 or IPv6 fragments, or behind IPv6 extension headers. The
//! real binary with its XDP program, NSD as the upstream; run as root (`cargo xtask test`).

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    thread::sleep,
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use dnsxdp_tests::{
    client::{query, uninterrupted},
    daemon::Daemon,
    netns::{Topology, UPSTREAM_V4, UPSTREAM_V6},
    upstream::Nsd,
};
use hickory_proto::{op::Message, rr::RecordType};

/// The rate limit: a burst of 10, then one a second.
const BURST: usize = 10;
/// Queries each client sends, 2 ms apart: three bursts' worth in 60 ms.
const SENT: u16 = 30;
/// How long to wait for one more reply.
const SILENCE: Duration = Duration::from_millis(500);
/// A name the program never answers (TXT), so that every query goes to the daemon.
const NAME: &str = "www.example.test.";

/// How one client reaches the daemon.
struct Shape {
    what: &'static str,
    from: &'static str,
    to: &'static str,
    /// Bytes of EDNS padding: enough to fragment the query.
    padding: usize,
    /// An IPv6 Destination Options header on every datagram.
    dstopts: bool,
    /// Over a VLAN device, which the kernel may not have.
    stacked: bool,
}

const SHAPES: [Shape; 7] = [
    shape("plain", "198.18.1.60", "198.18.1.1"),
    Shape {
        stacked: true,
        ..shape("802.1Q VLAN", "198.18.10.2", "198.18.10.1")
    },
    Shape {
        stacked: true,
        ..shape("QinQ", "198.18.30.2", "198.18.30.1")
    },
    shape("subnet broadcast", "198.18.1.61", "198.18.1.255"),
    Shape {
        padding: 2000,
        ..shape("IPv4 fragments", "198.18.1.62", "198.18.1.1")
    },
    Shape {
        dstopts: true,
        ..shape("IPv6 destination options", "fd00:1::62", "fd00:1::1")
    },
    Shape {
        padding: 2000,
        ..shape("IPv6 fragments", "fd00:1::63", "fd00:1::1")
    },
];

const fn shape(what: &'static str, from: &'static str, to: &'static str) -> Shape {
    Shape {
        what,
        from,
        to,
        padding: 0,
        dstopts: false,
        stacked: false,
    }
}

/// The query, with an OPT record carrying `padding` bytes of Padding (RFC 7830) if asked.
fn wire(id: u16, padding: usize) -> Result<Vec<u8>> {
    let mut q = query(NAME, RecordType::TXT);
    q.set_id(id);
    let mut w = q.to_vec()?;
    if padding > 0 {
        w[11] = 1; // ARCOUNT
        let rdlen = (4 + padding) as u16;
        w.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0]);
        w.extend_from_slice(&rdlen.to_be_bytes());
        w.extend_from_slice(&[0, 12]);
        w.extend_from_slice(&(padding as u16).to_be_bytes());
        w.resize(w.len() + padding, 0);
    }
    Ok(w)
}

/// Sends `SENT` queries in `shape` from the client namespace; returns how many were answered.
fn answered(topo: &Topology, shape: &Shape) -> Result<usize> {
    let from = SocketAddr::new(shape.from.parse()?, 0);
    let sock = topo.client.enter(move || UdpSocket::bind(from))??;
    let to = SocketAddr::new(shape.to.parse::<IpAddr>()?, 53);
    if to.ip() == IpAddr::from([198, 18, 1, 255]) {
        sock.set_broadcast(true)?;
    }
    if shape.dstopts {
        // Next header and length (8 bytes) are the kernel's; a PadN option fills the rest.
        let header = [0u8, 0, 1, 4, 0, 0, 0, 0];
        // SAFETY: a valid option buffer of the length given.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_DSTOPTS,
                header.as_ptr().cast(),
                header.len() as libc::socklen_t,
            )
        };
        ensure!(rc == 0, "IPV6_DSTOPTS: {}", std::io::Error::last_os_error());
    }
    for id in 0..SENT {
        sock.send_to(&wire(id, shape.padding)?, to)
            .with_context(|| shape.what)?;
        sleep(Duration::from_millis(2));
    }
    sock.set_read_timeout(Some(SILENCE))?;
    let (mut ids, mut buf) = (HashSet::new(), vec![0u8; 4096]);
    while let Ok(n) = uninterrupted(|| sock.recv(&mut buf)) {
        ids.insert(Message::from_vec(&buf[..n])?.id());
    }
    Ok(ids.len())
}

/// Adds the clients' addresses on the client's veth, starts NSD and the daemon with `listen`
/// and the rate limit, and checks that each of `shapes` gets its burst answered and no more.
fn check_shapes(topo: &Topology, listen: &[&str], shapes: &[&Shape]) -> Result<Daemon> {
    for shape in shapes {
        let addr = match shape.from.contains(':') {
            true => format!("{}/64", shape.from),
            false if shape.from.starts_with("198.18.1.") => format!("{}/24", shape.from),
            false => continue,
        };
        topo.client
            .ip(&["addr", "add", &addr, "dev", "veth0", "nodad"])?;
    }
    let _nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
    let burst = BURST.to_string();
    let mut flags = vec![
        "--ratelimit-qps",
        "1",
        "--ratelimit-burst",
        &burst,
        "--ratelimit-v6-prefix",
        "128",
    ];
    for l in listen {
        flags.extend(["--listen", l]);
    }
    let daemon = Daemon::start(topo, &flags)?;
    let mut wrong = Vec::new();
    for shape in shapes {
        let n = answered(topo, shape)?;
        // The burst, and what one second's rate adds while the queries go out.
        if !(BURST..=BURST + 1).contains(&n) {
            wrong.push(format!("{}: {n} of {SENT} answered", shape.what));
        }
    }
    ensure!(
        wrong.is_empty(),
        "expected {BURST} or {} answered each:\n{}",
        BURST + 1,
        wrong.join("\n"),
    );
    Ok(daemon)
}

#[test]
fn every_way_to_the_daemon_is_charged_once() -> Result<()> {
    let _exclusive = crate::exclusive();
    let topo = Topology::new()?;
    let mut shapes: Vec<&Shape> = SHAPES.iter().filter(|s| !s.stacked).collect();
    if topo.server.has_vlans() {
        topo.server.add_vlans(1)?;
        topo.client.add_vlans(2)?;
        // Tags in the frame, where the XDP program reads them, rather than beside it.
        let out = topo
            .client
            .command("ethtool")
            .args([
                "-K",
                "veth0",
                "txvlan",
                "off",
                "tx-vlan-stag-hw-insert",
                "off",
            ])
            .output()?;
        ensure!(out.status.success(), "ethtool: {out:?}");
        shapes = SHAPES.iter().collect();
    } else {
        eprintln!("this kernel has no 802.1Q VLANs: VLAN and QinQ are left to the VM run");
    }
    // Wildcards, so that broadcasts reach the daemon too.
    let daemon = check_shapes(&topo, &["0.0.0.0:53", "[::]:53"], &shapes)?;
    // The shapes went where they were meant to.
    assert!(daemon.xdp("pass_fragment")? >= 2 * BURST as u64);
    assert!(daemon.xdp("pass_extension_headers")? >= BURST as u64);
    Ok(())
}

#[test]
fn a_bridge_over_the_xdp_interface_charges_once() -> Result<()> {
    let _exclusive = crate::exclusive();
    let topo = Topology::new()?;
    // The server's addresses move from its veth, where XDP stays, to a bridge with the veth as
    // its one port: the daemon's socket sees the bridge as the interface.
    let server = &topo.server;
    server.ip(&["addr", "flush", "dev", "veth0"])?;
    server.ip(&["link", "add", "br0", "type", "bridge"])?;
    server.ip(&["link", "set", "veth0", "master", "br0"])?;
    server.ip(&["addr", "add", "198.18.1.1/24", "dev", "br0"])?;
    server.ip(&["addr", "add", "fd00:1::1/64", "dev", "br0", "nodad"])?;
    server.ip(&["link", "set", "br0", "up"])?;
    let shapes: Vec<&Shape> = SHAPES
        .iter()
        .filter(|s| ["plain", "IPv4 fragments"].contains(&s.what))
        .collect();
    check_shapes(&topo, &["198.18.1.1:53"], &shapes)?;
    Ok(())
}
