//! The servers under test, each a caching forwarder to the sandbox's NSD on the same addresses,
//! with one worker thread on the server CPU (but for dnsxdp's two-worker run), no DNSSEC
//! validation and a cache that holds every name of the bench.

use std::{
    env, fs,
    net::{SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use dnsxdp_tests::{
    client, daemon,
    netns::{SERVER_IFACE, SERVER_V4, SERVER_V6, UPSTREAM_V4},
    unbound::TestCa,
    upstream::ZONE,
};
use hickory_proto::{op::ResponseCode, rr::RecordType};

use crate::{
    proc::{self, Proc},
    sandbox::{SERVER_CPU, Sandbox, pinned},
};

/// Entries for the servers that count entries; more than the bench's distinct questions.
pub const CACHE_ENTRIES: u32 = 131_072;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    DnsxdpXdp,
    DnsxdpNoXdp,
    /// The daemon as it runs by default on this machine: a worker per CPU.
    DnsxdpNoXdpTwoWorkers,
    Unbound,
    Dnsmasq,
    Kresd,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::DnsxdpXdp,
        Kind::DnsxdpNoXdp,
        Kind::DnsxdpNoXdpTwoWorkers,
        Kind::Unbound,
        Kind::Dnsmasq,
        Kind::Kresd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::DnsxdpXdp => "dnsxdp (XDP)",
            Kind::DnsxdpNoXdp => "dnsxdp --no-xdp",
            Kind::DnsxdpNoXdpTwoWorkers => "dnsxdp --no-xdp --workers 2",
            Kind::Unbound => "Unbound",
            Kind::Dnsmasq => "dnsmasq",
            Kind::Kresd => "Knot Resolver",
        }
    }

    /// How the server is configured, for the results.
    pub fn settings(self) -> String {
        match self {
            Kind::DnsxdpXdp => format!(
                "XDP (native) on the server veth; --cache-size {CACHE_ENTRIES}, \
                 --workers 1, --log-level warn"
            ),
            Kind::DnsxdpNoXdp => {
                format!("--no-xdp --cache-size {CACHE_ENTRIES}, --workers 1, --log-level warn")
            }
            Kind::DnsxdpNoXdpTwoWorkers => format!(
                "--no-xdp --cache-size {CACHE_ENTRIES}, --workers 2 (two UDP sockets per \
                 address) on both CPUs, sharing the generator's; --log-level warn"
            ),
            Kind::Unbound => "num-threads 1, module-config iterator (no validator), \
                              forward-zone . to NSD, msg-cache-size 128m, rrset-cache-size 256m, \
                              prefetch no"
                .into(),
            Kind::Dnsmasq => format!(
                "server=NSD, no-resolv, cache-size={CACHE_ENTRIES}, dns-forward-max=1000 \
                 (single-threaded by design, no DNSSEC)"
            ),
            Kind::Kresd => "one kresd process, policy.FORWARD to NSD for all names, trust anchors \
                            removed (no validation), cache 512 MB"
                .into(),
        }
    }

    /// The executable, or why it is missing.
    pub fn program(self) -> Result<PathBuf> {
        match self {
            Kind::DnsxdpXdp | Kind::DnsxdpNoXdp | Kind::DnsxdpNoXdpTwoWorkers => daemon::binary(),
            Kind::Unbound => find("unbound"),
            Kind::Dnsmasq => find("dnsmasq"),
            Kind::Kresd => find("kresd"),
        }
    }

    /// The version line the program prints.
    pub fn version(self) -> Result<String> {
        let flag = match self {
            Kind::Unbound => "-V",
            _ => "--version",
        };
        let mut cmd = Command::new(self.program()?);
        cmd.arg(flag);
        let text = proc::output(cmd)?;
        let line = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        // dnsmasq follows its version with a copyright notice on the same line.
        Ok(line
            .split("  ")
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned())
    }
}

/// `name` on PATH or in the sbin directories, where Debian puts servers.
pub fn find(name: &str) -> Result<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not installed (cargo xtask setup installs it)"))
}

/// A running server in the sandbox's server namespace, pinned to the server CPU.
pub struct Server {
    pub kind: Kind,
    proc: Proc,
    control: PathBuf,
    log: PathBuf,
}

impl Server {
    /// Writes the server's configuration to `dir`, starts it and waits until it answers over
    /// IPv4 and IPv6.
    pub fn start(kind: Kind, sandbox: &Sandbox, dir: &Path) -> Result<Self> {
        Self::start_with(kind, sandbox, dir, &[])
    }

