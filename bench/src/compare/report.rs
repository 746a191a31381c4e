//! What a bench run found: `results.json` and the markdown tables of `results.md`.

use std::fmt::Write as _;

use serde::Serialize;

use super::load::Outcome;
use crate::{
    cost::TierMemory,
    encrypted::{self, EncryptedRun},
    lists::ListSwap,
};

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// UTC, `YYYY-MM-DD HH:MM:SS`.
    pub date: String,
    pub command: String,
    pub quick: bool,
    pub machine: Machine,
    pub method: Vec<String>,
    pub micro: Vec<Micro>,
    /// The kernel cache's memory per entry, by tier.
    pub kernel_memory: Vec<TierMemory>,
    pub contenders: Vec<Contender>,
    /// A million-domain blocklist loaded and swapped in dnsxdp, if measured.
    pub lists: Option<ListSwap>,
    /// DNS over TLS and HTTPS, dnsxdp and Unbound; empty when not run.
    pub encrypted: Vec<EncryptedRun>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Machine {
    pub os: String,
    pub kernel: String,
    pub cpu: String,
    pub cpus: usize,
    pub memory_gib: f64,
    /// /proc/loadavg when the bench started: other work on the machine skews the results.
    pub load_average: String,
    /// Version lines of the load generators and the upstream.
    pub tools: Vec<String>,
}

/// The XDP program alone, per packet.
#[derive(Clone, Debug, Serialize)]
pub struct Micro {
    pub case: String,
    pub ns: f64,
    pub action: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Contender {
    pub name: String,
    pub version: String,
    pub settings: String,
    /// Why it did not run (not installed) or stopped early.
    pub skipped: Option<String>,
    pub runs: Vec<Run>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub scenario: String,
    pub outcome: Outcome,
    /// The rate asked of the generator, if fixed.
    pub offered_qps: Option<u32>,
    pub cpu: Cpu,
    /// dnsxdp only: answers the XDP program sent.
    pub xdp_answered: Option<u64>,
    /// Real clients only: queries sent whose question was asked before (not a new name).
    pub repeats: Option<u64>,
    /// Packets the upstream received: none in a hit scenario unless a cache forgot.
    pub upstream_packets: u64,
}

/// CPU time over the measured window (the generator's run), in ns.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cpu {
    pub window_s: f64,
    pub server_ns: u64,
    pub server_napi_ns: u64,
    pub generator_ns: u64,
    pub generator_napi_ns: u64,
    /// (server + its NAPI thread) / answered queries.
    pub ns_per_answer: Option<f64>,
}

impl Run {
    /// Share of one CPU the server and its NAPI thread used while the generator ran.
    pub fn server_load(&self) -> f64 {
        let c = &self.cpu;
        (c.server_ns + c.server_napi_ns) as f64 / (self.outcome.seconds * 1e9)
    }

    /// The same for the generator over its whole life: it also works before and after it
    /// sends (reading its input, waiting for the last answers).
    pub fn generator_load(&self) -> f64 {
        let c = &self.cpu;
        (c.generator_ns + c.generator_napi_ns) as f64 / (c.window_s * 1e9)
    }

    /// Percent of the repeated questions the XDP program answered.
    pub fn repeats_by_xdp(&self) -> Option<f64> {
        let repeats = self.repeats.filter(|&n| n > 0)?;
        Some(pct(self.xdp_answered?, repeats))
    }
}

/// Scenario ids with their titles, in the order they run: the mix and the misses after the
/// hit scenarios, so that their new names cannot push hits out of a cache before those; the
/// real clients last, warmed again just before.
pub const SCENARIOS: [(&str, &str); 7] = [
    (
        "hits-v4",
        "100% hits, A over IPv4 (dnsperf, as fast as answers come)",
    ),
    (
        "hits-v6",
        "100% hits, A and AAAA over IPv6 (dnsperf, as fast as answers come)",
    ),
    (
        "fixed-rate",
        "100% hits, A over IPv4, fixed rate below saturation (dnsperf -Q): latency",
    ),
    (
        "kxdpgun",
        "100% hits, A over IPv4, kxdpgun (AF_XDP) at a fixed offered rate",
    ),
    (
        "mix",
        "Realistic mix: hits, misses, NXDOMAIN, NODATA (dnsperf, as fast as answers come)",
    ),
    (
        "misses",
        "100% misses: every query a new name, forwarded upstream (dnsperf, as fast as answers come)",
    ),
    (
        "real-clients",
        "Real clients: A and AAAA in pairs, HTTPS for a third of names, a few PTR/MX/TXT/SRV, \
         15% with DO, 15% with a cookie, 10% new names (dnsperf, as fast as answers come)",
    ),
];

