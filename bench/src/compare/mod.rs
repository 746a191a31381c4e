//! `cargo xtask bench`: dnsxdp against other caching forwarders in the harness's namespaces,
//! driven by dnsperf and kxdpgun, with the server's CPU time per answered query; and the XDP
//! program alone through BPF_PROG_TEST_RUN.

pub mod chart;
pub mod contender;
pub mod cpu;
pub mod load;
pub mod report;

use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use dnsxdp_tests::netns::{SERVER_V4, SERVER_V6};

use self::{
    contender::{CACHE_ENTRIES, Kind, Server},
    cpu::Tasks,
    load::{
        DNSPERF_CLIENTS, DNSPERF_OUTSTANDING, DNSPERF_TIMEOUT, Dnsperf, Kxdpgun, Mode, Outcome,
    },
    report::{Contender, Cpu, Machine, Micro, Results, Run, SCENARIOS},
};
use crate::{
    clients, cost, encrypted, lists, proc,
    sandbox::{GENERATOR_CPU, SERVER_CPU, Sandbox},
    zone,
};

pub struct Options {
    pub quick: bool,
    /// Where results go; a new directory under target/bench if not given.
    pub out: Option<PathBuf>,
    /// Only these servers; all if empty.
    pub servers: Vec<Kind>,
    /// How the bench was started, for the results.
    pub command: String,
}

/// Queries per second while filling a cache.
pub const WARM_RATE: u32 = 20_000;

/// Durations and rates: seconds per scenario in a smoke run, ten in a full one (which takes
/// about ten minutes with six servers and the blocklist).
struct Plan {
    seconds: u32,
    mix_len: usize,
    misses_len: usize,
    real_clients_len: usize,
    fixed_rate: u32,
    kxdpgun_rate: u32,
    micro_repeat: u32,
    micro_rounds: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                seconds: 2,
                mix_len: 40_000,
                misses_len: 10_000,
                real_clients_len: 40_000,
                fixed_rate: 5_000,
                kxdpgun_rate: 1_000_000,
                micro_repeat: 100_000,
                micro_rounds: 3,
            }
        } else {
            Self {
                seconds: 10,
                mix_len: 400_000,
                misses_len: 100_000,
                real_clients_len: 400_000,
                fixed_rate: 20_000,
                kxdpgun_rate: 1_000_000,
                micro_repeat: 1_000_000,
                micro_rounds: 7,
            }
        }
    }
}

/// The query files, written once for all servers.
struct Files {
    dir: PathBuf,
    hits_a: PathBuf,
    hits_a_aaaa: PathBuf,
    mix: PathBuf,
    misses: PathBuf,
    warm: PathBuf,
    /// In dnsperf's binary input (`-B`), as is `real_clients_warm`: each query has its own
    /// EDNS.
    real_clients: PathBuf,
    real_clients_warm: PathBuf,
    /// Which of `real_clients`' queries ask for a new name, to count the repeats sent.
    real_clients_new: Vec<bool>,
}

