//! Run settings: one struct that is both `dnsxdp run`'s flags and its config file's keys,
//! made of the sections each component declares beside itself. The file is merged under the
//! flags and validated into a `Config` with defaults filled in.

pub mod resolv_conf;

use std::{
    io,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use clap::{ArgMatches, Args, FromArgMatches as _};
use serde::Deserialize;

use crate::{
    access::{self, AccessPolicy},
    filter,
    kernel::{self, local_addrs::is_this_host},
    local, ops, resolve, serve, upstream,
    values::file,
};

const DEFAULT_CACHE_SIZE: u32 = 65536;

/// Settings from one source (flags or file); `None` where that source is silent. A key is the
/// flag's long name; each section's `config` says what its keys mean.
#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[group(skip)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    #[command(flatten)]
    #[serde(flatten)]
    pub kernel: kernel::settings::Settings,
    #[command(flatten)]
    #[serde(flatten)]
    pub serve: serve::settings::Settings,
    #[command(flatten)]
    #[serde(flatten)]
    pub upstream: upstream::settings::Settings,
    /// Entries in both the kernel and the daemon cache, unless set apart [default: 65536].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    #[serde(default, deserialize_with = "file::positive")]
    pub cache_size: Option<u32>,
    #[command(flatten)]
    #[serde(flatten)]
    pub resolve: resolve::settings::Settings,
    #[command(flatten)]
    #[serde(flatten)]
    pub access: access::settings::Settings,
    #[command(flatten)]
    #[serde(flatten)]
    pub filter: filter::settings::Settings,
    #[command(flatten)]
    #[serde(flatten)]
    pub local: local::settings::Settings,
    #[command(flatten)]
    #[serde(flatten)]
    pub ops: ops::settings::Settings,
}

/// The validated settings the daemon runs with, by component.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub kernel: kernel::settings::Config,
    pub serve: serve::settings::Config,
    pub upstream: upstream::settings::Config,
    pub resolve: resolve::settings::Config,
    /// ACL and rate limit: what a reload changes.
    pub access: AccessPolicy,
    pub filter: filter::settings::Config,
    /// Local records: a reload reads them again.
    pub local: local::settings::Config,
    pub ops: ops::settings::Config,
}

impl Settings {
    /// Parses a config file's text. Errors name the key, on one line even when a key or value
    /// has a line break in it.
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
        let keys = Self::keys();
        // One key at a time first, so that the error names the key it is about.
        for (key, value) in &table {
            if !keys.contains(key) {
                return Err(format!("unknown key `{key}`"));
            }
            let one = toml::Table::from_iter([(key.clone(), value.clone())]);
            Self::deserialize_table(one).map_err(|e| format!("{key}: {e}"))?;
        }
        Self::deserialize_table(table)
    }

    fn deserialize_table(table: toml::Table) -> Result<Settings, String> {
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| e.message().trim().to_string())
    }

    /// The file's keys: the flags' names (`prefetch` is the one whose flag is its negation).
    fn keys() -> Vec<String> {
        Self::augment_args(clap::Command::new("dnsxdp"))
            .get_arguments()
            .map(|a| a.get_id().as_str().replace('_', "-"))
            .collect()
    }
}

/// Where `dnsxdp run`'s settings come from: its flags, over its config file. Kept for reloads,
/// which read the file again.
#[derive(Clone, Debug)]
pub struct Sources {
    pub file: Option<PathBuf>,
    /// The `run` subcommand's matches.
    pub flags: ArgMatches,
}

impl Sources {
    /// The settings from the command line over those of its config file.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut settings = match &self.file {
            Some(path) => load_file(path)?,
            None => Settings::default(),
        };
        settings.update_from_arg_matches(&self.flags)?;
        Ok(settings)
    }
}

/// Reads a config file.
pub fn load_file(path: &Path) -> anyhow::Result<Settings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    Settings::from_toml(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
}

