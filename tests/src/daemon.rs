//! The real `dnsxdp run` binary in the server namespace.

use std::{
    fs,
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use hickory_proto::rr::RecordType;

use dnsxdp::kernel::tier_map::{self, TierMap};
use dnsxdp_common::tier::Tier;

use crate::{
    client,
    netns::{SERVER_IFACE, SERVER_V4, SERVER_V6, Topology, UPSTREAM_V4},
    testrun::maps::memlock,
};

/// The dnsxdp binary: `$DNSXDP_BIN`, else the one cargo built next to this test binary
/// (`cargo xtask test` builds it first).
pub fn binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("DNSXDP_BIN") {
        return Ok(bin.into());
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>/dnsxdp
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("dnsxdp"))
        .context("locating the target directory")?;
    if !bin.is_file() {
        bail!(
            "{} is missing: run the tests with `cargo xtask test`",
            bin.display()
        );
    }
    Ok(bin)
}

/// Set to `native` or `skb` by `cargo xtask test --xdp-mode`: the mode the daemons attach in.
pub const XDP_MODE_ENV: &str = "DNSXDP_TEST_XDP_MODE";

/// A running daemon; stopped with SIGTERM when dropped.
pub struct Daemon {
    child: Child,
    pub control: PathBuf,
    log: PathBuf,
    pub v4: SocketAddr,
    pub v6: SocketAddr,
}

impl Daemon {
    /// Starts `dnsxdp run` on the server's client-facing addresses (unless `extra` has
    /// `--listen`s of its own) with XDP on its veth and the topology's upstream, plus `extra`
    /// flags, and waits until it answers. The test clients'
    /// prefixes are allowed unless `extra` sets access rules of its own (`--allow`, `--deny`
    /// or `--config`): 198.18.0.0/15 is not on the default list.
    pub fn start(topo: &Topology, extra: &[&str]) -> Result<Self> {
        Self::start_with_upstreams(topo, &[&format!("{UPSTREAM_V4}:53")], extra)
    }

    /// The same with these `--upstream`s instead.
    pub fn start_with_upstreams(
        topo: &Topology,
        upstreams: &[&str],
        extra: &[&str],
    ) -> Result<Self> {
        Self::launch(topo, upstreams, extra, false)
    }

    /// Starts it as a user would with `ip netns exec`, which gives it a mount namespace and a
    /// /sys of its own, without a bpf filesystem at /sys/fs/bpf. `extra` as for `start`.
    pub fn start_under_ip_netns_exec(topo: &Topology, extra: &[&str]) -> Result<Self> {
        Self::launch(topo, &[&format!("{UPSTREAM_V4}:53")], extra, true)
    }