impl Files {
    fn write(dir: PathBuf, plan: &Plan) -> Result<Self> {
        fs::create_dir_all(&dir)?;
        let file = |name: &str, queries: Vec<zone::Q>| -> Result<PathBuf> {
            let path = dir.join(name);
            fs::write(&path, zone::query_file(&queries))?;
            Ok(path)
        };
        let wire = |name: &str, asks: &[clients::Ask]| -> Result<PathBuf> {
            let path = dir.join(name);
            fs::write(&path, clients::wire_file(asks))?;
            Ok(path)
        };
        let real_clients = clients::real_clients(plan.real_clients_len);
        Ok(Self {
            hits_a: file("hits-a.txt", zone::hits_a())?,
            hits_a_aaaa: file("hits-a-aaaa.txt", zone::hits_a_aaaa())?,
            mix: file("mix.txt", zone::mix(plan.mix_len))?,
            misses: file("misses.txt", zone::misses(plan.misses_len))?,
            warm: file("warm.txt", zone::warm())?,
            real_clients: wire("real-clients.bin", &real_clients)?,
            real_clients_warm: wire("real-clients-warm.bin", &clients::warm())?,
            real_clients_new: real_clients.iter().map(|a| a.new).collect(),
            dir,
        })
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

pub fn run(opts: &Options) -> Result<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench creates network namespaces and loads XDP programs: run as root");
    }
    for tool in ["dnsperf", "kxdpgun", "nsd", "h2load"] {
        contender::find(tool)?;
    }
    let plan = Plan::new(opts.quick);
    // Before the bench adds its own load to the load average.
    let machine = machine();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let date = report::utc(now);
    let out = opts.out.clone().unwrap_or_else(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent();
        workspace
            .unwrap_or(Path::new("."))
            .join("target/bench")
            .join(date.replace([' ', ':'], "-"))
    });
    let files = Files::write(
        std::env::temp_dir().join(format!("dnsxdp-bench-{}", std::process::id())),
        &plan,
    )?;

    eprintln!("bench: XDP program alone (BPF_PROG_TEST_RUN)");
    let mut costs = cost::measure_costs(plan.micro_repeat, plan.micro_rounds)?;
    costs.extend(cost::measure_fill_costs(
        plan.micro_repeat,
        plan.micro_rounds,
    )?);
    let micro = costs
        .into_iter()
        .map(|c| Micro {
            case: c.case.into(),
            ns: c.ns,
            action: format!("{:?}", c.action),
        })
        .collect();
    let kernel_memory = cost::measure_memory()?;
    proc::check()?;

    eprintln!("bench: sandbox with NSD serving the generated zone");
    let mut sandbox = Sandbox::new(&zone::zone_text())?;
    let client_napi = sandbox.isolate_generator()?;
    let kinds = if opts.servers.is_empty() {
        Kind::ALL.to_vec()
    } else {
        opts.servers.clone()
    };
    let with_lists = kinds.contains(&Kind::DnsxdpXdp);
    let with_encrypted = encrypted::SERVERS.iter().all(|k| kinds.contains(k));
    let mut contenders = Vec::new();
    for kind in kinds {
        let mut c = Contender {
            name: kind.name().into(),
            version: kind.version().unwrap_or_else(|_| "-".into()),
            settings: kind.settings(),
            skipped: None,
            runs: Vec::new(),
        };
        if let Err(e) = kind.program() {
            eprintln!("bench: skipping {}: {e:#}", kind.name());
            c.skipped = Some(format!("{e:#}"));
        } else {
            eprintln!("bench: {}", kind.name());
            let dir = files.dir.join(format!("{kind:?}"));
            let mut bench = ServerBench {
                sandbox: &mut sandbox,
                plan: &plan,
                files: &files,
                client_napi,
            };
            if let Err(e) = bench.all(kind, &dir, &mut c.runs) {
                proc::check()?;
                eprintln!("bench: {} failed: {e:#}", kind.name());
                c.skipped = Some(format!("failed: {e:#}"));
            }
        }
        contenders.push(c);
    }
    let lists = match with_lists {
        true => {
            eprintln!("bench: a blocklist of {} domains in dnsxdp", lists::DOMAINS);
            let dir = files.dir.join("lists");
            match lists::measure(&sandbox, &dir, &files.hits_a, plan.seconds) {
                Ok(l) => Some(l),
                Err(e) => {
                    proc::check()?;
                    eprintln!("bench: the blocklist run failed: {e:#}");
                    None
                }
            }
        }
        false => None,
    };
    let encrypted = match with_encrypted {
        true => {
            eprintln!("bench: DNS over TLS and HTTPS");
            let dir = files.dir.join("encrypted");
            let measured =
                encrypted::measure(&sandbox, &dir, &files.hits_a, plan.seconds, client_napi);
            match measured {
                Ok(runs) => runs,
                Err(e) => {
                    proc::check()?;
                    eprintln!("bench: the encrypted runs failed: {e:#}");
                    Vec::new()
                }
            }
        }
        false => Vec::new(),
    };
    drop(sandbox);

    let results = Results {
        date,
        command: opts.command.clone(),
        quick: opts.quick,
        machine,
        method: method(&plan),
        micro,
        kernel_memory,
        contenders,
        lists,
        encrypted,
    };
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    let md = results.markdown();
    fs::write(out.join("results.md"), &md)?;
    chart::write(&results, &out.join("chart.svg"))?;
    println!("{md}");
    Ok(out)
}

