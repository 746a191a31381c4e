//! The XDP program's cache as the daemon sees it: filling it, and (for operators) reading and
//! emptying it.

use std::sync::Mutex;

use aya::maps::{HashMap, MapData, MapError};
use dnsxdp_common::{CacheEntry, CacheKey, hash::HashKey, name::QuestionKey};
use tracing::warn;

/// How a kernel cache write treats an existing entry (the BPF_ANY and BPF_NOEXIST flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    Replace = 0,
    IfAbsent = 1,
}

/// The `CACHE` map and the key its names are hashed with.
pub struct KernelCache {
    map: Mutex<HashMap<MapData, CacheKey, CacheEntry>>,
    /// The key of the program's name hash.
    hash_key: HashKey,
}

impl KernelCache {
    pub fn new(map: HashMap<MapData, CacheKey, CacheEntry>, hash_key: HashKey) -> KernelCache {
        KernelCache {
            map: Mutex::new(map),
            hash_key,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MapData, CacheKey, CacheEntry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores an answer for the XDP program to serve; with `Fill::IfAbsent` an entry already
    /// there (and its hit count) is kept.
    pub fn insert(&self, key: QuestionKey, entry: CacheEntry, fill: Fill) {
        let key = key.cache_key(&self.hash_key);
        match self.lock().insert(key, entry, fill as u64) {
            Ok(()) => {}
            Err(MapError::SyscallError(e))
                if fill == Fill::IfAbsent && e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => warn!("writing the kernel cache failed: {e}"),
        }
    }
}