impl Results {
    fn run(&self, contender: &str, scenario: &str) -> Option<&Run> {
        self.contenders
            .iter()
            .find(|c| c.name == contender)?
            .runs
            .iter()
            .find(|r| r.scenario == scenario)
    }

    /// `a`'s metric over `b`'s in `scenario`.
    pub fn ratio(
        &self,
        scenario: &str,
        a: &str,
        b: &str,
        metric: fn(&Run) -> Option<f64>,
    ) -> Option<f64> {
        let (x, y) = (
            metric(self.run(a, scenario)?)?,
            metric(self.run(b, scenario)?)?,
        );
        (y > 0.0).then(|| x / y)
    }

    /// The comparisons the project's targets are stated in.
    pub fn headline(&self) -> Vec<String> {
        const XDP: &str = "dnsxdp (XDP)";
        let cost = |r: &Run| r.cpu.ns_per_answer;
        let qps = |r: &Run| Some(r.outcome.qps);
        let mut h = Vec::new();
        for (other, target) in [("Unbound", 10.0), ("dnsxdp --no-xdp", 5.0)] {
            if let Some(r) = self.ratio("hits-v4", other, XDP, cost) {
                h.push(format!(
                    "Server CPU per hit (dnsperf, IPv4 A): {other} uses {r:.1}x what dnsxdp with \
                     XDP uses (target: at least {target}x)"
                ));
            }
        }
        if let Some(r) = self.ratio("kxdpgun", XDP, "Unbound", qps) {
            h.push(format!(
                "Answered qps under kxdpgun (100% hits): dnsxdp with XDP {r:.1}x Unbound \
                 (target: at least 3x)"
            ));
        }
        if let Some(r) = self.ratio("hits-v4", XDP, "Unbound", qps) {
            h.push(format!(
                "Answered qps under dnsperf (100% hits, IPv4): dnsxdp with XDP {r:.2}x Unbound \
                 (target: at least 1x; dnsperf's own CPU limits both)"
            ));
        }
        if let Some(r) = self.ratio("mix", XDP, "Unbound", cost) {
            h.push(format!(
                "Server CPU per answer, realistic mix: dnsxdp with XDP uses {r:.2}x what Unbound \
                 uses (target: at most 0.33x)"
            ));
        }
        if let Some(r) = self.ratio("misses", XDP, "Unbound", cost) {
            h.push(format!(
                "Server CPU per miss (every query a new name): dnsxdp with XDP uses {r:.2}x what \
                 Unbound uses (target: at most 0.7x)"
            ));
        }
        if let Some(r) = self.ratio("hits-v4", "dnsxdp --no-xdp", "Unbound", cost) {
            h.push(format!(
                "Server CPU per daemon hit (--no-xdp, dnsperf, IPv4 A): dnsxdp uses {r:.2}x what \
                 Unbound uses (target: at most 0.5x)"
            ));
        }
        if let Some(r) = self.ratio("kxdpgun", "Unbound", XDP, cost) {
            h.push(format!(
                "Server CPU per answer under kxdpgun: Unbound uses {r:.1}x what dnsxdp with XDP \
                 uses (target: at least 20x)"
            ));
        }
        for scenario in ["hits-v4", "misses"] {
            const TWO: &str = "dnsxdp --no-xdp --workers 2";
            if let (Some(q), Some(c)) = (
                self.ratio(scenario, TWO, "dnsxdp --no-xdp", qps),
                self.ratio(scenario, TWO, "dnsxdp --no-xdp", cost),
            ) {
                h.push(format!(
                    "Two workers against one ({scenario}, --no-xdp): {q:.2}x the answered qps at \
                     {c:.2}x the server CPU per answer"
                ));
            }
        }
        if let Some(r) = self.ratio("real-clients", XDP, "Unbound", cost) {
            let repeats = self
                .run(XDP, "real-clients")
                .and_then(Run::repeats_by_xdp)
                .map_or(String::new(), |x| {
                    format!("; XDP answered {x:.1}% of the repeated questions")
                });
            h.push(format!(
                "Server CPU per answer, real clients (A/AAAA pairs, HTTPS, DO, cookies, 10% new \
                 names): dnsxdp with XDP uses {r:.2}x what Unbound uses{repeats}"
            ));
        }
        for transport in ["dot", "doh"] {
            let run = |server: &str| {
                (self.encrypted.iter()).find(|r| r.server == server && r.transport == transport)
            };
            if let (Some(x), Some(u)) = (run(XDP), run("Unbound"))
                && let (Some(xc), Some(uc)) = (x.ns_per_answer, u.ns_per_answer)
            {
                h.push(format!(
                    "DNS over {}, cache hits: dnsxdp answers {:.2}x Unbound's qps at {:.2}x its \
                     server CPU per answer (goal: at least 1x at no more than 1x)",
                    if transport == "dot" { "TLS" } else { "HTTPS" },
                    x.outcome.qps / u.outcome.qps,
                    xc / uc
                ));
            }
        }
        if let Some(l) = &self.lists {
            h.push(format!(
                "A blocklist of {} domains: in force {:.1} s after `dnsxdp lists refresh`, \
                 {:.0} MB over the daemon without it (target: under 5 s and 150 MB); replaced \
                 by another in {:.1} s while {} of {} queries were answered",
                l.domains,
                l.load_s,
                l.rss_after_mb - l.rss_before_mb,
                l.swap_s,
                l.during.answered,
                l.during.sent
            ));
        }
        let micro = |case: &str| self.micro.iter().find(|m| m.case == case).map(|m| m.ns);
        if let (Some(hit), Some(miss)) = (micro("ipv4 A hit"), micro("miss")) {
            h.push(format!(
                "XDP program alone (BPF_PROG_TEST_RUN): IPv4 A hit {hit:.0} ns (target < 150), \
                 miss {miss:.0} ns (target < 50)"
            ));
        }
        h
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        writeln!(s, "# dnsxdp benchmark, {} UTC\n", self.date).unwrap();
        writeln!(
            s,
            "`{}`{}\n",
            self.command,
            if self.quick {
                " (smoke run: short scenarios)"
            } else {
                ""
            }
        )
        .unwrap();
        writeln!(
            s,
            "{}, kernel {}, {} ({} CPUs), {:.0} GiB, load average {} at the start. {}.\n",
            m.os,
            m.kernel,
            m.cpu,
            m.cpus,
            m.memory_gib,
            m.load_average,
            m.tools.join(", ")
        )
        .unwrap();
        let headline = self.headline();
        if !headline.is_empty() {
            s += "## Headline\n\n";
            for h in headline {
                writeln!(s, "- {h}").unwrap();
            }
            s += "\n";
        }
        for (id, title) in SCENARIOS {
            let rows: Vec<_> = self
                .contenders
                .iter()
                .filter_map(|c| Some((c, c.runs.iter().find(|r| r.scenario == id)?)))
                .collect();
            if rows.is_empty() {
                continue;
            }
            writeln!(s, "## {title}\n").unwrap();
            if let Some(rate) = rows[0].1.offered_qps {
                writeln!(s, "Offered: {rate} qps.\n").unwrap();
            }
            let latency = id == "fixed-rate";
            // The real clients' table also compares with Unbound and counts the repeats.
            let repeats = rows.iter().any(|(_, r)| r.repeats.is_some());
            let mut columns = vec!["server", "answered qps", "lost"];
            columns.push(if latency {
                "avg / p50 / p90 / p99 / p99.9 latency (µs)"
            } else if is_kxdpgun(id) {
                "sent qps"
            } else {
                "avg latency (µs)"
            });
            columns.extend(["server load", "**server CPU ns per answer**"]);
            if repeats {
                columns.push("vs Unbound");
            }
            columns.extend(["generator load", "answered by XDP"]);
            if repeats {
                columns.push("repeats answered by XDP");
            }
            columns.push("packets upstream");
            writeln!(s, "| {} |", columns.join(" | ")).unwrap();
            writeln!(s, "|---|{}", "--:|".repeat(columns.len() - 1)).unwrap();
            for (c, r) in rows {
                let o = &r.outcome;
                write!(
                    s,
                    "| {} | {:.0} | {} ({:.2}%) | ",
                    c.name,
                    o.qps,
                    o.lost,
                    pct(o.lost, o.sent)
                )
                .unwrap();
                if is_kxdpgun(id) {
                    write!(s, "{:.0} | ", o.sent as f64 / o.seconds).unwrap();
                }
                if let Some(l) = &o.latency {
                    if latency {
                        let p = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
                        write!(
                            s,
                            "{:.0} / {} / {} / {} / {} | ",
                            l.avg_us,
                            p(l.p50_us),
                            p(l.p90_us),
                            p(l.p99_us),
                            p(l.p999_us)
                        )
                        .unwrap();
                    } else {
                        write!(s, "{:.0} | ", l.avg_us).unwrap();
                    }
                }
                let ns = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
                let share = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}%"));
                write!(
                    s,
                    "{:.0}% | **{}** | ",
                    r.server_load() * 100.0,
                    ns(r.cpu.ns_per_answer)
                )
                .unwrap();
                if repeats {
                    let vs = self.ratio(id, &c.name, "Unbound", |r| r.cpu.ns_per_answer);
                    let vs = vs.map_or("-".into(), |v| format!("{v:.2}x"));
                    write!(s, "{vs} | ").unwrap();
                }
                write!(
                    s,
                    "{:.0}% | {} | ",
                    r.generator_load() * 100.0,
                    share(r.xdp_answered.map(|x| pct(x, o.answered)))
                )
                .unwrap();
                if repeats {
                    write!(s, "{} | ", share(r.repeats_by_xdp())).unwrap();
                }
                writeln!(s, "{} |", r.upstream_packets).unwrap();
            }
            s += "\n";
        }
        if !self.micro.is_empty() {
            s += "## XDP program alone (BPF_PROG_TEST_RUN, median of runs)\n\n";
            s += "| case | ns per packet | action |\n|---|--:|---|\n";
            for m in &self.micro {
                writeln!(s, "| {} | {:.1} | {} |", m.case, m.ns, m.action).unwrap();
            }
            s += "\n";
        }
        if !self.kernel_memory.is_empty() {
            s += "## Kernel cache memory (bytes, as the kernel counts it)\n\n";
            s += "| tier | name and records | value | per entry | with buckets | entries \
                  | MB |\n|---|--:|--:|--:|--:|--:|--:|\n";
            for t in &self.kernel_memory {
                writeln!(
                    s,
                    "| {} | {} | {} | {:.0} | {:.1} | {} | {:.1} |",
                    t.tier,
                    t.data,
                    t.value,
                    t.per_entry,
                    t.with_buckets(),
                    t.entries,
                    t.megabytes()
                )
                .unwrap();
            }
            s += "\n";
        }
        if let Some(l) = &self.lists {
            s += "## A million-domain blocklist in dnsxdp (XDP)\n\n";
            s += &l.markdown();
            s += "\n";
        }
        if !self.encrypted.is_empty() {
            s += "## DNS over TLS and HTTPS, cache hits\n\n";
            s += &encrypted::markdown(&self.encrypted);
            s += "\n";
        }
        s += "## Servers\n\n| server | version | settings |\n|---|---|---|\n";
        for c in &self.contenders {
            let settings = match &c.skipped {
                // The first line: a table cell cannot hold the server's log.
                Some(why) => format!("**not measured:** {}", why.lines().next().unwrap_or("")),
                None => c.settings.clone(),
            };
            writeln!(s, "| {} | {} | {} |", c.name, c.version, settings).unwrap();
        }
        s += "\n## Method\n\n";
        for line in &self.method {
            writeln!(s, "- {line}").unwrap();
        }
        s
    }
}