/// One server through every scenario.
struct ServerBench<'a> {
    sandbox: &'a mut Sandbox,
    plan: &'a Plan,
    files: &'a Files,
    client_napi: u32,
}

impl ServerBench<'_> {
    fn all(&mut self, kind: Kind, dir: &Path, runs: &mut Vec<Run>) -> Result<()> {
        let mut server = Server::start(kind, self.sandbox, dir)?;
        let tasks = Tasks {
            server: server.pid(),
            napi: self.sandbox.server_napi()?,
            client_napi: self.client_napi,
        };
        let f = self.files;
        self.warm(&f.warm, false)?;
        for (id, _) in SCENARIOS {
            eprintln!("bench:   {id}");
            if id == "real-clients" {
                // The questions it repeats, with and without DO, are not in the first warm-up;
                // and the misses before it may have pushed names out of a cache.
                self.warm(&f.real_clients_warm, true)?;
            }
            let run = self
                .measure(&mut server, &tasks, id)
                .with_context(|| format!("{id}; the server's log ends:\n{}", server.log_tail()))?;
            eprintln!(
                "bench:   {:.0} qps, {} lost, {} ns CPU per answer",
                run.outcome.qps,
                run.outcome.lost,
                run.cpu
                    .ns_per_answer
                    .map_or("-".into(), |v| format!("{v:.0}"))
            );
            runs.push(run);
        }
        Ok(())
    }

    /// Asks every question of `file` once, at a rate every server forwards without loss, and
    /// again for as long as some were lost.
    fn warm(&mut self, file: &Path, binary: bool) -> Result<()> {
        for _ in 0..3 {
            let o = Dnsperf {
                server: v4(),
                file,
                seconds: 120,
                rate: Some(WARM_RATE),
                once: true,
                per_query: false,
                binary,
                mode: Mode::Udp,
            }
            .run(self.sandbox)?;
            if o.lost == 0 {
                return Ok(());
            }
            eprintln!("bench:   warming lost {} queries; again", o.lost);
        }
        bail!("could not warm the cache without losing queries")
    }

    fn measure(&mut self, server: &mut Server, tasks: &Tasks, id: &str) -> Result<Run> {
        let p = self.plan;
        let f = self.files;
        let dnsperf = |server, file, rate, once, per_query| Dnsperf {
            server,
            file,
            seconds: p.seconds,
            rate,
            once,
            per_query,
            binary: false,
            mode: Mode::Udp,
        };
        server.alive()?;
        let hits = |s: &Server| -> Result<Option<u64>> {
            Ok(s.stats()?.and_then(|v| v["xdp"]["hits"].as_u64()))
        };
        let hits_before = hits(server)?;
        let upstream_before = self.sandbox.upstream_packets()?;
        let before = tasks.sample()?;
        let start = Instant::now();
        let (outcome, offered): (Outcome, Option<u32>) = match id {
            "hits-v4" => (
                dnsperf(v4(), &f.hits_a, None, false, false).run(self.sandbox)?,
                None,
            ),
            "hits-v6" => (
                dnsperf(v6(), &f.hits_a_aaaa, None, false, false).run(self.sandbox)?,
                None,
            ),
            "fixed-rate" => (
                dnsperf(v4(), &f.hits_a, Some(p.fixed_rate), false, true).run(self.sandbox)?,
                Some(p.fixed_rate),
            ),
            "kxdpgun" => {
                let k = Kxdpgun {
                    server: v4(),
                    file: &f.hits_a,
                    seconds: p.seconds,
                    rate: p.kxdpgun_rate,
                };
                (k.run(self.sandbox)?, Some(p.kxdpgun_rate))
            }
            "mix" => (
                dnsperf(v4(), &f.mix, None, true, false).run(self.sandbox)?,
                None,
            ),
            "misses" => (
                dnsperf(v4(), &f.misses, None, true, false).run(self.sandbox)?,
                None,
            ),
            "real-clients" => {
                let d = Dnsperf {
                    binary: true,
                    ..dnsperf(v4(), &f.real_clients, None, true, false)
                };
                (d.run(self.sandbox)?, None)
            }
            _ => bail!("no scenario {id}"),
        };
        // dnsperf sends its file in order: what it sent is the file's start.
        let repeats = (id == "real-clients").then(|| {
            let sent = f.real_clients_new.iter().take(outcome.sent as usize);
            sent.filter(|&&new| !new).count() as u64
        });
        let window = start.elapsed();
        let d = tasks.sample()?.since(&before);
        let upstream_packets = self.sandbox.upstream_packets()? - upstream_before;
        server.alive()?;
        let xdp_answered = match (hits_before, hits(server)?) {
            (Some(b), Some(a)) => Some(a - b),
            _ => None,
        };
        let per = |ns: u64| (outcome.answered > 0).then(|| ns as f64 / outcome.answered as f64);
        let cpu = Cpu {
            window_s: window.as_secs_f64(),
            server_ns: d.server_ns,
            server_napi_ns: d.napi_ns,
            generator_ns: d.generator_ns,
            generator_napi_ns: d.client_napi_ns,
            ns_per_answer: per(d.server_ns + d.napi_ns),
        };
        // Let queues drain and sockets settle before the next run.
        proc::sleep(Duration::from_millis(500))?;
        Ok(Run {
            scenario: id.into(),
            outcome,
            offered_qps: offered,
            cpu,
            xdp_answered,
            repeats,
            upstream_packets,
        })
    }
}

