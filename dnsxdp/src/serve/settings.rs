//! The listeners' settings: flags of `dnsxdp run` and keys of its config file alike.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::bail;
use clap::Args;
use serde::Deserialize;

use super::{TcpLimits, https::HttpsSettings, proxied::TrustedProxies};
use crate::{
    access::acl,
    values::{duration, file, nonzero, size},
};

const DEFAULT_TLS_PORT: u16 = 853;
const DEFAULT_HTTPS_PORT: u16 = 443;
const DEFAULT_HTTPS_PATH: &str = "/dns-query";
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_HTTPS_STREAMS: u32 = 100;

/// Bytes the queries being answered may take.
const DEFAULT_IN_FLIGHT_MEMORY: u64 = 64 << 20;

/// More threads than this would only contend for the same sockets and cores.
const MAX_WORKERS: u32 = 256;

#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[group(skip)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    /// Address to serve DNS on, UDP and TCP (repeatable) [default: 0.0.0.0:53, [::]:53].
    #[arg(long, value_name = "ADDR:PORT")]
    #[serde(default, deserialize_with = "file::strings")]
    pub listen: Option<Vec<String>>,
    /// TCP connections open at once; past it, a new one replaces the quietest [default: 512].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    #[serde(default, deserialize_with = "file::positive")]
    pub tcp_connections: Option<u32>,
    /// TCP connections one client (an IPv4 address or IPv6 /64) may hold; past it, a new one
    /// replaces the client's quietest [default: 64].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    #[serde(default, deserialize_with = "file::positive")]
    pub tcp_connections_per_client: Option<u32>,
    /// A TCP connection without a query arriving, or with a reply the client does not read,
    /// for this long is closed [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(default, deserialize_with = "file::duration")]
    pub tcp_idle_timeout: Option<Duration>,
    /// Bytes the queries being answered may take, UDP and TCP together; past it reading waits
    /// [default: 64M].
    #[arg(long, value_name = "SIZE", value_parser = size::parse)]
    #[serde(default, deserialize_with = "file::size")]
    pub in_flight_memory: Option<u64>,
    /// Threads answering queries, each reading its own UDP socket of every listen address
    /// (SO_REUSEPORT) [default: one per CPU].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_WORKERS as i64))]
    #[serde(default, deserialize_with = "file::positive")]
    pub workers: Option<u32>,
    /// Address to serve DNS over TLS on (RFC 7858), port 853 unless given (repeatable).
    #[arg(long, value_name = "ADDR[:PORT]")]
    #[serde(default, deserialize_with = "file::strings")]
    pub listen_tls: Option<Vec<String>>,
    /// Address to serve DNS over HTTPS on (RFC 8484, HTTP/2 and HTTP/1.1), port 443 unless
    /// given (repeatable).
    #[arg(long, value_name = "ADDR[:PORT]")]
    #[serde(default, deserialize_with = "file::strings")]
    pub listen_https: Option<Vec<String>>,
    /// Address to serve DNS over QUIC on (RFC 9250), UDP port 853 unless given (repeatable).
    #[arg(long, value_name = "ADDR[:PORT]")]
    #[serde(default, deserialize_with = "file::strings")]
    pub listen_quic: Option<Vec<String>>,
    /// PEM file of the certificate chain the TLS, HTTPS and QUIC listeners present, read
    /// again when it changes and on SIGHUP.
    #[arg(long, value_name = "FILE")]
    #[serde(default, deserialize_with = "file::path")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file of the certificate's private key.
    #[arg(long, value_name = "FILE")]
    #[serde(default, deserialize_with = "file::path")]
    pub tls_key: Option<PathBuf>,
    /// The path DNS over HTTPS answers on [default: /dns-query].
    #[arg(long, value_name = "PATH")]
    #[serde(default)]
    pub https_path: Option<String>,
    /// Streams one DNS over HTTPS (HTTP/2) or DNS over QUIC connection may have open at once
    /// [default: 100].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    #[serde(default, deserialize_with = "file::positive")]
    pub https_max_streams: Option<u32>,
    /// A reverse proxy whose word on the client is taken (repeatable): its TCP and TLS
    /// connections start with a PROXY protocol header (v2 or v1), and its DNS over HTTPS
    /// requests name the client in Forwarded or X-Forwarded-For.
    #[arg(long, value_name = "CIDR")]
    #[serde(default, deserialize_with = "file::strings")]
    pub trusted_proxy: Option<Vec<String>>,
    /// The longest a TLS handshake may take [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(default, deserialize_with = "file::duration")]
    pub tls_handshake_timeout: Option<Duration>,
}

/// The encrypted listeners as they run.
#[derive(Clone, Debug, PartialEq)]
pub struct Encrypted {
    pub tls: Vec<SocketAddr>,
    pub https: Vec<SocketAddr>,
    pub quic: Vec<SocketAddr>,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub https_settings: HttpsSettings,
    pub handshake_timeout: Duration,
}

