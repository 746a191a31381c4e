//! The daemon run as the unit runs it: root with only the unit's capability bounding set (and
//! no new privileges), via setpriv, from a config file. With them it answers a repeat from XDP,
//! takes over the program a killed daemon left, and `dnsxdp stop` (ExecStop) detaches it; it
//! fails to start without any one of them.

use std::{
    fs,
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Once,
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use dnsxdp_tests::{
    client::{exchange_udp, query},
    daemon::binary,
    netns::{SERVER_IFACE, SERVER_V4, Topology, UPSTREAM_V4, UPSTREAM_V6},
    upstream::Nsd,
};
use hickory_proto::{op::Message, rr::RecordType};

use super::{run, unit_capabilities};

const WAIT: Duration = Duration::from_secs(2);

/// `dnsxdp ARGS` in the server namespace of `topo`, root with only `caps` (`CAP_BPF`, ...).
fn capped(topo: &Topology, caps: &[String]) -> Result<Command> {
    // setpriv's names: `+bpf,+net_admin`.
    let keep: Vec<String> = caps
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/var/run/netns/{}", topo.server.name))
        .args(["--", "setpriv", "--inh-caps=-all", "--no-new-privs"])
        .arg(format!("--bounding-set=-all,{}", keep.join(",")))
        .arg("--")
        .arg(binary()?);
    Ok(cmd)
}

/// `dnsxdp run --config FILE` as the unit's ExecStart, with only `caps`.
struct Capped {
    child: Child,
    config: PathBuf,
    control: PathBuf,
    log: PathBuf,
}

impl Capped {
    fn spawn(topo: &Topology, caps: &[String]) -> Result<Capped> {
        mount_bpffs();
        let base = std::env::temp_dir().join(format!("dnsxdp-capped-{}", topo.server.name));
        let config = base.with_extension("toml");
        let (control, log) = (base.with_extension("sock"), base.with_extension("log"));
        fs::write(
            &config,
            format!(
                "iface = \"{SERVER_IFACE}\"\nlisten = \"{SERVER_V4}:53\"\n\
                 upstream = \"{UPSTREAM_V4}:53\"\nallow = \"198.18.0.0/15\"\n\
                 control = {control:?}\npin-dir = {:?}\n",
                topo.pin_dir()
            ),
        )?;
        let child = capped(topo, caps)?
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log)?)
            .spawn()
            .context("starting nsenter")?;
        Ok(Capped {
            child,
            config,
            control,
            log,
        })
    }

    /// SIGKILL, as a crash would end it.
    fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until it answers a query from the client.
    fn wait_ready(&mut self, client: &UdpSocket) -> Result<()> {
        let server: SocketAddr = format!("{SERVER_V4}:53").parse()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("dnsxdp exited ({status}):\n{}", self.log());
            }
            let q = query("ns.example.test.", RecordType::A);
            if exchange_udp(client, server, &q, Duration::from_millis(300)).is_ok() {
                return Ok(());
            }
        }
        bail!("dnsxdp did not answer within 20 s:\n{}", self.log())
    }

    /// Waits until it has started: its control socket, made last, answers.
    fn wait_started(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("dnsxdp exited ({status}):\n{}", self.log());
            }
            if self.stats().is_ok() {
                return Ok(());
            }
            sleep(Duration::from_millis(50));
        }
        bail!("dnsxdp did not start within 20 s:\n{}", self.log())
    }

    fn stats(&self) -> Result<serde_json::Value> {
        let out = run(Command::new(binary()?)
            .args(["stats", "--json", "--control"])
            .arg(&self.control))?;
        Ok(serde_json::from_str(&out)?)
    }

    /// The XDP program's hit counter, from `dnsxdp stats`.
    fn xdp_hits(&self) -> Result<u64> {
        let stats = self.stats()?;
        stats["xdp"]["hits"]
            .as_u64()
            .with_context(|| format!("no xdp.hits in {stats}"))
    }
}

impl Drop for Capped {
    fn drop(&mut self) {
        // Only a child not yet reaped: its pid is not someone else's.
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: signalling our own child (nsenter execs setpriv, which execs dnsxdp).
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- dnsxdp log ---\n{}", self.log());
        }
        let _ = fs::remove_file(&self.log);
        let _ = fs::remove_file(&self.control);
        let _ = fs::remove_file(&self.config);
    }
}

