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