fn v4() -> IpAddr {
    SERVER_V4.parse().expect("valid address")
}

fn v6() -> IpAddr {
    SERVER_V6.parse().expect("valid address")
}

fn method(plan: &Plan) -> Vec<String> {
    let shares = |shares: &[(&str, u32)]| {
        let s: Vec<_> = shares
            .iter()
            .map(|(what, share)| format!("{share}% {what}"))
            .collect();
        s.join(", ")
    };
    vec![
        format!(
            "Network namespaces client, server and upstream joined by veth pairs; NSD in the \
             upstream namespace serves a generated zone of {} names (A+AAAA hosts, {} of \
             them also with HTTPS, MX, TXT, SRV and PTR records, A-only names, CNAME chains, \
             CNAMEs to NXDOMAIN, names with {} A records, wildcards), all with a TTL of 3600 s.",
            zone::HOSTS
                + zone::V4_ONLY
                + 2 * zone::CHAINS
                + zone::DANGLING
                + zone::BIG
                + 2 * zone::SITES
                + 2,
            zone::SITES,
            zone::BIG_RECORDS
        ),
        format!(
            "Every server listens on {SERVER_V4}:53 and [{SERVER_V6}]:53, forwards to NSD, has \
             one worker thread (dnsxdp also runs with two, its default here) and no DNSSEC \
             validation, and caches more than the bench asks \
             ({CACHE_ENTRIES} entries where counted in entries). It starts empty and is warmed \
             with every question of the hit sets, NXDOMAIN and NODATA pools once (dnsperf -n 1 \
             -Q {WARM_RATE}); and, just before the real clients, with every question they \
             repeat, without and with DO (dnsxdp caches DO answers apart)."
        ),
        format!(
            "Scenarios of {} s each, in order: 100% hits IPv4, 100% hits IPv6, fixed rate \
             ({} qps), kxdpgun ({} qps offered), then the realistic mix of at most {} queries \
             ({}; every miss a new name), then at most {} misses, each a new name, then at \
             most {} queries of real clients: lookups of {}; from stubs sending {}.",
            plan.seconds,
            plan.fixed_rate,
            plan.kxdpgun_rate,
            plan.mix_len,
            shares(&zone::MIX),
            plan.misses_len,
            plan.real_clients_len,
            shares(&clients::LOOKUPS),
            shares(&clients::STUBS),
        ),
        format!(
            "dnsperf -c {DNSPERF_CLIENTS} -q {DNSPERF_OUTSTANDING} -t {DNSPERF_TIMEOUT} -T 1 \
             -l {}; -Q for the fixed rate with -v for latency percentiles; -n 1 for the mix, the \
             misses and the real clients, whose queries dnsperf reads whole (-B), as its text \
             input gives every query the same EDNS. kxdpgun -t {} -Q {} -F {GENERATOR_CPU} on \
             the client veth (AF_XDP).",
            plan.seconds, plan.seconds, plan.kxdpgun_rate
        ),
        format!(
            "The server process and the NAPI kthread of its client-facing veth (threaded NAPI, \
             GRO on so that every server gets the same NAPI receive path) run on CPU \
             {SERVER_CPU}, but for dnsxdp's two workers, which may run on either CPU; the \
             generator, the client veth's NAPI thread and NSD on CPU \
             {GENERATOR_CPU}."
        ),
        "Server CPU per answer = utime + stime of the server process (all threads) and its \
         NAPI thread over the generator's run, divided by the answered queries; server load is that time \
         over the time the generator sent. Generator load is the generator process plus the \
         client veth's NAPI thread over its whole run. 'Answered by XDP' is the XDP program's \
         hits over the answers the generator counted; above 100% the generator dropped \
         replies the server sent. For the real clients, 'repeats answered by XDP' is those hits \
         over the queries sent that were not for a new name, and 'vs Unbound' the server CPU \
         per answer over Unbound's."
            .into(),
        format!(
            "XDP program alone: BPF_PROG_TEST_RUN of the real object, median of {} rounds of \
             {} repetitions (hits: single runs minus the syscall's timing overhead). With \
             names cached: one-record A answers for that many names, each round asking for \
             names at random among them.",
            plan.micro_rounds, plan.micro_repeat
        ),
        format!(
            "Blocklist: dnsxdp with XDP starts with a one-rule list served over HTTP (python3 \
             -m http.server); a hosts list of {} domains replaces it (`dnsxdp lists \
             refresh`, timed until the list is in force), then another of that size replaces \
             that while dnsperf asks the IPv4 hit set at 10000 qps for {} s. Memory is the \
             daemon's VmRSS before any list and with the first, and its VmHWM at the end.",
            lists::DOMAINS,
            plan.seconds
        ),
        "Kernel cache memory: `memlock` of each tier's map in a cache of 2^20 (the kernel's \
         count of its memory); per entry, the difference from a cache of 3/4 as many, which \
         has as many hash buckets, over the difference in entries."
            .into(),
    ]
}

