//! Which UDP queries the XDP program has charged already, so that each is charged once.
//!
//! The program charges every UDP datagram to an address and port in SERVED that comes in on
//! its interfaces, fragments and extension headers included. A socket says which interface a
//! datagram came in on and to which address; the program saw it if that interface is one it is
//! attached to, or stacked only on those, and the address was in SERVED.

use std::net::SocketAddr;

use crate::kernel::{maps::XdpMaps, stacked};

/// What the XDP program sees, as of the daemon's latest look.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XdpPaths {
    /// The interfaces it is attached to and those stacked only on them (`stacked::covered`).
    pub ifaces: Vec<u32>,
    /// What SERVED holds, IPv4 addresses unmapped.
    pub served: Vec<SocketAddr>,
}

impl XdpPaths {
    /// What the program attached to `attached` sees, given the interfaces there are.
    pub fn of(maps: &XdpMaps, attached: &[u32], links: &[stacked::Link]) -> anyhow::Result<Self> {
        Ok(XdpPaths {
            ifaces: stacked::covered(links, attached),
            served: maps.served()?,
        })
    }

    /// Whether a UDP datagram that came in on `ifindex`, sent to `dest`, was charged.
    pub fn charged(&self, ifindex: u32, dest: SocketAddr) -> bool {
        let dest = SocketAddr::new(dest.ip().to_canonical(), dest.port());
        self.ifaces.contains(&ifindex) && self.served.contains(&dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charged_only_on_covered_interfaces_and_served_destinations() {
        let served: SocketAddr = "198.18.1.1:53".parse().unwrap();
        let paths = XdpPaths {
            ifaces: vec![2, 3],
            served: vec![served],
        };
        assert!(paths.charged(2, served));
        assert!(paths.charged(3, "[::ffff:198.18.1.1]:53".parse().unwrap()));
        assert!(!paths.charged(4, served), "another interface");
        assert!(
            !paths.charged(2, "198.18.1.255:53".parse().unwrap()),
            "broadcast"
        );
        assert!(
            !paths.charged(2, "198.18.1.1:5353".parse().unwrap()),
            "another port"
        );
    }
}
