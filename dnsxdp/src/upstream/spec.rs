//! Upstream URLs.
//!
//! ```text
//! 9.9.9.9  9.9.9.9:53  [2620:fe::fe]:53     plain DNS over UDP, over TCP when truncated
//! udp://9.9.9.9:53     tcp://9.9.9.9:53     the same, and TCP only
//! tls://9.9.9.9:853#dns.quad9.net           DNS over TLS; the certificate must name dns.quad9.net
//! quic://9.9.9.9:853#dns.quad9.net          DNS over QUIC, likewise
//! https://dns.quad9.net/dns-query?bootstrap=9.9.9.9   DNS over HTTPS, connecting to 9.9.9.9
//! ```
//! Options go in the query string: `weight=N` for every scheme, `bootstrap=IP` and
//! `method=get` (GET rather than POST) for https.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
};

use rustls::pki_types::ServerName;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Udp,
    Tcp,
    Tls,
    Https,
    Quic,
}

impl Protocol {
    fn scheme(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
            Protocol::Https => "https",
            Protocol::Quic => "quic",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Protocol::Udp | Protocol::Tcp => 53,
            Protocol::Tls | Protocol::Quic => 853,
            Protocol::Https => 443,
        }
    }
}

/// One upstream as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamSpec {
    pub protocol: Protocol,
    /// Where to connect.
    pub addr: SocketAddr,
    /// TLS and HTTPS: the name the certificate must carry; `None` checks it against the IP.
    pub tls_name: Option<String>,
    /// HTTPS: the host (and port, if not 443) the request names, and the path.
    pub authority: String,
    pub path: String,
    /// Share of queries under the `weighted` strategy.
    pub weight: u32,
    /// HTTPS: queries as GET `?dns=` rather than POST.
    pub get: bool,
}

const MAX_WEIGHT: u32 = 1000;

impl UpstreamSpec {
    /// Plain DNS to `addr`, as resolv.conf names servers.
    pub fn udp(addr: SocketAddr) -> UpstreamSpec {
        UpstreamSpec {
            protocol: Protocol::Udp,
            addr,
            tls_name: None,
            authority: String::new(),
            path: String::new(),
            weight: 1,
            get: false,
        }
    }

    /// The name the server's certificate is checked against.
    pub fn server_name(&self) -> ServerName<'static> {
        match &self.tls_name {
            Some(name) => ServerName::try_from(name.clone()).expect("checked when parsed"),
            None => ServerName::IpAddress(self.addr.ip().into()),
        }
    }

    /// Whether it speaks TLS, and so needs trusted certificates.
    pub fn uses_tls(&self) -> bool {
        matches!(
            self.protocol,
            Protocol::Tls | Protocol::Https | Protocol::Quic
        )
    }

    /// `udp://9.9.9.9:53` etc.: a URL that parses back to this upstream.
    pub fn parse(s: &str) -> Result<UpstreamSpec, String> {
        parse(s).map_err(|why| format!("invalid upstream '{s}': {why}"))
    }
}

/// The URL without the weight: how logs and `dnsxdp stats` name the upstream.
impl fmt::Display for UpstreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.protocol.scheme();
        match self.protocol {
            Protocol::Udp | Protocol::Tcp => write!(f, "{scheme}://{}", self.addr),
            Protocol::Tls | Protocol::Quic => {
                write!(f, "{scheme}://{}", self.addr)?;
                match &self.tls_name {
                    Some(name) => write!(f, "#{name}"),
                    None => Ok(()),
                }
            }
            Protocol::Https => {
                write!(f, "{scheme}://{}{}", self.authority, self.path)?;
                let mut options = Vec::new();
                if self.tls_name.is_some() {
                    options.push(format!("bootstrap={}", self.addr.ip()));
                }
                if self.get {
                    options.push("method=get".into());
                }
                match options.is_empty() {
                    true => Ok(()),
                    false => write!(f, "?{}", options.join("&")),
                }
            }
        }
    }
}

