//! Filling and reading the program's maps as the daemon does: the addresses it serves
//! (SERVED), its answers (CACHE) and what it reports (EVENTS).

use std::{
    net::{IpAddr, SocketAddr},
    os::fd::AsFd as _,
};

use anyhow::{Context as _, Result, bail, ensure};
use aya::maps::{HashMap, Map, MapData, MapError, RingBuf};
use dnsxdp_common::{
    CacheEntry, CacheKey, Event, MAP_CACHE, MAP_EVENTS, MAP_SERVED, SERVED_ANSWER, ServedKey,
    name::QuestionKey,
};

use super::{program::XdpCache, response::entry_from};

impl XdpCache {
    fn served(&mut self) -> Result<HashMap<&mut MapData, ServedKey, u8>> {
        let map = self.ebpf.map_mut(MAP_SERVED).context("no SERVED map")?;
        Ok(HashMap::try_from(map)?)
    }

    fn cache(&mut self) -> Result<HashMap<&mut MapData, CacheKey, CacheEntry>> {
        let map = self.ebpf.map_mut(MAP_CACHE).context("no CACHE map")?;
        Ok(HashMap::try_from(map)?)
    }

    /// A handle of its own on the cache map, for another thread to write while this one runs
    /// the program.
    pub fn cache_handle(&mut self) -> Result<HashMap<MapData, CacheKey, CacheEntry>> {
        let map = self.ebpf.map(MAP_CACHE).context("no CACHE map")?;
        let Map::LruHashMap(data) = map else {
            bail!("CACHE is not an LRU hash map");
        };
        let fd = data.fd().as_fd().try_clone_to_owned()?;
        let data = MapData::from_fd(fd)?;
        Ok(HashMap::try_from(Map::LruHashMap(data))?)
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

    /// The `CACHE` key of `key` under this load's hash key.
    pub fn cache_key(&self, key: &QuestionKey) -> CacheKey {
        key.cache_key(&self.hash_key)
    }

    pub fn insert(&mut self, key: &QuestionKey, entry: &CacheEntry) -> Result<()> {
        self.insert_at(&self.cache_key(key), entry)
    }

    /// Inserts `entry` under any key, whether or not it is its name's.
    pub fn insert_at(&mut self, key: &CacheKey, entry: &CacheEntry) -> Result<()> {
        // As the daemon does: the entry carries the key it is stored under.
        let entry = CacheEntry {
            key: *key,
            ..*entry
        };
        self.cache()?.insert(key, entry, 0)?;
        Ok(())
    }

    /// Makes an entry of `response` as the daemon does, stamped now, and inserts it.
    pub fn insert_response(&mut self, response: &[u8]) -> Result<(QuestionKey, CacheEntry)> {
        let (key, entry) = entry_from(response, u32::MAX)?;
        self.insert(&key, &entry)?;
        Ok((key, entry))
    }

    pub fn entry(&mut self, key: &QuestionKey) -> Result<Option<CacheEntry>> {
        let key = self.cache_key(key);
        match self.cache()?.get(&key, 0) {
            Ok(e) => Ok(Some(e)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
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
