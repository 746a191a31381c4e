//! The harness topology with NSD serving the bench zone, tuned so that CPU time can be
//! attributed: the generator and NSD on one CPU, the server under test on the other.

use std::{collections::HashSet, fs, os::unix::process::CommandExt as _, process::Command};

use anyhow::{Context as _, Result, bail};
use dnsxdp_tests::{
    netns::{Netns, SERVER_IFACE, Topology, UPSTREAM_V4, UPSTREAM_V6},
    upstream::Nsd,
};

use crate::proc;

/// Where the load generator, its NAPI thread and NSD run.
pub const GENERATOR_CPU: usize = 0;
/// Where the server under test and its NAPI thread run.
pub const SERVER_CPU: usize = 1;

/// Fields drop in order: NSD stops before its namespace goes away.
pub struct Sandbox {
    pub nsd: Nsd,
    pub topo: Topology,
}

impl Sandbox {
    pub fn new(zone: &str) -> Result<Self> {
        let topo = Topology::new()?;
        let nsd = Nsd::start_with_zone(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6], zone)?;
        Ok(Self { nsd, topo })
    }

    /// Pins NSD next to the generator and gives the client's veth a NAPI thread there too;
    /// returns that thread's pid.
    pub fn isolate_generator(&self) -> Result<u32> {
        pin_tree(self.nsd.pid(), GENERATOR_CPU)?;
        threaded_napi(&self.topo.client, "veth0", GENERATOR_CPU)
    }

    /// A fresh NAPI thread for the server's client-facing veth, pinned next to the server;
    /// returns its pid. Called after each server starts, as attaching XDP may rebuild NAPI.
    pub fn server_napi(&self) -> Result<u32> {
        threaded_napi(&self.topo.server, SERVER_IFACE, SERVER_CPU)
    }

    /// Packets NSD's interface has received: queries the server sent upstream (plus the odd
    /// neighbour discovery packet).
    pub fn upstream_packets(&self) -> Result<u64> {
        let mut cmd = self.topo.upstream.command("cat");
        cmd.arg("/sys/class/net/veth0/statistics/rx_packets");
        Ok(proc::output(cmd)?.trim().parse()?)
    }

    /// Whether an XDP program is attached to the server's client-facing veth.
    pub fn xdp_attached(&self) -> Result<bool> {
        let mut cmd = self.topo.server.command("ip");
        cmd.args(["-j", "link", "show", "dev", SERVER_IFACE]);
        let links: serde_json::Value = serde_json::from_str(&proc::output(cmd)?)?;
        Ok(links[0].get("xdp").is_some())
    }

    /// MAC address of the server's client-facing veth, which kxdpgun sends to.
    pub fn server_mac(&self) -> Result<String> {
        let mut cmd = self.topo.server.command("cat");
        cmd.arg(format!("/sys/class/net/{SERVER_IFACE}/address"));
        Ok(proc::output(cmd)?.trim().to_owned())
    }
}

/// Makes `cmd` start on `cpu` only (the affinity survives `ip netns exec`'s exec).
pub fn pinned(cmd: &mut Command, cpu: usize) -> &mut Command {
    // SAFETY: sched_setaffinity is a plain syscall, safe between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let set = cpu_set(cpu);
            if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

fn cpu_set(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set
}

/// Pins every thread of `pid` and of its descendants to `cpu`.
pub fn pin_tree(pid: u32, cpu: usize) -> Result<()> {
    let set = cpu_set(cpu);
    for p in descendants(pid)? {
        for task in fs::read_dir(format!("/proc/{p}/task"))?.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // SAFETY: plain syscall with a valid cpu_set_t.
            if unsafe { libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("pinning task {tid} to CPU {cpu}"));
            }
        }
    }
    Ok(())
}

/// `pid` and all processes below it.
fn descendants(pid: u32) -> Result<Vec<u32>> {
    let mut parent_of = Vec::new();
    for e in fs::read_dir("/proc")?.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // Field 4, counted after the command name, which may contain spaces.
        if let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok())
        {
            parent_of.push((p, ppid));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parent_of
                .iter()
                .filter(|&&(_, pp)| pp == parent)
                .map(|&(p, _)| p),
        );
        i += 1;
    }
    Ok(tree)
}

/// Gives `iface` in `ns` a NAPI kthread pinned to `cpu` and returns its pid.
///
/// veth only polls with NAPI when GRO is on or XDP attached, so GRO is turned on: every server
/// then pays for the same receive path. The kernel names the thread after the device, which
/// is `veth0` in every namespace, so the thread is found as the one that appears when
/// threading is switched on.
fn threaded_napi(ns: &Netns, iface: &str, cpu: usize) -> Result<u32> {
    let out = ns
        .command("ethtool")
        .args(["-K", iface, "gro", "on"])
        .output()?;
    if !out.status.success() {
        bail!(
            "ethtool -K {iface} gro on: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    set_threaded(ns, iface, false)?;
    let before = napi_threads()?;
    set_threaded(ns, iface, true)?;
    let new: Vec<u32> = napi_threads()?.difference(&before).copied().collect();
    let [pid] = new[..] else {
        bail!(
            "expected one new NAPI thread for {iface} in {}, found {new:?}",
            ns.name
        );
    };
    pin_tree(pid, cpu)?;
    Ok(pid)
}

fn set_threaded(ns: &Netns, iface: &str, on: bool) -> Result<()> {
    // `ip netns exec` mounts the namespace's own sysfs, where its veth0 is.
    let write = format!("echo {} > /sys/class/net/{iface}/threaded", u8::from(on));
    let mut cmd = ns.command("sh");
    cmd.args(["-c", &write]);
    proc::output(cmd).map(drop)
}

fn napi_threads() -> Result<HashSet<u32>> {
    let mut set = HashSet::new();
    for e in fs::read_dir("/proc")?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with("napi/")) {
            set.insert(pid);
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_include_children() {
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let tree = descendants(std::process::id()).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(tree[0], std::process::id());
        assert!(tree.contains(&child.id()), "{tree:?}");
    }
}
