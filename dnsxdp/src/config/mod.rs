//! Run settings: the config file, merged under the command-line flags, validated into a
//! `Config` with defaults filled in.

pub mod resolv_conf;

use std::{
    io,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::ValueEnum;

use crate::{
    access::AccessPolicy,
    access::acl::DenyAction,
    access::ratelimit::LimitAction,
    cli::{DEFAULT_CONTROL, LogLevel, RunArgs, XdpMode},
    kernel::local_addrs::is_this_host,
    serve::TcpLimits,
    upstream::{pool::PoolSettings, spec::UpstreamSpec, strategy::Strategy},
    values::duration,
    values::size,
};

pub const DEFAULT_CACHE_SIZE: u32 = 65536;
/// Bytes the daemon's cache may take: a full cache of typical answers is far below it.
pub const DEFAULT_DAEMON_CACHE_MEMORY: u64 = 128 << 20;
/// Bytes the queries being answered may take.
pub const DEFAULT_IN_FLIGHT_MEMORY: u64 = 64 << 20;
pub const DEFAULT_MAX_TTL: u32 = 86400;
pub const DEFAULT_MAX_NEGATIVE_TTL: u32 = 3600;
pub const DEFAULT_PREFETCH_MIN_HITS: u32 = 2;
pub const DEFAULT_QUERY_LOG_SAMPLE: u32 = 1;
/// Where each run's kernel cache is pinned, under a directory named for its interfaces.
pub const PIN_ROOT: &str = "/sys/fs/bpf/dnsxdp";
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_MAX_FAILS: u32 = 3;
pub const DEFAULT_RETRIES: u32 = 2;
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_SERVE_STALE: Duration = Duration::from_secs(86400);

/// Settings from one source (flags or file); `None` where that source is silent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    pub iface: Option<Vec<String>>,
    pub listen: Option<Vec<String>>,
    pub upstream: Option<Vec<String>>,
    pub upstream_strategy: Option<Strategy>,
    pub upstream_timeout: Option<Duration>,
    pub upstream_max_fails: Option<u32>,
    pub upstream_retries: Option<u32>,
    pub query_timeout: Option<Duration>,
    pub serve_stale: Option<Duration>,
    pub tcp_connections: Option<u32>,
    pub tcp_connections_per_client: Option<u32>,
    pub tcp_idle_timeout: Option<Duration>,
    pub tls_ca: Option<PathBuf>,
    pub xdp_mode: Option<XdpMode>,
    pub no_xdp: Option<bool>,
    pub cache_size: Option<u32>,
    pub kernel_cache_size: Option<u32>,
    pub daemon_cache_size: Option<u32>,
    pub daemon_cache_memory: Option<u64>,
    pub in_flight_memory: Option<u64>,
    pub min_ttl: Option<u32>,
    pub max_ttl: Option<u32>,
    pub max_negative_ttl: Option<u32>,
    pub prefetch: Option<bool>,
    pub prefetch_min_hits: Option<u32>,
    pub fresh_cache: Option<bool>,
    pub pin_dir: Option<PathBuf>,
    pub metrics: Option<String>,
    pub query_log: Option<PathBuf>,
    pub query_log_sample: Option<u32>,
    pub log_level: Option<LogLevel>,
    pub control: Option<PathBuf>,
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub acl_action: Option<DenyAction>,
    pub ratelimit_qps: Option<u32>,
    pub ratelimit_burst: Option<u32>,
    pub ratelimit_v4_prefix: Option<u8>,
    pub ratelimit_v6_prefix: Option<u8>,
    pub ratelimit_action: Option<LimitAction>,
    pub ratelimit_exempt: Option<Vec<String>>,
}

/// The validated settings the daemon runs with.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub ifaces: Vec<String>,
    pub listen: Vec<SocketAddr>,
    pub upstreams: Vec<UpstreamSpec>,
    pub pool: PoolSettings,
    /// How long a client waits for an answer.
    pub query_timeout: Duration,
    /// How long after expiry an answer may be served stale; zero: never.
    pub serve_stale: Duration,
    pub tcp: TcpLimits,
    /// Certificate authorities for TLS upstreams instead of the system's.
    pub tls_ca: Option<PathBuf>,
    /// `None` with --no-xdp.
    pub xdp_mode: Option<XdpMode>,
    /// Entries in the XDP program's map.
    pub kernel_cache_size: u32,
    /// Entries in the daemon's cache.
    pub daemon_cache_size: u32,
    /// Bytes the daemon's cache may take.
    pub daemon_cache_memory: u64,
    /// Bytes the queries being answered may take.
    pub in_flight_memory: u64,
    pub ttl: TtlPolicy,
    /// Hits an entry needs before it is refreshed ahead of expiry; `None`: no prefetch.
    pub prefetch_min_hits: Option<u32>,
    /// Start with an empty kernel cache instead of the one pinned by the last run.
    pub fresh_cache: bool,
    /// Where the kernel cache is pinned between runs.
    pub pin_dir: PathBuf,
    /// Where the Prometheus endpoint listens, if anywhere.
    pub metrics: Option<SocketAddr>,
    pub query_log: Option<QueryLogTarget>,
    /// One XDP hit in this many is logged.
    pub query_log_sample: u32,
    pub log_level: LogLevel,
    pub control: PathBuf,
    /// ACL and rate limit: what a reload changes.
    pub access: AccessPolicy,
}

