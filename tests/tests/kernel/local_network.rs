//! The local network's own names: zones forwarded to their own upstreams, the longest zone
//! winning, and DNS-rebinding protection keeping public answers out of private addresses.
//! Run as root (`cargo xtask test`).

use std::{net::UdpSocket, time::Duration};

use anyhow::Result;
use dnsxdp_tests::{
    client::{exchange_udp, query},
    daemon::Daemon,
    netns::{Topology, UPSTREAM_V4, UPSTREAM_V6},
    upstream::Nsd,
    upstreams::{Behavior, Responder, add_address},
};
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RData, RecordType},
};

const WAIT: Duration = Duration::from_secs(2);

fn ask(topo: &Topology, daemon: &Daemon, name: &str, rtype: RecordType) -> Result<Message> {
    let sock = topo.client.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
    exchange_udp(&sock, daemon.v4, &query(name, rtype), WAIT)
}

fn addresses(m: &Message) -> Vec<String> {
    let mut a: Vec<String> = (m.answers().iter())
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.to_string()),
            RData::AAAA(a) => Some(a.to_string()),
            _ => None,
        })
        .collect();
    a.sort();
    a
}

#[test]
fn zones_go_to_their_own_upstreams_and_the_longest_wins() -> Result<()> {
    let topo = Topology::new()?;
    let _nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
    for ip in ["198.18.2.3", "198.18.2.4"] {
        add_address(&topo, ip)?;
    }
    let many = Responder::start(&topo, "198.18.2.3", Behavior::Forward)?;
    let zone = Responder::start(&topo, "198.18.2.4", Behavior::Forward)?;
    let many_zone = format!("many.example.test={}", many.url());
    let example_zone = format!("Example.Test.={}", zone.url());
    let daemon = Daemon::start(
        &topo,
        &[
            "--no-xdp",
            "--forward-zone",
            &many_zone,
            "--forward-zone",
            &example_zone,
        ],
    )?;
    let (many_before, zone_before) = (many.count("a.many"), zone.count("www"));
    let a = ask(&topo, &daemon, "a.many.example.test.", RecordType::A)?;
    assert_eq!(addresses(&a), ["198.18.13.1"]);
    let www = ask(&topo, &daemon, "www.example.test.", RecordType::A)?;
    assert_eq!(www.response_code(), ResponseCode::NoError);
    assert_eq!(
        many.count("a.many") - many_before,
        1,
        "the longer zone's upstream"
    );
    assert_eq!(zone.count("www") - zone_before, 1);
    assert_eq!(zone.count("a.many"), 0);
    // The default upstream, NSD, was asked neither: its zone is all forwarded.
    let default = daemon.upstream(&format!("udp://{UPSTREAM_V4}:53"))?;
    assert_eq!(default["queries"].as_u64(), Some(0), "{default}");
    Ok(())
}

#[test]
fn rebinding_protection_removes_private_addresses_but_for_allowed_domains() -> Result<()> {
    let topo = Topology::new()?;
    let _nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
    let daemon = Daemon::start(&topo, &["--rebind-protection"])?;
    let lan = ask(&topo, &daemon, "lan.example.test.", RecordType::A)?;
    assert_eq!(addresses(&lan), ["198.18.10.8"]);
    // fd00::/8 is unique-local: the only address goes, and the answer is empty.
    let www = ask(&topo, &daemon, "www.example.test.", RecordType::AAAA)?;
    assert_eq!(
        (www.response_code(), addresses(&www).len()),
        (ResponseCode::NoError, 0)
    );
    // A repeat, from either cache, is the same.
    assert_eq!(
        addresses(&ask(&topo, &daemon, "lan.example.test.", RecordType::A)?),
        ["198.18.10.8"]
    );
    assert_eq!(daemon.counter("rebind_removed")?, 2);
    drop(daemon);

    let topo = Topology::new()?;
    let _nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
    let allowed = Daemon::start(
        &topo,
        &["--rebind-protection", "--rebind-allow", "example.test"],
    )?;
    let lan = ask(&topo, &allowed, "lan.example.test.", RecordType::A)?;
    assert_eq!(addresses(&lan), ["192.168.1.10", "198.18.10.8"]);
    Ok(())
}