impl Config {
    /// Validates `s` and fills in defaults. `local` are this host's addresses; `resolv_conf`
    /// reads the system resolver configuration, consulted only when no upstream is given.
    pub fn resolve(
        s: Settings,
        local: &[IpAddr],
        resolv_conf: impl FnOnce() -> io::Result<String>,
    ) -> anyhow::Result<Config> {
        let access = AccessPolicy::from_settings(&s.access).map_err(anyhow::Error::msg)?;
        let cache_size = s.cache_size.unwrap_or(DEFAULT_CACHE_SIZE);
        let kernel = s.kernel.config(cache_size)?;
        let serve = s.serve.config()?;
        let upstream = s.upstream.config(|| {
            let text =
                resolv_conf().context("reading /etc/resolv.conf for upstreams (or pass --upstream)")?;
            let found = resolv_conf::upstreams(&text, local);
            if found.is_empty() {
                bail!(
                    "no upstream: /etc/resolv.conf names no nameserver other than this host; pass --upstream URL"
                );
            }
            Ok(found)
        })?;
        let zone_upstreams = upstream.zones.iter().flat_map(|(_, ups)| ups);
        if let Some(up) = (upstream.upstreams.iter().chain(zone_upstreams))
            .find(|up| serves(&serve.listen, local, up.addr))
        {
            bail!("upstream {up} is this server's own listen address: pass a different --upstream");
        }
        Ok(Config {
            kernel,
            serve,
            upstream,
            resolve: s.resolve.config(cache_size)?,
            access,
            filter: s.filter.config()?,
            local: s.local.config()?,
            ops: s.ops.config()?,
        })
    }
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
    use std::{path::PathBuf, time::Duration};

    use super::*;
    use crate::{
        access::{acl::DenyAction, ratelimit::LimitAction},
        dns::ttl::TtlPolicy,
        kernel::settings::XdpMode,
        ops::settings::{DEFAULT_CONTROL, LogLevel},
        resolve::query_log::QueryLogTarget,
        serve::TcpLimits,
        upstream::{pool::PoolSettings, spec::UpstreamSpec, strategy::Strategy},
    };

    fn no_resolv_conf() -> io::Result<String> {
        panic!("resolv.conf read although upstreams were given")
    }

