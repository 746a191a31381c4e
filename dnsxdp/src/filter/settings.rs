//! The lists' settings: flags of `dnsxdp run` and keys of its config file alike.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::Duration,
};

use anyhow::{anyhow, bail};
use clap::Args;
use serde::Deserialize;

use super::source::Source;
use crate::values::{duration, file, nonzero};

const DEFAULT_BLOCK_TTL: u32 = 60;
const DEFAULT_REFRESH: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_CACHE_DIR: &str = "/var/cache/dnsxdp/lists";

#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[group(skip)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    /// A blocklist: a file, or an http:// or https:// URL, of hosts, domain, adblock, wildcard
    /// or /regex/ rules; a rule on a domain covers its subdomains (repeatable).
    #[arg(long, value_name = "FILE|URL")]
    #[serde(default, deserialize_with = "file::strings")]
    pub block_list: Option<Vec<String>>,
    /// An allowlist in the same formats: what it matches is never blocked (repeatable).
    #[arg(long, value_name = "FILE|URL")]
    #[serde(default, deserialize_with = "file::strings")]
    pub allow_list: Option<Vec<String>>,
    /// What a blocked name gets: `null` (0.0.0.0 and ::), `nxdomain`, `nodata`, `refused`, or
    /// addresses to answer with, comma-separated [default: null].
    #[arg(long, value_name = "ANSWER")]
    #[serde(default)]
    pub block_answer: Option<String>,
    /// TTL of blocked answers, in seconds [default: 60].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..))]
    #[serde(default, deserialize_with = "file::positive")]
    pub block_ttl: Option<u32>,
    /// How often lists from URLs are downloaded again [default: 24h].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(default, deserialize_with = "file::duration")]
    pub list_refresh: Option<Duration>,
    /// Where downloaded lists are kept, so that a restart needs no network
    /// [default: /var/cache/dnsxdp/lists].
    #[arg(long, value_name = "DIR")]
    #[serde(default, deserialize_with = "file::path")]
    pub list_cache_dir: Option<PathBuf>,
}

/// What a blocked name is answered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockAnswer {
    /// 0.0.0.0 for A, :: for AAAA, NODATA for other types.
    Null,
    NxDomain,
    NoData,
    Refused,
    /// These addresses for A and AAAA (NODATA where none of the family is given).
    Addresses(Vec<Ipv4Addr>, Vec<Ipv6Addr>),
}

/// The lists as they run.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub block: Vec<Source>,
    pub allow: Vec<Source>,
    pub answer: BlockAnswer,
    pub ttl: u32,
    pub refresh: Duration,
    pub cache_dir: PathBuf,
}

impl Settings {
    /// Validated, with defaults where not set.
    pub fn config(&self) -> anyhow::Result<Config> {
        let sources = |key: &str, given: &Option<Vec<String>>| -> anyhow::Result<Vec<Source>> {
            let given = given.iter().flatten();
            given
                .map(|s| Source::parse(s).map_err(|e| anyhow!("{key}: {e}")))
                .collect()
        };
        Ok(Config {
            block: sources("block-list", &self.block_list)?,
            allow: sources("allow-list", &self.allow_list)?,
            answer: match &self.block_answer {
                None => BlockAnswer::Null,
                Some(s) => parse_answer(s).map_err(|e| anyhow!("block-answer: {e}"))?,
            },
            ttl: nonzero("block-ttl", self.block_ttl, DEFAULT_BLOCK_TTL)?,
            refresh: nonzero("list-refresh", self.list_refresh, DEFAULT_REFRESH)?,
            cache_dir: self
                .list_cache_dir
                .clone()
                .unwrap_or_else(|| DEFAULT_CACHE_DIR.into()),
        })
    }
}

fn parse_answer(s: &str) -> anyhow::Result<BlockAnswer> {
    Ok(match s {
        "null" => BlockAnswer::Null,
        "nxdomain" => BlockAnswer::NxDomain,
        "nodata" => BlockAnswer::NoData,
        "refused" => BlockAnswer::Refused,
        _ => {
            let (mut v4, mut v6) = (Vec::new(), Vec::new());
            for part in s.split(',').map(str::trim) {
                match part.parse() {
                    Ok(std::net::IpAddr::V4(a)) => v4.push(a),
                    Ok(std::net::IpAddr::V6(a)) => v6.push(a),
                    Err(_) => {
                        bail!("'{s}' is not null, nxdomain, nodata, refused or a list of addresses")
                    }
                }
            }
            BlockAnswer::Addresses(v4, v6)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_named_or_addresses() {
        assert_eq!(parse_answer("nxdomain").unwrap(), BlockAnswer::NxDomain);
        assert_eq!(
            parse_answer("198.18.0.7, fd00::7").unwrap(),
            BlockAnswer::Addresses(
                vec!["198.18.0.7".parse().unwrap()],
                vec!["fd00::7".parse().unwrap()]
            )
        );
        let e = parse_answer("blackhole").unwrap_err().to_string();
        assert!(e.contains("'blackhole' is not null"), "{e}");
    }
}
