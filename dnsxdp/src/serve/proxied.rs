//! Clients behind a reverse proxy (nginx, HAProxy, dnsdist): a connection from a trusted proxy
//! says whom it carries, so that the ACL, the rate limit and the logs see the real client.
//!
//! - TCP and TLS listeners: the PROXY protocol header (v2, binary, as dnsdist sends it; or v1,
//!   text, as nginx's stream module does) before anything else. A trusted proxy must send one.
//! - DNS over HTTPS: `Forwarded` (RFC 7239) or else `X-Forwarded-For`, read from the right:
//!   the first address that is not a trusted proxy is the client.
//!
//! Nothing from an untrusted peer is believed.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::access::acl::Cidr;

const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, `\r\n` included (the protocol's own bound).
const V1_MAX: usize = 107;

/// The proxies whose word on the client is taken.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrustedProxies(pub Vec<Cidr>);

impl TrustedProxies {
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.covers(ip))
    }

    /// The client a request from `peer` with `headers` is for.
    pub fn client_of(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if !self.trusts(peer.ip()) {
            return peer;
        }
        let forwarded = headers.get_all("forwarded").iter().flat_map(|v| {
            let v = v.to_str().unwrap_or_default();
            let pairs = v.split([',', ';']).map(str::trim);
            pairs.filter_map(|p| p.strip_prefix("for=").or(p.strip_prefix("For=")))
        });
        let mut hops: Vec<&str> = forwarded.collect();
        if hops.is_empty() {
            let xff = headers.get_all("x-forwarded-for").iter();
            hops = xff
                .flat_map(|v| v.to_str().unwrap_or_default().split(','))
                .map(str::trim)
                .collect();
        }
        for hop in hops.iter().rev() {
            let Some(addr) = parse_hop(hop) else {
                // An address that cannot be read: no one further left can be believed.
                return peer;
            };
            if !self.trusts(addr.ip()) {
                return addr;
            }
        }
        peer
    }
}

/// `1.2.3.4`, `1.2.3.4:5`, `"[2001:db8::1]:5"` or `2001:db8::1`; the port 0 if none.
fn parse_hop(hop: &str) -> Option<SocketAddr> {
    let hop = hop.trim_matches('"');
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr);
    }
    let ip = hop.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

/// Reads the PROXY header at the start of `stream` and returns the client it names; `None`
/// for a v2 LOCAL or v1 UNKNOWN connection (the proxy's own, such as a health check). Reads
/// nothing past the header.
pub async fn read_header(stream: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<SocketAddr>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut first = [0u8; 16];
    stream.read_exact(&mut first[..6]).await?;
    if &first[..6] == b"PROXY " {
        return read_v1(stream).await;
    }
    stream.read_exact(&mut first[6..]).await?;
    if first[..12] != V2_SIGNATURE || first[12] >> 4 != 2 {
        return Err(bad("no PROXY header"));
    }
    let len = usize::from(u16::from_be_bytes([first[14], first[15]]));
    let mut rest = vec![0u8; len];
    stream.read_exact(&mut rest).await?;
    let local = first[12] & 0x0f == 0;
    match (local, first[13] >> 4) {
        (true, _) => Ok(None),
        (false, 1) if rest.len() >= 12 => {
            let ip = Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]);
            Ok(Some(SocketAddr::new(ip.into(), port(&rest[8..10]))))
        }
        (false, 2) if rest.len() >= 36 => {
            let octets: [u8; 16] = rest[..16].try_into().map_err(|_| bad("short address"))?;
            let ip = Ipv6Addr::from(octets).to_canonical();
            Ok(Some(SocketAddr::new(ip, port(&rest[32..34]))))
        }
        _ => Err(bad("a PROXY v2 header without an IP source")),
    }
}

fn port(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// The rest of a v1 line after `PROXY `: `TCP4 src dst sport dport\r\n` or `UNKNOWN...`.
async fn read_v1(stream: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<SocketAddr>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "a bad PROXY v1 line");
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        if line.len() > V1_MAX {
            return Err(bad());
        }
        line.push(stream.read_u8().await?);
    }
    let line = std::str::from_utf8(&line).map_err(|_| bad())?;
    let fields: Vec<&str> = line.trim_end().split(' ').collect();
    match fields.as_slice() {
        ["UNKNOWN", ..] => Ok(None),
        ["TCP4" | "TCP6", src, _dst, sport, _dport] => {
            let ip: IpAddr = src.parse().map_err(|_| bad())?;
            let port: u16 = sport.parse().map_err(|_| bad())?;
            Ok(Some(SocketAddr::new(ip, port)))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn proxies() -> TrustedProxies {
        TrustedProxies(vec![
            "198.18.1.1".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ])
    }

    #[test]
    fn forwarded_headers_count_from_trusted_peers_only() {
        let p = proxies();
        let peer: SocketAddr = "198.18.1.1:40000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 198.18.1.2"),
        );
        assert_eq!(p.client_of(peer, &h), "198.18.1.2:0".parse().unwrap());
        // The same proxy seen by a dual-stack socket.
        let mapped: SocketAddr = "[::ffff:198.18.1.1]:40000".parse().unwrap();
        assert_eq!(p.client_of(mapped, &h), "198.18.1.2:0".parse().unwrap());
        let stranger: SocketAddr = "198.18.1.9:40000".parse().unwrap();
        assert_eq!(p.client_of(stranger, &h), stranger);
        // A chain of trusted proxies is walked through; Forwarded wins over X-Forwarded-For.
        h.insert(
            "forwarded",
            HeaderValue::from_static("for=198.18.1.7;proto=https, for=\"[fd00::5]:443\""),
        );
        assert_eq!(p.client_of(peer, &h), "198.18.1.7:0".parse().unwrap());
        h.insert("forwarded", HeaderValue::from_static("for=unknown"));
        assert_eq!(p.client_of(peer, &h), peer);
    }

    #[tokio::test]
    async fn proxy_headers_v2_and_v1_are_read_to_their_end() {
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend([
            0x21, 0x11, 0, 12, 198, 18, 1, 7, 198, 18, 1, 1, 0x9c, 0x40, 0, 53,
        ]);
        v2.extend(b"after");
        let mut s = v2.as_slice();
        let client = read_header(&mut s).await.unwrap();
        assert_eq!(client, Some("198.18.1.7:40000".parse().unwrap()));
        assert_eq!(s, b"after");
        let mut local = V2_SIGNATURE.to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(read_header(&mut local.as_slice()).await.unwrap(), None);
        let mut v1: &[u8] = b"PROXY TCP6 fd00::7 fd00::1 5353 853\r\nafter";
        let client = read_header(&mut v1).await.unwrap();
        assert_eq!(client, Some("[fd00::7]:5353".parse().unwrap()));
        assert_eq!(v1, b"after");
        let mut dns: &[u8] = &[0, 29, 0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(read_header(&mut dns).await.is_err());
    }
}
