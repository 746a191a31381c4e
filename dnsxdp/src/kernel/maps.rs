//! The maps the daemon shares with the running program: its cache, its counters, and SERVED,
//! the addresses and ports it answers on, kept in line with the host's addresses.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::Mutex,
};

use anyhow::{Context as _, bail};
use aya::maps::{HashMap, MapData, PerCpuArray};
use dnsxdp_common::{Counter, SERVED_ANSWER, SERVED_BEHIND_VLAN, ServedKey};
use tracing::debug;

use super::{cache::KernelCache, local_addrs::local_addrs_by_iface, stacked};

/// The maps the daemon writes and reads while the program runs.
pub struct XdpMaps {
    pub cache: KernelCache,
    pub(super) counters: PerCpuArray<MapData, u64>,
    /// Hits for blocked names by client group.
    pub(super) group_blocked: PerCpuArray<MapData, u64>,
    pub(super) served: Mutex<HashMap<MapData, ServedKey, u8>>,
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

    /// Hits for blocked names of each of the first `groups` client groups, summed over CPUs.
    pub fn group_blocked(&self, groups: u8) -> anyhow::Result<Vec<u64>> {
        (0..u32::from(groups))
            .map(|g| {
                let per_cpu = (self.group_blocked.get(&g, 0)).context("reading GROUP_BLOCKED")?;
                Ok(per_cpu.iter().sum())
            })
            .collect()
    }

    /// What SERVED holds, IPv4 addresses unmapped.
    pub fn served(&self) -> anyhow::Result<Vec<SocketAddr>> {
        let served = self.served.lock().unwrap_or_else(|p| p.into_inner());
        let keys = served.keys().map(|k| k.map(|k| socket_addr(&k)));
        keys.collect::<Result<_, _>>().context("reading SERVED")
    }

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
}
