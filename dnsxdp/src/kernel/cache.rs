//! The XDP program's cache as the daemon sees it: filling it, and (for operators) reading and
//! emptying it.

use std::{
    collections::HashSet,
    sync::{Mutex, MutexGuard},
};

use anyhow::Context as _;
use aya::maps::Map;
use dnsxdp_common::{CacheEntry, CacheKey, hash::HashKey, name::QuestionKey, tier::Tier};
use tracing::warn;

use serde::{Deserialize, Serialize};

use super::tier_map::{self, TierMap};

/// How a kernel cache write treats an existing entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    Replace,
    /// The entry already there (and its hit count) is kept, whatever its tier.
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

/// The tiers' maps, and what the daemon did to them: the kernel does not count its LRU
/// evictions, so they are derived from these and the occupancy (`evictions`).
struct Maps {
    /// In `Tier::ALL` order.
    tiers: Vec<Box<dyn TierMap>>,
    /// Keys the daemon added to a tier that did not hold them.
    added: u64,
    /// Entries the daemon deleted.
    deleted: u64,
    /// Every key that may be in a tier but the smallest: those written to one, and not since
    /// to the smallest. The kernel's evictions only take keys away, so a key not here is in
    /// no other tier, and a write of it to the smallest, most writes, deletes nothing.
    beyond_small: HashSet<CacheKey>,
    /// Past this many keys in `beyond_small`, it is read again from the maps.
    beyond_small_limit: usize,
}

impl Maps {
    /// The tiers `key` may be in besides `at`.
    fn others(&self, at: usize, key: &CacheKey) -> Vec<usize> {
        let maybe_beyond = self.beyond_small.contains(key);
        (0..self.tiers.len())
            .filter(|&i| i != at && (i == SMALL || maybe_beyond))
            .collect()
    }

    /// Notes that `key` was written to tier `at` and taken out of the others.
    fn written(&mut self, at: usize, key: &CacheKey) -> anyhow::Result<()> {
        if at == SMALL {
            self.beyond_small.remove(key);
            return Ok(());
        }
        self.beyond_small.insert(*key);
        if self.beyond_small.len() > self.beyond_small_limit {
            let mut held = HashSet::new();
            for tier in &self.tiers[SMALL + 1..] {
                for item in tier.entries() {
                    held.insert(item.context("reading the kernel cache")?.0);
                }
            }
            self.beyond_small = held;
        }
        Ok(())
    }

    /// Deletes `key` from tier `at`; false if it was not there.
    fn delete(&mut self, at: usize, key: &CacheKey) -> anyhow::Result<bool> {
        let deleted = self.tiers[at]
            .remove(key)
            .context("deleting from the kernel cache")?;
        self.deleted += u64::from(deleted);
        Ok(deleted)
    }

    /// Deletes each of `keys` from the tier it was found in; returns how many were there.
    fn delete_all(&mut self, keys: &[(usize, CacheKey)]) -> anyhow::Result<u64> {
        let mut deleted = 0;
        for (at, key) in keys {
            deleted += u64::from(self.delete(*at, key)?);
        }
        Ok(deleted)
    }

    /// Writes `entry` to tier `at`, as `fill` says; true if it was written.
    fn write(
        &mut self,
        at: usize,
        key: &CacheKey,
        entry: &CacheEntry,
        fill: Fill,
    ) -> anyhow::Result<bool> {
        // Written only if new first, to count the keys added.
        let tier = &mut self.tiers[at];
        if tier.insert(key, entry, true)? {
            self.added += 1;
            return Ok(true);
        }
        match fill {
            Fill::IfAbsent => Ok(false),
            Fill::Replace => tier.insert(key, entry, false),
        }
    }
}

/// The index of the smallest tier, which the XDP program looks in first.
const SMALL: usize = Tier::Small.index();

/// The kernel cache's maps, one per tier, and the key its names are hashed with.
pub struct KernelCache {
    maps: Mutex<Maps>,
    /// Second handles on the same maps, for walks through them: they take long on a full map,
    /// and the daemon's fills should not wait for them.
    readers: Vec<Box<dyn TierMap>>,
    /// The key of the program's name hash.
    hash_key: HashKey,
}

impl KernelCache {
    /// The cache of the tiers' `maps`, in `Tier::ALL` order.
    pub fn new(maps: [Map; Tier::ALL.len()], hash_key: HashKey) -> anyhow::Result<KernelCache> {
        // The maps are new: entries kept from the last run are put in through `insert`, so
        // they are counted as added like any other.
        let mut tiers = Vec::new();
        let mut readers = Vec::new();
        let mut beyond_small_limit = 0;
        for (tier, map) in Tier::ALL.into_iter().zip(maps) {
            let map = tier_map::open(tier, map)?;
            readers.push(map.duplicate().context("opening the kernel cache again")?);
            if tier != Tier::Small {
                let capacity = map.capacity().context("reading the kernel cache's size")?;
                beyond_small_limit += 2 * capacity as usize;
            }
            tiers.push(map);
        }
        Ok(KernelCache {
            maps: Mutex::new(Maps {
                tiers,
                added: 0,
                deleted: 0,
                beyond_small: HashSet::new(),
                beyond_small_limit,
            }),
            readers,
            hash_key,
        })
    }

