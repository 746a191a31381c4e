//! The resolver's settings: its cache, TTL caps, prefetch, patience and query log. Flags of
//! `dnsxdp run` and keys of its config file alike.

use std::{path::PathBuf, time::Duration};

use clap::Args;
use serde::{Deserialize, Deserializer};

use super::query_log::QueryLogTarget;
use crate::{
    dns::ttl::TtlPolicy,
    values::{duration, file, nonzero, size},
};

/// Bytes the daemon's cache may take: a full cache of typical answers is far below it.
const DEFAULT_CACHE_MEMORY: u64 = 128 << 20;
const DEFAULT_PREFETCH_MIN_HITS: u32 = 2;
const DEFAULT_QUERY_LOG_SAMPLE: u32 = 1;
const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_SERVE_STALE: Duration = Duration::from_secs(86400);

#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[group(skip)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    /// Longest a client waits for an answer, over all upstreams and retries [default: 2s].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(default, deserialize_with = "file::duration")]
    pub query_timeout: Option<Duration>,
    /// How long after expiry an answer is still served (with TTL 30) when no upstream answers;
    /// 0: never [default: 1d].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(default, deserialize_with = "file::duration")]
    pub serve_stale: Option<Duration>,
    /// Entries in the daemon's cache, every type [default: --cache-size].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    #[serde(default, deserialize_with = "file::positive")]
    pub daemon_cache_size: Option<u32>,
    /// Bytes the daemon's cache may take; past it the least recently used answers go
    /// [default: 128M].
    #[arg(long, value_name = "SIZE", value_parser = size::parse)]
    #[serde(default, deserialize_with = "file::size")]
    pub daemon_cache_memory: Option<u64>,
    /// Shortest time a positive answer is cached, in seconds; smaller TTLs are raised
    /// [default: 0].
    #[arg(long, value_name = "SECONDS")]
    #[serde(default, deserialize_with = "file::count_or_zero")]
    pub min_ttl: Option<u32>,
    /// Longest time an answer is cached, in seconds [default: 86400].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..))]
    #[serde(default, deserialize_with = "file::positive")]
    pub max_ttl: Option<u32>,
    /// Longest time an NXDOMAIN or NODATA answer is cached, in seconds [default: 3600].
    #[arg(long, value_name = "SECONDS")]
    #[serde(default, deserialize_with = "file::count_or_zero")]
    pub max_negative_ttl: Option<u32>,
    /// Fraction of each TTL an answer is cached and sent with, in both caches (e.g. 0.8): its
    /// TTLs count down from the scaled value, before --min-ttl and the maxima [default: 1].
    #[arg(long, value_name = "FACTOR", value_parser = parse_factor)]
    #[serde(default, deserialize_with = "ttl_factor")]
    pub ttl_factor: Option<f64>,
    /// Do not refresh popular answers before they expire (in the file: `prefetch = false`).
    #[arg(long = "no-prefetch", num_args = 0, default_missing_value = "false")]
    #[serde(default, deserialize_with = "file::flag")]
    pub prefetch: Option<bool>,
    /// Hits (XDP and daemon) an answer needs to be refreshed when queried in the last 10% of
    /// its TTL [default: 2].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    #[serde(default, deserialize_with = "file::positive")]
    pub prefetch_min_hits: Option<u32>,
    /// Log every query as a JSON line to FILE, or to standard output with `-`.
    #[arg(long, value_name = "FILE")]
    #[serde(default, deserialize_with = "file::path")]
    pub query_log: Option<PathBuf>,
    /// Log one XDP hit in N (daemon answers are all logged) [default: 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    #[serde(default, deserialize_with = "file::positive")]
    pub query_log_sample: Option<u32>,
}

/// The resolver as it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Entries in the daemon's cache.
    pub cache_size: u32,
    /// Bytes the daemon's cache may take.
    pub cache_memory: u64,
    pub ttl: TtlPolicy,
    /// How long a client waits for an answer.
    pub query_timeout: Duration,
    /// How long after expiry an answer may be served stale; zero: never.
    pub serve_stale: Duration,
    /// Hits an entry needs before it is refreshed ahead of expiry; `None`: no prefetch.
    pub prefetch_min_hits: Option<u32>,
    pub query_log: Option<QueryLogTarget>,
    /// One XDP hit in this many is logged.
    pub query_log_sample: u32,
}

impl Settings {
    /// Validated, with defaults where not set; `cache_size` where the daemon's is not.
    pub fn config(&self, cache_size: u32) -> anyhow::Result<Config> {
        Ok(Config {
            cache_size: self.daemon_cache_size.unwrap_or(cache_size),
            cache_memory: nonzero(
                "daemon-cache-memory",
                self.daemon_cache_memory,
                DEFAULT_CACHE_MEMORY,
            )?,
            ttl: TtlPolicy::new(
                self.min_ttl,
                self.max_ttl,
                self.max_negative_ttl,
                self.ttl_factor,
            )?,
            query_timeout: nonzero("query-timeout", self.query_timeout, DEFAULT_QUERY_TIMEOUT)?,
            serve_stale: self.serve_stale.unwrap_or(DEFAULT_SERVE_STALE),
            prefetch_min_hits: self
                .prefetch
                .unwrap_or(true)
                .then(|| self.prefetch_min_hits.unwrap_or(DEFAULT_PREFETCH_MIN_HITS)),
            query_log: self.query_log.clone().map(QueryLogTarget::from_path),
            query_log_sample: self.query_log_sample.unwrap_or(DEFAULT_QUERY_LOG_SAMPLE),
        })
    }
}

/// What a TTL factor takes.
const FACTOR: &str = "a number more than 0 and at most 1";

fn parse_factor(s: &str) -> Result<f64, String> {
    (s.parse().ok())
        .filter(|f| valid_factor(*f))
        .ok_or_else(|| format!("expected {FACTOR}, got \"{s}\""))
}

fn ttl_factor<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    file::read(d, FACTOR, |v| {
        let f = v.as_float().or(v.as_integer().map(|i| i as f64))?;
        valid_factor(f).then_some(f)
    })
}

fn valid_factor(f: f64) -> bool {
    f > 0.0 && f <= 1.0
}
