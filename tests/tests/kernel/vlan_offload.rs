//! Answers to a query over a VLAN go back on that VLAN, whether its tag reached the XDP program
//! in the frame or the NIC took it off first (VLAN offload; a veth does so for a peer that
//! inserts tags in hardware). The real binary, NSD upstream; run as root. The host's kernel
//! may lack VLANs: then `cargo xtask test` runs this on the 6.1 VM only.

use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    time::Duration,
};

use anyhow::{Result, ensure};
use dnsxdp_tests::{
    client::{exchange_udp, query},
    daemon::Daemon,
    netns::{Topology, UPSTREAM_V4, UPSTREAM_V6},
    upstream::Nsd,
};
use hickory_proto::rr::RecordType;

const NAME: &str = "www.example.test.";

/// A socket on the client's VLAN interface only: an answer that arrives untagged, on the
/// veth under it, never reaches it.
fn vlan_socket(topo: &Topology) -> Result<UdpSocket> {
    let sock = topo.client.enter(|| UdpSocket::bind("198.18.10.2:0"))??;
    let dev = b"vl10";
    // SAFETY: a device name of the length given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            dev.as_ptr().cast(),
            dev.len() as libc::socklen_t,
        )
    };
    ensure!(
        rc == 0,
        "SO_BINDTODEVICE: {}",
        std::io::Error::last_os_error()
    );
    Ok(sock)
}

#[test]
fn answers_over_a_vlan_go_back_tagged_whoever_took_the_tag_off() -> Result<()> {
    let topo = Topology::new()?;
    if !topo.server.has_vlans() {
        eprintln!("this kernel has no 802.1Q VLANs: left to the VM run");
        return Ok(());
    }
    topo.server.add_vlans(1)?;
    topo.client.add_vlans(2)?;
    let _nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
    let daemon = Daemon::start(
        &topo,
        &["--listen", "198.18.1.1:53", "--listen", "198.18.10.1:53"],
    )?;
    let server: SocketAddr = "198.18.10.1:53".parse()?;
    let sock = vlan_socket(&topo)?;
    let ask = || {
        exchange_udp(
            &sock,
            server,
            &query(NAME, RecordType::A),
            Duration::from_secs(2),
        )
    };
    // Tag inserted by the client's veth "hardware": the server's XDP sees the frame without it.
    ask()?;
    let (hits, offloaded) = (daemon.xdp("hits")?, daemon.xdp("pass_vlan_offload")?);
    ask()?;
    assert_eq!(daemon.xdp("hits")?, hits, "answered by XDP without its tag");
    assert_eq!(daemon.xdp("pass_vlan_offload")?, offloaded + 1);
    // Tag in the frame: XDP answers, tagged.
    let out = topo
        .client
        .command("ethtool")
        .args(["-K", "veth0", "txvlan", "off"])
        .output()?;
    ensure!(out.status.success(), "ethtool: {out:?}");
    ask()?;
    assert_eq!(daemon.xdp("hits")?, hits + 1);
    Ok(())
}
