//! Network namespaces and the client/server/upstream topology the kernel tests run in.
//!
//! ```text
//!  client ns              server ns                      upstream ns
//!  veth0 198.18.1.2  <->  veth0 198.18.1.1 (XDP)
//!        fd00:1::2              fd00:1::1
//!                         veth1 198.18.2.1          <->  veth0 198.18.2.2 (nsd)
//!                               fd00:2::1                      fd00:2::2
//! ```
//! Every topology has its own namespaces, so tests run side by side with the same addresses.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    thread,
};

use anyhow::{Context as _, Result, bail};

pub const CLIENT_V4: &str = "198.18.1.2";
pub const CLIENT_V6: &str = "fd00:1::2";
pub const SERVER_V4: &str = "198.18.1.1";
pub const SERVER_V6: &str = "fd00:1::1";
pub const UPSTREAM_V4: &str = "198.18.2.2";
pub const UPSTREAM_V6: &str = "fd00:2::2";
/// The server's interface towards the client, where the XDP program is attached.
pub const SERVER_IFACE: &str = "veth0";

/// A network namespace that is deleted when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: String) -> Result<Self> {
        // A namespace left over from a killed run would make `ip netns add` fail.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NS ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// A command that runs inside the namespace but sees the host's mounts: `ip netns exec`
    /// mounts a /sys of the namespace's own, which hides the bpffs at /sys/fs/bpf where dnsxdp
    /// pins its cache.
    pub fn command_with_host_mounts(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{}", self.name))
            .args(["--", program]);
        cmd
    }

    /// Whether this kernel has 802.1Q VLANs (8021q); the host's kernel may be built without.
    pub fn has_vlans(&self) -> bool {
        let added = self.ip(&[
            "link", "add", "link", "veth0", "name", "probe", "type", "vlan", "id", "99",
        ]);
        added.is_ok() && self.ip(&["link", "del", "probe"]).is_ok()
    }

    /// A VLAN (802.1Q id 10, `vl10`) and a QinQ link (802.1ad id 20, then 802.1Q id 30,
    /// `vl2030`) over `veth0`, with addresses 198.18.10.`host` and 198.18.30.`host`.
    pub fn add_vlans(&self, host: u8) -> Result<()> {
        let up = |name: &str, addr: &str| -> Result<()> {
            self.ip(&["addr", "add", &format!("{addr}.{host}/24"), "dev", name])?;
            self.ip(&["link", "set", name, "up"])
        };
        self.ip(&[
            "link", "add", "link", "veth0", "name", "vl10", "type", "vlan", "id", "10",
        ])?;
        up("vl10", "198.18.10")?;
        self.ip(&[
            "link", "add", "link", "veth0", "name", "vl20", "type", "vlan", "proto", "802.1ad",
            "id", "20",
        ])?;
        self.ip(&["link", "set", "vl20", "up"])?;
        self.ip(&[
            "link", "add", "link", "vl20", "name", "vl2030", "type", "vlan", "id", "30",
        ])?;
        up("vl2030", "198.18.30")
    }

    /// Runs `f` on a thread that has entered the namespace. Sockets made there stay in the
    /// namespace and can be used from any thread afterwards.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let path = format!("/var/run/netns/{}", self.name);
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        thread::spawn(move || {
            // SAFETY: plain syscall on a valid fd; it only changes this thread's namespace.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error()).context("setns");
            }
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("thread in {} panicked", path))?
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Three namespaces wired as in the module docs.
pub struct Topology {
    pub client: Netns,
    pub server: Netns,
    pub upstream: Netns,
    /// Keeps the XDP_PASS program on the client's veth: without a program there, frames the
    /// server sends back with XDP_TX are never delivered. `None` while a load generator has
    /// its own program there.
    client_xdp: Option<aya::Ebpf>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Topology {
    pub fn new() -> Result<Self> {
        let id = format!(
            "dx{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let client = Netns::new(format!("{id}-cli"))?;
        let server = Netns::new(format!("{id}-srv"))?;
        let upstream = Netns::new(format!("{id}-ups"))?;
        link(&server, "veth0", &client, "veth0")?;
        link(&server, "veth1", &upstream, "veth0")?;
        address(&client, "veth0", CLIENT_V4, CLIENT_V6)?;
        address(&server, "veth0", SERVER_V4, SERVER_V6)?;
        address(&server, "veth1", "198.18.2.1", "fd00:2::1")?;
        address(&upstream, "veth0", UPSTREAM_V4, UPSTREAM_V6)?;
        // Queries must leave the client with full checksums, as from a real NIC; a reply
        // rewritten in XDP would inherit a partial one.
        let out = client
            .command("ethtool")
            .args(["-K", "veth0", "tx", "off"])
            .output()?;
        check(&out, "ethtool -K veth0 tx off")?;
        let client_xdp = client.enter(|| crate::testrun::program::attach_pass("veth0"))??;
        Ok(Self {
            client,
            server,
            upstream,
            client_xdp: Some(client_xdp),
        })
    }

    /// Detaches the client's XDP_PASS program, so that an AF_XDP load generator (kxdpgun) can
    /// attach its own: a program attached through a BPF link cannot be replaced.
    pub fn detach_client_xdp(&mut self) {
        self.client_xdp = None;
    }

    /// Where daemons on this topology pin their kernel cache: one directory per topology, so
    /// that tests running side by side never share a cache, removed with the topology.
    pub fn pin_dir(&self) -> PathBuf {
        Path::new(TEST_PIN_ROOT).join(&self.server.name)
    }

    /// Attaches the client's XDP_PASS program again, removing whatever program a load generator
    /// left on the interface.
    pub fn attach_client_xdp(&mut self) -> Result<()> {
        self.client_xdp = None;
        self.client.ip(&["link", "set", "veth0", "xdp", "off"])?;
        self.client_xdp = Some(
            self.client
                .enter(|| crate::testrun::program::attach_pass("veth0"))??,
        );
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.pin_dir());
        // Only once no other topology is using it.
        let _ = std::fs::remove_dir(TEST_PIN_ROOT);
    }
}

/// Under bpffs, where the tests' daemons pin their caches.
const TEST_PIN_ROOT: &str = "/sys/fs/bpf/dnsxdp-test";

fn link(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])
}

fn address(ns: &Netns, iface: &str, v4: &str, v6: &str) -> Result<()> {
    ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", iface])?;
    // nodad: usable at once instead of after duplicate address detection.
    ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", iface, "nodad"])
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("starting {program}"))?;
    check(&out, &format!("{program} {}", args.join(" ")))
}

fn check(out: &Output, what: &str) -> Result<()> {
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
