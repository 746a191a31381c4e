//! DNS over TLS and over HTTPS: dnsxdp and Unbound serving the same cache hits, for queries
//! per second and the server's CPU per answer.
//!
//! DoT load comes from dnsperf (`-m dot`). DoH load comes from h2load (nghttp2), a GET per
//! question of the same set: dnsperf 2.10's DoH client sends a query it has queued only when
//! data arrives from the server or its 100 ms timer fires, so against a server that sends
//! each reply in one TLS record it waits on that timer, and measures the timer.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use data_encoding::BASE64URL_NOPAD;
use dnsxdp_tests::{client, netns::SERVER_V4, unbound::TestCa};
use hickory_proto::rr::RecordType;
use serde::Serialize;

use crate::{
    compare::{
        WARM_RATE,
        contender::{Kind, Server},
        cpu::Tasks,
        load::{DNSPERF_CLIENTS, DNSPERF_OUTSTANDING, Dnsperf, Mode, Outcome},
    },
    proc,
    sandbox::{GENERATOR_CPU, Sandbox, pinned},
};

/// The servers compared, by their contender name.
pub const SERVERS: [Kind; 2] = [Kind::DnsxdpXdp, Kind::Unbound];

#[derive(Clone, Debug, Serialize)]
pub struct EncryptedRun {
    pub server: String,
    /// `dot` or `doh`.
    pub transport: String,
    pub outcome: Outcome,
    /// Server CPU (its threads, and the softirq work of its veth) per answer.
    pub ns_per_answer: Option<f64>,
}

/// The table of runs.
pub fn markdown(runs: &[EncryptedRun]) -> String {
    let mut s = String::from(
        "| server | transport | answered qps | lost | server CPU per answer (µs) |\n\
         |---|---|--:|--:|--:|\n",
    );
    for r in runs {
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {} | {} |",
            r.server,
            r.transport,
            r.outcome.qps,
            r.outcome.lost,
            r.ns_per_answer
                .map_or("-".into(), |ns| format!("{:.1}", ns / 1000.0))
        );
    }
    s
}

/// Each of `SERVERS` with DoT on 853 and DoH on 443, its cache warmed over UDP with `hits`,
/// then asked those hits over each for `seconds`.
pub fn measure(
    sandbox: &Sandbox,
    dir: &Path,
    hits: &Path,
    seconds: u32,
    client_napi: u32,
) -> Result<Vec<EncryptedRun>> {
    let ca = TestCa::new(
        &format!("bench-{}", std::process::id()),
        &["dns.test"],
        &[SERVER_V4],
    )?;
    fs::create_dir_all(dir)?;
    let urls = doh_urls(hits, &dir.join("doh-urls.txt"))?;
    let mut runs = Vec::new();
    for kind in SERVERS {
        let server = Server::start_encrypted(kind, sandbox, &dir.join(format!("{kind:?}")), &ca)?;
        let dnsperf = |mode, rate, once| Dnsperf {
            server: SERVER_V4.parse().expect("valid address"),
            file: hits,
            seconds,
            rate,
            once,
            per_query: false,
            binary: false,
            mode,
        };
        dnsperf(Mode::Udp, Some(WARM_RATE), true).run(sandbox)?;
        let tasks = Tasks {
            server: server.pid(),
            napi: sandbox.server_napi()?,
            client_napi,
        };
        for mode in [Mode::Dot, Mode::Doh] {
            eprintln!("bench:   {} over {}", kind.name(), mode.name());
            let before = tasks.sample()?;
            let start = Instant::now();
            let outcome = match mode {
                Mode::Doh => h2load(sandbox, &urls, seconds)?,
                _ => dnsperf(mode, None, false).run(sandbox)?,
            };
            let d = tasks.sample()?.since(&before);
            let answered = outcome.answered;
            let ns = d.server_ns + d.napi_ns;
            eprintln!(
                "bench:   {:.0} qps in {:.1} s",
                outcome.qps,
                start.elapsed().as_secs_f64()
            );
            runs.push(EncryptedRun {
                server: kind.name().into(),
                transport: mode.name().into(),
                outcome,
                ns_per_answer: (answered > 0).then(|| ns as f64 / answered as f64),
            });
            proc::sleep(Duration::from_millis(500))?;
        }
    }
    Ok(runs)
}

/// A DoH GET URL for each question of the dnsperf file `hits`, written to `out`.
fn doh_urls(hits: &Path, out: &Path) -> Result<PathBuf> {
    let mut urls = String::new();
    for line in fs::read_to_string(hits)?.lines() {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(rtype)) = (parts.next(), parts.next()) else {
            continue;
        };
        let rtype: RecordType = rtype.parse()?;
        let mut q = client::query(name, rtype);
        // RFC 8484 §4.1: ID 0, so that HTTP caches see one URL per question.
        q.set_id(0);
        let dns = BASE64URL_NOPAD.encode(&q.to_vec()?);
        let _ = writeln!(urls, "https://{SERVER_V4}/dns-query?dns={dns}");
    }
    fs::write(out, urls)?;
    Ok(out.to_path_buf())
}

/// h2load asking the `urls` over as many connections and streams as dnsperf's clients and
/// outstanding queries, for `seconds`.
fn h2load(sandbox: &Sandbox, urls: &Path, seconds: u32) -> Result<Outcome> {
    let mut cmd: Command = sandbox.topo.client.command("h2load");
    let streams = DNSPERF_OUTSTANDING / DNSPERF_CLIENTS;
    cmd.args([
        "-c",
        &DNSPERF_CLIENTS.to_string(),
        "-m",
        &streams.to_string(),
    ])
    .args(["-D", &seconds.to_string(), "-i"])
    .arg(urls);
    pinned(&mut cmd, GENERATOR_CPU);
    let done = proc::run(cmd, Duration::from_secs(u64::from(seconds) + 30))?;
    if !done.status.success() {
        bail!("h2load failed ({}): {}", done.status, done.stderr.trim());
    }
    parse_h2load(&done.stdout)
}

/// `finished in 10.00s, 81234.50 req/s, ...` and `requests: N total, N started, N done,
/// N succeeded, N failed, ...`.
fn parse_h2load(text: &str) -> Result<Outcome> {
    let line = |prefix: &str| {
        (text.lines())
            .find_map(|l| l.trim().strip_prefix(prefix))
            .with_context(|| format!("no {prefix:?} in h2load output:\n{text}"))
    };
    let finished = line("finished in ")?;
    let seconds: f64 = (finished.split(',').next())
        .and_then(|s| s.trim().strip_suffix('s'))
        .and_then(|s| s.parse().ok())
        .context("h2load's duration")?;
    let requests = line("requests: ")?;
    let count = |what: &str| -> Result<u64> {
        (requests.split(',').map(str::trim))
            .find_map(|p| p.strip_suffix(what))
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("no {what} in {requests}"))
    };
    let (sent, answered) = (count("started")?, count("succeeded")?);
    Ok(Outcome {
        sent,
        answered,
        lost: sent - answered,
        seconds,
        qps: answered as f64 / seconds,
        latency: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2load_output_is_read() {
        let text = "finished in 2.00s, 41000.00 req/s, 2.61MB/s\n\
                    requests: 82010 total, 82010 started, 82000 done, 82000 succeeded, 0 failed, 0 errored, 0 timeout\n";
        let o = parse_h2load(text).unwrap();
        assert_eq!((o.sent, o.answered, o.lost), (82010, 82000, 10));
        assert_eq!(o.qps, 41000.0);
        assert!(parse_h2load("nothing").is_err());
    }
}