    /// The same, with `extra` flags for dnsxdp.
    pub fn start_with(kind: Kind, sandbox: &Sandbox, dir: &Path, extra: &[&str]) -> Result<Self> {
        Self::spawn(kind, sandbox, dir, extra, None)
    }

    /// The same, serving DNS over TLS on port 853 and DNS over HTTPS on 443 of `SERVER_V4`
    /// too, with the certificate `ca` signed (dnsxdp and Unbound only).
    pub fn start_encrypted(kind: Kind, sandbox: &Sandbox, dir: &Path, ca: &TestCa) -> Result<Self> {
        let (cert, key) = (
            ca.cert_file.to_string_lossy(),
            ca.key_file.to_string_lossy(),
        );
        let extra = [
            "--listen-tls",
            SERVER_V4,
            "--listen-https",
            SERVER_V4,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ];
        Self::spawn(kind, sandbox, dir, &extra, Some(ca))
    }

    fn spawn(
        kind: Kind,
        sandbox: &Sandbox,
        dir: &Path,
        extra: &[&str],
        tls: Option<&TestCa>,
    ) -> Result<Self> {
        fs::create_dir_all(dir)?;
        let program = kind.program()?;
        let control = dir.join("control.sock");
        let program = program.to_str().context("program path")?;
        let mut cmd = match kind {
            Kind::DnsxdpXdp => sandbox.topo.server.command_with_host_mounts(program),
            _ => sandbox.topo.server.command(program),
        };
        match kind {
            Kind::DnsxdpXdp | Kind::DnsxdpNoXdp | Kind::DnsxdpNoXdpTwoWorkers => {
                let workers = if kind == Kind::DnsxdpNoXdpTwoWorkers {
                    "2"
                } else {
                    "1"
                };
                cmd.args(["run", "--listen", &format!("{SERVER_V4}:53")])
                    .args(["--listen", &format!("[{SERVER_V6}]:53")])
                    .args(["--upstream", &format!("{UPSTREAM_V4}:53")])
                    .args(["--cache-size", &CACHE_ENTRIES.to_string()])
                    // The clients' addresses are not on the default allow list.
                    .args(["--allow", "198.18.0.0/15", "--allow", "fd00::/8"])
                    .args(["--log-level", "warn", "--control"])
                    .arg(&control)
                    .args(["--workers", workers])
                    .args(extra);
                if kind == Kind::DnsxdpXdp {
                    cmd.args(["--iface", SERVER_IFACE, "--xdp-mode", "native"])
                        .arg("--pin-dir")
                        .arg(sandbox.topo.pin_dir());
                } else {
                    cmd.arg("--no-xdp");
                }
            }
            Kind::Unbound => {
                let conf = dir.join("unbound.conf");
                fs::write(&conf, unbound_conf(dir, tls))?;
                cmd.args(["-d", "-c"]).arg(conf);
            }
            Kind::Dnsmasq => {
                let conf = dir.join("dnsmasq.conf");
                fs::write(&conf, dnsmasq_conf())?;
                cmd.args(["-k", "-C"]).arg(conf);
            }
            Kind::Kresd => {
                let conf = dir.join("kresd.conf");
                fs::write(&conf, kresd_conf(dir))?;
                cmd.args(["-n", "-c"]).arg(conf).arg(dir);
            }
        }
        cmd.current_dir(dir);
        if kind != Kind::DnsxdpNoXdpTwoWorkers {
            pinned(&mut cmd, SERVER_CPU);
        }
        // A program left attached would answer in this server's place.
        if sandbox.xdp_attached()? {
            bail!("an XDP program is still attached to the server's veth");
        }
        let log = dir.join("server.log");
        let proc = Proc::spawn(cmd, kind.name(), &log)?;
        // SIGTERM leaves dnsxdp's program attached, answering for the next daemon (its restart
        // behaviour); SIGINT detaches it.
        let proc = match kind {
            Kind::DnsxdpXdp => proc.stopped_by(libc::SIGINT),
            _ => proc,
        };
        let mut server = Self {
            kind,
            proc,
            control,
            log,
        };
        server
            .wait_ready(sandbox)
            .with_context(|| format!("{}:\n{}", kind.name(), server.log_tail()))?;
        Ok(server)
    }

