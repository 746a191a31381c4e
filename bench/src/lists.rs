//! A million-domain blocklist in the running daemon: how long it takes to put in force (from
//! `dnsxdp lists refresh` until it answers), the memory it adds, and the queries answered while
//! another list of that size replaces it.

use std::{
    fmt::Write as _,
    fs,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use dnsxdp_tests::{client, daemon::went_up, http::HttpServer, netns::SERVER_V4};
use hickory_proto::rr::{RData, RecordType, rdata::A};
use serde::Serialize;

use crate::{
    compare::{
        contender::{Kind, Server},
        load::{Dnsperf, Mode, Outcome},
    },
    proc,
    sandbox::Sandbox,
};

/// Domains in each list.
pub const DOMAINS: usize = 1_000_000;
/// Queries a second while the list is swapped: well below what every path answers.
const RATE: u32 = 10_000;

#[derive(Clone, Debug, Serialize)]
pub struct ListSwap {
    pub domains: usize,
    /// From `dnsxdp lists refresh` to the first list in force (download, parse, swap).
    pub load_s: f64,
    /// The same for the second list replacing the first.
    pub swap_s: f64,
    /// The daemon's resident memory before any list, with the first, and at its peak.
    pub rss_before_mb: f64,
    pub rss_after_mb: f64,
    pub peak_mb: f64,
    /// dnsperf at a fixed rate across the swap.
    pub during: Outcome,
    /// Queries the XDP program dropped across the swap, and those the daemon's upstreams
    /// failed: where lost queries may have gone.
    pub xdp_dropped: u64,
    pub upstream_failures: u64,
}

impl ListSwap {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let o = &self.during;
        let _ = writeln!(
            s,
            "| domains | load (s) | swap (s) | memory before (MB) | with the list (MB) | peak (MB) | queries during the swap | answered | lost | dropped by XDP | upstream failures |\n\
             |--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n\
             | {} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            self.domains,
            self.load_s,
            self.swap_s,
            self.rss_before_mb,
            self.rss_after_mb,
            self.peak_mb,
            o.sent,
            o.answered,
            o.lost,
            self.xdp_dropped,
            self.upstream_failures
        );
        s
    }
}

/// A list of `DOMAINS` names under `label`, in hosts format.
fn list(label: &str) -> String {
    let mut s = String::with_capacity(DOMAINS * 40);
    for i in 0..DOMAINS {
        let _ = writeln!(s, "0.0.0.0 d{i}.{label}.example");
    }
    s
}

/// Resident and peak resident memory of `pid`, in MB.
fn memory(pid: u32) -> Result<(f64, f64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |key: &str| -> Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .context(key.to_owned())?;
        let kb: f64 = line.split_whitespace().nth(1).context("value")?.parse()?;
        Ok(kb / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Whether the daemon answers `name` as blocked (the null address).
fn blocked(sandbox: &Sandbox, name: &str) -> Result<bool> {
    let sock = sandbox
        .topo
        .client
        .enter(|| std::net::UdpSocket::bind("0.0.0.0:0"))??;
    let to = format!("{SERVER_V4}:53").parse()?;
    let reply = client::exchange_udp(
        &sock,
        to,
        &client::query(name, RecordType::A),
        Duration::from_secs(2),
    )?;
    Ok(reply.answers().first().map(|r| r.data()) == Some(&RData::A(A::new(0, 0, 0, 0))))
}

/// Starts dnsxdp with XDP and a one-rule list served over HTTP, then puts a list of
/// `DOMAINS` in force, and replaces it by another while dnsperf asks `hits` for `seconds`.
pub fn measure(sandbox: &Sandbox, dir: &Path, hits: &Path, seconds: u32) -> Result<ListSwap> {
    let http = HttpServer::start(&sandbox.topo.upstream)?;
    http.put("block.txt", "0.0.0.0 one.example\n")?;
    let cache = dir.join("lists");
    let cache_arg = cache.to_string_lossy().into_owned();
    let url = http.url("block.txt");
    let extra = [
        "--block-list",
        url.as_str(),
        "--list-cache-dir",
        cache_arg.as_str(),
    ];
    let server = Server::start_with(Kind::DnsxdpXdp, sandbox, dir, &extra)?;
    let (rss_before_mb, _) = memory(server.pid())?;

    http.put("block.txt", &list("first"))?;
    let start = Instant::now();
    server.refresh_lists()?;
    let load_s = start.elapsed().as_secs_f64();
    ensure!(
        blocked(sandbox, "d7.first.example.")?,
        "the first list is not in force"
    );
    let (rss_after_mb, _) = memory(server.pid())?;

    http.put("block.txt", &list("second"))?;
    let before = server.stats()?.context("dnsxdp's counters")?;
    let (during, swap_s) = thread::scope(|scope| -> Result<(Outcome, f64)> {
        let asking = scope.spawn(|| {
            Dnsperf {
                server: SERVER_V4.parse().expect("valid address"),
                file: hits,
                seconds,
                rate: Some(RATE),
                once: false,
                per_query: false,
                binary: false,
                mode: Mode::Udp,
            }
            .run(sandbox)
        });
        proc::sleep(Duration::from_secs(1))?;
        let start = Instant::now();
        server.refresh_lists()?;
        let swap_s = start.elapsed().as_secs_f64();
        let during = asking
            .join()
            .map_err(|_| anyhow::anyhow!("dnsperf thread panicked"))??;
        Ok((during, swap_s))
    })?;
    // Read before the checks below: the first list's name, no longer blocked, is one the
    // upstream refuses, and that would count as a failure of the swap.
    let after = server.stats()?.context("dnsxdp's counters")?;
    ensure!(
        blocked(sandbox, "d7.second.example.")?,
        "the second list is not in force"
    );
    ensure!(
        !blocked(sandbox, "d7.first.example.")?,
        "the first list is still in force"
    );
    let (_, peak_mb) = memory(server.pid())?;
    Ok(ListSwap {
        domains: DOMAINS,
        load_s,
        swap_s,
        rss_before_mb,
        rss_after_mb,
        peak_mb,
        during,
        xdp_dropped: xdp_dropped(&after) - xdp_dropped(&before),
        upstream_failures: went_up(&before, &after, "daemon", "failures"),
    })
}

/// Every query the XDP program dropped, whatever the reason.
fn xdp_dropped(stats: &serde_json::Value) -> u64 {
    (stats["xdp"].as_object().into_iter().flatten())
        .filter(|(name, _)| name.contains("dropped"))
        .filter_map(|(_, n)| n.as_u64())
        .sum()
}
