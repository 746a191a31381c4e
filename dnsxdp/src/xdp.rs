//! Loading and attaching the XDP program, and the maps it shares with the daemon.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{ProgramError, Xdp as XdpProgram, links::FdLink},
};
use dnsxdp_common::{
    Counter, GLOBAL_HASH_KEY, GLOBAL_SETTINGS, MAP_CACHE, MAP_COUNTERS, MAP_EVENTS, MAP_SERVED,
    PROG_CACHE, SERVED_ANSWER, SERVED_BEHIND_VLAN, ServedKey, XdpSettings, hash::HashKey,
};
use tracing::{debug, info, warn};

use crate::{
    EBPF_OBJECT,
    access::{AccessPolicy, Tables as _, XdpPaths, kernel::KernelTables},
    bpffs,
    cli::XdpMode,
    clock,
    config::TtlPolicy,
    kernel_cache::{Fill, KernelCache},
    kernel_log, link,
    local_addrs::{if_index, local_addrs_by_iface},
    pin, stacked,
};

/// The loaded program and its attachments. Dropped, it leaves the pinned links attached, so
/// the kernel goes on answering until the next daemon takes over; `stop` detaches for good.
pub struct Attached {
    _ebpf: Ebpf,
    pub maps: Arc<XdpMaps>,
    /// What the program reports (`events` module), for the daemon to take and read.
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
    pub mode: XdpMode,
    /// Entries of the kernel cache.
    pub cache_size: u32,
    pub settings: XdpSettings,
    /// Where the cache is pinned between runs.
    pub pin_dir: &'a Path,
    /// Start empty rather than with the entries the last run left pinned.
    pub fresh_cache: bool,
    /// The caps entries kept from the last run are held to, as new ones are.
    pub ttl: TtlPolicy,
}