    fn toml(text: &str) -> Settings {
        Settings::from_toml(text).unwrap()
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
        assert_eq!(s.upstream.upstream_strategy, Some(Strategy::Weighted));
        assert_eq!(
            s.upstream.upstream_timeout,
            Some(Duration::from_millis(300))
        );
        assert_eq!(s.upstream.upstream_max_fails, Some(0));
        assert_eq!(s.upstream.upstream_retries, Some(4));
        assert_eq!(s.resolve.query_timeout, Some(Duration::from_secs(3)));
        assert_eq!(s.resolve.serve_stale, Some(Duration::from_secs(3600)));
        assert_eq!(s.upstream.tls_ca, Some("/etc/dnsxdp/ca.pem".into()));
        assert_eq!(s.kernel.iface, Some(vec!["eth0".into()]));
        assert_eq!(s.serve.listen.as_ref().unwrap().len(), 2);
        assert_eq!(s.kernel.xdp_mode, Some(XdpMode::Skb));
        assert_eq!(s.kernel.no_xdp, Some(false));
        assert_eq!(s.cache_size, Some(10000));
        assert_eq!(s.resolve.max_ttl, Some(300));
        assert_eq!(s.ops.log_level, Some(LogLevel::Debug));
        assert_eq!(s.ops.control, Some("/tmp/c.sock".into()));
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
        let file = "upstream = [\"198.18.0.2\"]\ncache-size = 10\nmax-ttl = 60\nno-xdp = true";
        let path = std::env::temp_dir().join(format!("dnsxdp-flags-{}.toml", std::process::id()));
        std::fs::write(&path, file).unwrap();
        let sources = |flags: &[&str]| {
            let run = Settings::augment_args(clap::Command::new("run"));
            Sources {
                file: Some(path.clone()),
                flags: run.get_matches_from([&["run"], flags].concat()),
            }
        };
        let given = sources(&["--upstream", "198.18.0.3:5353", "--cache-size", "20"]);
        let c = Config::resolve(given.settings().unwrap(), &[], no_resolv_conf).unwrap();
        assert_eq!(c.upstream.upstreams, vec![udp("198.18.0.3:5353")]);
        assert_eq!((c.kernel.cache_size, c.resolve.cache_size), (20, 20));
        assert_eq!(c.resolve.ttl.max, 60);
        assert_eq!(c.kernel.mode, None);
        let silent = sources(&["--max-ttl", "30"]).settings().unwrap();
        assert_eq!(silent.upstream.upstream, Some(vec!["198.18.0.2".into()]));
        assert_eq!(
            (silent.cache_size, silent.resolve.max_ttl),
            (Some(10), Some(30))
        );
        assert_eq!(silent.kernel.no_xdp, Some(true));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn defaults() {
        let s = toml("iface = \"eth0\"\nupstream = \"fd00::2\"");
        let c = Config::resolve(s, &[], no_resolv_conf).unwrap();
        assert_eq!(c.serve.listen, vec![sa("0.0.0.0:53"), sa("[::]:53")]);
        assert_eq!(c.upstream.upstreams, vec![udp("[fd00::2]:53")]);
        assert_eq!(c.kernel.mode, Some(XdpMode::Auto));
        assert_eq!(c.kernel.cache_size, DEFAULT_CACHE_SIZE);
        assert_eq!(c.resolve.cache_size, DEFAULT_CACHE_SIZE);
        assert_eq!(c.resolve.ttl, TtlPolicy::default());
        assert_eq!(c.resolve.prefetch_min_hits, Some(2));
        assert!(!c.kernel.fresh_cache);
        assert_eq!(c.kernel.pin_dir, PathBuf::from("/sys/fs/bpf/dnsxdp/eth0"));
        assert_eq!((c.ops.metrics, c.resolve.query_log.clone()), (None, None));
        assert_eq!(c.ops.log_level, LogLevel::Info);
        assert_eq!(c.ops.control, PathBuf::from(DEFAULT_CONTROL));
        assert_eq!(
            c.upstream.pool,
            PoolSettings {
                strategy: Strategy::Ordered,
                attempt_timeout: Duration::from_secs(1),
                max_fails: 3,
                retries: 2,
            }
        );
        assert_eq!(c.resolve.query_timeout, Duration::from_secs(2));
        assert_eq!(c.resolve.serve_stale, Duration::from_secs(86400));
        assert_eq!(c.upstream.tls_ca, None);
        assert_eq!(c.serve.tcp, TcpLimits::default());
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(c.serve.workers, cpus);
    }

    #[test]
    fn workers_come_from_the_file_within_bounds() {
        let resolve = |text: &str| {
            let mut s = Settings::from_toml(text)?;
            s.kernel.no_xdp = Some(true);
            s.upstream.upstream = Some(vec!["198.18.0.2".into()]);
            Config::resolve(s, &[], no_resolv_conf).map_err(|e| e.to_string())
        };
        assert_eq!(resolve("workers = 3").unwrap().serve.workers, 3);
        let e = resolve("workers = 0").unwrap_err();
        assert!(e.starts_with("workers: expected an integer from 1"), "{e}");
        assert_eq!(
            resolve("workers = 257").unwrap_err(),
            "workers: at most 256"
        );
        let run = Settings::augment_args(clap::Command::new("run"));
        let e = run
            .try_get_matches_from(["run", "--workers", "257"])
            .unwrap_err();
        assert!(e.to_string().contains("257 is not in 1..=256"), "{e}");
    }

    #[test]
    fn memory_sizes_come_from_the_file_and_zero_is_refused() {
        let s =
            Settings::from_toml("daemon-cache-memory = \"16M\"\nin-flight-memory = 4096").unwrap();
        assert_eq!(
            (s.resolve.daemon_cache_memory, s.serve.in_flight_memory),
            (Some(16 << 20), Some(4096))
        );
        let e = Settings::from_toml("daemon-cache-memory = \"lots\"").unwrap_err();
        assert!(e.starts_with("daemon-cache-memory: expected a size"), "{e}");
        let e = Settings::from_toml("in-flight-memory = 0").unwrap_err();
        assert!(e.starts_with("in-flight-memory: expected a size"), "{e}");
        let mut zero = toml("no-xdp = true\nupstream = \"198.18.0.2\"");
        zero.resolve.daemon_cache_memory = Some(0);
        let e = Config::resolve(zero, &[], no_resolv_conf).unwrap_err();
        assert_eq!(e.to_string(), "daemon-cache-memory: must be more than 0");
    }

    #[test]
    fn tcp_limits_come_from_the_file_and_a_zero_timeout_is_refused() {
        let s = Settings::from_toml(
            "tcp-connections = 100\ntcp-connections-per-client = 4\ntcp-idle-timeout = \"2s\"",
        )
        .unwrap();
        let resolve = |mut s: Settings| {
            s.kernel.no_xdp = Some(true);
            s.upstream.upstream = Some(vec!["198.18.0.2".into()]);
            Config::resolve(s, &[], no_resolv_conf)
        };
        let c = resolve(s).unwrap();
        assert_eq!(
            c.serve.tcp,
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
        let s = |upstream: &str| toml(&format!("no-xdp = true\nupstream = \"{upstream}\""));
        let c = Config::resolve(s("tls://198.18.0.2#dns.example"), &[], no_resolv_conf).unwrap();
        assert_eq!(
            c.upstream.upstreams[0].to_string(),
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
                toml("no-xdp = true\nupstream = \"198.18.0.2\"\nupstream-timeout = 0"),
            ),
            (
                "query-timeout",
                toml("no-xdp = true\nupstream = \"198.18.0.2\"\nquery-timeout = 0"),
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
            toml("no-xdp = true\nupstream = \"198.18.0.2\""),
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
            ttl-factor = 0.8
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
        assert_eq!((c.kernel.cache_size, c.resolve.cache_size), (100, 5000));
        assert_eq!(
            c.resolve.ttl,
            TtlPolicy {
                min: 30,
                max: 600,
                max_negative: 0,
                factor: 0.8,
            }
        );
        assert_eq!(c.resolve.prefetch_min_hits, None);
        assert!(c.kernel.fresh_cache);
        assert_eq!(c.kernel.pin_dir, PathBuf::from("/sys/fs/bpf/x"));
        assert_eq!(c.ops.metrics, Some(sa("127.0.0.1:9153")));
        assert_eq!(c.resolve.query_log, Some(QueryLogTarget::Stdout));
        assert_eq!(c.resolve.query_log_sample, 10);
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
        for bad in ["ttl-factor = 0", "ttl-factor = 1.5", "ttl-factor = \"0.8\""] {
            let e = resolve(bad).unwrap_err();
            assert!(
                e.starts_with("ttl-factor: expected a number more than 0"),
                "{e}"
            );
        }
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
        let s = toml("no-xdp = true\nlisten = \"localhost:53\"\nupstream = \"198.18.0.2\"");
        let e = Config::resolve(s, &[], no_resolv_conf).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid listen address 'localhost:53'")
        );
    }

    #[test]
    fn upstreams_default_to_resolv_conf_without_this_host() {
        let local = ["198.18.1.1".parse().unwrap()];
        let s = toml("no-xdp = true");
        let c = Config::resolve(s.clone(), &local, || {
            Ok("nameserver 127.0.0.53\nnameserver 198.18.1.1\nnameserver 198.18.0.2\n".into())
        })
        .unwrap();
        assert_eq!(c.upstream.upstreams, vec![udp("198.18.0.2:53")]);
        let e = Config::resolve(s, &local, || Ok("nameserver 127.0.0.53\n".into())).unwrap_err();
        assert!(e.to_string().contains("pass --upstream"), "{e}");
    }

    #[test]
    fn an_upstream_that_is_our_own_socket_is_refused() {
        let local = ["198.18.1.1".parse().unwrap()];
        let s = |listen: &str, up: &str| {
            toml(&format!(
                "no-xdp = true\nlisten = \"{listen}\"\nupstream = \"{up}\""
            ))
        };
        assert!(Config::resolve(s("198.18.1.1:53", "198.18.1.1"), &local, no_resolv_conf).is_err());
        assert!(Config::resolve(s("0.0.0.0:53", "127.0.0.1"), &local, no_resolv_conf).is_err());
        assert!(
            Config::resolve(s("0.0.0.0:53", "198.18.1.1:5353"), &local, no_resolv_conf).is_ok()
        );
        assert!(Config::resolve(s("[::]:53", "198.18.1.1"), &local, no_resolv_conf).is_ok());
    }
}
