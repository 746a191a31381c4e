//! Prints what the ACL and rate limit add to an XDP cache hit (needs root): the cost per query
//! with no rules written (as the program comes), with rules, and with a rate limit on top.
//!
//! The checks come before the cache lookup and do the same for a hit as for a miss, so a miss
//! timed with the kernel's repeat loop shows what they add exactly; hits can only be timed from
//! single runs (see `cost::hit_cost`), which are noisier.
//!
//! `cargo run --release -p dnsxdp-bench --example access_cost [REPEAT] [ROUNDS]`

use std::net::SocketAddr;

use dnsxdp::{
    access::acl::DEFAULT_ALLOW,
    access::settings::Settings,
    access::{AccessPolicy, Tables as _, kernel::KernelTables},
};
use dnsxdp_bench::cost::{hit_cost, repeat_and_rounds};
use dnsxdp_tests::testrun::{
    frame::FrameSpec,
    program::XdpCache,
    query::Query,
    response::{a, aaaa, record, response},
};
use hickory_proto::rr::RecordType;

const NAME: &str = "www.example.com.";

fn main() -> anyhow::Result<()> {
    let (repeat, rounds) = repeat_and_rounds()?;

    let spec = |client: &str, server: &str| {
        let at = |ip: &str, port| SocketAddr::new(ip.parse().expect("address"), port);
        FrameSpec::between(at(client, 40000), at(server, 53))
    };
    let (v4, v6) = (
        spec("198.18.1.2", "198.18.1.1"),
        spec("fd00:1::2", "fd00:1::1"),
    );
    let mut x = XdpCache::load()?;
    x.serve(v4.server)?;
    x.serve(v6.server)?;
    x.insert_response(&response(
        NAME,
        RecordType::A,
        vec![record(NAME, 300, a([198, 51, 100, 1]))?],
    )?)?;
    x.insert_response(&response(
        NAME,
        RecordType::AAAA,
        vec![record(NAME, 300, aaaa("2001:db8::1"))?],
    )?)?;
    let hits = [
        (
            v4.query(&Query::new(NAME, 1)),
            v4.query(&Query::new("nothere.example.com", 1)),
        ),
        (
            v6.query(&Query::new(NAME, 28)),
            v6.query(&Query::new("nothere.example.com", 28)),
        ),
    ];
    let tables = KernelTables::take(x.ebpf())?;

    // The default list plus the test prefixes, then 1000 more denied hosts.
    let mut allow: Vec<String> = DEFAULT_ALLOW.iter().map(|s| s.to_string()).collect();
    allow.extend(["198.18.0.0/15".into(), "fd00::/8".into()]);
    let acl = Settings {
        allow: Some(allow),
        ..Default::default()
    };
    let many = Settings {
        deny: Some(
            (0..1000)
                .map(|i| format!("10.{}.{}.1", i / 250, i % 250))
                .collect(),
        ),
        ..acl.clone()
    };
    // Never reached during the runs: a query costs 1 µs of a bucket over an hour deep, so
    // each one takes the atomic-add path of a busy client.
    let limited = |s: &Settings| Settings {
        ratelimit_qps: Some(1_000_000),
        ratelimit_burst: Some(u32::MAX),
        ..s.clone()
    };
    let cases: [(&str, Option<Settings>); 4] = [
        ("no rules written", None),
        ("default ACL (+2 prefixes)", Some(acl.clone())),
        ("+1000 deny rules", Some(many.clone())),
        ("+1000 deny rules, rate limit", Some(limited(&many))),
    ];
    println!(
        "{:<32} {:>10} {:>10} {:>10} {:>10}",
        "ns/packet", "ipv4 miss", "ipv6 miss", "ipv4 hit", "ipv6 hit"
    );
    for (name, settings) in cases {
        if let Some(s) = settings {
            let policy = AccessPolicy::from_settings(&s).map_err(anyhow::Error::msg)?;
            tables.apply(&policy.entries(), &policy.config())?;
        }
        let mut misses = Vec::new();
        let mut hit_ns = Vec::new();
        for (hit, miss) in &hits {
            let mut runs = (0..rounds.max(1))
                .map(|_| Ok(x.run_repeat(miss, repeat)?.duration_ns))
                .collect::<anyhow::Result<Vec<u64>>>()?;
            runs.sort_unstable();
            misses.push(runs[runs.len() / 2]);
            hit_ns.push(hit_cost(&x, hit, miss, repeat, rounds)?);
        }
        println!(
            "{name:<32} {:>10} {:>10} {:>10.1} {:>10.1}",
            misses[0], misses[1], hit_ns[0], hit_ns[1]
        );
    }
    Ok(())
}
