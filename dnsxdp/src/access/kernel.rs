//! The access maps of the loaded XDP program, which the daemon shares with it.

use std::{
    collections::HashSet,
    sync::{Mutex, RwLock},
};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, MapData, MapError, lpm_trie::Key},
};
use dnsxdp_common::acl::{AccessConfig, Bucket, MAP_ACCESS, MAP_ACL, MAP_RATE, RateKey};

use super::{Tables, memory::MemoryAcl};
use crate::access::acl::Cidr;

pub struct KernelTables {
    acl: RwLock<LpmTrie<MapData, [u8; 16], u8>>,
    /// What `apply` wrote to `acl`, which only it writes: read instead of the trie, a system
    /// call per query less.
    acl_copy: MemoryAcl,
    config: Mutex<Array<MapData, AccessConfig>>,
    rate: Mutex<HashMap<MapData, RateKey, Bucket>>,
}

impl KernelTables {
    /// Takes the access maps out of a loaded object.
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<KernelTables> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| anyhow!("the eBPF object has no {name} map"))
        };
        Ok(KernelTables {
            acl: RwLock::new(LpmTrie::try_from(take(MAP_ACL)?).context(MAP_ACL)?),
            acl_copy: MemoryAcl::default(),
            config: Mutex::new(Array::try_from(take(MAP_ACCESS)?).context(MAP_ACCESS)?),
            rate: Mutex::new(HashMap::try_from(take(MAP_RATE)?).context(MAP_RATE)?),
        })
    }
}

impl Tables for KernelTables {
    fn rule(&self, addr: [u8; 16]) -> anyhow::Result<u8> {
        Ok(self.acl_copy.rule(addr))
    }

    fn bucket(&self, key: &RateKey) -> anyhow::Result<Option<Bucket>> {
        let rate = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        match rate.get(key, 0) {
            Ok(b) => Ok(Some(b)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e).context("reading a rate limit bucket"),
        }
    }

    fn set_bucket(&self, key: &RateKey, bucket: &Bucket) -> anyhow::Result<()> {
        let mut rate = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        rate.insert(key, bucket, 0)
            .context("writing a rate limit bucket")
    }

    fn buckets(&self) -> anyhow::Result<Vec<(RateKey, Bucket)>> {
        let rate = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        // Entries the kernel evicts while we walk the table are skipped.
        rate.iter()
            .filter_map(|entry| match entry {
                Err(MapError::KeyNotFound) => None,
                other => Some(other),
            })
            .collect::<Result<_, _>>()
            .context("reading the rate limit table")
    }

    /// Writes the new entries over the old ones, then removes the old ones no longer wanted:
    /// every address stays covered by either the old rule or the new one throughout.
    fn apply(&self, entries: &[(Cidr, u8)], config: &AccessConfig) -> anyhow::Result<()> {
        let mut acl = self.acl.write().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<Key<[u8; 16]>> = entries
            .iter()
            .map(|(cidr, _)| {
                let (addr, len) = cidr.key();
                Key::new(len, addr)
            })
            .collect();
        for (key, (cidr, flags)) in keys.iter().zip(entries) {
            acl.insert(key, flags, 0)
                .with_context(|| format!("writing the ACL rule for {cidr}"))?;
        }
        let wanted: HashSet<(u32, [u8; 16])> =
            keys.iter().map(|k| (k.prefix_len(), k.data())).collect();
        let stale: Vec<Key<[u8; 16]>> = acl
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .context("reading the ACL")?
            .into_iter()
            .filter(|old| !wanted.contains(&(old.prefix_len(), old.data())))
            .collect();
        for key in &stale {
            acl.remove(key).context("removing an old ACL rule")?;
        }
        self.acl_copy.set(entries);
        let mut array = self.config.lock().unwrap_or_else(|p| p.into_inner());
        array
            .set(0, config, 0)
            .context("writing the access settings")
    }
}