impl Settings {
    /// Each setting from `self`, or from `fallback` where `self` has none.
    pub fn or(self, fallback: Settings) -> Settings {
        Settings {
            iface: self.iface.or(fallback.iface),
            listen: self.listen.or(fallback.listen),
            upstream: self.upstream.or(fallback.upstream),
            upstream_strategy: self.upstream_strategy.or(fallback.upstream_strategy),
            upstream_timeout: self.upstream_timeout.or(fallback.upstream_timeout),
            upstream_max_fails: self.upstream_max_fails.or(fallback.upstream_max_fails),
            upstream_retries: self.upstream_retries.or(fallback.upstream_retries),
            query_timeout: self.query_timeout.or(fallback.query_timeout),
            serve_stale: self.serve_stale.or(fallback.serve_stale),
            tcp_connections: self.tcp_connections.or(fallback.tcp_connections),
            tcp_connections_per_client: self
                .tcp_connections_per_client
                .or(fallback.tcp_connections_per_client),
            tcp_idle_timeout: self.tcp_idle_timeout.or(fallback.tcp_idle_timeout),
            tls_ca: self.tls_ca.or(fallback.tls_ca),
            xdp_mode: self.xdp_mode.or(fallback.xdp_mode),
            no_xdp: self.no_xdp.or(fallback.no_xdp),
            cache_size: self.cache_size.or(fallback.cache_size),
            kernel_cache_size: self.kernel_cache_size.or(fallback.kernel_cache_size),
            daemon_cache_size: self.daemon_cache_size.or(fallback.daemon_cache_size),
            daemon_cache_memory: self.daemon_cache_memory.or(fallback.daemon_cache_memory),
            in_flight_memory: self.in_flight_memory.or(fallback.in_flight_memory),
            min_ttl: self.min_ttl.or(fallback.min_ttl),
            max_ttl: self.max_ttl.or(fallback.max_ttl),
            max_negative_ttl: self.max_negative_ttl.or(fallback.max_negative_ttl),
            prefetch: self.prefetch.or(fallback.prefetch),
            prefetch_min_hits: self.prefetch_min_hits.or(fallback.prefetch_min_hits),
            fresh_cache: self.fresh_cache.or(fallback.fresh_cache),
            pin_dir: self.pin_dir.or(fallback.pin_dir),
            metrics: self.metrics.or(fallback.metrics),
            query_log: self.query_log.or(fallback.query_log),
            query_log_sample: self.query_log_sample.or(fallback.query_log_sample),
            log_level: self.log_level.or(fallback.log_level),
            control: self.control.or(fallback.control),
            allow: self.allow.or(fallback.allow),
            deny: self.deny.or(fallback.deny),
            acl_action: self.acl_action.or(fallback.acl_action),
            ratelimit_qps: self.ratelimit_qps.or(fallback.ratelimit_qps),
            ratelimit_burst: self.ratelimit_burst.or(fallback.ratelimit_burst),
            ratelimit_v4_prefix: self.ratelimit_v4_prefix.or(fallback.ratelimit_v4_prefix),
            ratelimit_v6_prefix: self.ratelimit_v6_prefix.or(fallback.ratelimit_v6_prefix),
            ratelimit_action: self.ratelimit_action.or(fallback.ratelimit_action),
            ratelimit_exempt: self.ratelimit_exempt.or(fallback.ratelimit_exempt),
        }
    }

    /// Parses a config file's text. Keys are the long flag names; errors name the key, on one
    /// line even when a key or value has a line break in it.
    pub fn from_toml(text: &str) -> Result<Settings, String> {
        Self::read_toml(text).map_err(|e| e.replace('\n', "\\n"))
    }