/// The maps the daemon writes and reads while the program runs.
pub struct XdpMaps {
    pub cache: KernelCache,
    counters: PerCpuArray<MapData, u64>,
    served: Mutex<HashMap<MapData, ServedKey, u8>>,
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

/// Loads the program as `opts` say, with the live entries of the cache the last run pinned,
/// fills SERVED for `listen` and the access maps for `access`, and attaches to each interface.
/// Returns the access maps too.
pub fn attach(
    ifaces: &[String],
    opts: &LoadOptions,
    listen: &[SocketAddr],
    access: &AccessPolicy,
) -> anyhow::Result<(Attached, KernelTables)> {
    raise_memlock_limit();
    let pin_dir = match bpffs::ensure(opts.pin_dir) {
        Ok(()) => Some(opts.pin_dir.to_path_buf()),
        Err(e) => {
            warn!("{e:#}; the kernel cache and XDP will not outlive this run");
            None
        }
    };
    let hash_key: HashKey = rand::random();
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(MAP_CACHE, opts.cache_size)
        .override_global(GLOBAL_HASH_KEY, &hash_key, true)
        .override_global(GLOBAL_SETTINGS, &opts.settings, true)
        .load(EBPF_OBJECT)
        .map_err(|e| anyhow!("loading the eBPF object failed: {}", one_line(e)))?;
    let mut take = |name: &str| {
        ebpf.take_map(name)
            .ok_or_else(|| anyhow!("the eBPF object has no {name} map"))
    };
    let cache = take(MAP_CACHE)?;
    let events = RingBuf::try_from(take(MAP_EVENTS)?).context(MAP_EVENTS)?;
    let counters = PerCpuArray::try_from(take(MAP_COUNTERS)?).context(MAP_COUNTERS)?;
    let served = Mutex::new(HashMap::try_from(take(MAP_SERVED)?).context(MAP_SERVED)?);
    let tables = KernelTables::take(&mut ebpf)?;
    if opts.settings.debug_log != 0 {
        kernel_log::forward(&mut ebpf);
    }
    let program: &mut XdpProgram = ebpf
        .program_mut(PROG_CACHE)
        .ok_or_else(|| anyhow!("the eBPF object has no {PROG_CACHE} program"))?
        .try_into()?;
    // Verified before the last run's pins are touched: a program the kernel refuses leaves the
    // one still attached, and its cache, as they were.
    program.load().map_err(|e| match e {
        ProgramError::LoadError { io_error, verifier_log } => {
            debug!("verifier log:\n{verifier_log}");
            anyhow!("the kernel rejected the XDP program: {io_error} (--log-level debug shows the verifier log)")
        }
        e => anyhow!("loading the XDP program failed: {}", one_line(e)),
    })?;
    let kept = match &pin_dir {
        Some(dir) => {
            let path = pin::cache_path(dir);
            let kept = pin::take(&path, opts.fresh_cache, clock::now_ns());
            if let Err(e) = pin::pin(&cache, &path) {
                warn!("{e:#}; the kernel cache will not outlive this run");
            }
            kept
        }
        None => Vec::new(),
    };
    let maps = XdpMaps {
        cache: KernelCache::new(HashMap::try_from(cache).context(MAP_CACHE)?, hash_key)?,
        counters,
        served,
    };
    if !kept.is_empty() {
        let (count, now) = (kept.len(), clock::now_ns());
        for (key, mut entry) in kept {
            // No answer records: NXDOMAIN or NODATA.
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
    // Before the program runs: it serves everyone while its ACL is empty.
    tables.apply(&access.entries(), &access.config())?;
    let mut links = Vec::new();
    for iface in ifaces {
        let (link, how) = link::attach(program, iface, opts.mode, pin_dir.as_deref())?;
        info!("XDP attached to {iface} ({how})");
        links.extend(link);
    }
    Ok((
        Attached {
            _ebpf: ebpf,
            maps: Arc::new(maps),
            events: Some(events),
            links,
            pin_dir,
        },
        tables,
    ))
}

/// An error and its causes on one line.
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

impl XdpMaps {
    /// The program's counters summed over CPUs, by name.
    pub fn counters(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        Counter::ALL
            .iter()
            .map(|&c| {
                let per_cpu = self
                    .counters
                    .get(&(c as u32), 0)
                    .with_context(|| format!("reading counter {}", c.name()))?;
                Ok((c.name().to_string(), per_cpu.iter().sum()))
            })
            .collect()
    }

    /// Where the program charges queries now, for the daemon to charge the rest: its
    /// interfaces `attached`, what is stacked on them, and SERVED.
    pub fn paths(&self, attached: &[u32], links: &[stacked::Link]) -> anyhow::Result<XdpPaths> {
        let served = self.served.lock().unwrap_or_else(|p| p.into_inner());
        let served = served
            .keys()
            .map(|k| k.map(|k| socket_addr(&k)))
            .collect::<Result<_, _>>()
            .context("reading SERVED")?;
        Ok(XdpPaths {
            ifaces: stacked::covered(links, attached),
            served,
        })
    }

    /// Makes SERVED hold exactly the addresses `listen` covers now, each with its `SERVED_*`
    /// bits. Addresses that do not fit in the map are reported in the error; the daemon still
    /// answers on them.
    /// `links` are the interfaces as of now.
    pub fn refresh_served(
        &self,
        listen: &[SocketAddr],
        links: &[stacked::Link],
    ) -> anyhow::Result<()> {
        let local = local_addrs_by_iface().context("listing local addresses")?;
        let ips: Vec<IpAddr> = local.iter().map(|&(ip, _)| ip).collect();
        let want: Vec<(ServedKey, u8)> = served_keys(listen, &ips)
            .into_iter()
            .map(|key| {
                let ip = socket_addr(&key).ip();
                let behind_vlan = local
                    .iter()
                    .any(|&(a, iface)| a == ip && stacked::behind_vlan(links, iface));
                let bits = SERVED_ANSWER | if behind_vlan { SERVED_BEHIND_VLAN } else { 0 };
                (key, bits)
            })
            .collect();
        let mut served = self.served.lock().unwrap_or_else(|p| p.into_inner());
        let have = served
            .iter()
            .collect::<Result<Vec<(ServedKey, u8)>, _>>()
            .context("reading SERVED")?;
        for (key, _) in have
            .iter()
            .filter(|(k, _)| !want.iter().any(|(w, _)| w == k))
        {
            debug!(addr = %socket_addr(key), "no longer answered by XDP");
            served.remove(key).context("updating SERVED")?;
        }
        let mut left_out = Vec::new();
        for (key, bits) in want.iter().filter(|w| !have.contains(w)) {
            match served.insert(key, bits, 0) {
                Ok(()) => debug!(addr = %socket_addr(key), bits, "answered by XDP"),
                Err(_) => left_out.push(socket_addr(key).to_string()),
            }
        }
        if !left_out.is_empty() {
            bail!(
                "SERVED is full; XDP does not answer on {}",
                left_out.join(", ")
            );
        }
        Ok(())
    }
}

/// A SERVED key as an address, IPv4-mapped ones as IPv4.
fn socket_addr(key: &ServedKey) -> SocketAddr {
    let ip = std::net::Ipv6Addr::from(key.addr);
    let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
    SocketAddr::new(ip, key.port)
}

/// The (address, port) pairs the listen addresses cover: a specific address itself, a
/// wildcard every local address of its family.
fn served_keys(listen: &[SocketAddr], local: &[IpAddr]) -> Vec<ServedKey> {
    let mut keys = Vec::new();
    for l in listen {
        let ips: Vec<IpAddr> = if l.ip().is_unspecified() {
            local
                .iter()
                .copied()
                .filter(|ip| ip.is_ipv4() == l.is_ipv4())
                .collect()
        } else {
            vec![l.ip()]
        };
        for ip in ips {
            let key = match ip {
                IpAddr::V4(v4) => ServedKey::v4(v4.octets(), l.port()),
                IpAddr::V6(v6) => ServedKey::new(v6.octets(), l.port()),
            };
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn wildcards_expand_to_local_addresses_of_their_family() {
        let local = [ip("127.0.0.1"), ip("198.18.1.1"), ip("::1"), ip("fd00::1")];
        let listen = [
            "0.0.0.0:53".parse().unwrap(),
            "[fd00::1]:5353".parse().unwrap(),
        ];
        let keys = served_keys(&listen, &local);
        assert_eq!(
            keys,
            vec![
                ServedKey::v4([127, 0, 0, 1], 53),
                ServedKey::v4([198, 18, 1, 1], 53),
                ServedKey::new(ip_octets("fd00::1"), 5353),
            ]
        );
        assert_eq!(keys[1].addr[10..12], [0xff, 0xff]);
    }

    #[test]
    fn keys_read_back_as_addresses() {
        let v4: SocketAddr = "198.18.1.1:53".parse().unwrap();
        let v6: SocketAddr = "[fd00::1]:5353".parse().unwrap();
        let keys = served_keys(&[v4, v6], &[]);
        assert_eq!(
            keys.iter().map(socket_addr).collect::<Vec<_>>(),
            vec![v4, v6]
        );
    }

    #[test]
    fn duplicates_are_dropped() {
        let local = [ip("198.18.1.1")];
        let listen = [
            "0.0.0.0:53".parse().unwrap(),
            "198.18.1.1:53".parse().unwrap(),
        ];
        assert_eq!(served_keys(&listen, &local).len(), 1);
    }

    fn ip_octets(s: &str) -> [u8; 16] {
        s.parse::<std::net::Ipv6Addr>().unwrap().octets()
    }

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
