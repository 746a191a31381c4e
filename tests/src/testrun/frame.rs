//! Query frames: Ethernet (with VLAN tags), IPv4 (with options) or IPv6 (with extension
//! headers), and UDP, lengths and checksums right unless a test spoils them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{
    checksum::{internet_checksum, pseudo_header, udp_checksum},
    query::Query,
};

pub const ETH_HLEN: usize = 14;
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Link, network and transport headers of a query frame, client to server.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub client_mac: [u8; 6],
    pub server_mac: [u8; 6],
    /// 802.1Q tag control information.
    pub vlan: Option<u16>,
    /// An 802.1ad tag before the 802.1Q one (QinQ).
    pub outer_vlan: Option<u16>,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// IPv4 options, a multiple of 4 bytes.
    pub ip_options: Vec<u8>,
    pub ttl: u8,
    /// IPv4 flags and fragment offset field.
    pub frag: u16,
    /// IPv6 extension headers between the fixed header and UDP: each one's protocol number
    /// and bytes, whose first (its next header) is filled in.
    pub ipv6_extensions: Vec<(u8, Vec<u8>)>,
}

impl FrameSpec {
    pub fn v4() -> Self {
        Self::between(
            SocketAddr::new(Ipv4Addr::new(192, 0, 2, 10).into(), 40000),
            SocketAddr::new(Ipv4Addr::new(192, 0, 2, 53).into(), 53),
        )
    }

    pub fn v6() -> Self {
        Self::between(
            SocketAddr::new(
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10).into(),
                40000,
            ),
            SocketAddr::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x53).into(), 53),
        )
    }

    pub fn between(client: SocketAddr, server: SocketAddr) -> Self {
        Self {
            client_mac: CLIENT_MAC,
            server_mac: SERVER_MAC,
            vlan: None,
            outer_vlan: None,
            client,
            server,
            ip_options: Vec::new(),
            ttl: 61,
            frag: 0x4000,
            ipv6_extensions: Vec::new(),
        }
    }

    /// A copy with `change` made to it.
    pub fn with(&self, change: impl FnOnce(&mut FrameSpec)) -> FrameSpec {
        let mut spec = self.clone();
        change(&mut spec);
        spec
    }

    /// The frame carrying `payload` over UDP, with correct lengths and checksums.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(128 + payload.len());
        f.extend_from_slice(&self.server_mac);
        f.extend_from_slice(&self.client_mac);
        if let Some(tci) = self.outer_vlan {
            f.extend_from_slice(&0x88a8u16.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        if let Some(tci) = self.vlan {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        let udp_len = (8 + payload.len()) as u16;
        let mut udp = Vec::with_capacity(udp_len as usize);
        udp.extend_from_slice(&self.client.port().to_be_bytes());
        udp.extend_from_slice(&self.server.port().to_be_bytes());
        udp.extend_from_slice(&udp_len.to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(payload);
        match (self.client.ip(), self.server.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let hlen = 20 + self.ip_options.len();
                assert!(
                    hlen.is_multiple_of(4) && hlen <= 60,
                    "bad IPv4 options length"
                );
                let mut ip = vec![0x40 | (hlen / 4) as u8, 0];
                ip.extend_from_slice(&((hlen + udp.len()) as u16).to_be_bytes());
                ip.extend_from_slice(&0x1234u16.to_be_bytes());
                ip.extend_from_slice(&self.frag.to_be_bytes());
                ip.extend_from_slice(&[self.ttl, 17, 0, 0]);
                ip.extend_from_slice(&src.octets());
                ip.extend_from_slice(&dst.octets());
                ip.extend_from_slice(&self.ip_options);
                let c = internet_checksum(&[&ip]);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                let pseudo = pseudo_header(src.into(), dst.into(), udp.len());
                let c = udp_checksum(&pseudo, &udp);
                udp[6..8].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&ip);
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let mut chain = Vec::new();
                let mut next = 17;
                for (proto, header) in self.ipv6_extensions.iter().rev() {
                    let mut h = header.clone();
                    h[0] = next;
                    chain.splice(0..0, h);
                    next = *proto;
                }
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&(chain.len() as u16 + udp_len).to_be_bytes());
                f.extend_from_slice(&[next, self.ttl]);
                f.extend_from_slice(&src.octets());
                f.extend_from_slice(&dst.octets());
                f.extend_from_slice(&chain);
                let pseudo = pseudo_header(src.into(), dst.into(), udp.len());
                let c = udp_checksum(&pseudo, &udp);
                udp[6..8].copy_from_slice(&c.to_be_bytes());
            }
            _ => panic!("client and server of different address families"),
        }
        f.extend_from_slice(&udp);
        f
    }

    /// The frame of `query`.
    pub fn query(&self, query: &Query) -> Vec<u8> {
        self.build(&query.to_wire())
    }
}

/// An IPv6 Hop-by-Hop or Destination Options header (`proto`) of 8 bytes: PadN only.
pub fn padding_header(proto: u8) -> (u8, Vec<u8>) {
    (proto, vec![0, 0, 1, 4, 0, 0, 0, 0])
}

/// An IPv6 Fragment header with this offset and M flag field; `0` makes an atomic fragment.
pub fn fragment_header(offset_flags: u16) -> (u8, Vec<u8>) {
    let [hi, lo] = offset_flags.to_be_bytes();
    (44, vec![0, 0, hi, lo, 0, 0, 0x12, 0x34])
}
