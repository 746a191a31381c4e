//! Filling and reading the program's maps as the daemon does: the addresses it serves
//! (SERVED), its answers (the cache's tiers) and what it reports (EVENTS).

use std::{
    net::{IpAddr, SocketAddr},
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
};

use anyhow::{Context as _, Result, bail, ensure};
use aya::{
    Ebpf,
    maps::{HashMap, Map, MapData, RingBuf},
};
use dnsxdp::kernel::tier_map::{self, TierMap};
use dnsxdp_common::{
    CacheEntry, CacheKey, Event, MAP_EVENTS, MAP_SERVED, SERVED_ANSWER, ServedKey,
    name::QuestionKey, tier::Tier,
};

use super::{program::XdpCache, response::entry_from};

/// `tier`'s map of `ebpf`.
fn cache_data(ebpf: &Ebpf, tier: Tier) -> Result<&MapData> {
    match ebpf.map(tier.map()) {
        Some(Map::LruHashMap(data)) => Ok(data),
        _ => bail!("no LRU hash map {}", tier.map()),
    }
}

/// A handle of its own on `tier`'s map of `ebpf`.
fn cache_map(ebpf: &Ebpf, tier: Tier) -> Result<Map> {
    let fd = cache_data(ebpf, tier)?.fd().as_fd().try_clone_to_owned()?;
    Ok(Map::LruHashMap(MapData::from_fd(fd)?))
}

/// Handles on the cache's maps of `ebpf`, in `Tier::ALL` order.
pub(super) fn open_tiers(ebpf: &Ebpf) -> Result<Vec<Box<dyn TierMap>>> {
    Tier::ALL
        .into_iter()
        .map(|tier| tier_map::open(tier, cache_map(ebpf, tier)?))
        .collect()
}

/// Bytes of kernel memory `map` takes, as the kernel counts it (`memlock` in bpftool).
pub fn memlock(map: &MapData) -> Result<u64> {
    let fd = map.fd().as_fd().as_raw_fd();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no memlock in the map's fdinfo")
}