/// kxdpgun reports no latency; its table shows the rate it managed to send instead.
fn is_kxdpgun(scenario: &str) -> bool {
    scenario == "kxdpgun"
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time, UTC.
pub fn utc(unix: u64) -> String {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::compare::load::Latency;

    /// Results with made-up numbers: XDP, no-XDP and Unbound in three scenarios.
    pub fn sample() -> Results {
        let run = |scenario: &str, qps: f64, ns: f64, xdp: Option<u64>| Run {
            scenario: scenario.into(),
            outcome: Outcome {
                sent: (qps * 10.0) as u64 + 5,
                answered: (qps * 10.0) as u64,
                lost: 5,
                seconds: 10.0,
                qps,
                latency: (scenario != "kxdpgun").then(|| Latency {
                    avg_us: 120.0,
                    ..Latency::default()
                }),
            },
            offered_qps: (scenario == "kxdpgun").then_some(1_000_000),
            cpu: Cpu {
                window_s: 10.0,
                server_ns: (ns * qps * 10.0) as u64,
                ns_per_answer: Some(ns),
                ..Cpu::default()
            },
            xdp_answered: xdp,
            repeats: (scenario == "real-clients").then_some(900_000),
            upstream_packets: 0,
        };
        let contender = |name: &str, runs| Contender {
            name: name.into(),
            version: "1".into(),
            settings: "defaults".into(),
            skipped: None,
            runs,
        };
        Results {
            date: utc(0),
            command: "cargo xtask bench".into(),
            quick: false,
            machine: Machine::default(),
            method: vec!["pinned".into()],
            micro: vec![
                Micro {
                    case: "ipv4 A hit".into(),
                    ns: 90.0,
                    action: "Tx".into(),
                },
                Micro {
                    case: "miss".into(),
                    ns: 30.0,
                    action: "Pass".into(),
                },
            ],
            kernel_memory: vec![TierMemory {
                tier: "small",
                data: 104,
                value: 192,
                per_entry: 256.0,
                bytes: 272 << 20,
                entries: 1 << 20,
            }],
            contenders: vec![
                contender(
                    "dnsxdp (XDP)",
                    vec![
                        run("hits-v4", 100_000.0, 400.0, Some(1_000_000)),
                        run("kxdpgun", 900_000.0, 300.0, Some(9_000_000)),
                        run("real-clients", 100_000.0, 2_000.0, Some(450_000)),
                    ],
                ),
                contender(
                    "dnsxdp --no-xdp",
                    vec![
                        run("hits-v4", 60_000.0, 4_000.0, Some(0)),
                        run("real-clients", 60_000.0, 6_000.0, Some(0)),
                    ],
                ),
                contender(
                    "Unbound",
                    vec![
                        run("hits-v4", 80_000.0, 8_000.0, None),
                        run("kxdpgun", 120_000.0, 8_300.0, None),
                        run("real-clients", 80_000.0, 8_000.0, None),
                    ],
                ),
                Contender {
                    skipped: Some("kresd is not installed".into()),
                    ..contender("Knot Resolver", vec![])
                },
            ],
            lists: None,
            encrypted: Vec::new(),
        }
    }

    #[test]
    fn headline_ratios() {
        let r = sample();
        let h = r.headline();
        let has = |text: &str| h.iter().any(|l| l.contains(text));
        assert!(has("Unbound uses 20.0x"), "{h:?}");
        assert!(has("dnsxdp --no-xdp uses 10.0x"), "{h:?}");
        assert!(has("XDP 7.5x Unbound"), "{h:?}");
        assert!(has("XDP 1.25x Unbound"), "{h:?}");
        assert!(
            has("daemon hit (--no-xdp, dnsperf, IPv4 A): dnsxdp uses 0.50x"),
            "{h:?}"
        );
        assert!(has("under kxdpgun: Unbound uses 27.7x"), "{h:?}");
        assert!(
            has("real clients") && has("uses 0.25x what Unbound uses; XDP answered 50.0% of the"),
            "{h:?}"
        );
        assert!(has("hit 90 ns") && has("miss 30 ns"), "{h:?}");
        assert_eq!(h.len(), 8, "{h:?}");
    }

    #[test]
    fn markdown_tables() {
        let md = sample().markdown();
        assert!(
            md.contains("| answered by XDP | packets upstream |\n|---|"),
            "{md}"
        );
        assert!(md.starts_with("# dnsxdp benchmark, 1970-01-01 00:00:00 UTC"));
        assert!(
            md.contains(
                "| dnsxdp (XDP) | 100000 | 5 (0.00%) | 120 | 4% | **400** | 0% | 100.0% | 0 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| Unbound | 120000 | 5 (0.00%) | 120000 | 100% | **8300** |"),
            "{md}"
        );
        assert!(md.contains("Offered: 1000000 qps."));
        assert!(
            md.contains(
                "| **server CPU ns per answer** | vs Unbound | generator load | answered by XDP \
                 | repeats answered by XDP | packets upstream |\n|---|--:|--:|--:|--:|--:|--:|\
                 --:|--:|--:|--:|\n"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| dnsxdp (XDP) | 100000 | 5 (0.00%) | 120 | 20% | **2000** | 0.25x | 0% | 45.0% \
                 | 50.0% | 0 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| Unbound | 80000 | 5 (0.00%) | 120 | 64% | **8000** | 1.00x | 0% | - | - |"
            ),
            "{md}"
        );
        assert!(md.contains("| Knot Resolver | 1 | **not measured:** kresd is not installed |"));
        assert!(
            md.contains("| small | 104 | 192 | 256 | 272.0 | 1048576 | 285.2 |"),
            "{md}"
        );
        assert!(
            !md.contains("## Realistic mix"),
            "scenarios without runs are left out"
        );
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_795_786_321), "2026-11-27 13:32:01");
    }
}