fn machine() -> Machine {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| {
                v.trim_start_matches([' ', '\t', ':', '='])
                    .trim_matches('"')
                    .to_owned()
            })
            .unwrap_or_default()
    };
    let kib: f64 = field(&read("/proc/meminfo"), "MemTotal")
        .trim_end_matches(" kB")
        .parse()
        .unwrap_or(0.0);
    let tool = |name: &str, args: &[&str], pick: &str| {
        // Versions go to stdout or stderr depending on the tool.
        let text = std::process::Command::new(name)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&[o.stdout, o.stderr].concat()).into_owned())
            .unwrap_or_default();
        let line = text
            .lines()
            .find(|l| l.contains(pick))
            .unwrap_or("-")
            .trim();
        if line.to_lowercase().contains(name) {
            line.to_owned()
        } else {
            format!("{name} {line}")
        }
    };
    Machine {
        os: field(&read("/etc/os-release"), "PRETTY_NAME"),
        kernel: read("/proc/sys/kernel/osrelease").trim().into(),
        cpu: field(&cpuinfo, "model name"),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_gib: kib / (1024.0 * 1024.0),
        load_average: read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        tools: vec![
            tool("dnsperf", &["-H"], "Version"),
            tool("kxdpgun", &["-V"], "version"),
            tool("nsd", &["-v"], "version"),
        ],
    }
}