/// Writes `values`, each as long as `values.len() / keys.len()`, under `keys` in one
/// BPF_MAP_UPDATE_BATCH: the kernel updates one after the other without returning to
/// userspace, so that an element one update frees, the next one may take at once.
pub fn update_batch(map: BorrowedFd, keys: &[CacheKey], values: &[u8]) -> std::io::Result<()> {
    const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
    // `union bpf_attr`'s batch member: in_batch, out_batch, keys, values, then count and
    // map_fd, elem_flags and flags.
    let mut attr = [0u64; 7];
    attr[2] = keys.as_ptr() as u64;
    attr[3] = values.as_ptr() as u64;
    attr[4] = u64::from(keys.len() as u32) | (u64::from(map.as_raw_fd() as u32) << 32);
    // SAFETY: the attribute points at `keys` and `values`, which outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_BATCH,
            attr.as_mut_ptr(),
            size_of_val(&attr),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl XdpCache {
    /// The descriptor of `tier`'s map, for as long as `self` lives.
    pub fn cache_fd(&self, tier: Tier) -> Result<BorrowedFd<'_>> {
        Ok(cache_data(&self.ebpf, tier)?.fd().as_fd())
    }

    fn served(&mut self) -> Result<HashMap<&mut MapData, ServedKey, u8>> {
        let map = self.ebpf.map_mut(MAP_SERVED).context("no SERVED map")?;
        Ok(HashMap::try_from(map)?)
    }

    /// Handles on the cache's maps, in `Tier::ALL` order, as the daemon's `KernelCache` takes
    /// them.
    pub fn cache_maps(&self) -> Result<[Map; 3]> {
        let [small, medium, large] = Tier::ALL.map(|tier| cache_map(&self.ebpf, tier));
        Ok([small?, medium?, large?])
    }

    /// Bytes of kernel memory `tier`'s map takes, and the entries it holds at most.
    pub fn memory(&self, tier: Tier) -> Result<(u64, u32)> {
        let data = cache_data(&self.ebpf, tier)?;
        Ok((memlock(data)?, data.info()?.max_entries()))
    }

    /// Answers queries to `addr`.
    pub fn serve(&mut self, addr: SocketAddr) -> Result<()> {
        self.serve_with(addr, SERVED_ANSWER)
    }

    /// Puts `addr` in SERVED with these `SERVED_*` bits.
    pub fn serve_with(&mut self, addr: SocketAddr, bits: u8) -> Result<()> {
        self.served()?.insert(served_key(addr), bits, 0)?;
        Ok(())
    }

    /// Stops answering queries to `addr`, as soon as each CPU's memo of SERVED lets go of it.
    pub fn unserve(&mut self, addr: SocketAddr) -> Result<()> {
        self.served()?.remove(&served_key(addr))?;
        Ok(())
    }

    /// The cache key of `key` under this load's hash key.
    pub fn cache_key(&self, key: &QuestionKey) -> CacheKey {
        key.cache_key(&self.hash_key)
    }

    /// Inserts `entry` as the daemon does: in the smallest tier it fits, its key removed from
    /// the others.
    pub fn insert(&mut self, key: &QuestionKey, entry: &CacheEntry) -> Result<()> {
        self.insert_at(&self.cache_key(key), entry)
    }

    /// `insert` under any key, whether or not it is its name's.
    pub fn insert_at(&mut self, key: &CacheKey, entry: &CacheEntry) -> Result<()> {
        let tier = entry.tier().context("an entry too big for any tier")?;
        self.insert_in(tier, key, entry)?;
        for other in Tier::ALL.into_iter().filter(|&t| t != tier) {
            self.tiers[other.index()].remove(key)?;
        }
        Ok(())
    }

    /// Inserts `entry` under `key` in `tier`, which it must fit, whatever the other tiers
    /// hold.
    pub fn insert_in(&mut self, tier: Tier, key: &CacheKey, entry: &CacheEntry) -> Result<()> {
        // As the daemon does: the entry carries the key it is stored under.
        let entry = CacheEntry {
            key: *key,
            ..*entry
        };
        self.tiers[tier.index()].insert(key, &entry, false)?;
        Ok(())
    }

    /// Makes an entry of `response` as the daemon does, stamped now, and inserts it.
    pub fn insert_response(&mut self, response: &[u8]) -> Result<(QuestionKey, CacheEntry)> {
        let (key, entry) = entry_from(response, u32::MAX)?;
        self.insert(&key, &entry)?;
        Ok((key, entry))
    }

    /// The entry for `key` and its tier: the first tier that holds the key, where the program
    /// finds it.
    pub fn find(&self, key: &QuestionKey) -> Result<Option<(Tier, CacheEntry)>> {
        let key = self.cache_key(key);
        for tier in &self.tiers {
            if let Some(entry) = tier.get(&key)? {
                return Ok(Some((tier.tier(), entry)));
            }
        }
        Ok(None)
    }

    pub fn entry(&self, key: &QuestionKey) -> Result<Option<CacheEntry>> {
        Ok(self.find(key)?.map(|(_, entry)| entry))
    }

    /// Every tier that holds `key`.
    pub fn tiers_holding(&self, key: &QuestionKey) -> Result<Vec<Tier>> {
        let key = self.cache_key(key);
        let mut holding = Vec::new();
        for tier in &self.tiers {
            if tier.get(&key)?.is_some() {
                holding.push(tier.tier());
            }
        }
        Ok(holding)
    }

    /// The events the program reported since the last call.
    pub fn events(&mut self) -> Result<Vec<Event>> {
        let map = self.ebpf.map_mut(MAP_EVENTS).context("no EVENTS map")?;
        let mut ring = RingBuf::try_from(map)?;
        let mut events = Vec::new();
        while let Some(item) = ring.next() {
            ensure!(
                item.len() == size_of::<Event>(),
                "event of {} bytes",
                item.len()
            );
            events.push(bytemuck::pod_read_unaligned(&item));
        }
        Ok(events)
    }
}

fn served_key(addr: SocketAddr) -> ServedKey {
    match addr.ip() {
        IpAddr::V4(a) => ServedKey::v4(a.octets(), addr.port()),
        IpAddr::V6(a) => ServedKey::new(a.octets(), addr.port()),
    }
}
