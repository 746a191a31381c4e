//! The program's counters, read per CPU and summed.

use anyhow::{Context as _, Result};
use aya::maps::{MapData, PerCpuArray};
use dnsxdp_common::{COUNTER_COUNT, Counter, MAP_COUNTERS};

use super::program::XdpCache;

/// The counters summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub [u64; COUNTER_COUNT as usize]);

impl Counters {
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }

    /// `self - before`, counter by counter.
    pub fn since(&self, before: &Counters) -> Counters {
        let mut d = [0; COUNTER_COUNT as usize];
        for (i, v) in d.iter_mut().enumerate() {
            *v = self.0[i] - before.0[i];
        }
        Counters(d)
    }

    /// The counters that are not zero, for assertion messages and comparisons.
    pub fn nonzero(&self) -> Vec<(Counter, u64)> {
        Counter::ALL
            .iter()
            .map(|&c| (c, self.get(c)))
            .filter(|&(_, v)| v != 0)
            .collect()
    }
}

impl XdpCache {
    pub fn counters(&self) -> Result<Counters> {
        let map = self.ebpf.map(MAP_COUNTERS).context("no COUNTERS map")?;
        let array: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map)?;
        let mut c = Counters::default();
        for (i, v) in c.0.iter_mut().enumerate() {
            *v = array.get(&(i as u32), 0)?.iter().sum();
        }
        Ok(c)
    }
}