    fn read_toml(text: &str) -> Result<Settings, String> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text[..s.start].matches('\n').count() + 1)
                .unwrap_or(1);
            let message: Vec<&str> = e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            format!("line {line}: {}", message.join(": "))
        })?;
        let mut s = Settings::default();
        for (key, value) in &table {
            let bad = |want: &str| format!("{key}: expected {want}, got {value}");
            match key.as_str() {
                "iface" => s.iface = Some(strings(value).ok_or_else(|| bad(STRINGS))?),
                "listen" => s.listen = Some(strings(value).ok_or_else(|| bad(STRINGS))?),
                "upstream" => s.upstream = Some(strings(value).ok_or_else(|| bad(STRINGS))?),
                "upstream-strategy" => {
                    s.upstream_strategy = Some(choice(value).ok_or_else(|| bad(STRATEGIES))?);
                }
                "upstream-timeout" => {
                    s.upstream_timeout = Some(time(value).ok_or_else(|| bad(duration::EXPECTED))?);
                }
                "upstream-max-fails" => {
                    s.upstream_max_fails = Some(count(value).ok_or_else(|| bad(COUNT_OR_ZERO))?);
                }
                "upstream-retries" => {
                    s.upstream_retries = Some(count(value).ok_or_else(|| bad(COUNT_OR_ZERO))?);
                }
                "query-timeout" => {
                    s.query_timeout = Some(time(value).ok_or_else(|| bad(duration::EXPECTED))?);
                }
                "serve-stale" => {
                    s.serve_stale = Some(time(value).ok_or_else(|| bad(duration::EXPECTED))?);
                }
                "tcp-connections" => {
                    s.tcp_connections = Some(positive(value).ok_or_else(|| bad(COUNT))?);
                }
                "tcp-connections-per-client" => {
                    s.tcp_connections_per_client = Some(positive(value).ok_or_else(|| bad(COUNT))?);
                }
                "tcp-idle-timeout" => {
                    s.tcp_idle_timeout = Some(time(value).ok_or_else(|| bad(duration::EXPECTED))?);
                }
                "tls-ca" => s.tls_ca = Some(value.as_str().ok_or_else(|| bad("a path"))?.into()),
                "xdp-mode" => s.xdp_mode = Some(choice(value).ok_or_else(|| bad(XDP_MODES))?),
                "no-xdp" => s.no_xdp = Some(value.as_bool().ok_or_else(|| bad(BOOL))?),
                "cache-size" => s.cache_size = Some(positive(value).ok_or_else(|| bad(COUNT))?),
                "kernel-cache-size" => {
                    s.kernel_cache_size = Some(positive(value).ok_or_else(|| bad(COUNT))?);
                }
                "daemon-cache-size" => {
                    s.daemon_cache_size = Some(positive(value).ok_or_else(|| bad(COUNT))?);
                }
                "daemon-cache-memory" => {
                    s.daemon_cache_memory = Some(bytes(value).ok_or_else(|| bad(size::EXPECTED))?);
                }
                "in-flight-memory" => {
                    s.in_flight_memory = Some(bytes(value).ok_or_else(|| bad(size::EXPECTED))?);
                }
                "min-ttl" => s.min_ttl = Some(count(value).ok_or_else(|| bad(COUNT_OR_ZERO))?),
                "max-ttl" => s.max_ttl = Some(positive(value).ok_or_else(|| bad(COUNT))?),
                "max-negative-ttl" => {
                    s.max_negative_ttl = Some(count(value).ok_or_else(|| bad(COUNT_OR_ZERO))?);
                }
                "prefetch" => s.prefetch = Some(value.as_bool().ok_or_else(|| bad(BOOL))?),
                "prefetch-min-hits" => {
                    s.prefetch_min_hits = Some(positive(value).ok_or_else(|| bad(COUNT))?);
                }
                "fresh-cache" => s.fresh_cache = Some(value.as_bool().ok_or_else(|| bad(BOOL))?),
                "pin-dir" => s.pin_dir = Some(value.as_str().ok_or_else(|| bad("a path"))?.into()),
                "metrics" => {
                    s.metrics = Some(value.as_str().ok_or_else(|| bad("ADDR:PORT"))?.into());
                }
                "query-log" => {
                    s.query_log = Some(value.as_str().ok_or_else(|| bad("a path or -"))?.into());
                }
                "query-log-sample" => {
                    s.query_log_sample = Some(positive(value).ok_or_else(|| bad(COUNT))?);
                }
                "log-level" => s.log_level = Some(choice(value).ok_or_else(|| bad(LOG_LEVELS))?),
                "control" => s.control = Some(value.as_str().ok_or_else(|| bad("a path"))?.into()),
                "allow" => s.allow = Some(strings(value).ok_or_else(|| bad(STRINGS))?),
                "deny" => s.deny = Some(strings(value).ok_or_else(|| bad(STRINGS))?),
                "acl-action" => s.acl_action = Some(choice(value).ok_or_else(|| bad(ACL_ACTIONS))?),
                "ratelimit-qps" => {
                    s.ratelimit_qps = Some(positive(value).ok_or_else(|| bad(COUNT))?)
                }
                "ratelimit-burst" => {
                    s.ratelimit_burst = Some(positive(value).ok_or_else(|| bad(COUNT))?);
                }
                "ratelimit-v4-prefix" => {
                    s.ratelimit_v4_prefix = Some(bits(value, 32).ok_or_else(|| bad(V4_BITS))?);
                }
                "ratelimit-v6-prefix" => {
                    s.ratelimit_v6_prefix = Some(bits(value, 128).ok_or_else(|| bad(V6_BITS))?);
                }
                "ratelimit-action" => {
                    let action = value.as_str().and_then(|a| a.parse().ok());
                    s.ratelimit_action = Some(action.ok_or_else(|| bad(LIMIT_ACTIONS))?);
                }
                "ratelimit-exempt" => {
                    s.ratelimit_exempt = Some(strings(value).ok_or_else(|| bad(STRINGS))?);
                }
                _ => return Err(format!("unknown key `{key}`")),
            }
        }
        Ok(s)
    }
}

/// What the config file keys take, for error messages.
const STRINGS: &str = "a string or list of strings";
const BOOL: &str = "true or false";
const COUNT: &str = "an integer from 1 to 4294967295";
const COUNT_OR_ZERO: &str = "an integer from 0 to 4294967295";
const STRATEGIES: &str = "one of round-robin, weighted, fastest, ordered";
const XDP_MODES: &str = "one of auto, native, skb";
const LOG_LEVELS: &str = "one of error, warn, info, debug, trace";
const ACL_ACTIONS: &str = "one of drop, refuse";
const LIMIT_ACTIONS: &str = "drop or slip:N";
const V4_BITS: &str = "an integer from 0 to 32";
const V6_BITS: &str = "an integer from 0 to 128";

fn strings(value: &toml::Value) -> Option<Vec<String>> {
    match value {
        toml::Value::String(s) => Some(vec![s.clone()]),
        toml::Value::Array(a) => a.iter().map(|v| v.as_str().map(String::from)).collect(),
        _ => None,
    }
}

fn choice<T: ValueEnum>(value: &toml::Value) -> Option<T> {
    T::from_str(value.as_str()?, false).ok()
}

