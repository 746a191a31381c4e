//! The lists' settings: flags of `dnsxdp run` and keys of its config file alike.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::Duration,
};

use anyhow::{anyhow, bail};
use clap::Args;
use serde::Deserialize;

use super::{groups::Groups, source::Source};
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
    /// A client group: clients in these prefixes get the lists every client gets and the
    /// group's own (--group-block-list, --group-allow-list), and a cache of their own, in
    /// both layers; the longest prefix wins (repeatable).
    #[arg(long, value_name = "NAME=CIDR[,CIDR...]")]
    #[serde(default, deserialize_with = "file::strings")]
    pub client_group: Option<Vec<String>>,
    /// A blocklist for one client group only, as --block-list (repeatable).
    #[arg(long, value_name = "NAME=FILE|URL")]
    #[serde(default, deserialize_with = "file::strings")]
    pub group_block_list: Option<Vec<String>>,
    /// An allowlist for one client group only, as --allow-list (repeatable).
    #[arg(long, value_name = "NAME=FILE|URL")]
    #[serde(default, deserialize_with = "file::strings")]
    pub group_allow_list: Option<Vec<String>>,
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

/// A list, and the client group it is for (`None`: every client).
#[derive(Clone, Debug, PartialEq)]
pub struct ListSource {
    pub source: Source,
    pub group: Option<u8>,
}

/// The lists as they run.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub block: Vec<ListSource>,
    pub allow: Vec<ListSource>,
    pub groups: Groups,
    pub answer: BlockAnswer,
    pub ttl: u32,
    pub refresh: Duration,
    pub cache_dir: PathBuf,
}

impl Settings {
    /// Validated, with defaults where not set.
    pub fn config(&self) -> anyhow::Result<Config> {
        let groups = Groups::parse(self.client_group.as_deref().unwrap_or_default())
            .map_err(|e| anyhow!("client-group: {e}"))?;
        let source = |key: &str, s: &str| Source::parse(s).map_err(|e| anyhow!("{key}: {e}"));
        let sources = |key: &str, all: &Option<Vec<String>>, of_group: &Option<Vec<String>>| {
            let everyone = all.iter().flatten().map(|s| {
                Ok(ListSource {
                    source: source(key, s)?,
                    group: None,
                })
            });
            let key = format!("group-{key}");
            let grouped = of_group.iter().flatten().map(|s| {
                let (name, list) = s
                    .split_once('=')
                    .ok_or_else(|| anyhow!("{key}: '{s}' is not NAME=FILE|URL"))?;
                let group = groups
                    .id(name)
                    .ok_or_else(|| anyhow!("{key}: '{s}': no --client-group {name}"))?;
                Ok(ListSource {
                    source: source(&key, list)?,
                    group: Some(group),
                })
            });
            everyone.chain(grouped).collect::<anyhow::Result<Vec<_>>>()
        };
        Ok(Config {
            block: sources("block-list", &self.block_list, &self.group_block_list)?,
            allow: sources("allow-list", &self.allow_list, &self.group_allow_list)?,
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
            groups,
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

    #[test]
    fn group_lists_name_a_declared_group() {
        let settings = |lists: &[&str]| Settings {
            block_list: Some(vec!["ads.txt".into()]),
            client_group: Some(vec!["kids=198.18.3.0/24".into()]),
            group_block_list: Some(lists.iter().map(|s| s.to_string()).collect()),
            ..Settings::default()
        };
        let config = settings(&["kids=adult.txt"]).config().unwrap();
        let groups: Vec<_> = config.block.iter().map(|l| l.group).collect();
        assert_eq!(groups, [None, Some(1)]);
        let e = settings(&["teens=x.txt"]).config().unwrap_err().to_string();
        assert_eq!(
            e,
            "group-block-list: 'teens=x.txt': no --client-group teens"
        );
        let e = settings(&["adult.txt"]).config().unwrap_err().to_string();
        assert_eq!(e, "group-block-list: 'adult.txt' is not NAME=FILE|URL");
    }
}