/// The listeners as they run.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub tcp: TcpLimits,
    /// Bytes the queries being answered may take.
    pub in_flight_memory: u64,
    /// Runtime worker threads, and UDP sockets per listen address.
    pub workers: usize,
    /// DNS over TLS and HTTPS, when either listens.
    pub encrypted: Option<Encrypted>,
    pub trusted_proxies: TrustedProxies,
}

impl Settings {
    /// Validated, with defaults where not set.
    pub fn config(&self) -> anyhow::Result<Config> {
        let listen = match &self.listen {
            None => vec!["0.0.0.0:53".parse()?, "[::]:53".parse()?],
            Some(l) => l
                .iter()
                .map(|a| parse_listen(a))
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?,
        };
        let default = TcpLimits::default();
        let tcp = TcpLimits {
            connections: self
                .tcp_connections
                .map_or(default.connections, |n| n as usize),
            per_client: self
                .tcp_connections_per_client
                .map_or(default.per_client, |n| n as usize),
            idle_timeout: nonzero(
                "tcp-idle-timeout",
                self.tcp_idle_timeout,
                default.idle_timeout,
            )?,
        };
        let workers = match self.workers {
            Some(n) if n > MAX_WORKERS => {
                anyhow::bail!("workers: at most {MAX_WORKERS}")
            }
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let proxies = self.trusted_proxy.as_deref().unwrap_or_default();
        Ok(Config {
            trusted_proxies: TrustedProxies(
                acl::parse_list("trusted-proxy", proxies).map_err(anyhow::Error::msg)?,
            ),
            encrypted: self.encrypted()?,
            listen,
            tcp,
            workers,
            in_flight_memory: nonzero(
                "in-flight-memory",
                self.in_flight_memory,
                DEFAULT_IN_FLIGHT_MEMORY,
            )?,
        })
    }
}

impl Settings {
    fn encrypted(&self) -> anyhow::Result<Option<Encrypted>> {
        let addrs = |key: &str, given: &Option<Vec<String>>, port| {
            (given.iter().flatten())
                .map(|a| parse_with_port(a, port).map_err(|e| anyhow::anyhow!("{key}: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()
        };
        let tls = addrs("listen-tls", &self.listen_tls, DEFAULT_TLS_PORT)?;
        let https = addrs("listen-https", &self.listen_https, DEFAULT_HTTPS_PORT)?;
        let quic = addrs("listen-quic", &self.listen_quic, DEFAULT_TLS_PORT)?;
        let path = self.https_path.as_deref().unwrap_or(DEFAULT_HTTPS_PATH);
        if !path.starts_with('/') {
            bail!("https-path: '{path}' does not start with /");
        }
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            _ if tls.is_empty() && https.is_empty() && quic.is_empty() => return Ok(None),
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            (None, _) => bail!("tls-cert: needed by listen-tls, listen-https and listen-quic"),
            (_, None) => bail!("tls-key: needed by listen-tls, listen-https and listen-quic"),
        };
        Ok(Some(Encrypted {
            tls,
            https,
            quic,
            cert,
            key,
            https_settings: HttpsSettings {
                path: path.to_string(),
                max_streams: self.https_max_streams.unwrap_or(DEFAULT_HTTPS_STREAMS),
            },
            handshake_timeout: nonzero(
                "tls-handshake-timeout",
                self.tls_handshake_timeout,
                DEFAULT_HANDSHAKE_TIMEOUT,
            )?,
        }))
    }
}

/// `ADDR:PORT`, or `ADDR` (an IPv6 one in brackets or bare) for `port`.
fn parse_with_port(s: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let ip = s.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, port))
        .map_err(|_| format!("invalid address '{s}': expected ADDR or ADDR:PORT"))
}

/// `ADDR:PORT` to serve on.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!("invalid listen address '{s}': expected ADDR:PORT, e.g. 0.0.0.0:53 or [::]:53")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_listeners_need_a_certificate_and_take_default_ports() {
        let mut s = Settings {
            listen_tls: Some(vec!["198.18.1.1".into(), "[fd00:1::1]:8853".into()]),
            listen_https: Some(vec!["fd00:1::1".into()]),
            ..Settings::default()
        };
        let e = s.config().unwrap_err().to_string();
        assert_eq!(
            e,
            "tls-cert: needed by listen-tls, listen-https and listen-quic"
        );
        s.tls_cert = Some("cert.pem".into());
        s.tls_key = Some("key.pem".into());
        let e = s.config().unwrap().encrypted.unwrap();
        let addrs = |v: &[SocketAddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(addrs(&e.tls), ["198.18.1.1:853", "[fd00:1::1]:8853"]);
        assert_eq!(addrs(&e.https), ["[fd00:1::1]:443"]);
        assert_eq!(e.https_settings.path, "/dns-query");
        s.listen_tls = Some(vec!["dns.example".into()]);
        let e = s.config().unwrap_err().to_string();
        assert!(
            e.starts_with("listen-tls: invalid address 'dns.example'"),
            "{e}"
        );
        assert!(Settings::default().config().unwrap().encrypted.is_none());
    }
}
