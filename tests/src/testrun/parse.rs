//! Frames taken apart, answers in particular, trusting nothing but their length.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, Result, anyhow, bail, ensure};

use super::frame::ETH_HLEN;

/// A frame taken apart, trusting nothing but the frame length.
#[derive(Clone, Debug)]
pub struct ParsedFrame {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub vlan: Option<u16>,
    /// The 802.1ad tag before it.
    pub outer_vlan: Option<u16>,
    /// Offset of the IP header.
    pub l3: usize,
    /// IP header length (IPv4 options included).
    pub ip_hlen: usize,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// TTL or hop limit.
    pub ttl: u8,
    /// Offset of the UDP header.
    pub udp: usize,
    /// UDP length field.
    pub udp_len: usize,
    /// The UDP payload, as long as the UDP length says.
    pub payload: Vec<u8>,
}

pub fn parse_frame(f: &[u8]) -> Result<ParsedFrame> {
    ensure!(f.len() >= ETH_HLEN, "shorter than an Ethernet header");
    let be16 = |o: usize| -> Result<u16> {
        f.get(o..o + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| anyhow!("frame ends at {} before offset {o}", f.len()))
    };
    let (mut ethertype, mut l3, mut vlan, mut outer_vlan) = (be16(12)?, ETH_HLEN, None, None);
    if ethertype == 0x88a8 {
        outer_vlan = Some(be16(14)?);
        ethertype = be16(16)?;
        l3 += 4;
    }
    if ethertype == 0x8100 {
        vlan = Some(be16(l3)?);
        ethertype = be16(l3 + 2)?;
        l3 += 4;
    }
    let (src, dst, ttl, ip_hlen) = match ethertype {
        0x0800 => {
            let ip = f.get(l3..l3 + 20).context("short IPv4 header")?;
            ensure!(ip[0] >> 4 == 4 && ip[9] == 17, "not IPv4/UDP");
            let hlen = (ip[0] & 0xf) as usize * 4;
            let total = be16(l3 + 2)? as usize;
            ensure!(l3 + total <= f.len(), "IPv4 total length past the frame");
            let a = |o: usize| IpAddr::from(<[u8; 4]>::try_from(&ip[o..o + 4]).unwrap());
            (a(12), a(16), ip[8], hlen)
        }
        0x86dd => {
            let ip = f.get(l3..l3 + 40).context("short IPv6 header")?;
            ensure!(ip[0] >> 4 == 6 && ip[6] == 17, "not IPv6/UDP");
            let plen = be16(l3 + 4)? as usize;
            ensure!(
                l3 + 40 + plen <= f.len(),
                "IPv6 payload length past the frame"
            );
            let a = |o: usize| IpAddr::from(<[u8; 16]>::try_from(&ip[o..o + 16]).unwrap());
            (a(8), a(24), ip[7], 40)
        }
        t => bail!("ethertype {t:#06x}"),
    };
    let udp = l3 + ip_hlen;
    let udp_len = be16(udp + 4)? as usize;
    ensure!(udp_len >= 8, "UDP length {udp_len}");
    let payload = f
        .get(udp + 8..udp + udp_len)
        .context("UDP length past the frame")?
        .to_vec();
    Ok(ParsedFrame {
        dst_mac: f[0..6].try_into().unwrap(),
        src_mac: f[6..12].try_into().unwrap(),
        vlan,
        outer_vlan,
        l3,
        ip_hlen,
        src: SocketAddr::new(src, be16(udp)?),
        dst: SocketAddr::new(dst, be16(udp + 2)?),
        ttl,
        udp,
        udp_len,
        payload,
    })
}