fn parse(s: &str) -> Result<UpstreamSpec, String> {
    let (protocol, rest) = match s.split_once("://") {
        None => (Protocol::Udp, s),
        Some((scheme, rest)) => (
            match scheme.to_ascii_lowercase().as_str() {
                "udp" => Protocol::Udp,
                "tcp" => Protocol::Tcp,
                "tls" => Protocol::Tls,
                "https" => Protocol::Https,
                "quic" => Protocol::Quic,
                _ => {
                    return Err(format!(
                        "unknown scheme {scheme}: expected udp, tcp, tls, https or quic"
                    ));
                }
            },
            rest,
        ),
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (rest, None),
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut weight = 1;
    let mut bootstrap = None;
    let mut get = false;
    for option in query.split('&').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some(("weight", n)) => {
                weight = n
                    .parse()
                    .ok()
                    .filter(|w| (1..=MAX_WEIGHT).contains(w))
                    .ok_or(format!("weight must be from 1 to {MAX_WEIGHT}"))?;
            }
            Some(("bootstrap", ip)) if protocol == Protocol::Https => {
                bootstrap =
                    Some(parse_ip(ip).ok_or(format!("bootstrap {ip} is not an IP address"))?);
            }
            Some(("method", method)) if protocol == Protocol::Https => {
                get = match method.to_ascii_lowercase().as_str() {
                    "get" => true,
                    "post" => false,
                    _ => return Err(format!("method {method}: expected get or post")),
                };
            }
            _ => return Err(format!("unknown option {option}")),
        }
    }
    let port = protocol.default_port();
    let mut spec = match protocol {
        Protocol::Udp | Protocol::Tcp | Protocol::Tls | Protocol::Quic => {
            let tls_name = match (protocol, fragment) {
                (Protocol::Tls | Protocol::Quic, Some(name)) => Some(check_name(name)?),
                (_, Some(_)) => return Err("only tls:// and quic:// take a #name".into()),
                (_, None) => None,
            };
            UpstreamSpec {
                protocol,
                tls_name,
                ..UpstreamSpec::udp(parse_addr(rest, port)?)
            }
        }
        Protocol::Https => {
            if fragment.is_some() {
                return Err("https:// takes ?bootstrap=IP, not a #fragment".into());
            }
            let (authority, path) = match rest.find('/') {
                Some(slash) => rest.split_at(slash),
                None => (rest, "/dns-query"),
            };
            let (host, port) = split_port(authority, port)?;
            let (addr, tls_name) = match (parse_ip(host), bootstrap) {
                (Some(ip), None) => (SocketAddr::new(ip, port), None),
                (Some(_), Some(_)) => return Err("bootstrap is for a host name, not an IP".into()),
                (None, Some(ip)) => (SocketAddr::new(ip, port), Some(check_name(host)?)),
                (None, None) => {
                    return Err(format!(
                        "{host} is a name: add ?bootstrap=IP so it is reached without DNS"
                    ));
                }
            };
            UpstreamSpec {
                protocol,
                addr,
                tls_name,
                authority: authority.to_ascii_lowercase(),
                path: path.to_owned(),
                weight: 1,
                get,
            }
        }
    };
    let ip = spec.addr.ip();
    if ip.is_unspecified() || ip.is_multicast() || spec.addr.port() == 0 {
        return Err("not a unicast address and port".into());
    }
    spec.weight = weight;
    Ok(spec)
}

/// `IP` or `IP:PORT` (IPv6 in brackets when a port follows).
fn parse_addr(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    let (host, port) = split_port(s, default_port)?;
    let ip = parse_ip(host).ok_or("expected IP[:PORT], e.g. 198.18.0.2:53 or [fd00::2]:53")?;
    Ok(SocketAddr::new(ip, port))
}

/// An IP address, IPv6 with or without brackets.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let inner = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    inner.unwrap_or(s).parse().ok()
}

/// `HOST` and `PORT` from `HOST[:PORT]`; a bare IPv6 address has no port.
fn split_port(s: &str, default_port: u16) -> Result<(&str, u16), String> {
    let colon = match s.rfind(':') {
        Some(i) if s.starts_with('[') && s[..i].ends_with(']') => Some(i),
        Some(i) if !s.starts_with('[') && s[..i].find(':').is_none() => Some(i),
        _ => None,
    };
    match colon {
        Some(i) => {
            let port = s[i + 1..].parse().map_err(|_| format!("bad port in {s}"))?;
            Ok((&s[..i], port))
        }
        None => Ok((s, default_port)),
    }
}

