//! One tier's map of the kernel cache, its entries read and written at the largest size, so
//! that the rest of the daemon handles one type whatever the tier.

use std::os::fd::AsFd as _;

use anyhow::{Context as _, bail};
use aya::{
    maps::{HashMap, Map, MapData, MapError},
    sys::SyscallError,
};
use dnsxdp_common::{
    CacheEntry, CacheKey,
    tier::{LARGE_DATA, MEDIUM_DATA, SMALL_DATA, Tier},
};

use super::batch;

/// The flags of a map update that replaces an existing key, and of one that does not.
const BPF_ANY: u64 = 0;
const BPF_NOEXIST: u64 = 1;

/// Entries of a tier's map, with the entries at the largest size.
pub type Entries<'a> = Box<dyn Iterator<Item = Result<(CacheKey, CacheEntry), MapError>> + 'a>;

/// A tier's map.
pub trait TierMap: Send + Sync {
    fn tier(&self) -> Tier;

    /// The entry under `key`, if there is one (and it holds no more than its tier does, as
    /// every entry the daemon writes).
    fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>, MapError>;

    /// Writes `entry`, which must fit the tier, under `key`; only if `key` is new when
    /// `only_new`. False if it was not written because `key` was there: no error is built for
    /// that, as a fill of what is already cached is common.
    fn insert(
        &mut self,
        key: &CacheKey,
        entry: &CacheEntry,
        only_new: bool,
    ) -> anyhow::Result<bool>;

    /// Deletes `key`; false if it was not there.
    fn remove(&mut self, key: &CacheKey) -> Result<bool, MapError>;

    /// Every entry, in no particular order, but those that claim more than their tier holds.
    fn entries(&self) -> Entries<'_>;

    fn keys(&self) -> Box<dyn Iterator<Item = Result<CacheKey, MapError>> + '_>;

    /// The entries the map holds at most.
    fn capacity(&self) -> Result<u32, MapError>;

    /// Another handle on the same map.
    fn duplicate(&self) -> anyhow::Result<Box<dyn TierMap>>;
}

/// `map`, which must be `tier`'s.
pub fn open(tier: Tier, map: Map) -> anyhow::Result<Box<dyn TierMap>> {
    fn sized<const N: usize>(tier: Tier, map: Map) -> anyhow::Result<Box<dyn TierMap>>
    where
        CacheEntry<N>: aya::Pod,
        SizedMap<N>: TierMap,
    {
        let map = HashMap::try_from(map).with_context(|| format!("the {} map", tier.map()))?;
        Ok(Box::new(SizedMap { tier, map }))
    }
    match tier {
        Tier::Small => sized::<SMALL_DATA>(tier, map),
        Tier::Medium => sized::<MEDIUM_DATA>(tier, map),
        Tier::Large => sized::<LARGE_DATA>(tier, map),
    }
}

/// The map of the tier whose entries hold `N` bytes of name and records.
struct SizedMap<const N: usize> {
    tier: Tier,
    map: HashMap<MapData, CacheKey, CacheEntry<N>>,
}

impl<const N: usize> TierMap for SizedMap<N>
where
    CacheEntry<N>: aya::Pod + bytemuck::Pod,
{
    fn tier(&self) -> Tier {
        self.tier
    }

    fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>, MapError> {
        match self.map.get(key, 0) {
            Ok(entry) => Ok(entry.resized::<LARGE_DATA>()),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn insert(
        &mut self,
        key: &CacheKey,
        entry: &CacheEntry,
        only_new: bool,
    ) -> anyhow::Result<bool> {
        let Some(sized) = entry.resized::<N>() else {
            bail!(
                "an entry of {} bytes in the {} tier",
                entry.data_len(),
                self.tier.name()
            );
        };
        match self
            .map
            .insert(key, sized, if only_new { BPF_NOEXIST } else { BPF_ANY })
        {
            Ok(()) => Ok(true),
            Err(e) if only_new && is_errno(&e, libc::EEXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn remove(&mut self, key: &CacheKey) -> Result<bool, MapError> {
        match self.map.remove(key) {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn entries(&self) -> Entries<'_> {
        let read = batch::entries::<CacheKey, CacheEntry<N>>(self.map_data().fd().as_fd());
        Box::new(read.filter_map(|item| match item {
            Ok((key, entry)) => entry.resized::<LARGE_DATA>().map(|entry| Ok((key, entry))),
            Err(io_error) => Some(Err(MapError::SyscallError(SyscallError {
                call: "bpf_map_lookup_batch",
                io_error,
            }))),
        }))
    }

    fn keys(&self) -> Box<dyn Iterator<Item = Result<CacheKey, MapError>> + '_> {
        Box::new(self.map.keys())
    }

    fn capacity(&self) -> Result<u32, MapError> {
        Ok(self.map_data().info()?.max_entries())
    }

    fn duplicate(&self) -> anyhow::Result<Box<dyn TierMap>> {
        // A duplicate of the descriptor: opening the map again by id would need
        // CAP_SYS_ADMIN, which the service does not have.
        let fd = self.map_data().fd().as_fd().try_clone_to_owned()?;
        open(self.tier, Map::LruHashMap(MapData::from_fd(fd)?))
    }
}

impl<const N: usize> SizedMap<N>
where
    CacheEntry<N>: aya::Pod,
{
    fn map_data(&self) -> &MapData {
        use aya::maps::IterableMap as _;
        self.map.map()
    }
}

fn is_errno(e: &MapError, errno: i32) -> bool {
    matches!(e, MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(errno))
}
