//! The daemon run as the unit runs it: root with only the unit's capability bounding set (and
//! no new privileges), via setpriv. It answers a repeat from XDP with them, and fails to start
//! without any one of them.

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

/// `dnsxdp run` in the server namespace of `topo`, with only `caps` (`CAP_BPF`, ...).
struct Capped {
    child: Child,
    control: PathBuf,
    log: PathBuf,
}

impl Capped {
    fn spawn(topo: &Topology, caps: &[String]) -> Result<Capped> {
        mount_bpffs();
        let base = std::env::temp_dir().join(format!("dnsxdp-capped-{}", topo.server.name));
        let (control, log) = (base.with_extension("sock"), base.with_extension("log"));
        // setpriv's names: `+bpf,+net_admin`.
        let keep: Vec<String> = caps
            .iter()
            .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
            .collect();
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", topo.server.name))
            .args(["--", "setpriv", "--inh-caps=-all", "--no-new-privs"])
            .arg(format!("--bounding-set=-all,{}", keep.join(",")))
            .arg("--")
            .arg(binary()?)
            .args(["run", "--iface", SERVER_IFACE, "--listen"])
            .arg(format!("{SERVER_V4}:53"))
            .arg("--upstream")
            .arg(format!("{UPSTREAM_V4}:53"))
            .args(["--allow", "198.18.0.0/15", "--control"])
            .arg(&control)
            .arg("--pin-dir")
            .arg(topo.pin_dir())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log)?)
            .spawn()
            .context("starting nsenter")?;
        Ok(Capped {
            child,
            control,
            log,
        })
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
        // SAFETY: signalling our own child (nsenter execs setpriv, which execs dnsxdp).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- dnsxdp log ---\n{}", self.log());
        }
        let _ = fs::remove_file(&self.log);
        let _ = fs::remove_file(&self.control);
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