fn positive(value: &toml::Value) -> Option<u32> {
    count(value).filter(|&n| n > 0)
}

fn count(value: &toml::Value) -> Option<u32> {
    u32::try_from(value.as_integer()?).ok()
}

/// A prefix length of at most `max` bits.
fn bits(value: &toml::Value, max: u8) -> Option<u8> {
    u8::try_from(value.as_integer()?).ok().filter(|&b| b <= max)
}

/// A duration string, or a number of seconds.
/// A size of more than 0 bytes: `64M`, or a bare number of bytes.
fn bytes(value: &toml::Value) -> Option<u64> {
    match value {
        toml::Value::String(s) => size::parse(s).ok(),
        toml::Value::Integer(n) => u64::try_from(*n).ok(),
        _ => None,
    }
    .filter(|&n| n > 0)
}

fn time(value: &toml::Value) -> Option<Duration> {
    match value {
        toml::Value::String(s) => duration::parse(s).ok(),
        toml::Value::Integer(secs) => u64::try_from(*secs).ok().map(Duration::from_secs),
        _ => None,
    }
}

/// Reads the config file named by --config.
pub fn load_file(path: &Path) -> anyhow::Result<Settings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    Settings::from_toml(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
}

/// The settings from the command line over those of its --config file.
pub fn settings(args: &RunArgs) -> anyhow::Result<Settings> {
    let file = match &args.config {
        Some(path) => load_file(path)?,
        None => Settings::default(),
    };
    Ok(args.settings().or(file))
}

/// The pin dir: as set, else one under PIN_ROOT named for the interfaces.
pub fn pin_dir(set: Option<PathBuf>, ifaces: &[String]) -> PathBuf {
    set.unwrap_or_else(|| Path::new(PIN_ROOT).join(ifaces.join("+")))
}

/// `ADDR:PORT` to serve on.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!("invalid listen address '{s}': expected ADDR:PORT, e.g. 0.0.0.0:53 or [::]:53")
    })
}

impl Config {
    /// Validates `s` and fills in defaults. `local` are this host's addresses; `resolv_conf`
    /// reads the system resolver configuration, consulted only when no upstream is given.
    pub fn resolve(
        s: Settings,
        local: &[IpAddr],
        resolv_conf: impl FnOnce() -> io::Result<String>,
    ) -> anyhow::Result<Config> {
        let access = AccessPolicy::from_settings(&s).map_err(anyhow::Error::msg)?;
        let no_xdp = s.no_xdp.unwrap_or(false);
        let ifaces = s.iface.unwrap_or_default();
        if !no_xdp && ifaces.is_empty() {
            bail!("no --iface given: name the interface(s) to attach to, or pass --no-xdp");
        }
        let listen = match s.listen {
            Some(l) => l
                .iter()
                .map(|a| parse_listen(a))
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?,
            None => vec!["0.0.0.0:53".parse()?, "[::]:53".parse()?],
        };
        let upstreams = match s.upstream {
            Some(u) => u
                .iter()
                .map(|a| UpstreamSpec::parse(a))
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?,
            None => {
                let text = resolv_conf()
                    .context("reading /etc/resolv.conf for upstreams (or pass --upstream)")?;
                let found = crate::config::resolv_conf::upstreams(&text, local);
                if found.is_empty() {
                    bail!(
                        "no upstream: /etc/resolv.conf names no nameserver other than this host; pass --upstream URL"
                    );
                }
                found.into_iter().map(UpstreamSpec::udp).collect()
            }
        };
        if let Some(up) = upstreams.iter().find(|up| serves(&listen, local, up.addr)) {
            bail!("upstream {up} is this server's own listen address: pass a different --upstream");
        }
        let tcp = tcp_limits(
            s.tcp_connections,
            s.tcp_connections_per_client,
            s.tcp_idle_timeout,
        )?;
        let pin_dir = pin_dir(s.pin_dir, &ifaces);
        let ttl = TtlPolicy {
            min: s.min_ttl.unwrap_or(0),
            max: s.max_ttl.unwrap_or(DEFAULT_MAX_TTL),
            max_negative: s.max_negative_ttl.unwrap_or(DEFAULT_MAX_NEGATIVE_TTL),
        };
        if ttl.min > ttl.max {
            bail!("min-ttl: {} is more than max-ttl ({})", ttl.min, ttl.max);
        }
        let positive = |key: &str, d: Option<Duration>, default: Duration| match d {
            Some(Duration::ZERO) => bail!("{key}: must be more than 0"),
            d => Ok(d.unwrap_or(default)),
        };
        let memory = |key: &str, bytes: Option<u64>, default: u64| match bytes {
            Some(0) => bail!("{key}: must be more than 0"),
            bytes => Ok(bytes.unwrap_or(default)),
        };
        let daemon_cache_memory = memory(
            "daemon-cache-memory",
            s.daemon_cache_memory,
            DEFAULT_DAEMON_CACHE_MEMORY,
        )?;
        let in_flight_memory = memory(
            "in-flight-memory",
            s.in_flight_memory,
            DEFAULT_IN_FLIGHT_MEMORY,
        )?;
        Ok(Config {
            ifaces,
            listen,
            upstreams,
            pool: PoolSettings {
                strategy: s.upstream_strategy.unwrap_or_default(),
                attempt_timeout: positive(
                    "upstream-timeout",
                    s.upstream_timeout,
                    DEFAULT_UPSTREAM_TIMEOUT,
                )?,
                max_fails: s.upstream_max_fails.unwrap_or(DEFAULT_MAX_FAILS),
                retries: s.upstream_retries.unwrap_or(DEFAULT_RETRIES),
            },
            query_timeout: positive("query-timeout", s.query_timeout, DEFAULT_QUERY_TIMEOUT)?,
            serve_stale: s.serve_stale.unwrap_or(DEFAULT_SERVE_STALE),
            tcp,
            tls_ca: s.tls_ca,
            xdp_mode: (!no_xdp).then(|| s.xdp_mode.unwrap_or_default()),
            kernel_cache_size: s
                .kernel_cache_size
                .or(s.cache_size)
                .unwrap_or(DEFAULT_CACHE_SIZE),
            daemon_cache_memory,
            in_flight_memory,
            daemon_cache_size: s
                .daemon_cache_size
                .or(s.cache_size)
                .unwrap_or(DEFAULT_CACHE_SIZE),
            ttl,
            prefetch_min_hits: s
                .prefetch
                .unwrap_or(true)
                .then(|| s.prefetch_min_hits.unwrap_or(DEFAULT_PREFETCH_MIN_HITS)),
            fresh_cache: s.fresh_cache.unwrap_or(false),
            pin_dir,
            metrics: s
                .metrics
                .map(|m| {
                    m.parse().map_err(|_| {
                        anyhow::anyhow!("metrics: invalid address '{m}': expected ADDR:PORT, e.g. 127.0.0.1:9153")
                    })
                })
                .transpose()?,
            query_log: s.query_log.map(QueryLogTarget::from_path),
            query_log_sample: s.query_log_sample.unwrap_or(DEFAULT_QUERY_LOG_SAMPLE),
            log_level: s.log_level.unwrap_or_default(),
            control: s.control.unwrap_or_else(|| DEFAULT_CONTROL.into()),
            access,
        })
    }
}