/// Local records from the config and a hosts file: answered with authority and their own TTL,
/// A and AAAA from XDP with the daemon frozen, PTRs made for the addresses, and a change
/// picked up by `dnsxdp reload` and by SIGHUP in both layers.
#[test]
fn local_records_are_answered_with_authority_and_reloaded() -> Result<()> {
    let topo = Topology::new()?;
    let _nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
    let dir = std::env::temp_dir().join(format!("dnsxdp-hosts-{}", topo.server.name));
    std::fs::create_dir_all(&dir)?;
    let _cleanup = RemoveDir(dir.clone());
    let hosts = dir.join("hosts");
    let write_hosts = |nas: &str| {
        let text = format!(
            "# the LAN\n{nas} nas.lan nas-alias.lan\nfd00:10::50 nas.lan\n198.18.10.51 printer.lan\nnot-an-address x.lan\n"
        );
        std::fs::write(&hosts, text)
    };
    write_hosts("198.18.10.50")?;
    let daemon = Daemon::start(
        &topo,
        &[
            "--hosts-file",
            &hosts.to_string_lossy(),
            "--local-record",
            "www.lan CNAME nas.lan",
            "--local-record",
            "lan 300 MX 10 nas.lan",
            "--local-record",
            "_ipp._tcp.lan SRV 0 0 631 printer.lan",
            "--local-record",
            "lan TXT \"v=local\"",
            "--local-ttl",
            "120",
        ],
    )?;
    let sock = topo.client.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
    let ask = |name: &str, rtype| exchange_udp(&sock, daemon.v4, &query(name, rtype), WAIT);
    let authoritative = |m: &Message| {
        assert!(m.authoritative(), "no AA: {m}");
        assert_eq!(m.response_code(), ResponseCode::NoError, "{m}");
    };

    // Asked twice: the second A and AAAA come from XDP, with the same TTL, not counted down.
    for _ in 0..2 {
        let a = ask("NAS.lan.", RecordType::A)?;
        authoritative(&a);
        assert_eq!(addresses(&a), ["198.18.10.50"]);
        assert_eq!(a.answers()[0].ttl(), 120);
        assert_eq!(
            addresses(&ask("nas.lan.", RecordType::AAAA)?),
            ["fd00:10::50"]
        );
    }
    let hits = daemon.xdp("hits")?;
    daemon.signal(libc::SIGSTOP)?;
    let frozen = ask("nas.lan.", RecordType::A);
    daemon.signal(libc::SIGCONT)?;
    let frozen = frozen?;
    authoritative(&frozen);
    assert_eq!(
        (addresses(&frozen), frozen.answers()[0].ttl()),
        (vec!["198.18.10.50".to_string()], 120)
    );
    assert_eq!(daemon.xdp("hits")? - hits, 1);

    let www = ask("www.lan.", RecordType::A)?;
    authoritative(&www);
    assert_eq!(www.answers()[0].record_type(), RecordType::CNAME);
    assert_eq!(addresses(&www), ["198.18.10.50"]);
    let data = |m: Message| -> Vec<String> {
        authoritative(&m);
        m.answers().iter().map(|r| r.data().to_string()).collect()
    };
    assert_eq!(
        data(ask("50.10.18.198.in-addr.arpa.", RecordType::PTR)?),
        ["nas.lan."]
    );
    let v6_ptr = "0.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.d.f.ip6.arpa.";
    assert_eq!(data(ask(v6_ptr, RecordType::PTR)?), ["nas.lan."]);
    assert_eq!(data(ask("lan.", RecordType::MX)?), ["10 nas.lan."]);
    assert_eq!(data(ask("lan.", RecordType::TXT)?), ["v=local"]);
    assert_eq!(
        data(ask("_ipp._tcp.lan.", RecordType::SRV)?),
        ["0 0 631 printer.lan."]
    );
    assert_eq!(
        addresses(&ask("nas-alias.lan.", RecordType::A)?),
        ["198.18.10.50"]
    );
    // A local name without the type asked: NODATA with authority, and a SOA for its TTL.
    let nodata = ask("printer.lan.", RecordType::TXT)?;
    authoritative(&nodata);
    assert!(nodata.answers().is_empty());
    assert_eq!(nodata.name_servers()[0].record_type(), RecordType::SOA);
    // Names that are not local still go upstream, without AA.
    let upstream = ask("www.example.test.", RecordType::A)?;
    assert!(!upstream.authoritative() && !upstream.answers().is_empty());

    // `dnsxdp reload` reads the hosts file again; the kernel's old entry is gone at once.
    write_hosts("198.18.10.60")?;
    let out = std::process::Command::new(dnsxdp_tests::daemon::binary()?)
        .args(["reload", "--control"])
        .arg(&daemon.control)
        .output()?;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("local records (1 bad lines in hosts files)"),
        "{said}"
    );
    for _ in 0..2 {
        assert_eq!(
            addresses(&ask("nas.lan.", RecordType::A)?),
            ["198.18.10.60"]
        );
    }
    assert_eq!(
        data(ask("60.10.18.198.in-addr.arpa.", RecordType::PTR)?),
        ["nas.lan."]
    );
    // SIGHUP does the same.
    write_hosts("198.18.10.70")?;
    daemon.signal(libc::SIGHUP)?;
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen = addresses(&ask("nas.lan.", RecordType::A)?);
        if seen == ["198.18.10.70"] {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(seen, ["198.18.10.70"]);
    Ok(())
}

/// A directory removed when dropped.
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
