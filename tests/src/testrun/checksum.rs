//! The Internet checksum (RFC 1071) of IP headers and UDP datagrams.

use std::net::IpAddr;

/// RFC 1071 checksum over the concatenation of `parts` (each of even length but the last).
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u64;
    for part in parts {
        for pair in part.chunks(2) {
            sum += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The UDP checksum over `pseudo` and `udp`: a sum of zero is sent as all ones, since a zero
/// field means none was computed.
pub(super) fn udp_checksum(pseudo: &[u8], udp: &[u8]) -> u16 {
    match internet_checksum(&[pseudo, udp]) {
        0 => 0xffff,
        c => c,
    }
}

/// The UDP pseudo-header for either family.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, udp_len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, 17]);
            p.extend_from_slice(&(udp_len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(udp_len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 17]);
        }
        _ => panic!("mixed address families"),
    }
    p
}
