//! The load generators, run in the client namespace on the generator CPU, and what their
//! output says.

use std::{net::IpAddr, path::Path, time::Duration};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use crate::{
    proc,
    sandbox::{GENERATOR_CPU, Sandbox, pinned},
};

/// dnsperf's sockets and outstanding queries: enough to keep any of the servers busy, few
/// enough not to overflow a server's default socket buffer (208 KiB) in one burst.
pub const DNSPERF_CLIENTS: u32 = 8;
pub const DNSPERF_OUTSTANDING: u32 = 200;
/// Seconds before dnsperf counts a query as lost.
pub const DNSPERF_TIMEOUT: u32 = 2;

/// What dnsperf speaks (`-m`), and the server port that goes with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Udp,
    /// DNS over TLS, port 853.
    Dot,
    /// DNS over HTTPS (POST to /dns-query), port 443.
    Doh,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Udp => "udp",
            Mode::Dot => "dot",
            Mode::Doh => "doh",
        }
    }

    fn port(self) -> u16 {
        match self {
            Mode::Udp => 53,
            Mode::Dot => 853,
            Mode::Doh => 443,
        }
    }
}

/// One dnsperf run.
pub struct Dnsperf<'a> {
    pub server: IpAddr,
    pub file: &'a Path,
    pub seconds: u32,
    /// `-Q`: a fixed rate instead of as fast as answers come.
    pub rate: Option<u32>,
    /// `-n 1`: stop at the end of the file (for sets whose misses must not repeat).
    pub once: bool,
    /// `-v`: a line per answer with its latency, for percentiles.
    pub per_query: bool,
    /// `-B`: the file holds whole queries (`clients::wire_file`), not lines of text.
    pub binary: bool,
    pub mode: Mode,
}

impl Dnsperf<'_> {
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = [
            "-s".into(),
            self.server.to_string(),
            "-d".into(),
            self.file.display().to_string(),
            "-l".into(),
            self.seconds.to_string(),
            "-c".into(),
            DNSPERF_CLIENTS.to_string(),
            "-q".into(),
            DNSPERF_OUTSTANDING.to_string(),
            "-t".into(),
            DNSPERF_TIMEOUT.to_string(),
            "-T".into(),
            "1".into(),
        ]
        .into();
        if let Some(r) = self.rate {
            a.extend(["-Q".into(), r.to_string()]);
        }
        if self.once {
            a.extend(["-n".into(), "1".into()]);
        }
        if self.per_query {
            a.push("-v".into());
        }
        if self.binary {
            a.push("-B".into());
        }
        if self.mode != Mode::Udp {
            let (mode, port) = (self.mode.name(), self.mode.port());
            a.extend(["-m".into(), mode.into(), "-p".into(), port.to_string()]);
        }
        a
    }

    pub fn run(&self, sandbox: &Sandbox) -> Result<Outcome> {
        let mut cmd = sandbox.topo.client.command("dnsperf");
        cmd.args(self.args());
        pinned(&mut cmd, GENERATOR_CPU);
        let limit = Duration::from_secs(u64::from(self.seconds + DNSPERF_TIMEOUT) + 30);
        let done = proc::run(cmd, limit)?;
        if !done.status.success() {
            bail!("dnsperf failed ({}): {}", done.status, done.stderr.trim());
        }
        parse_dnsperf(&done.stdout)
    }
}

/// One kxdpgun run at a fixed offered rate.
pub struct Kxdpgun<'a> {
    pub server: IpAddr,
    pub file: &'a Path,
    pub seconds: u32,
    pub rate: u32,
}

impl Kxdpgun<'_> {
    pub fn args(&self, server_mac: &str) -> Vec<String> {
        [
            "-t",
            &self.seconds.to_string(),
            "-Q",
            &self.rate.to_string(),
            "-F",
            &GENERATOR_CPU.to_string(),
            "-I",
            "veth0",
            "-R",
            server_mac,
            "-i",
            &self.file.display().to_string(),
            &self.server.to_string(),
        ]
        .map(String::from)
        .into()
    }

    /// Runs with the client's own XDP program swapped out for kxdpgun's.
    pub fn run(&self, sandbox: &mut Sandbox) -> Result<Outcome> {
        let mac = sandbox.server_mac()?;
        let mut cmd = sandbox.topo.client.command("kxdpgun");
        cmd.args(self.args(&mac));
        pinned(&mut cmd, GENERATOR_CPU);
        sandbox.topo.detach_client_xdp();
        let done = proc::run(cmd, Duration::from_secs(u64::from(self.seconds) + 30));
        sandbox.topo.attach_client_xdp()?;
        let done = done?;
        if !done.status.success() {
            bail!(
                "kxdpgun failed ({}): {}{}",
                done.status,
                done.stdout,
                done.stderr
            );
        }
        parse_kxdpgun(&done.stdout)
    }
}

/// What a generator reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Outcome {
    pub sent: u64,
    pub answered: u64,
    pub lost: u64,
    pub seconds: f64,
    /// Answered queries per second.
    pub qps: f64,
    pub latency: Option<Latency>,
}

/// Latency in microseconds. Percentiles need per-query output (`dnsperf -v`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub avg_us: f64,
    pub stddev_us: f64,
    pub max_us: f64,
    pub p50_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
}

