//! `dnsxdp cache list|get|flush` and the `cache` section of `dnsxdp stats`, run as the real
//! binary against a daemon with XDP on a veth and NSD upstream. Run as root
//! (`cargo xtask test`).

use std::{
    net::{TcpStream, UdpSocket},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use dnsxdp_tests::{
    client::{exchange_tcp, exchange_udp, query},
    daemon::{Daemon, binary, went_up},
    netns::{Topology, UPSTREAM_V4, UPSTREAM_V6},
    upstream::{MANY_ZONE, Nsd, too_long_for_the_kernel},
};
use hickory_proto::{op::ResponseCode, rr::RecordType};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(2);
const WWW: &str = "www.example.test.";

/// A topology with NSD upstream and dnsxdp serving, and a client socket.
struct Sandbox {
    daemon: Daemon,
    client: UdpSocket,
    _nsd: Nsd,
    topo: Topology,
}

/// What one query did, by the counters.
#[derive(Debug, PartialEq, Eq)]
enum Served {
    /// Answered by the XDP program.
    Xdp,
    /// An XDP miss that the daemon answered from upstream.
    Upstream,
}

impl Sandbox {
    fn new(flags: &[&str]) -> Result<Self> {
        let topo = Topology::new()?;
        let nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
        let daemon = Daemon::start(&topo, flags)?;
        let client = topo.client.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
        Ok(Self {
            daemon,
            client,
            _nsd: nsd,
            topo,
        })
    }

    /// Asks for `name`'s A record; it must be answered NOERROR with records.
    fn ask(&self, name: &str) -> Result<()> {
        self.ask_type(name, RecordType::A)
    }

    fn ask_type(&self, name: &str, rtype: RecordType) -> Result<()> {
        let reply = exchange_udp(&self.client, self.daemon.v4, &query(name, rtype), WAIT)?;
        if reply.response_code() != ResponseCode::NoError || reply.answers().is_empty() {
            bail!("{name} {rtype}: {reply:?}");
        }
        Ok(())
    }

    /// Asks for `name` and tells where the answer came from: XDP, or upstream after an XDP
    /// miss. Anything else (a daemon cache hit) fails.
    fn served(&self, name: &str) -> Result<Served> {
        let before = self.daemon.stats()?;
        self.ask(name)?;
        let after = self.daemon.stats()?;
        let delta = |section, counter| went_up(&before, &after, section, counter);
        match (
            delta("xdp", "hits"),
            delta("xdp", "misses"),
            delta("daemon", "upstream_queries"),
        ) {
            (1, 0, 0) => Ok(Served::Xdp),
            (0, 1, 1) => Ok(Served::Upstream),
            other => bail!("{name}: (hits, misses, upstream queries) went up by {other:?}"),
        }
    }

    /// `dnsxdp cache ARGS --json` against this daemon.
    fn cache(&self, args: &[&str]) -> Result<Value> {
        let out = self.cache_command(args, true)?;
        serde_json::from_str(&out).with_context(|| format!("parsing cache {args:?}: {out}"))
    }

    /// `dnsxdp cache ARGS` as printed; `--json` if `json`.
    fn cache_command(&self, args: &[&str], json: bool) -> Result<String> {
        let out = Command::new(binary()?)
            .arg("cache")
            .args(args)
            .args(json.then_some("--json"))
            .arg("--control")
            .arg(&self.daemon.control)
            .output()?;
        if !out.status.success() {
            bail!(
                "dnsxdp cache {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// `cache flush ARGS`: entries removed from the kernel and from the daemon.
    fn flush(&self, args: &[&str]) -> Result<(u64, u64)> {
        let mut all = vec!["flush"];
        all.extend_from_slice(args);
        let flushed = self.cache(&all)?;
        Ok((
            flushed["kernel"].as_u64().context("kernel count")?,
            flushed["daemon"].as_u64().context("daemon count")?,
        ))
    }
}

/// The rows of a `cache list`/`get --json` for `name` and `qtype` in `layer`.
fn rows<'a>(listing: &'a Value, name: &str, qtype: &str, layer: &str) -> Vec<&'a Value> {
    listing
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == name && r["type"] == qtype && r["cache"] == layer)
        .collect()
}

/// `rows` without their TTLs, which count down between two listings.
fn without_ttl(rows: &[&Value]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            let mut r = (*r).clone();
            r.as_object_mut().map(|o| o.remove("ttl"));
            r
        })
        .collect()
}