    fn launch(
        topo: &Topology,
        upstreams: &[&str],
        extra: &[&str],
        ip_netns_exec: bool,
    ) -> Result<Self> {
        let v4: SocketAddr = format!("{SERVER_V4}:53").parse()?;
        let v6: SocketAddr = format!("[{SERVER_V6}]:53").parse()?;
        let base = std::env::temp_dir().join(format!("dnsxdp-{}", topo.server.name));
        let control = base.with_extension("sock");
        let log = base.with_extension("log");
        let mut args = vec!["run", "--log-level", "debug"];
        if !extra.contains(&"--listen") {
            args.extend(["--listen", "198.18.1.1:53", "--listen", "[fd00:1::1]:53"]);
        }
        for upstream in upstreams {
            args.extend(["--upstream", upstream]);
        }
        let control_arg = control.to_string_lossy().into_owned();
        args.extend(["--control", &control_arg]);
        if !extra
            .iter()
            .any(|a| ["--allow", "--deny", "--config"].contains(a))
        {
            args.extend(["--allow", "198.18.0.0/15", "--allow", "fd00::/8"]);
        }
        if !extra.contains(&"--no-xdp") {
            args.extend(["--iface", SERVER_IFACE]);
        }
        let pin_dir = topo.pin_dir().to_string_lossy().into_owned();
        // Under `ip netns exec` the default, in the namespace's own /sys, is what is tested.
        if !extra.contains(&"--pin-dir") && !ip_netns_exec {
            args.extend(["--pin-dir", &pin_dir]);
        }
        let mode = std::env::var(XDP_MODE_ENV).ok();
        if let Some(mode) = &mode {
            args.extend(["--xdp-mode", mode.as_str()]);
        }
        args.extend_from_slice(extra);
        let bin = binary()?;
        let bin = bin.to_str().context("binary path")?;
        let mut command = match ip_netns_exec {
            true => topo.server.command(bin),
            false => topo.server.command_with_host_mounts(bin),
        };
        let child = command
            .args(&args)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log)?)
            .spawn()
            .context("starting dnsxdp")?;
        let mut daemon = Self {
            child,
            control,
            log,
            v4,
            v6,
        };
        daemon.wait_ready(topo)?;
        Ok(daemon)
    }

    fn wait_ready(&mut self, topo: &Topology) -> Result<()> {
        let sock = topo.client.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("dnsxdp exited ({status}):\n{}", self.log());
            }
            let q = client::query("ns.example.test.", RecordType::A);
            // The log's last line of startup too: a program the last run left attached
            // answers cached names before this daemon is up.
            if client::exchange_udp(&sock, self.v4, &q, Duration::from_millis(300)).is_ok()
                && self.log().contains("control socket at ")
            {
                return Ok(());
            }
        }
        bail!("dnsxdp did not answer within 20 s:\n{}", self.log())
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `dnsxdp stats --json` against this daemon.
    pub fn stats(&self) -> Result<serde_json::Value> {
        self.ask(&["stats"])
    }

    /// `dnsxdp lists --json` against this daemon; with `refresh`, after fetching them again.
    pub fn lists(&self, refresh: bool) -> Result<serde_json::Value> {
        match refresh {
            true => self.ask(&["lists", "refresh"]),
            false => self.ask(&["lists"]),
        }
    }

    /// The JSON `dnsxdp <command> --json` prints for this daemon.
    fn ask(&self, command: &[&str]) -> Result<serde_json::Value> {
        let out = Command::new(binary()?)
            .args(command)
            .args(["--json", "--control"])
            .arg(&self.control)
            .output()?;
        let what = command.join(" ");
        if !out.status.success() {
            bail!(
                "dnsxdp {what} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).with_context(|| format!("parsing dnsxdp {what} --json"))
    }

    /// One XDP counter (`hits`, `misses`, `pass_edns`, ...).
    pub fn xdp(&self, counter: &str) -> Result<u64> {
        let stats = self.stats()?;
        stats["xdp"][counter]
            .as_u64()
            .with_context(|| format!("no xdp.{counter} in {stats}"))
    }

    /// One daemon counter (`queries`, `upstream_queries`, ...).
    pub fn counter(&self, counter: &str) -> Result<u64> {
        let stats = self.stats()?;
        stats["daemon"][counter]
            .as_u64()
            .with_context(|| format!("no daemon.{counter} in {stats}"))
    }

    /// The counters of the upstream whose URL is `url`, as `dnsxdp stats --json` shows them.
    pub fn upstream(&self, url: &str) -> Result<serde_json::Value> {
        let stats = self.stats()?;
        stats["upstreams"]
            .as_array()
            .and_then(|all| all.iter().find(|u| u["upstream"] == url))
            .cloned()
            .with_context(|| format!("no upstream {url} in {stats}"))
    }

    /// The kernel cache's maps of the program this daemon attached to the server's veth, in
    /// `Tier::ALL` order.
    pub fn kernel_cache(&self, topo: &Topology) -> Result<Vec<Box<dyn TierMap>>> {
        self.kernel_cache_maps(topo)?
            .into_iter()
            .map(|(tier, data)| tier_map::open(tier, aya::maps::Map::LruHashMap(data)))
            .collect()
    }

    /// Bytes of kernel memory the map of `tier` takes, as the kernel counts it, and the
    /// entries it holds at most.
    pub fn kernel_cache_memory(&self, topo: &Topology, tier: Tier) -> Result<(u64, u32)> {
        let maps = self.kernel_cache_maps(topo)?;
        let (_, data) = &maps[tier.index()];
        Ok((memlock(data)?, data.info()?.max_entries()))
    }

    /// The kernel cache's maps by tier, found among the attached program's by name.
    fn kernel_cache_maps(&self, topo: &Topology) -> Result<Vec<(Tier, aya::maps::MapData)>> {
        let out = topo
            .server
            .command("ip")
            .args(["-j", "link", "show", SERVER_IFACE])
            .output()?;
        let links: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let prog_id = links[0]["xdp"]["prog"]["id"]
            .as_u64()
            .with_context(|| format!("no XDP program on {SERVER_IFACE}: {links}"))?;
        let prog = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|p| u64::from(p.id()) == prog_id)
            .context("attached program not found")?;
        let ids = prog.map_ids()?.unwrap_or_default();
        Tier::ALL
            .into_iter()
            .map(|tier| {
                for &id in &ids {
                    let info = aya::maps::MapInfo::from_id(id)?;
                    if info.name_as_str() == Some(tier.map()) {
                        return Ok((tier, aya::maps::MapData::from_id(id)?));
                    }
                }
                bail!("program {prog_id} has no {} map", tier.map())
            })
            .collect()
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) the daemon process.
    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        // SAFETY: signalling our own child by pid.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, signal) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        if signal == libc::SIGSTOP {
            self.wait_stopped()?;
        }
        Ok(())
    }

    /// Waits until every thread has stopped: kill() returns before a busy thread has.
    fn wait_stopped(&self) -> Result<()> {
        let tasks = format!("/proc/{}/task", self.child.id());
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let all_stopped = fs::read_dir(&tasks)?.filter_map(Result::ok).all(|task| {
                // The state follows the parenthesised command name in `stat`.
                fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                    stat.rsplit_once(") ")
                        .is_some_and(|(_, rest)| rest.starts_with('T'))
                })
            });
            if all_stopped {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        bail!("dnsxdp did not stop within 2 s of SIGSTOP")
    }

    /// Kills the daemon with SIGKILL, as the OOM killer would, and reaps it.
    pub fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Waits up to 10 s for the daemon to exit by itself; returns the exit status.
    pub fn wait_exit(mut self) -> Result<std::process::ExitStatus> {
        self.wait_exit_for(Duration::from_secs(10))
            .context("dnsxdp did not exit within 10 s")
    }

    fn wait_exit_for(&mut self, limit: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("still running")
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status.
    pub fn stop(mut self) -> Result<std::process::ExitStatus> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let _ = self.signal(libc::SIGCONT);
        self.signal(libc::SIGTERM)?;
        self.wait_exit_for(Duration::from_secs(10)).or_else(|_| {
            let _ = self.child.kill();
            bail!("dnsxdp did not exit within 10 s of SIGTERM")
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.terminate();
        }
        // A failing test shows what the daemon said (cargo test prints captured output).
        if std::thread::panicking() {
            eprintln!("--- dnsxdp log ---\n{}", self.log());
        }
        let _ = fs::remove_file(&self.log);
    }
}

/// How far `section.counter` went up from one `stats` snapshot to a later one; a counter
/// missing from a snapshot is 0 there.
pub fn went_up(
    before: &serde_json::Value,
    after: &serde_json::Value,
    section: &str,
    counter: &str,
) -> u64 {
    let at = |stats: &serde_json::Value| stats[section][counter].as_u64().unwrap_or(0);
    at(after) - at(before)
}
