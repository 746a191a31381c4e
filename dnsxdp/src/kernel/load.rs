//! Loading the XDP program and attaching it: the checks before, the cache kept from the last
//! run, and the links that keep it attached.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, LpmTrie, MapData, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::{ProgramError, Xdp as XdpProgram, links::FdLink},
};
use dnsxdp_common::{
    GLOBAL_HASH_KEY, GLOBAL_SETTINGS, MAP_COUNTERS, MAP_EVENTS, MAP_GROUP_BLOCKED, MAP_GROUPS,
    MAP_SERVED, PROG_CACHE, XdpSettings, hash::HashKey, tier::Tier,
};
use tracing::{debug, info, warn};

use super::{
    bpffs,
    cache::{Fill, KernelCache},
    link,
    local_addrs::if_index,
    log,
    maps::XdpMaps,
    pin,
    settings::XdpMode,
    stacked,
};
use crate::{
    EBPF_OBJECT,
    dns::{clock, ttl::TtlPolicy},
};

/// The loaded program and its attachments. Dropped, it leaves the pinned links attached, so
/// the kernel goes on answering until the next daemon takes over; `stop` detaches for good.
pub struct Attached {
    _ebpf: Ebpf,
    pub maps: Arc<XdpMaps>,
    /// What the program reports (`daemon::events`), for the daemon to take and read.
    pub events: Option<RingBuf<MapData>>,
    /// The pinned links, held so that XDP stays attached while this daemon runs even if their
    /// pins are removed under it.
    links: Vec<FdLink>,
    /// Where the links and the cache are pinned, if they are.
    pin_dir: Option<PathBuf>,
}

impl Attached {
    /// Detaches from every interface and removes the pins, leaving nothing behind: a link goes
    /// once neither a pin nor a descriptor holds it.
    pub fn stop(self) {
        drop(self.links);
        if let Some(dir) = &self.pin_dir {
            pin::remove_all(dir);
        }
    }
}

/// How the program is loaded.
pub struct LoadOptions<'a> {
    /// Entries of the kernel cache's small tier, which the others' sizes follow
    /// (`Tier::entries`).
    pub cache_size: u32,
    pub settings: XdpSettings,
    /// Where the cache is pinned between runs.
    pub pin_dir: &'a Path,
    /// Start empty rather than with the entries the last run left pinned.
    pub fresh_cache: bool,
    /// The caps entries kept from the last run are held to, as new ones are.
    pub ttl: TtlPolicy,
    /// The client groups' prefixes, in the `GROUPS` trie's form (address, prefix length over
    /// 128 bits, group).
    pub groups: Vec<([u8; 16], u32, u8)>,
}

/// Fails, naming it, if an interface does not exist: before anything is loaded.
pub fn check_ifaces(ifaces: &[String]) -> anyhow::Result<()> {
    match ifaces.iter().find(|i| if_index(i).is_none()) {
        Some(missing) => bail!("no such interface: {missing}"),
        None => Ok(()),
    }
}

/// Fails unless the process may load BPF programs and attach them to interfaces.
pub fn check_privileges() -> anyhow::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    match missing_capabilities(caps).as_slice() {
        [] => Ok(()),
        missing => bail!(
            "attaching XDP needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (missing {}): run as root, or pass --no-xdp",
            missing.join(", ")
        ),
    }
}

/// The capabilities loading and attaching lacks in the effective set `caps`. CAP_SYS_ADMIN
/// stands for CAP_BPF and CAP_PERFMON, as in kernels before 5.8. The verifier allows the
/// packet pointer arithmetic that variable-length headers need only with CAP_PERFMON.
fn missing_capabilities(caps: u64) -> Vec<&'static str> {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let has = |cap: u32| caps & (1 << cap) != 0;
    let needed = [
        ("CAP_BPF", has(CAP_BPF) || has(CAP_SYS_ADMIN)),
        ("CAP_PERFMON", has(CAP_PERFMON) || has(CAP_SYS_ADMIN)),
        ("CAP_NET_ADMIN", has(CAP_NET_ADMIN)),
    ];
    needed
        .into_iter()
        .filter(|(_, held)| !held)
        .map(|(name, _)| name)
        .collect()
}

/// The program loaded and its maps taken; not yet attached.
pub struct Loaded {
    ebpf: Ebpf,
    maps: XdpMaps,
    events: RingBuf<MapData>,
    pin_dir: Option<PathBuf>,
}

