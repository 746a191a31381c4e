//! The XDP program's cache as the daemon sees it: filling it, and (for operators) reading and
//! emptying it.

use std::{
    os::fd::AsFd as _,
    sync::{Mutex, MutexGuard},
};

use anyhow::Context as _;
use aya::maps::{HashMap, IterableMap as _, MapData, MapError};
use dnsxdp_common::{CacheEntry, CacheKey, hash::HashKey, name::QuestionKey};
use tracing::warn;

use serde::{Deserialize, Serialize};

use super::batch;

/// The flags of a map update that replaces an existing key, and of one that does not.
const BPF_ANY: u64 = 0;
const BPF_NOEXIST: u64 = 1;

/// How a kernel cache write treats an existing entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    Replace,
    /// The entry already there (and its hit count) is kept.
    IfAbsent,
}

/// A live entry of the kernel cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelEntry {
    pub question: QuestionKey,
    /// Whole seconds of TTL its answers have left.
    pub remaining_secs: u64,
    /// Answers the XDP program sent from it.
    pub hits: u64,
    pub rcode: u8,
}

impl KernelEntry {
    /// The entry stored under `key`, or `None` if it has expired at `now_ns`.
    fn of(key: &CacheKey, entry: &CacheEntry, now_ns: u64) -> Option<KernelEntry> {
        Some(KernelEntry {
            question: QuestionKey::of_entry(key, entry),
            remaining_secs: entry.remaining_secs(now_ns)?,
            hits: entry.hits,
            rcode: entry.rcode,
        })
    }
}

/// The map, and what the daemon did to it: the kernel does not count its LRU evictions, so
/// they are derived from these and the occupancy (`evictions`).
struct Map {
    map: HashMap<MapData, CacheKey, CacheEntry>,
    /// Keys the daemon added that were not in the map.
    added: u64,
    /// Entries the daemon deleted.
    deleted: u64,
}

impl Map {
    /// Deletes `key`; false if it was not there.
    fn delete(&mut self, key: &CacheKey) -> anyhow::Result<bool> {
        match self.map.remove(key) {
            Ok(()) => {
                self.deleted += 1;
                Ok(true)
            }
            Err(e) if is_errno(&e, libc::ENOENT) => Ok(false),
            Err(e) => Err(e).context("deleting from the kernel cache"),
        }
    }

    /// Deletes each of `keys`; returns how many were there.
    fn delete_all(&mut self, keys: &[CacheKey]) -> anyhow::Result<u64> {
        let mut deleted = 0;
        for key in keys {
            deleted += u64::from(self.delete(key)?);
        }
        Ok(deleted)
    }
}

/// The `CACHE` map and the key its names are hashed with.
pub struct KernelCache {
    map: Mutex<Map>,
    /// A second handle on the same map, for walks through it: they take long on a full map,
    /// and the daemon's fills should not wait for them.
    reader: HashMap<MapData, CacheKey, CacheEntry>,
    /// The key of the program's name hash.
    hash_key: HashKey,
}

impl KernelCache {
    pub fn new(
        map: HashMap<MapData, CacheKey, CacheEntry>,
        hash_key: HashKey,
    ) -> anyhow::Result<KernelCache> {
        // The map is new: entries kept from the last run are put in through `insert`, so they
        // are counted as added like any other.
        // A duplicate of the descriptor: opening the map again by id would need CAP_SYS_ADMIN,
        // which the service does not have.
        let fd = map
            .map()
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating the kernel cache's descriptor")?;
        let reader = MapData::from_fd(fd)
            .map(aya::maps::Map::LruHashMap)
            .and_then(HashMap::try_from)
            .context("opening the kernel cache again")?;
        Ok(KernelCache {
            map: Mutex::new(Map {
                map,
                added: 0,
                deleted: 0,
            }),
            reader,
            hash_key,
        })
    }

