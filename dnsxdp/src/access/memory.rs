//! The access tables kept in the daemon when no XDP program is loaded (`--no-xdp`): the same
//! lookups as the kernel's maps, over a hash map per prefix length and an LRU bucket table.

use std::{
    collections::HashMap,
    num::NonZeroUsize,
    sync::{Mutex, RwLock},
};

use dnsxdp_common::acl::{ACL_ALLOW, AccessConfig, Bucket, RATE_ENTRIES, RateKey, prefix_mask};
use lru::LruCache;

use super::Tables;
use crate::access::acl::Cidr;

/// Trie entries of one prefix length: flags by masked address.
type Prefixes = HashMap<[u8; 16], u8>;

pub struct MemoryTables {
    acl: MemoryAcl,
    rate: Mutex<LruCache<RateKey, Bucket>>,
}

/// The ACL's entries by prefix length, longest first: the longest-prefix match of the kernel's
/// trie without a system call. The kernel tables keep one as the copy they read.
#[derive(Default)]
pub struct MemoryAcl(RwLock<Vec<(u32, Prefixes)>>);

impl MemoryAcl {
    /// The flags of the longest prefix covering `addr`; no rule, no restriction.
    pub fn rule(&self, addr: [u8; 16]) -> u8 {
        let acl = self.0.read().unwrap_or_else(|p| p.into_inner());
        for (len, rules) in acl.iter() {
            let mut prefix = addr;
            for (b, m) in prefix.iter_mut().zip(prefix_mask(*len)) {
                *b &= m;
            }
            if let Some(&flags) = rules.get(&prefix) {
                return flags;
            }
        }
        ACL_ALLOW
    }

    /// Replaces every entry with `entries`.
    pub fn set(&self, entries: &[(Cidr, u8)]) {
        let mut by_len: Vec<(u32, Prefixes)> = Vec::new();
        for (cidr, flags) in entries {
            let (addr, len) = cidr.key();
            match by_len.iter_mut().find(|(l, _)| *l == len) {
                Some((_, rules)) => {
                    rules.insert(addr, *flags);
                }
                None => by_len.push((len, HashMap::from([(addr, *flags)]))),
            }
        }
        by_len.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = by_len;
    }
}

impl Default for MemoryTables {
    fn default() -> MemoryTables {
        let entries = NonZeroUsize::new(RATE_ENTRIES as usize).expect("not zero");
        MemoryTables {
            acl: MemoryAcl::default(),
            rate: Mutex::new(LruCache::new(entries)),
        }
    }
}

impl Tables for MemoryTables {
    fn rule(&self, addr: [u8; 16]) -> anyhow::Result<u8> {
        Ok(self.acl.rule(addr))
    }

    fn bucket(&self, key: &RateKey) -> anyhow::Result<Option<Bucket>> {
        let mut rate = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        Ok(rate.get(key).copied())
    }

    fn set_bucket(&self, key: &RateKey, bucket: &Bucket) -> anyhow::Result<()> {
        let mut rate = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        rate.put(*key, *bucket);
        Ok(())
    }

    fn buckets(&self) -> anyhow::Result<Vec<(RateKey, Bucket)>> {
        let rate = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        Ok(rate.iter().map(|(k, b)| (*k, *b)).collect())
    }

    fn apply(&self, entries: &[(Cidr, u8)], _config: &AccessConfig) -> anyhow::Result<()> {
        self.acl.set(entries);
        Ok(())
    }
}
