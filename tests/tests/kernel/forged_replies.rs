//! A storm of blind forgeries: while misses wait on a slow upstream (5 s), replies forged from the
//! upstream's own address reach every ephemeral port of the daemon with random IDs, naming the
//! questions asked and a forged address. Not one is answered to a client or cached. The real
//! binary; run as root (`cargo xtask test`).

use std::{
    net::{IpAddr, Ipv4Addr, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};
use dnsxdp_tests::{
    client::{exchange_udp, query},
    daemon::Daemon,
    netns::{Topology, UPSTREAM_V4, UPSTREAM_V6},
    testrun::checksum::{internet_checksum, pseudo_header},
    upstream::Nsd,
    upstreams::{Behavior, FORGED, Responder, add_address},
};
use hickory_proto::{
    op::{Message, MessageType, Query},
    rr::{Name, RData, Record, RecordType, rdata::A},
};

/// The slow upstream, and the daemon's address on its side.
const UPSTREAM: &str = "198.18.2.10";
const DAEMON_SIDE: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
/// Names asked at once, each a miss that waits on the upstream.
const ASKED: usize = 8;
/// Linux's default ephemeral ports, where the daemon's upstream sockets are.
const PORTS: std::ops::RangeInclusive<u16> = 32768..=60999;

/// A forged reply to `name` with `id`, pointing it at `FORGED`.
fn forgery(name: &str, id: u16) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Response)
        .set_recursion_desired(true)
        .set_recursion_available(true);
    let name = Name::from_ascii(name).expect("valid name");
    m.add_query(Query::query(name.clone(), RecordType::A));
    m.add_answer(Record::from_rdata(
        name,
        86400,
        RData::A(A::from(Ipv4Addr::from(FORGED))),
    ));
    m.to_vec().expect("encodes")
}

/// An IPv4/UDP packet from the upstream's port 53 to `port` of the daemon, summed right.
fn packet(src: Ipv4Addr, port: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&53u16.to_be_bytes());
    udp.extend_from_slice(&port.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let pseudo = pseudo_header(IpAddr::V4(src), IpAddr::V4(DAEMON_SIDE), udp_len);
    let sum = internet_checksum(&[&pseudo, &udp]);
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&DAEMON_SIDE.octets());
    let sum = internet_checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&udp);
    ip
}

/// Sends forged replies for `names` to every ephemeral port, two random IDs each, from a raw
/// socket in the upstream's namespace. Returns how many it sent.
fn storm(topo: &Topology, names: Vec<String>) -> Result<usize> {
    topo.upstream.enter(move || -> Result<usize> {
        // SAFETY: a raw socket; the descriptor is owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        ensure!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        // SAFETY: just opened, owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let src: Ipv4Addr = UPSTREAM.parse()?;
        let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        to.sin_family = libc::AF_INET as libc::sa_family_t;
        to.sin_addr.s_addr = u32::from(DAEMON_SIDE).to_be();
        let forgeries: Vec<Vec<u8>> = names.iter().map(|n| forgery(n, 0)).collect();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut sent = 0;
        for port in PORTS {
            for forged in forgeries.iter().take(2) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let mut forged = forged.clone();
                forged[..2].copy_from_slice(&(rng as u16).to_be_bytes());
                let p = packet(src, port, &forged);
                // SAFETY: a valid buffer and sockaddr_in of the lengths given.
                let n = unsafe {
                    libc::sendto(
                        fd.as_raw_fd(),
                        p.as_ptr().cast(),
                        p.len(),
                        0,
                        (&to as *const libc::sockaddr_in).cast(),
                        size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                };
                sent += usize::from(n > 0);
            }
        }
        Ok(sent)
    })?
}

#[test]
fn a_storm_of_blind_forgeries_reaches_no_client_and_no_cache() -> Result<()> {
    let _exclusive = crate::exclusive();
    let topo = Topology::new()?;
    let _nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
    add_address(&topo, UPSTREAM)?;
    let slow = Responder::start(&topo, UPSTREAM, Behavior::Forward)?;
    // Patient enough to wait out the storm for the real answers.
    let flags = ["--upstream-timeout", "6s", "--query-timeout", "8s"];
    let daemon = Daemon::start_with_upstreams(&topo, &[&slow.url()], &flags)?;
    // Far longer than the storm takes, even on a slow machine (0.3 s here, 3 s under qemu).
    slow.set(Behavior::Slow(Duration::from_secs(5)));
    let names: Vec<String> = (0..ASKED)
        .map(|i| format!("n{i}.many.example.test."))
        .collect();
    let server = daemon.v4;
    let (answers, storm_ended) =
        thread::scope(|s| -> Result<(Vec<(Message, Instant)>, Instant)> {
            let asking: Vec<_> = names
                .iter()
                .map(|name| {
                    let topo = &topo;
                    s.spawn(move || -> Result<(Message, Instant)> {
                        let sock = topo.client.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
                        let q = query(name, RecordType::A);
                        let answer = exchange_udp(&sock, server, &q, Duration::from_secs(10))?;
                        Ok((answer, Instant::now()))
                    })
                })
                .collect();
            // Once the misses are on their way upstream.
            thread::sleep(Duration::from_millis(100));
            let sent = storm(&topo, names.clone())?;
            let ended = Instant::now();
            assert!(sent > 50_000, "only {sent} forgeries sent");
            let answers = asking.into_iter().map(|a| a.join().expect("asker"));
            Ok((answers.collect::<Result<_>>()?, ended))
        })?;
    let forged = IpAddr::V4(Ipv4Addr::from(FORGED));
    for (name, (answer, at)) in names.iter().zip(&answers) {
        assert!(
            *at > storm_ended,
            "{name} was answered before the storm ended"
        );
        let addrs: Vec<IpAddr> = answer
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect();
        assert!(
            !addrs.is_empty() && !addrs.contains(&forged),
            "{name}: {addrs:?}"
        );
    }
    // And nothing forged was cached, in either layer: each name answers as before.
    for name in &names {
        let sock = topo.client.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
        let again = exchange_udp(
            &sock,
            server,
            &query(name, RecordType::A),
            Duration::from_secs(1),
        )?;
        assert!(
            again
                .answers()
                .iter()
                .all(|r| r.data() != &RData::A(A::from(Ipv4Addr::from(FORGED)))),
            "{name}: {again:?}"
        );
    }
    Ok(())
}