/// How long answers are cached, in seconds (Unbound's cache-min-ttl, cache-max-ttl and
/// cache-max-negative-ttl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TtlPolicy {
    /// Positive answers with a smaller TTL are cached, and sent, with this one.
    pub min: u32,
    /// Every TTL is capped at this.
    pub max: u32,
    /// NXDOMAIN and NODATA are cached for at most this.
    pub max_negative: u32,
}

impl Default for TtlPolicy {
    fn default() -> Self {
        TtlPolicy {
            min: 0,
            max: DEFAULT_MAX_TTL,
            max_negative: DEFAULT_MAX_NEGATIVE_TTL,
        }
    }
}

/// Where query log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryLogTarget {
    Stdout,
    File(PathBuf),
}

impl QueryLogTarget {
    /// For messages: the path, or standard output.
    pub fn describe(&self) -> String {
        match self {
            QueryLogTarget::Stdout => "standard output".into(),
            QueryLogTarget::File(path) => path.display().to_string(),
        }
    }

    /// `-` is standard output.
    fn from_path(path: PathBuf) -> QueryLogTarget {
        match path.as_os_str() == "-" {
            true => QueryLogTarget::Stdout,
            false => QueryLogTarget::File(path),
        }
    }
}

/// The TCP limits, defaults where not set; a zero timeout is an error naming its key.
fn tcp_limits(
    connections: Option<u32>,
    per_client: Option<u32>,
    idle_timeout: Option<Duration>,
) -> anyhow::Result<TcpLimits> {
    let default = TcpLimits::default();
    if idle_timeout == Some(Duration::ZERO) {
        bail!("tcp-idle-timeout: must be more than 0");
    }
    Ok(TcpLimits {
        connections: connections.map_or(default.connections, |n| n as usize),
        per_client: per_client.map_or(default.per_client, |n| n as usize),
        idle_timeout: idle_timeout.unwrap_or(default.idle_timeout),
    })
}