    /// Every write goes through this lock, so that the counts of entries added and deleted
    /// are those of the writes done: the kernel evicts only when an entry is written.
    fn lock(&self) -> MutexGuard<'_, Map> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores an answer for the XDP program to serve, if `current()`, asked while no other
    /// write can happen, says it still may be.
    pub fn insert(
        &self,
        key: QuestionKey,
        entry: CacheEntry,
        fill: Fill,
        current: impl FnOnce() -> bool,
    ) {
        let key = key.cache_key(&self.hash_key);
        let entry = CacheEntry { key, ..entry };
        let mut m = self.lock();
        if !current() {
            return;
        }
        // Written only if new first, to count the keys added.
        let written = match m.map.insert(key, entry, BPF_NOEXIST) {
            Ok(()) => {
                m.added += 1;
                Ok(())
            }
            Err(e) if is_errno(&e, libc::EEXIST) => match fill {
                Fill::IfAbsent => Ok(()),
                Fill::Replace => m.map.insert(key, entry, BPF_ANY),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            warn!("writing the kernel cache failed: {e}");
        }
    }

    /// Every entry not expired at `now_ns`, in no particular order.
    pub fn entries(&self, now_ns: u64) -> anyhow::Result<Vec<KernelEntry>> {
        let mut live = Vec::new();
        self.walk(|key, entry| live.extend(KernelEntry::of(key, entry, now_ns)))?;
        Ok(live)
    }

    /// Calls `f` with every entry, expired ones included.
    fn walk(&self, f: impl FnMut(&CacheKey, &CacheEntry)) -> anyhow::Result<()> {
        batch::for_each(self.reader.map().fd().as_fd(), f).context("reading the kernel cache")
    }

    /// The live entry for `question`, if there is one.
    pub fn get(&self, question: &QuestionKey, now_ns: u64) -> anyhow::Result<Option<KernelEntry>> {
        let key = question.cache_key(&self.hash_key);
        match self.reader.get(&key, 0) {
            Ok(entry) => {
                Ok(KernelEntry::of(&key, &entry, now_ns).filter(|e| e.question == *question))
            }
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e).context("reading the kernel cache"),
        }
    }

    /// Deletes the entry for `question`; false if there was none.
    pub fn remove(&self, question: &QuestionKey) -> anyhow::Result<bool> {
        self.lock().delete(&question.cache_key(&self.hash_key))
    }

    /// Deletes every entry, expired or not, whose question `select` picks; returns how many.
    pub fn remove_where(&self, select: impl Fn(&QuestionKey) -> bool) -> anyhow::Result<u64> {
        let mut doomed = Vec::new();
        // Collected first: deleting during the walk could make it skip entries.
        self.walk(|key, entry| {
            if select(&QuestionKey::of_entry(key, entry)) {
                doomed.push(*key);
            }
        })?;
        self.lock().delete_all(&doomed)
    }

    /// Deletes every entry; returns how many there were.
    pub fn clear(&self) -> anyhow::Result<u64> {
        let keys = self
            .reader
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .context("reading the kernel cache")?;
        self.lock().delete_all(&keys)
    }

    /// How full the map is at `now_ns`, and how many entries the kernel evicted. Reads every
    /// entry; fills during the walk can make it count a few evictions too few.
    pub fn size(&self, now_ns: u64) -> anyhow::Result<CacheSize> {
        let (added, deleted) = {
            let m = self.lock();
            (m.added, m.deleted)
        };
        let (mut entries, mut occupancy) = (0, 0);
        self.walk(|_, entry| {
            occupancy += 1;
            entries += u64::from(entry.remaining_secs(now_ns).is_some());
        })?;
        let info = self
            .reader
            .map()
            .info()
            .context("reading the kernel cache's size")?;
        Ok(CacheSize {
            entries,
            occupancy,
            capacity: info.max_entries().into(),
            evictions: evictions(added, deleted, occupancy),
        })
    }
}

/// Entries the kernel evicted: every entry the daemon `added` is still there, was `deleted` by
/// the daemon, or was evicted.
fn evictions(added: u64, deleted: u64, occupancy: u64) -> u64 {
    added.saturating_sub(deleted + occupancy)
}

fn is_errno(e: &MapError, errno: i32) -> bool {
    matches!(e, MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(errno))
}

/// How full one cache layer is and how much it evicted.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheSize {
    /// Answers it would serve now: unexpired.
    pub entries: u64,
    /// Answers it holds, expired ones not yet removed included.
    pub occupancy: u64,
    pub capacity: u64,
    /// Answers pushed out to make room for others since the daemon started.
    pub evictions: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evictions_are_what_neither_stayed_nor_was_deleted() {
        // 10 added to an empty map, 3 flushed, 5 left: 2 evicted.
        assert_eq!(evictions(10, 3, 5), 2);
        // 64 kept from the last run and 10 more added to a map of 64.
        assert_eq!(evictions(74, 0, 64), 10);
        // Entries written by another process make it short, never below zero.
        assert_eq!(evictions(0, 0, 3), 0);
    }
}