    fn wait_ready(&mut self, sandbox: &Sandbox) -> Result<()> {
        let v4 = sandbox
            .topo
            .client
            .enter(|| UdpSocket::bind("0.0.0.0:0"))??;
        let v6 = sandbox.topo.client.enter(|| UdpSocket::bind("[::]:0"))??;
        let deadline = Instant::now() + Duration::from_secs(20);
        let q = client::query(&format!("ns.{ZONE}"), RecordType::A);
        for (sock, addr) in [(v4, SERVER_V4), (v6, SERVER_V6)] {
            let to = SocketAddr::new(addr.parse()?, 53);
            loop {
                proc::check()?;
                self.proc.alive()?;
                if Instant::now() > deadline {
                    bail!("no answer on {to} within 20 s");
                }
                match client::exchange_udp(&sock, to, &q, Duration::from_millis(300)) {
                    Ok(r) if r.response_code() == ResponseCode::NoError => break,
                    _ => proc::sleep(Duration::from_millis(100))?,
                }
            }
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Fails if the server has died.
    pub fn alive(&mut self) -> Result<()> {
        self.proc.alive()
    }

    /// For dnsxdp: its counters (`dnsxdp stats --json`).
    pub fn stats(&self) -> Result<Option<serde_json::Value>> {
        if !matches!(
            self.kind,
            Kind::DnsxdpXdp | Kind::DnsxdpNoXdp | Kind::DnsxdpNoXdpTwoWorkers
        ) {
            return Ok(None);
        }
        let mut cmd = Command::new(daemon::binary()?);
        cmd.args(["stats", "--json", "--control"])
            .arg(&self.control);
        Ok(Some(serde_json::from_str(&proc::output(cmd)?)?))
    }

    /// For dnsxdp: `dnsxdp lists refresh`, which returns once the lists fetched are in force.
    pub fn refresh_lists(&self) -> Result<()> {
        let mut cmd = Command::new(daemon::binary()?);
        cmd.args(["lists", "refresh", "--json", "--control"])
            .arg(&self.control);
        proc::output(cmd).map(drop)
    }

    /// The last lines the server logged.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<_> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Unbound's settings; with `tls`, DNS over TLS on 853 and over HTTPS on 443 too, as dnsxdp
/// serves them.
fn unbound_conf(dir: &Path, tls: Option<&TestCa>) -> String {
    let d = dir.display();
    let encrypted = tls.map_or(String::new(), |ca| {
        format!(
            "  interface: {SERVER_V4}@853
  interface: {SERVER_V4}@443
  tls-port: 853
  https-port: 443
  http-endpoint: \"/dns-query\"
  tls-service-key: \"{}\"
  tls-service-pem: \"{}\"
",
            ca.key_file.display(),
            ca.cert_file.display()
        )
    });
    format!(
        "server:
  interface: {SERVER_V4}
  interface: {SERVER_V6}
{encrypted}  port: 53
  do-daemonize: no
  use-syslog: no
  logfile: \"\"
  verbosity: 0
  username: \"\"
  chroot: \"\"
  directory: \"{d}\"
  pidfile: \"\"
  num-threads: 1
  so-reuseport: no
  access-control: 198.18.0.0/15 allow
  access-control: fd00::/8 allow
  module-config: \"iterator\"
  msg-cache-size: 128m
  rrset-cache-size: 256m
  prefetch: no
  # test. is a locally served zone by default (RFC 6761)
  local-zone: \"test.\" nodefault
remote-control:
  control-enable: no
forward-zone:
  name: \".\"
  forward-addr: {UPSTREAM_V4}
"
    )
}

fn dnsmasq_conf() -> String {
    format!(
        "no-resolv
no-hosts
no-poll
server={UPSTREAM_V4}
listen-address={SERVER_V4}
listen-address={SERVER_V6}
bind-interfaces
cache-size={CACHE_ENTRIES}
dns-forward-max=1000
user=root
pid-file=
log-facility=-
"
    )
}

fn kresd_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "net.listen('{SERVER_V4}', 53, {{ kind = 'dns' }})
net.listen('{SERVER_V6}', 53, {{ kind = 'dns' }})
cache.open(512 * MB, 'lmdb://{d}/cache')
trust_anchors.remove('.')
-- FORWARD, not STUB: kresd asks again for names it learnt in stub mode. Policy rules come
-- before the special-use names, which would refuse test.
policy.add(policy.all(policy.FORWARD({{'{UPSTREAM_V4}'}})))
"
    )
}