/// Whether a query to `addr` would reach one of the `listen` sockets.
fn serves(listen: &[SocketAddr], local: &[IpAddr], addr: SocketAddr) -> bool {
    listen.iter().any(|l| {
        l.port() == addr.port()
            && (l.ip() == addr.ip()
                || (l.ip().is_unspecified()
                    && l.is_ipv4() == addr.is_ipv4()
                    && is_this_host(addr.ip(), local)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_resolv_conf() -> io::Result<String> {
        panic!("resolv.conf read although upstreams were given")
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn udp(s: &str) -> UpstreamSpec {
        UpstreamSpec::udp(sa(s))
    }

    #[test]
    fn file_keys_parse() {
        let s = Settings::from_toml(
            r#"
            iface = "eth0"
            listen = ["198.18.1.1:53", "[fd00::1]:5353"]
            upstream = ["198.18.0.2:53"]
            xdp-mode = "skb"
            no-xdp = false
            cache-size = 10000
            max-ttl = 300
            log-level = "debug"
            control = "/tmp/c.sock"
            upstream-strategy = "weighted"
            upstream-timeout = "300ms"
            upstream-max-fails = 0
            upstream-retries = 4
            query-timeout = 3
            serve-stale = "1h"
            tls-ca = "/etc/dnsxdp/ca.pem"
            "#,
        )
        .unwrap();
        assert_eq!(s.upstream_strategy, Some(Strategy::Weighted));
        assert_eq!(s.upstream_timeout, Some(Duration::from_millis(300)));
        assert_eq!(s.upstream_max_fails, Some(0));
        assert_eq!(s.upstream_retries, Some(4));
        assert_eq!(s.query_timeout, Some(Duration::from_secs(3)));
        assert_eq!(s.serve_stale, Some(Duration::from_secs(3600)));
        assert_eq!(s.tls_ca, Some("/etc/dnsxdp/ca.pem".into()));
        assert_eq!(s.iface, Some(vec!["eth0".into()]));
        assert_eq!(s.listen.as_ref().unwrap().len(), 2);
        assert_eq!(s.xdp_mode, Some(XdpMode::Skb));
        assert_eq!(s.no_xdp, Some(false));
        assert_eq!(s.cache_size, Some(10000));
        assert_eq!(s.max_ttl, Some(300));
        assert_eq!(s.log_level, Some(LogLevel::Debug));
        assert_eq!(s.control, Some("/tmp/c.sock".into()));
    }

    #[test]
    fn file_errors_name_the_key_on_one_line() {
        let e = Settings::from_toml("cache_size = 5").unwrap_err();
        assert_eq!(e, "unknown key `cache_size`");
        let e = Settings::from_toml("cache-size = \"big\"").unwrap_err();
        assert!(e.starts_with("cache-size: expected an integer"), "{e}");
        let e = Settings::from_toml("cache-size = 0").unwrap_err();
        assert!(e.starts_with("cache-size:"), "{e}");
        let e = Settings::from_toml("xdp-mode = \"fast\"").unwrap_err();
        assert!(e.starts_with("xdp-mode: expected one of auto"), "{e}");
        let e = Settings::from_toml("upstream = [1, 2]").unwrap_err();
        assert!(e.starts_with("upstream:"), "{e}");
        let e = Settings::from_toml("upstream-strategy = \"random\"").unwrap_err();
        assert!(
            e.starts_with("upstream-strategy: expected one of round-robin"),
            "{e}"
        );
        let e = Settings::from_toml("acl-action = \"drop\\nnow\"").unwrap_err();
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.starts_with("acl-action: expected"), "{e}");
        let e = Settings::from_toml("[\"a\\nb\".c]").unwrap_err();
        assert_eq!(e, "unknown key `a\\nb`");
        let e = Settings::from_toml("query-timeout = \"2 sec\"").unwrap_err();
        assert!(e.starts_with("query-timeout: expected a duration"), "{e}");
        let e = Settings::from_toml("serve-stale = -1").unwrap_err();
        assert!(e.starts_with("serve-stale: expected a duration"), "{e}");
        let e = Settings::from_toml("upstream-max-fails = -1").unwrap_err();
        assert!(
            e.starts_with("upstream-max-fails: expected an integer"),
            "{e}"
        );
        let e = Settings::from_toml("a = 1\nlisten = [").unwrap_err();
        assert!(e.starts_with("line 2:") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = Settings::from_toml(
            "upstream = [\"198.18.0.2\"]\ncache-size = 10\nmax-ttl = 60\nno-xdp = true",
        )
        .unwrap();
        let flags = Settings {
            upstream: Some(vec!["198.18.0.3:5353".into()]),
            cache_size: Some(20),
            ..Default::default()
        };
        let c = Config::resolve(flags.or(file), &[], no_resolv_conf).unwrap();
        assert_eq!(c.upstreams, vec![udp("198.18.0.3:5353")]);
        assert_eq!((c.kernel_cache_size, c.daemon_cache_size), (20, 20));
        assert_eq!(c.ttl.max, 60);
        assert_eq!(c.xdp_mode, None);
    }

    #[test]
    fn defaults() {
        let s = Settings {
            iface: Some(vec!["eth0".into()]),
            upstream: Some(vec!["fd00::2".into()]),
            ..Default::default()
        };
        let c = Config::resolve(s, &[], no_resolv_conf).unwrap();
        assert_eq!(c.listen, vec![sa("0.0.0.0:53"), sa("[::]:53")]);
        assert_eq!(c.upstreams, vec![udp("[fd00::2]:53")]);
        assert_eq!(c.xdp_mode, Some(XdpMode::Auto));
        assert_eq!(c.kernel_cache_size, DEFAULT_CACHE_SIZE);
        assert_eq!(c.daemon_cache_size, DEFAULT_CACHE_SIZE);
        assert_eq!(c.ttl, TtlPolicy::default());
        assert_eq!(c.prefetch_min_hits, Some(DEFAULT_PREFETCH_MIN_HITS));
        assert!(!c.fresh_cache);
        assert_eq!(c.pin_dir, PathBuf::from("/sys/fs/bpf/dnsxdp/eth0"));
        assert_eq!((c.metrics, c.query_log.clone()), (None, None));
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(c.control, PathBuf::from(DEFAULT_CONTROL));
        assert_eq!(
            c.pool,
            PoolSettings {
                strategy: Strategy::Ordered,
                attempt_timeout: Duration::from_secs(1),
                max_fails: 3,
                retries: 2,
            }
        );
        assert_eq!(c.query_timeout, Duration::from_secs(2));
        assert_eq!(c.serve_stale, Duration::from_secs(86400));
        assert_eq!(c.tls_ca, None);
        assert_eq!(c.tcp, TcpLimits::default());
    }

    #[test]
    fn memory_sizes_come_from_the_file_and_zero_is_refused() {
        let s =
            Settings::from_toml("daemon-cache-memory = \"16M\"\nin-flight-memory = 4096").unwrap();
        assert_eq!(
            (s.daemon_cache_memory, s.in_flight_memory),
            (Some(16 << 20), Some(4096))
        );
        let e = Settings::from_toml("daemon-cache-memory = \"lots\"").unwrap_err();
        assert!(e.starts_with("daemon-cache-memory: expected a size"), "{e}");
        let e = Settings::from_toml("in-flight-memory = 0").unwrap_err();
        assert!(e.starts_with("in-flight-memory: expected a size"), "{e}");
        let zero = Settings {
            no_xdp: Some(true),
            upstream: Some(vec!["198.18.0.2".into()]),
            daemon_cache_memory: Some(0),
            ..Default::default()
        };
        let e = Config::resolve(zero, &[], no_resolv_conf).unwrap_err();
        assert_eq!(e.to_string(), "daemon-cache-memory: must be more than 0");
    }

    #[test]
    fn tcp_limits_come_from_the_file_and_a_zero_timeout_is_refused() {
        let s = Settings::from_toml(
            "tcp-connections = 100\ntcp-connections-per-client = 4\ntcp-idle-timeout = \"2s\"",
        )
        .unwrap();
        let resolve = |s: Settings| {
            let s = Settings {
                no_xdp: Some(true),
                upstream: Some(vec!["198.18.0.2".into()]),
                ..s
            };
            Config::resolve(s, &[], no_resolv_conf)
        };
        let c = resolve(s).unwrap();
        assert_eq!(
            c.tcp,
            TcpLimits {
                connections: 100,
                per_client: 4,
                idle_timeout: Duration::from_secs(2),
            }
        );
        let e = Settings::from_toml("tcp-connections = 0").unwrap_err();
        assert!(e.starts_with("tcp-connections: expected"), "{e}");
        let zero = Settings::from_toml("tcp-idle-timeout = 0").unwrap();
        let e = resolve(zero).unwrap_err().to_string();
        assert_eq!(e, "tcp-idle-timeout: must be more than 0");
    }

    #[test]
    fn upstream_urls_and_timeouts_are_checked() {
        let s = |upstream: &str| Settings {
            no_xdp: Some(true),
            upstream: Some(vec![upstream.into()]),
            ..Default::default()
        };
        let c = Config::resolve(s("tls://198.18.0.2#dns.example"), &[], no_resolv_conf).unwrap();
        assert_eq!(
            c.upstreams[0].to_string(),
            "tls://198.18.0.2:853#dns.example"
        );
        let e = Config::resolve(s("dns.example"), &[], no_resolv_conf).unwrap_err();
        assert!(
            e.to_string().starts_with("invalid upstream 'dns.example'"),
            "{e}"
        );
        for (key, settings) in [
            (
                "upstream-timeout",
                Settings {
                    upstream_timeout: Some(Duration::ZERO),
                    ..s("198.18.0.2")
                },
            ),
            (
                "query-timeout",
                Settings {
                    query_timeout: Some(Duration::ZERO),
                    ..s("198.18.0.2")
                },
            ),
        ] {
            let e = Config::resolve(settings, &[], no_resolv_conf).unwrap_err();
            assert_eq!(e.to_string(), format!("{key}: must be more than 0"));
        }
    }

    #[test]
    fn access_keys_parse_and_are_checked() {
        let s = Settings::from_toml(
            r#"
            no-xdp = true
            upstream = "198.18.0.2"
            allow = ["198.18.0.0/15", "fd00::/8"]
            deny = "198.18.1.50"
            acl-action = "refuse"
            ratelimit-qps = 20
            ratelimit-burst = 40
            ratelimit-v4-prefix = 24
            ratelimit-v6-prefix = 56
            ratelimit-action = "slip:2"
            ratelimit-exempt = ["198.18.1.2/32"]
            "#,
        )
        .unwrap();
        let c = Config::resolve(s, &[], no_resolv_conf).unwrap();
        let a = &c.access;
        assert_eq!(a.deny, DenyAction::Refuse);
        let limit = a.limit.unwrap();
        assert_eq!((limit.qps, limit.burst), (20, 40));
        assert_eq!((limit.v4_prefix, limit.v6_prefix), (24, 56));
        assert_eq!(limit.action, LimitAction::Slip(2));
        assert_eq!(a.exempt, ["198.18.1.2/32".parse().unwrap()]);
        assert!(a.acl.allows("198.18.1.2".parse().unwrap()));
        assert!(!a.acl.allows("198.18.1.50".parse().unwrap()));

        for (line, error) in [
            (
                "ratelimit-v4-prefix = 33",
                "ratelimit-v4-prefix: expected an integer from 0 to 32",
            ),
            (
                "ratelimit-action = \"slip:0\"",
                "ratelimit-action: expected drop or slip:N",
            ),
            (
                "acl-action = \"reject\"",
                "acl-action: expected one of drop, refuse",
            ),
            (
                "ratelimit-qps = 0",
                "ratelimit-qps: expected an integer from 1",
            ),
        ] {
            let e = Settings::from_toml(line).unwrap_err();
            assert!(e.starts_with(error), "{e}");
        }
        let resolve = |text: &str| {
            let s =
                Settings::from_toml(&format!("no-xdp = true\nupstream = \"198.18.0.2\"\n{text}"));
            Config::resolve(s.unwrap(), &[], no_resolv_conf).map(|_| ())
        };
        for (text, error) in [
            (
                "allow = \"10.0.0.1/8\"",
                "allow: invalid prefix '10.0.0.1/8': bits set past /8",
            ),
            ("deny = \"nowhere\"", "deny: invalid prefix 'nowhere'"),
            (
                "ratelimit-burst = 5",
                "ratelimit-burst: there is no rate limit",
            ),
            (
                "allow = \"10.0.0.0/8\"\ndeny = \"10.0.0.0/8\"",
                "10.0.0.0/8 is both allowed and denied",
            ),
        ] {
            let e = resolve(text).unwrap_err().to_string();
            assert!(e.starts_with(error) && !e.contains('\n'), "{e}");
        }
        let c = Config::resolve(
            Settings {
                no_xdp: Some(true),
                upstream: Some(vec!["198.18.0.2".into()]),
                ..Default::default()
            },
            &[],
            no_resolv_conf,
        )
        .unwrap();
        assert_eq!(c.access.limit, None);
        assert_eq!(c.access.deny, DenyAction::Drop);
        assert!(c.access.acl.allows("192.168.0.1".parse().unwrap()));
    }

    #[test]
    fn cache_keys_parse_and_are_checked() {
        let s = Settings::from_toml(
            r#"
            no-xdp = true
            upstream = "198.18.0.2"
            cache-size = 100
            daemon-cache-size = 5000
            min-ttl = 30
            max-ttl = 600
            max-negative-ttl = 0
            prefetch = false
            fresh-cache = true
            pin-dir = "/sys/fs/bpf/x"
            metrics = "127.0.0.1:9153"
            query-log = "-"
            query-log-sample = 10
            "#,
        )
        .unwrap();
        let c = Config::resolve(s, &[], no_resolv_conf).unwrap();
        assert_eq!((c.kernel_cache_size, c.daemon_cache_size), (100, 5000));
        assert_eq!(
            c.ttl,
            TtlPolicy {
                min: 30,
                max: 600,
                max_negative: 0
            }
        );
        assert_eq!(c.prefetch_min_hits, None);
        assert!(c.fresh_cache);
        assert_eq!(c.pin_dir, PathBuf::from("/sys/fs/bpf/x"));
        assert_eq!(c.metrics, Some(sa("127.0.0.1:9153")));
        assert_eq!(c.query_log, Some(QueryLogTarget::Stdout));
        assert_eq!(c.query_log_sample, 10);
        let resolve = |text: &str| {
            let s =
                Settings::from_toml(&format!("no-xdp = true\nupstream = \"198.18.0.2\"\n{text}"));
            Config::resolve(s?, &[], no_resolv_conf).map_err(|e| e.to_string())
        };
        assert_eq!(
            resolve("min-ttl = 100\nmax-ttl = 50").unwrap_err(),
            "min-ttl: 100 is more than max-ttl (50)"
        );
        assert!(
            resolve("metrics = \"localhost\"")
                .unwrap_err()
                .starts_with("metrics: invalid address 'localhost'")
        );
        assert!(
            resolve("prefetch = 1")
                .unwrap_err()
                .starts_with("prefetch: expected true or false")
        );
        assert!(
            resolve("query-log-sample = 0")
                .unwrap_err()
                .starts_with("query-log-sample: expected an integer from 1")
        );
    }

    #[test]
    fn iface_is_required_unless_no_xdp() {
        let e = Config::resolve(Settings::default(), &[], no_resolv_conf).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no --iface given: name the interface(s) to attach to, or pass --no-xdp"
        );
    }

    #[test]
    fn bad_listen_is_reported() {
        let s = Settings {
            no_xdp: Some(true),
            listen: Some(vec!["localhost:53".into()]),
            upstream: Some(vec!["198.18.0.2".into()]),
            ..Default::default()
        };
        let e = Config::resolve(s, &[], no_resolv_conf).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid listen address 'localhost:53'")
        );
    }

    #[test]
    fn upstreams_default_to_resolv_conf_without_this_host() {
        let local = ["198.18.1.1".parse().unwrap()];
        let s = Settings {
            no_xdp: Some(true),
            ..Default::default()
        };
        let c = Config::resolve(s.clone(), &local, || {
            Ok("nameserver 127.0.0.53\nnameserver 198.18.1.1\nnameserver 198.18.0.2\n".into())
        })
        .unwrap();
        assert_eq!(c.upstreams, vec![udp("198.18.0.2:53")]);
        let e = Config::resolve(s, &local, || Ok("nameserver 127.0.0.53\n".into())).unwrap_err();
        assert!(e.to_string().contains("pass --upstream"), "{e}");
    }

    #[test]
    fn an_upstream_that_is_our_own_socket_is_refused() {
        let local = ["198.18.1.1".parse().unwrap()];
        let s = |listen: &str, up: &str| Settings {
            no_xdp: Some(true),
            listen: Some(vec![listen.into()]),
            upstream: Some(vec![up.into()]),
            ..Default::default()
        };
        assert!(Config::resolve(s("198.18.1.1:53", "198.18.1.1"), &local, no_resolv_conf).is_err());
        assert!(Config::resolve(s("0.0.0.0:53", "127.0.0.1"), &local, no_resolv_conf).is_err());
        assert!(
            Config::resolve(s("0.0.0.0:53", "198.18.1.1:5353"), &local, no_resolv_conf).is_ok()
        );
        assert!(Config::resolve(s("[::]:53", "198.18.1.1"), &local, no_resolv_conf).is_ok());
    }
}