fn many(label: &str) -> String {
    format!("{label}.{MANY_ZONE}")
}

#[test]
fn list_and_get_show_an_answer_in_both_layers_with_its_xdp_hits() -> Result<()> {
    let s = Sandbox::new(&[])?;
    assert_eq!(s.served(WWW)?, Served::Upstream);
    assert_eq!(s.served(WWW)?, Served::Xdp);
    assert_eq!(s.served(WWW)?, Served::Xdp);

    let listed = Instant::now();
    let list = s.cache(&["list"])?;
    let kernel = rows(&list, WWW, "A", "kernel");
    assert_eq!(kernel.len(), 1, "{list}");
    assert_eq!(kernel[0]["hits"], 2, "{list}");
    assert_eq!(kernel[0]["rcode"], "NOERROR");
    let ttl = kernel[0]["ttl"].as_u64().context("ttl")?;
    assert!((290..=300).contains(&ttl), "ttl {ttl}");
    let daemon = rows(&list, WWW, "A", "daemon");
    assert_eq!(daemon.len(), 1, "{list}");
    assert_eq!(daemon[0]["hits"], 0, "the daemon served none: {list}");

    // Any case, with or without the root dot; every type held, or the one asked for.
    let get = s.cache(&["get", "WWW.example.TEST"])?;
    assert_eq!(get.as_array().map(Vec::len), Some(2), "{get}");
    let got = rows(&get, WWW, "A", "kernel");
    assert_eq!(without_ttl(&got), without_ttl(&kernel));
    // Counted down between the two, never up.
    let got_ttl = got[0]["ttl"].as_u64().context("ttl")?;
    assert!(
        got_ttl <= ttl && ttl - got_ttl <= listed.elapsed().as_secs() + 1,
        "ttl {ttl}, then {got_ttl}"
    );
    assert_eq!(s.cache(&["get", WWW, "aaaa"])?, serde_json::json!([]));

    let table = s.cache_command(&["list"], false)?;
    let line = table
        .lines()
        .find(|l| l.starts_with(WWW) && l.contains(" kernel "))
        .with_context(|| format!("no kernel row for {WWW}:\n{table}"))?;
    assert!(line.ends_with("  2  NOERROR"), "{line}");
    let total = list.as_array().map_or(0, Vec::len);
    assert!(
        table.ends_with(&format!("\n{total} cached answers\n")),
        "{table}"
    );
    let limited = s.cache_command(&["list", "--limit", "1"], false)?;
    assert!(
        limited.ends_with(&format!("\n1 of {total} cached answers shown (--limit)\n")),
        "{limited}"
    );
    Ok(())
}

#[test]
fn flushing_a_name_makes_the_very_next_query_a_miss() -> Result<()> {
    let s = Sandbox::new(&[])?;
    s.ask(WWW)?;
    assert_eq!(s.served(WWW)?, Served::Xdp);
    assert_eq!(s.flush(&[WWW, "A"])?, (1, 1));
    assert_eq!(s.served(WWW)?, Served::Upstream);
    assert_eq!(s.served(WWW)?, Served::Xdp, "filled again");
    // Without a type: every type of the name, here A only.
    assert_eq!(s.flush(&["www.example.test"])?, (1, 1));
    assert_eq!(s.flush(&[WWW])?, (0, 0), "nothing left");
    assert_eq!(s.served(WWW)?, Served::Upstream);
    Ok(())
}