    /// Every write goes through this lock, so that the counts of entries added and deleted
    /// are those of the writes done: the kernel evicts only when an entry is written.
    fn lock(&self) -> MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores an answer for the XDP program to serve, if `current()`, asked while no other
    /// write can happen, says it still may be: in the smallest tier it fits, and in no other,
    /// lest the program find an older answer of another size first.
    pub fn insert(
        &self,
        key: QuestionKey,
        entry: CacheEntry,
        fill: Fill,
        current: impl FnOnce() -> bool,
    ) {
        let key = key.cache_key(&self.hash_key);
        let entry = CacheEntry { key, ..entry };
        let Some(tier) = entry.tier() else {
            warn!(
                "an entry of {} bytes is too big for the kernel cache",
                entry.data_len()
            );
            return;
        };
        let mut m = self.lock();
        if !current() {
            return;
        }
        if let Err(e) = self.store(&mut m, tier.index(), &key, &entry, fill) {
            warn!("writing the kernel cache failed: {e:#}");
        }
    }

    /// Writes `entry` to tier `at` as `fill` says, then takes its key out of the other tiers.
    fn store(
        &self,
        m: &mut Maps,
        at: usize,
        key: &CacheKey,
        entry: &CacheEntry,
        fill: Fill,
    ) -> anyhow::Result<()> {
        let others = m.others(at, key);
        if fill == Fill::IfAbsent && self.held_in(&others, key)? {
            return Ok(());
        }
        if m.write(at, key, entry, fill)? {
            for &other in &others {
                m.delete(other, key)?;
            }
            m.written(at, key)?;
        }
        Ok(())
    }

    /// Whether one of the tiers `at` holds `key`.
    fn held_in(&self, at: &[usize], key: &CacheKey) -> anyhow::Result<bool> {
        for &i in at {
            if self.readers[i]
                .get(key)
                .context("reading the kernel cache")?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Every entry not expired at `now_ns`, in no particular order.
    pub fn entries(&self, now_ns: u64) -> anyhow::Result<Vec<KernelEntry>> {
        let mut live = Vec::new();
        for tier in &self.readers {
            for item in tier.entries() {
                let (key, entry) = item.context("reading the kernel cache")?;
                live.extend(KernelEntry::of(&key, &entry, now_ns));
            }
        }
        Ok(live)
    }

    /// The live entry for `question`, if there is one: from the first tier that holds its
    /// key, as the XDP program finds it.
    pub fn get(&self, question: &QuestionKey, now_ns: u64) -> anyhow::Result<Option<KernelEntry>> {
        let key = question.cache_key(&self.hash_key);
        for tier in &self.readers {
            if let Some(entry) = tier.get(&key).context("reading the kernel cache")? {
                return Ok(
                    KernelEntry::of(&key, &entry, now_ns).filter(|e| e.question == *question)
                );
            }
        }
        Ok(None)
    }

    /// Deletes the entry for `question`; false if there was none.
    pub fn remove(&self, question: &QuestionKey) -> anyhow::Result<bool> {
        let key = question.cache_key(&self.hash_key);
        let mut m = self.lock();
        let mut removed = false;
        for at in 0..m.tiers.len() {
            removed |= m.delete(at, &key)?;
        }
        Ok(removed)
    }

    /// Deletes every entry, expired or not, whose question `select` picks; returns how many.
    pub fn remove_where(&self, select: impl Fn(&QuestionKey) -> bool) -> anyhow::Result<u64> {
        let mut doomed = Vec::new();
        // Collected first: deleting the key an iteration stands on makes it start over.
        for (at, tier) in self.readers.iter().enumerate() {
            for item in tier.entries() {
                let (key, entry) = item.context("reading the kernel cache")?;
                if select(&QuestionKey::of_entry(&key, &entry)) {
                    doomed.push((at, key));
                }
            }
        }
        self.lock().delete_all(&doomed)
    }

    /// Deletes every entry; returns how many there were.
    pub fn clear(&self) -> anyhow::Result<u64> {
        let mut keys = Vec::new();
        for (at, tier) in self.readers.iter().enumerate() {
            for key in tier.keys() {
                keys.push((at, key.context("reading the kernel cache")?));
            }
        }
        self.lock().delete_all(&keys)
    }

    /// How full the tiers are together at `now_ns`, and how many entries the kernel evicted.
    /// Reads every entry; fills during the walk can make it count a few evictions too few.
    pub fn size(&self, now_ns: u64) -> anyhow::Result<CacheSize> {
        let (added, deleted) = {
            let m = self.lock();
            (m.added, m.deleted)
        };
        let (mut entries, mut occupancy, mut capacity) = (0, 0, 0);
        for tier in &self.readers {
            for item in tier.entries() {
                let (_, entry) = item.context("reading the kernel cache")?;
                occupancy += 1;
                entries += u64::from(entry.remaining_secs(now_ns).is_some());
            }
            capacity += u64::from(tier.capacity().context("reading the kernel cache's size")?);
        }
        Ok(CacheSize {
            entries,
            occupancy,
            capacity,
            evictions: evictions(added, deleted, occupancy),
        })
    }
}

/// Entries the kernel evicted: every entry the daemon `added` is still there, was `deleted` by
/// the daemon, or was evicted.
fn evictions(added: u64, deleted: u64, occupancy: u64) -> u64 {
    added.saturating_sub(deleted + occupancy)
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