/// Loads the program as `opts` say, with the live entries of the cache the last run pinned, and
/// fills SERVED for `listen`.
pub fn load(opts: &LoadOptions, listen: &[SocketAddr]) -> anyhow::Result<Loaded> {
    raise_memlock_limit();
    let pin_dir = match bpffs::ensure(opts.pin_dir) {
        Ok(()) => Some(opts.pin_dir.to_path_buf()),
        Err(e) => {
            warn!("{e:#}; the kernel cache and XDP will not outlive this run");
            None
        }
    };
    let hash_key: HashKey = rand::random();
    let mut loader = EbpfLoader::new();
    for tier in Tier::ALL {
        loader.map_max_entries(tier.map(), tier.entries(opts.cache_size));
    }
    let mut ebpf = loader
        .override_global(GLOBAL_HASH_KEY, &hash_key, true)
        .override_global(GLOBAL_SETTINGS, &opts.settings, true)
        .load(EBPF_OBJECT)
        .map_err(|e| anyhow!("loading the eBPF object failed: {}", one_line(e)))?;
    let mut take = |name: &str| {
        ebpf.take_map(name)
            .ok_or_else(|| anyhow!("the eBPF object has no {name} map"))
    };
    let [small, medium, large] = Tier::ALL.map(|tier| take(tier.map()));
    let caches = [small?, medium?, large?];
    let events = RingBuf::try_from(take(MAP_EVENTS)?).context(MAP_EVENTS)?;
    let counters = PerCpuArray::try_from(take(MAP_COUNTERS)?).context(MAP_COUNTERS)?;
    let served = Mutex::new(HashMap::try_from(take(MAP_SERVED)?).context(MAP_SERVED)?);
    let group_blocked =
        PerCpuArray::try_from(take(MAP_GROUP_BLOCKED)?).context(MAP_GROUP_BLOCKED)?;
    let mut groups: LpmTrie<_, [u8; 16], u8> =
        LpmTrie::try_from(take(MAP_GROUPS)?).context(MAP_GROUPS)?;
    for &(addr, len, group) in &opts.groups {
        (groups.insert(&Key::new(len, addr), group, 0)).context("filling GROUPS")?;
    }
    if opts.settings.debug_log != 0 {
        log::forward(&mut ebpf);
    }
    program(&mut ebpf)?.load().map_err(|e| match e {
        ProgramError::LoadError { io_error, verifier_log } => {
            debug!("verifier log:\n{verifier_log}");
            anyhow!("the kernel rejected the XDP program: {io_error} (--log-level debug shows the verifier log)")
        }
        e => anyhow!("loading the XDP program failed: {}", one_line(e)),
    })?;
    let kept = match &pin_dir {
        Some(dir) => {
            let kept = pin::take(dir, opts.fresh_cache, clock::now_ns());
            let pinned = Tier::ALL
                .into_iter()
                .zip(&caches)
                .try_for_each(|(tier, map)| pin::pin(map, &pin::cache_path(dir, tier)));
            if let Err(e) = pinned {
                warn!("{e:#}; the kernel cache will not outlive this run");
            }
            kept
        }
        None => Vec::new(),
    };
    let maps = XdpMaps {
        cache: KernelCache::new(caches, hash_key)?,
        counters,
        group_blocked,
        served,
    };
    // Not kept: a client group's entries, as the groups may differ in this run, and static
    // ones, as the local records may.
    let kept: Vec<_> = (kept.into_iter())
        .filter(|(_, e)| e.group == 0 && e.expires_ns != u64::MAX)
        .collect();
    if !kept.is_empty() {
        let (count, now) = (kept.len(), clock::now_ns());
        for (key, mut entry) in kept {
            let cap = match entry.ancount {
                0 => opts.ttl.max_negative.min(opts.ttl.max),
                _ => opts.ttl.max,
            };
            entry.cap_life(now, cap);
            maps.cache.insert(key, entry, Fill::IfAbsent, || true);
        }
        info!("kernel cache: {count} live entries kept from the last run");
    }
    let refreshed = stacked::links()
        .context("listing interfaces")
        .and_then(|interfaces| maps.refresh_served(listen, &interfaces));
    if let Err(e) = refreshed {
        warn!("{e:#}");
    }
    Ok(Loaded {
        ebpf,
        maps,
        events,
        pin_dir,
    })
}

fn program(ebpf: &mut Ebpf) -> anyhow::Result<&mut XdpProgram> {
    let program = ebpf
        .program_mut(PROG_CACHE)
        .ok_or_else(|| anyhow!("the eBPF object has no {PROG_CACHE} program"))?;
    Ok(program.try_into()?)
}

impl Loaded {
    pub fn maps(&self) -> &XdpMaps {
        &self.maps
    }

    /// The object, for the maps other components share with the program.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Attaches to each interface in `mode`.
    pub fn attach(mut self, ifaces: &[String], mode: XdpMode) -> anyhow::Result<Attached> {
        let program = program(&mut self.ebpf)?;
        let mut links = Vec::new();
        for iface in ifaces {
            let (link, how) = link::attach(program, iface, mode, self.pin_dir.as_deref())?;
            info!("XDP attached to {iface} ({how})");
            links.extend(link);
        }
        Ok(Attached {
            _ebpf: self.ebpf,
            maps: Arc::new(self.maps),
            events: Some(self.events),
            links,
            pin_dir: self.pin_dir,
        })
    }
}

fn one_line(e: impl Into<anyhow::Error>) -> String {
    format!("{:#}", e.into())
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; later ones ignore it.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        debug!(
            "raising RLIMIT_MEMLOCK failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_capabilities_are_named() {
        let bit = |n: u32| 1u64 << n;
        assert!(missing_capabilities(bit(12) | bit(21)).is_empty());
        assert!(missing_capabilities(bit(12) | bit(38) | bit(39)).is_empty());
        assert_eq!(missing_capabilities(bit(12) | bit(39)), ["CAP_PERFMON"]);
        assert_eq!(
            missing_capabilities(0),
            ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"]
        );
    }

    #[test]
    fn missing_interfaces_are_named() {
        assert_eq!(
            check_ifaces(&["lo".into(), "nope0".into()])
                .unwrap_err()
                .to_string(),
            "no such interface: nope0"
        );
        assert!(check_ifaces(&["lo".into()]).is_ok());
    }
}