#[test]
fn flushing_a_suffix_takes_the_zone_and_keeps_the_rest() -> Result<()> {
    let s = Sandbox::new(&[])?;
    let (a, b) = (many("a"), many("b.c"));
    for name in [WWW, &a, &b] {
        s.ask(name)?;
        assert_eq!(s.served(name)?, Served::Xdp);
    }
    // Whole labels only: `ample.test` is not a zone above `www.example.test`.
    assert_eq!(s.flush(&["--suffix", "ample.test"])?, (0, 0));
    assert_eq!(s.flush(&["--suffix", MANY_ZONE])?, (2, 2));
    assert_eq!(s.served(&a)?, Served::Upstream);
    assert_eq!(s.served(&b)?, Served::Upstream);
    assert_eq!(s.served(WWW)?, Served::Xdp, "outside the zone: kept");
    Ok(())
}

#[test]
fn flushing_everything_empties_both_layers() -> Result<()> {
    let s = Sandbox::new(&[])?;
    for name in [WWW, &many("a"), &many("b")] {
        s.ask(name)?;
    }
    let list = s.cache(&["list"])?;
    let count = |layer: &str| {
        list.as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["cache"] == layer)
            .count() as u64
    };
    assert!(count("kernel") >= 3, "{list}");
    assert_eq!(s.flush(&["--all"])?, (count("kernel"), count("daemon")));
    assert_eq!(s.cache(&["list"])?, serde_json::json!([]));
    assert_eq!(s.served(WWW)?, Served::Upstream);
    let stats = s.daemon.stats()?;
    assert_eq!(stats["cache"]["kernel"]["occupancy"], 1, "{stats}");
    assert_eq!(stats["cache"]["kernel"]["evictions"], 0, "{stats}");
    Ok(())
}

#[test]
fn stats_count_entries_and_hit_ratios_from_the_counters() -> Result<()> {
    let s = Sandbox::new(&[])?;
    for name in [WWW, &many("a"), &many("b")] {
        s.ask(name)?;
        s.ask(name)?;
    }
    // Too long for the kernel: the repeat is a daemon cache hit.
    s.ask(&too_long_for_the_kernel())?;
    s.ask(&too_long_for_the_kernel())?;

    let stats = s.daemon.stats()?;
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("not a count: {stats}"));
    let (xdp, daemon, cache) = (&stats["xdp"], &stats["daemon"], &stats["cache"]);
    let kernel_live = s.cache(&["list"])?.as_array().map_or(0, |rows| {
        rows.iter().filter(|r| r["cache"] == "kernel").count()
    });
    assert_eq!(
        n(&cache["kernel"]["entries"]),
        kernel_live as u64,
        "{stats}"
    );
    assert!(
        n(&cache["daemon"]["entries"]) >= 5,
        "ns, www, a, b, the long one: {stats}"
    );
    assert_eq!(n(&cache["daemon"]["capacity"]), 65536, "{stats}");

    let hits = n(&xdp["hits"]);
    let kernel = hits as f64 / (hits + n(&xdp["misses"]) + n(&xdp["expired"])) as f64;
    let daemon_hits = n(&daemon["cache_hits"]);
    assert!(daemon_hits >= 1, "{stats}");
    let lookups = daemon_hits + n(&daemon["upstream_queries"]) + n(&daemon["coalesced"]);
    let ratio = |v: &Value| v.as_f64().unwrap_or_else(|| panic!("no ratio: {stats}"));
    assert!(
        (ratio(&cache["kernel"]["hit_ratio"]) - kernel).abs() < 1e-9,
        "{stats}"
    );
    let daemon_ratio = daemon_hits as f64 / lookups as f64;
    assert!(
        (ratio(&cache["daemon"]["hit_ratio"]) - daemon_ratio).abs() < 1e-9,
        "{stats}"
    );
    let total = (hits + daemon_hits) as f64 / (hits + lookups) as f64;
    assert!((ratio(&cache["hit_ratio"]) - total).abs() < 1e-9, "{stats}");

    let table = Command::new(binary()?)
        .args(["stats", "--control"])
        .arg(&s.daemon.control)
        .output()?;
    let table = String::from_utf8(table.stdout)?;
    assert!(table.contains("\ncache\n  layer "), "{table}");
    Ok(())
}

