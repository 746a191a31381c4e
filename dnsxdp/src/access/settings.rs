//! Who may ask and how often. Flags of `dnsxdp run` and keys of its config file alike; a
//! reload reads them again.

use clap::Args;
use serde::{Deserialize, Deserializer};

use super::{acl::DenyAction, ratelimit::LimitAction};
use crate::values::file;

#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[group(skip)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    /// Client prefix that may query (repeatable); replaces the default list
    /// [default: loopback, RFC 1918, link-local and unique local addresses].
    #[arg(long, value_name = "CIDR")]
    #[serde(default, deserialize_with = "file::strings")]
    pub allow: Option<Vec<String>>,
    /// Client prefix that may not query (repeatable); the most specific prefix wins.
    #[arg(long, value_name = "CIDR")]
    #[serde(default, deserialize_with = "file::strings")]
    pub deny: Option<Vec<String>>,
    /// What a denied query gets: nothing, or a REFUSED answer [default: drop].
    #[arg(long, value_enum, value_name = "ACTION")]
    #[serde(default, deserialize_with = "file::choice")]
    pub acl_action: Option<DenyAction>,
    /// Queries a second each client prefix may send; no limit unless given.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    #[serde(default, deserialize_with = "file::positive")]
    pub ratelimit_qps: Option<u32>,
    /// Queries a client prefix may send at once after a pause [default: --ratelimit-qps].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    #[serde(default, deserialize_with = "file::positive")]
    pub ratelimit_burst: Option<u32>,
    /// Length of the IPv4 client prefixes that share a limit [default: 32].
    #[arg(long, value_name = "BITS", value_parser = clap::value_parser!(u8).range(0..=32))]
    #[serde(default, deserialize_with = "file::v4_prefix")]
    pub ratelimit_v4_prefix: Option<u8>,
    /// Length of the IPv6 client prefixes that share a limit [default: 64].
    #[arg(long, value_name = "BITS", value_parser = clap::value_parser!(u8).range(0..=128))]
    #[serde(default, deserialize_with = "file::v6_prefix")]
    pub ratelimit_v6_prefix: Option<u8>,
    /// What a query over the limit gets: drop, or slip:N (every Nth gets a TC=1 answer so a
    /// real client can retry over TCP) [default: drop].
    #[arg(long, value_name = "ACTION")]
    #[serde(default, deserialize_with = "limit_action")]
    pub ratelimit_action: Option<LimitAction>,
    /// Client prefix the rate limit does not apply to (repeatable).
    #[arg(long, value_name = "CIDR")]
    #[serde(default, deserialize_with = "file::strings")]
    pub ratelimit_exempt: Option<Vec<String>>,
}

fn limit_action<'de, D: Deserializer<'de>>(d: D) -> Result<Option<LimitAction>, D::Error> {
    file::read(d, "drop or slip:N", |v| v.as_str()?.parse().ok())
}