/// The statistics dnsperf prints at the end, plus percentiles from its `-v` lines
/// (`> NOERROR h1.example.test. A 0.000139`).
pub fn parse_dnsperf(text: &str) -> Result<Outcome> {
    let field = |label: &str| -> Result<&str> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .with_context(|| format!("no {label:?} in dnsperf output:\n{text}"))
    };
    let num = |label: &str| -> Result<f64> { Ok(field(label)?.parse()?) };
    let max_s: f64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Average Latency (s):"))
        .and_then(|r| r.split("max ").nth(1))
        .and_then(|r| r.trim_end_matches(')').trim().parse().ok())
        .unwrap_or(0.0);
    let mut samples: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    samples.sort_by(f64::total_cmp);
    let pct = |q: f64| percentile(&samples, q).map(|s| s * 1e6);
    let answered = num("Queries completed:")? as u64;
    let seconds = num("Run time (s):")?;
    Ok(Outcome {
        sent: num("Queries sent:")? as u64,
        answered,
        lost: num("Queries lost:")? as u64,
        seconds,
        qps: num("Queries per second:")?,
        latency: Some(Latency {
            avg_us: num("Average Latency (s):")? * 1e6,
            stddev_us: num("Latency StdDev (s):")? * 1e6,
            max_us: max_s * 1e6,
            p50_us: pct(0.5),
            p90_us: pct(0.9),
            p99_us: pct(0.99),
            p999_us: pct(0.999),
        }),
    })
}

/// The nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// kxdpgun's summary:
/// ```text
/// total queries:     40010 (20005 pps)
/// total replies:     40010 (20005 pps) (100%)
/// duration: 2 s
/// ```
pub fn parse_kxdpgun(text: &str) -> Result<Outcome> {
    let count = |label: &str| -> Result<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .with_context(|| format!("no {label:?} in kxdpgun output:\n{text}"))?
            .parse()
            .with_context(|| format!("kxdpgun {label}"))
    };
    let sent = count("total queries:")? as u64;
    let answered = count("total replies:")? as u64;
    let seconds = count("duration:")?;
    if seconds <= 0.0 {
        bail!("kxdpgun ran for {seconds} s");
    }
    Ok(Outcome {
        sent,
        answered,
        lost: sent.saturating_sub(answered),
        seconds,
        qps: answered as f64 / seconds,
        latency: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DNSPERF: &str = "DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 198.18.1.1 -d q -l 2 -Q 5 -v
[Status] Sending queries (to 198.18.1.1:53)
[Status] Started at: Sat Nov 21 13:31:58 2026
[Status] Stopping after 2.000000 seconds
> NOERROR www.example.test A 0.002804
> REFUSED foo.example.test AAAA 0.000139
> NOERROR www.example.test A 0.000190
> REFUSED foo.example.test AAAA 0.000139
> NOERROR www.example.test A 0.000138
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         6
  Queries completed:    5 (83.33%)
  Queries lost:         1 (16.67%)

  Response codes:       NOERROR 3 (60.00%), REFUSED 2 (40.00%)
  Average packet size:  request 34, response 42
  Run time (s):         2.000302
  Queries per second:   2.499622

  Average Latency (s):  0.000682 (min 0.000138, max 0.002804)
  Latency StdDev (s):   0.001061

";

    #[test]
    fn dnsperf_summary_and_percentiles() {
        let o = parse_dnsperf(DNSPERF).unwrap();
        assert_eq!((o.sent, o.answered, o.lost), (6, 5, 1));
        assert!((o.qps - 2.499622).abs() < 1e-9 && (o.seconds - 2.000302).abs() < 1e-9);
        let l = o.latency.unwrap();
        assert!((l.avg_us - 682.0).abs() < 1e-6 && (l.stddev_us - 1061.0).abs() < 1e-6);
        assert!((l.max_us - 2804.0).abs() < 1e-6);
        assert_eq!(l.p50_us.map(f64::round), Some(139.0));
        assert_eq!(l.p99_us.map(f64::round), Some(2804.0));
    }

    #[test]
    fn dnsperf_without_per_query_lines_has_no_percentiles() {
        let text: String = DNSPERF
            .lines()
            .filter(|l| !l.starts_with("> "))
            .map(|l| format!("{l}\n"))
            .collect();
        let l = parse_dnsperf(&text).unwrap().latency.unwrap();
        assert_eq!(l.p50_us, None);
        assert!(parse_dnsperf("[Status] Command line: dnsperf\n").is_err());
    }

    #[test]
    fn kxdpgun_summary() {
        let text = "using interface veth0, XDP threads 1, UDP, native mode
thread#00: sent 40010, received 39000
total queries:     40010 (20005 pps)
total replies:     39000 (19500 pps) (97%)
average DNS reply size: 42 B
average Ethernet reply rate: 13443360 bps (13.44 Mbps)
responded NOERROR:   39000
duration: 2 s
";
        let o = parse_kxdpgun(text).unwrap();
        assert_eq!((o.sent, o.answered, o.lost), (40010, 39000, 1010));
        assert_eq!((o.seconds, o.qps), (2.0, 19500.0));
        assert!(parse_kxdpgun("failed to initialize XDP socket").is_err());
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(500.0));
        assert_eq!(percentile(&v, 0.999), Some(999.0));
        assert_eq!(percentile(&v, 1.0), Some(1000.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn dnsperf_arguments() {
        let p = Path::new("/tmp/q");
        let d = Dnsperf {
            server: "fd00:1::1".parse().unwrap(),
            file: p,
            seconds: 10,
            rate: Some(20_000),
            once: true,
            per_query: true,
            binary: false,
            mode: Mode::Udp,
        };
        let a = d.args().join(" ");
        assert_eq!(
            a,
            "-s fd00:1::1 -d /tmp/q -l 10 -c 8 -q 200 -t 2 -T 1 -Q 20000 -n 1 -v"
        );
        let b = Dnsperf { binary: true, ..d };
        assert!(b.args().join(" ").ends_with("-n 1 -v -B"));
        let tls = Dnsperf {
            mode: Mode::Dot,
            ..b
        };
        assert!(tls.args().join(" ").ends_with("-B -m dot -p 853"));
    }
}