#[test]
fn small_caches_evict_without_errors() -> Result<()> {
    const NAMES: usize = 200;
    // Every name's answer is small: those are the entries it has room for.
    const KERNEL: u64 = 64;
    let s = Sandbox::new(&["--kernel-cache-size", "64", "--daemon-cache-size", "32"])?;
    for i in 0..NAMES {
        s.ask(&many(&format!("n{i}")))?;
    }
    let stats = s.daemon.stats()?;
    let n = |layer: &str, field: &str| {
        stats["cache"][layer][field]
            .as_u64()
            .unwrap_or_else(|| panic!("no cache.{layer}.{field}: {stats}"))
    };
    // Together with the medium and large tiers'.
    assert_eq!(n("kernel", "capacity"), KERNEL + 8 + 2);
    assert!(n("kernel", "occupancy") <= KERNEL, "{stats}");
    assert!(
        n("kernel", "entries") <= n("kernel", "occupancy"),
        "{stats}"
    );
    // Every name (and ns.example.test, from startup) went in; those not there were evicted.
    assert_eq!(
        n("kernel", "evictions"),
        NAMES as u64 + 1 - n("kernel", "occupancy"),
        "{stats}"
    );
    assert_eq!(
        (n("daemon", "occupancy"), n("daemon", "evictions")),
        (32, NAMES as u64 + 1 - 32),
        "{stats}"
    );
    let listed = s.cache(&["list"])?;
    let kernel_rows = listed.as_array().map_or(0, |rows| {
        rows.iter().filter(|r| r["cache"] == "kernel").count()
    });
    assert!(kernel_rows as u64 <= KERNEL, "{listed}");
    assert!(
        !s.daemon.log().contains("kernel cache failed"),
        "{}",
        s.daemon.log()
    );
    Ok(())
}

#[test]
fn only_udp_hits_put_an_evicted_kernel_entry_back() -> Result<()> {
    // The kernel never sees a TCP query: a daemon hit over TCP says nothing of its entries,
    // and writing them back on every such hit would cost a map update per answer.
    const NAMES: usize = 200;
    let s = Sandbox::new(&["--kernel-cache-size", "64", "--daemon-cache-size", "1024"])?;
    let names: Vec<String> = (0..NAMES).map(|i| many(&format!("n{i}"))).collect();
    for name in &names {
        s.ask(name)?;
    }
    // (in the daemon's cache, in the kernel's)
    let layers = |name: &str| -> Result<(bool, bool)> {
        let got = s.cache(&["get", name, "A"])?;
        let held = |layer| !rows(&got, name, "A", layer).is_empty();
        Ok((held("daemon"), held("kernel")))
    };
    let mut evicted = None;
    for name in &names {
        if layers(name)? == (true, false) {
            evicted = Some(name.as_str());
            break;
        }
    }
    let evicted = evicted.context("no name the kernel evicted and the daemon kept")?;

    let v4 = s.daemon.v4;
    let mut tcp = s.topo.client.enter(move || TcpStream::connect(v4))??;
    let reply = exchange_tcp(&mut tcp, &query(evicted, RecordType::A), WAIT)?;
    assert_eq!(reply.answers().len(), 1, "{reply:?}");
    assert_eq!(layers(evicted)?, (true, false), "put back after a TCP hit");

    s.ask(evicted)?;
    assert_eq!(
        layers(evicted)?,
        (true, true),
        "not put back after a UDP hit"
    );
    Ok(())
}