fn check_name(name: &str) -> Result<String, String> {
    match ServerName::try_from(name) {
        Ok(ServerName::DnsName(_)) => Ok(name.to_ascii_lowercase()),
        _ => Err(format!("{name} is not a host name")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn plain_addresses_are_udp() {
        for (given, addr) in [
            ("198.18.0.2", "198.18.0.2:53"),
            ("198.18.0.2:5300", "198.18.0.2:5300"),
            ("fd00::2", "[fd00::2]:53"),
            ("[fd00::2]", "[fd00::2]:53"),
            ("[fd00::2]:54", "[fd00::2]:54"),
            ("udp://198.18.0.2", "198.18.0.2:53"),
        ] {
            let spec = UpstreamSpec::parse(given).unwrap();
            assert_eq!(spec, UpstreamSpec::udp(sa(addr)), "{given}");
            assert_eq!(spec.to_string(), format!("udp://{addr}"));
        }
    }

    #[test]
    fn schemes_and_default_ports() {
        let tcp = UpstreamSpec::parse("TCP://198.18.0.2").unwrap();
        assert_eq!(
            (tcp.protocol, tcp.addr),
            (Protocol::Tcp, sa("198.18.0.2:53"))
        );
        let tls = UpstreamSpec::parse("tls://198.18.0.2#Dns.Example").unwrap();
        assert_eq!(
            (tls.protocol, tls.addr),
            (Protocol::Tls, sa("198.18.0.2:853"))
        );
        assert_eq!(tls.tls_name.as_deref(), Some("dns.example"));
        assert_eq!(tls.to_string(), "tls://198.18.0.2:853#dns.example");
        let by_ip = UpstreamSpec::parse("tls://[fd00::2]:8853").unwrap();
        assert_eq!(
            by_ip.server_name(),
            ServerName::IpAddress("fd00::2".parse::<IpAddr>().unwrap().into())
        );
    }

    #[test]
    fn https_with_bootstrap_or_address() {
        let doh =
            UpstreamSpec::parse("https://dns.example/dns-query?bootstrap=198.18.2.3").unwrap();
        assert_eq!(doh.addr, sa("198.18.2.3:443"));
        assert_eq!(doh.tls_name.as_deref(), Some("dns.example"));
        assert_eq!(
            (doh.authority.as_str(), doh.path.as_str()),
            ("dns.example", "/dns-query")
        );
        assert_eq!(
            doh.to_string(),
            "https://dns.example/dns-query?bootstrap=198.18.2.3"
        );
        let port = UpstreamSpec::parse("https://dns.example:8443/q?bootstrap=fd00::3").unwrap();
        assert_eq!(port.addr, sa("[fd00::3]:8443"));
        assert_eq!(port.authority, "dns.example:8443");
        let ip = UpstreamSpec::parse("https://[fd00::3]").unwrap();
        assert_eq!(
            (ip.addr, ip.path.as_str()),
            (sa("[fd00::3]:443"), "/dns-query")
        );
        assert_eq!(ip.tls_name, None);
    }

    #[test]
    fn weights() {
        assert_eq!(
            UpstreamSpec::parse("198.18.0.2?weight=3").unwrap().weight,
            3
        );
        let doh = UpstreamSpec::parse("https://d.example/q?bootstrap=198.18.0.3&weight=7").unwrap();
        assert_eq!(doh.weight, 7);
        assert_eq!(
            UpstreamSpec::parse("tls://198.18.0.2?weight=2#d.example")
                .unwrap()
                .weight,
            2
        );
    }

    #[test]
    fn quic_and_https_by_get_read_back() {
        for url in [
            "quic://198.18.0.2:853#dns.example",
            "quic://[fd00::2]:8853",
            "https://dns.example/dns-query?bootstrap=198.18.0.2&method=get",
        ] {
            assert_eq!(UpstreamSpec::parse(url).unwrap().to_string(), url);
        }
        let quic = UpstreamSpec::parse("quic://198.18.0.2").unwrap();
        assert_eq!((quic.protocol, quic.addr.port()), (Protocol::Quic, 853));
        assert!(quic.uses_tls());
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for (bad, why) in [
            ("dns.example", "expected IP[:PORT]"),
            ("198.18.0.2:x", "bad port"),
            ("0.0.0.0", "unicast"),
            ("198.18.0.2:0", "unicast"),
            ("224.0.0.1", "unicast"),
            ("", "expected IP[:PORT]"),
            ("doq://198.18.0.2", "unknown scheme doq"),
            ("https://198.18.0.2/q?method=put", "expected get or post"),
            ("tcp://198.18.0.2?method=get", "unknown option"),
            ("198.18.0.2?weight=0", "weight must be"),
            ("198.18.0.2?wieght=2", "unknown option wieght=2"),
            ("udp://198.18.0.2#name", "only tls://"),
            ("tls://198.18.0.2#not a name", "not a host name"),
            ("https://dns.example/dns-query", "add ?bootstrap=IP"),
            (
                "https://dns.example/q?bootstrap=dns.other",
                "not an IP address",
            ),
            ("198.18.0.2?bootstrap=198.18.0.3", "unknown option"),
            (
                "https://198.18.0.2/q?bootstrap=198.18.0.3",
                "bootstrap is for a host name",
            ),
        ] {
            let e = UpstreamSpec::parse(bad).unwrap_err();
            assert!(e.starts_with(&format!("invalid upstream '{bad}': ")), "{e}");
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