/// Mounts bpffs at /sys/fs/bpf where nothing is, as systemd does at boot: the daemon could
/// mount it itself only with CAP_SYS_ADMIN, which the unit does not grant.
fn mount_bpffs() {
    static MOUNT: Once = Once::new();
    MOUNT.call_once(|| {
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
        if !mounts
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf"))
        {
            run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"])).unwrap();
        }
    });
}

#[test]
fn the_units_capabilities_are_enough_to_answer_from_xdp() -> Result<()> {
    let topo = Topology::new()?;
    let _nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
    let client = topo.client.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
    let mut daemon = Capped::spawn(&topo, &unit_capabilities())?;
    daemon.wait_ready(&client)?;
    let server: SocketAddr = format!("{SERVER_V4}:53").parse()?;
    let q = query("www.example.test.", RecordType::A);
    let first = exchange_udp(&client, server, &q, WAIT)?;
    assert_eq!(first.answers().len(), 2, "{first:?}");
    let before = daemon.xdp_hits()?;
    let second = exchange_udp(&client, server, &q, WAIT)?;
    // The same records; XDP counts their TTLs down.
    let data = |m: &Message| {
        m.answers()
            .iter()
            .map(|r| r.data().clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(data(&second), data(&first));
    assert_eq!(
        daemon.xdp_hits()? - before,
        1,
        "the repeat must be an XDP hit"
    );
    Ok(())
}

#[test]
fn the_units_capabilities_are_enough_to_take_over_after_a_crash_and_to_stop() -> Result<()> {
    let caps = unit_capabilities();
    let topo = Topology::new()?;
    let _nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
    let client = topo.client.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
    let server: SocketAddr = format!("{SERVER_V4}:53").parse()?;
    let q = query("www.example.test.", RecordType::A);
    let mut first = Capped::spawn(&topo, &caps)?;
    first.wait_ready(&client)?;
    exchange_udp(&client, server, &q, WAIT)?;
    first.kill()?;
    // Restart=always starts the next one, which must replace the program on the pinned link.
    let cached = exchange_udp(&client, server, &q, WAIT).context("XDP after the crash")?;
    assert_eq!(cached.answers().len(), 2);
    let left = xdp_program(&topo)?.context("no XDP program after the crash")?;
    let mut second = Capped::spawn(&topo, &caps)?;
    // Not wait_ready: the program the first left answers already.
    second.wait_started()?;
    let now = xdp_program(&topo)?;
    assert!(
        now.is_some_and(|id| id != left),
        "program {left} not replaced: {now:?}"
    );

    // ExecStop.
    run(capped(&topo, &caps)?
        .args(["stop", "--config"])
        .arg(&second.config))?;
    let exited = second.child.wait()?;
    assert!(exited.success(), "{exited}");
    assert_eq!(xdp_program(&topo)?, None, "XDP left attached");
    assert!(!topo.pin_dir().exists(), "pins left");
    Ok(())
}

/// The id of the XDP program on the server's interface.
fn xdp_program(topo: &Topology) -> Result<Option<u64>> {
    let out = run(topo
        .server
        .command("ip")
        .args(["-j", "link", "show", SERVER_IFACE]))?;
    let links: serde_json::Value = serde_json::from_str(&out)?;
    Ok(links[0]["xdp"]["prog"]["id"].as_u64())
}

#[test]
fn the_daemon_does_not_start_without_any_one_of_them() -> Result<()> {
    let granted = unit_capabilities();
    // It starts with all of them here, so what stops it below is the one left out.
    let topo = Topology::new()?;
    Capped::spawn(&topo, &granted)?.wait_started()?;
    drop(topo);
    for left_out in &granted {
        let caps: Vec<String> = granted.iter().filter(|c| *c != left_out).cloned().collect();
        let topo = Topology::new()?;
        let mut daemon = Capped::spawn(&topo, &caps)?;
        // Startup fails within a second; one that serves on is still up well after.
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = daemon.child.try_wait()? {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            sleep(Duration::from_millis(50));
        };
        assert!(
            status.is_some_and(|s| !s.success()),
            "dnsxdp without {left_out} did not fail ({status:?}):\n{}",
            daemon.log()
        );
    }
    Ok(())
}
