//! The upstreams' settings: flags of `dnsxdp run` and keys of its config file alike.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::anyhow;
use clap::Args;
use hickory_proto::rr::Name;
use serde::Deserialize;

use super::{pool::PoolSettings, spec::UpstreamSpec, strategy::Strategy};
use crate::values::{duration, file, nonzero};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_MAX_FAILS: u32 = 3;
const DEFAULT_RETRIES: u32 = 2;

#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[group(skip)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    /// Upstream server (repeatable): IP[:PORT] (UDP), udp://, tcp://, tls://IP[:PORT]#NAME or
    /// https://HOST[:PORT]/PATH?bootstrap=IP; `?weight=N` for --upstream-strategy weighted
    /// [default: /etc/resolv.conf].
    #[arg(long, value_name = "URL")]
    #[serde(default, deserialize_with = "file::strings")]
    pub upstream: Option<Vec<String>>,
    /// How queries are shared among upstreams [default: ordered].
    #[arg(long, value_enum, value_name = "STRATEGY")]
    #[serde(default, deserialize_with = "file::choice")]
    pub upstream_strategy: Option<Strategy>,
    /// Longest wait for one upstream's reply before another is tried [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(default, deserialize_with = "file::duration")]
    pub upstream_timeout: Option<Duration>,
    /// Timeouts and transport errors in a row (not SERVFAIL or REFUSED) that take an upstream
    /// down until it answers a probe; 0: never [default: 3].
    #[arg(long, value_name = "N")]
    #[serde(default, deserialize_with = "file::count_or_zero")]
    pub upstream_max_fails: Option<u32>,
    /// Queries to other upstreams (or the same, after a timeout) one miss may cost after the
    /// first [default: 2].
    #[arg(long, value_name = "N")]
    #[serde(default, deserialize_with = "file::count_or_zero")]
    pub upstream_retries: Option<u32>,
    /// PEM file of the certificate authorities trusted for tls:// and https:// upstreams,
    /// instead of the system's.
    #[arg(long, value_name = "FILE")]
    #[serde(default, deserialize_with = "file::path")]
    pub tls_ca: Option<PathBuf>,
    /// A zone forwarded to its own upstreams, `ZONE=URL[,URL...]`: `corp.example=10.0.0.53`,
    /// or a LAN's reverse zone to its DHCP server; the longest zone that holds a name wins
    /// (repeatable).
    #[arg(long, value_name = "ZONE=URL")]
    #[serde(default, deserialize_with = "file::strings")]
    pub forward_zone: Option<Vec<String>>,
    /// Remove private, loopback and link-local addresses from the answers of public upstreams
    /// (DNS-rebinding protection); upstreams on private addresses are trusted.
    #[arg(long, num_args = 0, default_missing_value = "true")]
    #[serde(default, deserialize_with = "file::flag")]
    pub rebind_protection: Option<bool>,
    /// A domain whose answers may hold private addresses despite --rebind-protection; its
    /// subdomains too (repeatable).
    #[arg(long, value_name = "DOMAIN")]
    #[serde(default, deserialize_with = "file::strings")]
    pub rebind_allow: Option<Vec<String>>,
}

/// The upstreams as they run.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub upstreams: Vec<UpstreamSpec>,
    pub pool: PoolSettings,
    /// Certificate authorities for TLS upstreams instead of the system's.
    pub tls_ca: Option<PathBuf>,
    /// Zones forwarded to upstreams of their own.
    pub zones: Vec<(Name, Vec<UpstreamSpec>)>,
    /// With rebinding protection, the domains allowed private addresses.
    pub rebind: Option<Vec<Name>>,
}

impl Settings {
    /// Validated, with defaults where not set; `system` gives the plain DNS servers to forward
    /// to when no upstream is set.
    pub fn config(
        &self,
        system: impl FnOnce() -> anyhow::Result<Vec<SocketAddr>>,
    ) -> anyhow::Result<Config> {
        let upstreams = match &self.upstream {
            None => system()?.into_iter().map(UpstreamSpec::udp).collect(),
            Some(u) => u
                .iter()
                .map(|a| UpstreamSpec::parse(a))
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?,
        };
        Ok(Config {
            upstreams,
            pool: PoolSettings {
                strategy: self.upstream_strategy.unwrap_or_default(),
                attempt_timeout: nonzero(
                    "upstream-timeout",
                    self.upstream_timeout,
                    DEFAULT_TIMEOUT,
                )?,
                max_fails: self.upstream_max_fails.unwrap_or(DEFAULT_MAX_FAILS),
                retries: self.upstream_retries.unwrap_or(DEFAULT_RETRIES),
            },
            tls_ca: self.tls_ca.clone(),
            zones: (self.forward_zone.iter().flatten())
                .map(|z| forward_zone(z).map_err(|e| anyhow!("forward-zone: {e}")))
                .collect::<anyhow::Result<_>>()?,
            rebind: match self.rebind_protection {
                Some(true) => Some(
                    (self.rebind_allow.iter().flatten())
                        .map(|d| domain(d).map_err(|e| anyhow!("rebind-allow: {e}")))
                        .collect::<anyhow::Result<_>>()?,
                ),
                _ => None,
            },
        })
    }
}

/// A domain name as written in the settings, lower-cased and fully qualified.
fn domain(s: &str) -> Result<Name, String> {
    let mut name = Name::from_ascii(s.trim())
        .map_err(|_| format!("'{s}' is not a domain name"))?
        .to_lowercase();
    name.set_fqdn(true);
    Ok(name)
}

/// `ZONE=URL[,URL...]`.
fn forward_zone(s: &str) -> Result<(Name, Vec<UpstreamSpec>), String> {
    let (zone, upstreams) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not ZONE=URL[,URL...]"))?;
    let zone = domain(zone)?;
    let upstreams = upstreams
        .split(',')
        .map(|u| UpstreamSpec::parse(u.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((zone, upstreams))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forward_zone_is_a_zone_and_its_upstreams() {
        let (zone, ups) = forward_zone("Corp.Example=10.0.0.53, tls://10.0.0.54#dns.corp").unwrap();
        assert_eq!(zone.to_ascii(), "corp.example.");
        let ups: Vec<String> = ups.iter().map(ToString::to_string).collect();
        assert_eq!(ups, ["udp://10.0.0.53:53", "tls://10.0.0.54:853#dns.corp"]);
        assert!(
            forward_zone("corp.example")
                .unwrap_err()
                .contains("ZONE=URL")
        );
        assert!(forward_zone("corp.example=nowhere").is_err());
    }
}
