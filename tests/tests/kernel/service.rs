//! The kernel keeps answering while the daemon is gone: XDP is attached through links pinned
//! in bpffs, which the daemon mounts itself where nothing is mounted. A crash or SIGTERM
//! leaves them; the next daemon takes them over; `dnsxdp stop` and SIGINT remove them.
//! Run as root (`cargo xtask test`).

use std::{
    net::{SocketAddr, UdpSocket},
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use dnsxdp_common::CACHE_LAYOUT;
use dnsxdp_tests::{
    client::{exchange_udp, query},
    daemon::{Daemon, binary},
    netns::{SERVER_IFACE, SERVER_V4, Topology, UPSTREAM_V4, UPSTREAM_V6},
    upstream::Nsd,
};
use hickory_proto::rr::RecordType;

const WAIT: Duration = Duration::from_secs(2);
const NAMES: [&str; 4] = [
    "www.example.test.",
    "a1.many.example.test.",
    "a2.many.example.test.",
    "a3.many.example.test.",
];

struct Sandbox {
    sock: UdpSocket,
    _nsd: Nsd,
    topo: Topology,
}

impl Sandbox {
    fn new() -> Result<Self> {
        let topo = Topology::new()?;
        let nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
        let sock = topo.client.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
        Ok(Self {
            sock,
            _nsd: nsd,
            topo,
        })
    }

    /// Asks each of `NAMES` until it is an XDP hit.
    fn warm(&self, daemon: &Daemon) -> Result<()> {
        for name in NAMES {
            exchange_udp(&self.sock, daemon.v4, &query(name, RecordType::A), WAIT)?;
        }
        let hits = daemon.xdp("hits")?;
        for name in NAMES {
            exchange_udp(&self.sock, daemon.v4, &query(name, RecordType::A), WAIT)?;
        }
        assert_eq!(daemon.xdp("hits")? - hits, NAMES.len() as u64);
        Ok(())
    }

    /// Whether `name` gets an answer within 300 ms, whoever gives it.
    fn answered(&self, name: &str) -> Result<bool> {
        let q = query(name, RecordType::A);
        Ok(exchange_udp(&self.sock, server(), &q, Duration::from_millis(300)).is_ok())
    }

    /// `ip link show veth0` in the server namespace.
    fn link(&self) -> Result<String> {
        let out = self
            .topo
            .server
            .command("ip")
            .args(["link", "show", SERVER_IFACE])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn xdp_attached(&self) -> Result<bool> {
        Ok(self.link()?.contains("prog/xdp"))
    }
}

/// The server's client-facing address.
fn server() -> SocketAddr {
    SocketAddr::new(SERVER_V4.parse().expect("an address"), 53)
}

/// `dnsxdp stop ARGS`, which must succeed.
fn dnsxdp_stop(args: &[&str]) -> Result<String> {
    let out = Command::new(binary()?).arg("stop").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "dnsxdp stop failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Queries for cached names, one a millisecond from one client, until told to stop; returns how
/// many were sent and how many went unanswered.
fn stream(
    sock: UdpSocket,
    server: SocketAddr,
    done: Arc<AtomicBool>,
) -> thread::JoinHandle<(u64, u64)> {
    thread::spawn(move || {
        let (mut sent, mut lost) = (0u64, 0u64);
        let start = Instant::now();
        while !done.load(Ordering::Relaxed) {
            let name = NAMES[sent as usize % NAMES.len()];
            let q = query(name, RecordType::A);
            if exchange_udp(&sock, server, &q, Duration::from_millis(500)).is_err() {
                lost += 1;
            }
            sent += 1;
            // Paced to about 1,000 a second.
            let due = start + Duration::from_millis(sent);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
        (sent, lost)
    })
}

#[test]
fn a_sigkill_and_a_restart_lose_no_cached_query() -> Result<()> {
    let s = Sandbox::new()?;
    let daemon = Daemon::start(&s.topo, &[])?;
    s.warm(&daemon)?;
    let done = Arc::new(AtomicBool::new(false));
    // A socket of its own: replies and errors for the checks below must not reach it.
    let sock = s.topo.client.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
    let streamer = stream(sock, daemon.v4, done.clone());
    thread::sleep(Duration::from_millis(500));
    daemon.kill()?;
    // The gap: no daemon; misses would go unanswered, cached names are answered by XDP.
    thread::sleep(Duration::from_secs(1));
    // Only a daemon could answer a name never asked: none runs.
    assert!(!s.answered("a4.many.example.test.")?);
    let daemon = Daemon::start(&s.topo, &[])?;
    assert!(
        daemon
            .log()
            .contains("replaced the program of the link the last run pinned"),
        "{}",
        daemon.log()
    );
    let hits = daemon.xdp("hits")?;
    thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    let (sent, lost) = streamer.join().expect("stream thread");
    eprintln!("stream: {sent} cached queries, {lost} unanswered across SIGKILL and restart");
    assert!(sent > 1000, "only {sent} queries sent");
    assert_eq!(lost, 0, "{lost} of {sent} cached queries unanswered");
    // The new daemon's program answers now, through the same link.
    assert!(daemon.xdp("hits")? > hits);
    Ok(())
}

#[test]
fn sigterm_leaves_xdp_answering_and_dnsxdp_stop_detaches_it() -> Result<()> {
    let s = Sandbox::new()?;
    let daemon = Daemon::start(&s.topo, &[])?;
    s.warm(&daemon)?;
    let pin_dir = s.topo.pin_dir();
    assert!(daemon.stop()?.success(), "exit status after SIGTERM");
    assert!(s.xdp_attached()?, "XDP detached by SIGTERM: {}", s.link()?);
    assert!(pin_dir.join("link-veth0").exists());
    let q = query(NAMES[1], RecordType::A);
    let reply = exchange_udp(&s.sock, server(), &q, WAIT).context("cached name after SIGTERM")?;
    assert_eq!(reply.answers().len(), 1);

    // No daemon runs: stop removes the pins, which detaches the program.
    let control = std::env::temp_dir().join("dnsxdp-stop-test-none.sock");
    let pin = pin_dir.to_string_lossy().into_owned();
    dnsxdp_stop(&["--control", control.to_str().unwrap(), "--pin-dir", &pin])?;
    assert!(!s.xdp_attached()?, "XDP still attached: {}", s.link()?);
    assert!(!pin_dir.exists(), "pins left in {}", pin_dir.display());
    assert!(!s.answered(NAMES[1])?);
    Ok(())
}

/// A cache pinned by a daemon of another entry layout is removed by the next daemon, which
/// cannot read it: it would hold its kernel memory until `dnsxdp stop`.
#[test]
fn a_cache_pinned_with_another_layout_is_removed() -> Result<()> {
    let s = Sandbox::new()?;
    let daemon = Daemon::start(&s.topo, &[])?;
    s.warm(&daemon)?;
    assert!(daemon.stop()?.success(), "exit status after SIGTERM");
    let pin_dir = s.topo.pin_dir();
    let ours = pin_dir.join(format!("cache-v{CACHE_LAYOUT}-small"));
    let older = pin_dir.join(format!("cache-v{}", CACHE_LAYOUT - 1));
    std::fs::rename(&ours, &older).context("renaming the pinned cache")?;
    let daemon = Daemon::start(&s.topo, &[])?;
    assert!(
        !older.exists(),
        "{} left: {}",
        older.display(),
        daemon.log()
    );
    assert!(ours.exists(), "{}", daemon.log());
    assert!(
        daemon.log().contains("a kernel cache of another layout"),
        "{}",
        daemon.log()
    );
    Ok(())
}

#[test]
fn dnsxdp_stop_ends_a_running_daemon_and_leaves_nothing_behind() -> Result<()> {
    let s = Sandbox::new()?;
    let daemon = Daemon::start(&s.topo, &[])?;
    s.warm(&daemon)?;
    let pin_dir = s.topo.pin_dir();
    let pin = pin_dir.to_string_lossy().into_owned();
    let control = daemon.control.clone();
    let said = dnsxdp_stop(&["--control", control.to_str().unwrap(), "--pin-dir", &pin])?;
    assert!(said.contains("stopped the daemon"), "{said}");
    assert!(daemon.wait_exit()?.success());
    assert!(!s.xdp_attached()?, "XDP still attached: {}", s.link()?);
    assert!(!pin_dir.exists(), "pins left in {}", pin_dir.display());
    assert!(!control.exists(), "control socket left");
    Ok(())
}

#[test]
fn sigint_detaches() -> Result<()> {
    let s = Sandbox::new()?;
    let daemon = Daemon::start(&s.topo, &[])?;
    assert!(s.xdp_attached()?);
    daemon.signal(libc::SIGINT)?;
    assert!(daemon.wait_exit()?.success());
    assert!(!s.xdp_attached()?, "XDP still attached: {}", s.link()?);
    assert!(!s.topo.pin_dir().exists());
    Ok(())
}

#[test]
fn under_ip_netns_exec_the_daemon_mounts_bpffs_and_pins_there() -> Result<()> {
    let s = Sandbox::new()?;
    let daemon = Daemon::start_under_ip_netns_exec(&s.topo, &[])?;
    let log = daemon.log();
    assert!(
        log.contains("mounted a bpf filesystem at /sys/fs/bpf"),
        "{log}"
    );
    assert!(!log.contains("will not outlive this run"), "{log}");
    s.warm(&daemon)?;
    // The pins are in the daemon's own bpffs, not the host's.
    assert!(!Path::new("/sys/fs/bpf/dnsxdp/veth0").exists());
    Ok(())
}
