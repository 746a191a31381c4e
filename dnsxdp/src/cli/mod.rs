//! Command-line interface.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    access::acl::DenyAction, access::ratelimit::LimitAction, config::Settings,
    upstream::strategy::Strategy, values::duration, values::size,
};

/// Where `run` listens for control commands and `stats` finds the daemon.
pub const DEFAULT_CONTROL: &str = "/run/dnsxdp/control.sock";

#[derive(Parser, Debug)]
#[command(
    name = "dnsxdp",
    version,
    about = "Caching DNS forwarder with an XDP fast path"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the forwarder.
    Run(Box<RunArgs>),
    /// Print the counters of a running daemon.
    Stats(StatsArgs),
    /// Make a running daemon read its config file again and apply its ACL and rate limits
    /// (as SIGHUP does).
    Reload(ReloadArgs),
    /// List, show or flush the answers a running daemon has cached (kernel and daemon).
    Cache(CacheArgs),
    /// Stop for good: the daemon exits, XDP is detached and the pinned cache removed, even if
    /// no daemon runs any more (SIGTERM leaves XDP answering for the next run instead).
    Stop(StopArgs),
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// The config file the daemon was started with, for its `iface`, `pin-dir` and `control`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Control socket of the daemon [default: /run/dnsxdp/control.sock].
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Interface the daemon was attached to (repeatable), to find its pins.
    #[arg(long, value_name = "IFACE")]
    pub iface: Vec<String>,
    /// Where the daemon pinned its links and cache [default: /sys/fs/bpf/dnsxdp/IFACE].
    #[arg(long, value_name = "DIR")]
    pub pin_dir: Option<PathBuf>,
}

#[derive(Args, Clone, Debug, Default)]
pub struct RunArgs {
    /// TOML file with the same keys as these flags (e.g. `cache-size = 10000`); flags win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface to attach the XDP program to (repeatable).
    #[arg(long, value_name = "IFACE")]
    pub iface: Vec<String>,
    /// Address to serve DNS on, UDP and TCP (repeatable) [default: 0.0.0.0:53, [::]:53].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Vec<String>,
    /// Upstream server (repeatable): IP[:PORT] (UDP), udp://, tcp://, tls://IP[:PORT]#NAME or
    /// https://HOST[:PORT]/PATH?bootstrap=IP; `?weight=N` for --upstream-strategy weighted
    /// [default: /etc/resolv.conf].
    #[arg(long, value_name = "URL")]
    pub upstream: Vec<String>,
    /// How queries are shared among upstreams [default: ordered].
    #[arg(long, value_enum, value_name = "STRATEGY")]
    pub upstream_strategy: Option<Strategy>,
    /// Longest wait for one upstream's reply before another is tried [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    pub upstream_timeout: Option<Duration>,
    /// Timeouts and transport errors in a row (not SERVFAIL or REFUSED) that take an upstream
    /// down until it answers a probe; 0: never [default: 3].
    #[arg(long, value_name = "N")]
    pub upstream_max_fails: Option<u32>,
    /// Queries to other upstreams (or the same, after a timeout) one miss may cost after the
    /// first [default: 2].
    #[arg(long, value_name = "N")]
    pub upstream_retries: Option<u32>,
    /// Longest a client waits for an answer, over all upstreams and retries [default: 2s].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    pub query_timeout: Option<Duration>,
    /// How long after expiry an answer is still served (with TTL 30) when no upstream answers;
    /// 0: never [default: 1d].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    pub serve_stale: Option<Duration>,
    /// TCP connections open at once; past it, a new one replaces the quietest [default: 512].
    #[arg(long, value_name = "N")]
    pub tcp_connections: Option<u32>,
    /// TCP connections one client (an IPv4 address or IPv6 /64) may hold; past it, a new one
    /// replaces the client's quietest [default: 64].
    #[arg(long, value_name = "N")]
    pub tcp_connections_per_client: Option<u32>,
    /// A TCP connection without a query arriving, or with a reply the client does not read,
    /// for this long is closed [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    pub tcp_idle_timeout: Option<Duration>,
    /// PEM file of the certificate authorities trusted for tls:// and https:// upstreams,
    /// instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// XDP attach mode; auto tries native and falls back to skb [default: auto].
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpMode>,
    /// Serve everything from userspace; load no eBPF.
    #[arg(long)]
    pub no_xdp: bool,
    /// Entries in both the kernel and the daemon cache, unless set apart [default: 65536].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub cache_size: Option<u32>,
    /// Entries in the kernel (XDP) cache, A/AAAA answers only [default: --cache-size].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub kernel_cache_size: Option<u32>,
    /// Entries in the daemon's cache, every type [default: --cache-size].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub daemon_cache_size: Option<u32>,
    /// Bytes the daemon's cache may take; past it the least recently used answers go
    /// [default: 128M].
    #[arg(long, value_name = "SIZE", value_parser = size::parse)]
    pub daemon_cache_memory: Option<u64>,
    /// Bytes the queries being answered may take, UDP and TCP together; past it reading waits
    /// [default: 64M].
    #[arg(long, value_name = "SIZE", value_parser = size::parse)]
    pub in_flight_memory: Option<u64>,
    /// Shortest time a positive answer is cached, in seconds; smaller TTLs are raised
    /// [default: 0].
    #[arg(long, value_name = "SECONDS")]
    pub min_ttl: Option<u32>,
    /// Longest time an answer is cached, in seconds [default: 86400].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_ttl: Option<u32>,
    /// Longest time an NXDOMAIN or NODATA answer is cached, in seconds [default: 3600].
    #[arg(long, value_name = "SECONDS")]
    pub max_negative_ttl: Option<u32>,
    /// Do not refresh popular answers before they expire.
    #[arg(long)]
    pub no_prefetch: bool,
    /// Hits (XDP and daemon) an answer needs to be refreshed when queried in the last 10% of
    /// its TTL [default: 2].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub prefetch_min_hits: Option<u32>,
    /// Start with an empty kernel cache instead of the one the last run left pinned.
    #[arg(long)]
    pub fresh_cache: bool,
    /// bpffs directory the kernel cache is pinned in between runs
    /// [default: /sys/fs/bpf/dnsxdp/IFACE].
    #[arg(long, value_name = "DIR")]
    pub pin_dir: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP at ADDR:PORT (e.g. 127.0.0.1:9153); off unless given.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
    /// Log every query as a JSON line to FILE, or to standard output with `-`.
    #[arg(long, value_name = "FILE")]
    pub query_log: Option<PathBuf>,
    /// Log one XDP hit in N (daemon answers are all logged) [default: 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub query_log_sample: Option<u32>,
    /// Log verbosity [default: info].
    #[arg(long, value_enum)]
    pub log_level: Option<LogLevel>,
    /// Control socket path [default: /run/dnsxdp/control.sock].
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Client prefix that may query (repeatable); replaces the default list
    /// [default: loopback, RFC 1918, link-local and unique local addresses].
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<String>,
    /// Client prefix that may not query (repeatable); the most specific prefix wins.
    #[arg(long, value_name = "CIDR")]
    pub deny: Vec<String>,
    /// What a denied query gets: nothing, or a REFUSED answer [default: drop].
    #[arg(long, value_enum, value_name = "ACTION")]
    pub acl_action: Option<DenyAction>,
    /// Queries a second each client prefix may send; no limit unless given.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub ratelimit_qps: Option<u32>,
    /// Queries a client prefix may send at once after a pause [default: --ratelimit-qps].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub ratelimit_burst: Option<u32>,
    /// Length of the IPv4 client prefixes that share a limit [default: 32].
    #[arg(long, value_name = "BITS", value_parser = clap::value_parser!(u8).range(0..=32))]
    pub ratelimit_v4_prefix: Option<u8>,
    /// Length of the IPv6 client prefixes that share a limit [default: 64].
    #[arg(long, value_name = "BITS", value_parser = clap::value_parser!(u8).range(0..=128))]
    pub ratelimit_v6_prefix: Option<u8>,
    /// What a query over the limit gets: drop, or slip:N (every Nth gets a TC=1 answer so a
    /// real client can retry over TCP) [default: drop].
    #[arg(long, value_name = "ACTION")]
    pub ratelimit_action: Option<LimitAction>,
    /// Client prefix the rate limit does not apply to (repeatable).
    #[arg(long, value_name = "CIDR")]
    pub ratelimit_exempt: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Print the daemon's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Instead of the counters, the N client prefixes the rate limit stopped most often.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "10")]
    pub top: Option<usize>,
    /// Control socket of the daemon.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL)]
    pub control: PathBuf,
}

#[derive(Args, Debug)]
pub struct ReloadArgs {
    /// Control socket of the daemon.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL)]
    pub control: PathBuf,
}

#[derive(Args, Debug)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Control socket of the daemon.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL, global = true)]
    pub control: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// One row per unexpired cached answer and cache layer, in name order, and the count.
    List {
        /// Rows to print at most [default: 100 for the table, all with --json].
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// The cached answers for NAME: of TYPE, or of every type cached.
    Get {
        name: String,
        /// A record type: A, AAAA, MX, ... or TYPE<number>.
        #[arg(value_name = "TYPE")]
        qtype: Option<String>,
    },
    /// Remove answers from both layers at once; the XDP program misses from the next query.
    #[command(group = clap::ArgGroup::new("what").required(true).args(["name", "suffix", "all"]))]
    Flush {
        /// The name whose answers go: of TYPE, or of every type.
        name: Option<String>,
        /// A record type: A, AAAA, MX, ... or TYPE<number>.
        #[arg(value_name = "TYPE", requires = "name")]
        qtype: Option<String>,
        /// A zone: it and every name under it, by whole labels.
        #[arg(long, value_name = "ZONE")]
        suffix: Option<String>,
        /// Everything.
        #[arg(long)]
        all: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode, falling back to skb mode.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic mode, run by the kernel's network stack.
    Skb,
}

#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_tracing(self) -> tracing::Level {
        match self {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        }
    }
}

impl RunArgs {
    /// The settings given on the command line; flags not given are `None`.
    pub fn settings(&self) -> Settings {
        let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        Settings {
            iface: list(&self.iface),
            listen: list(&self.listen),
            upstream: list(&self.upstream),
            upstream_strategy: self.upstream_strategy,
            upstream_timeout: self.upstream_timeout,
            upstream_max_fails: self.upstream_max_fails,
            upstream_retries: self.upstream_retries,
            query_timeout: self.query_timeout,
            serve_stale: self.serve_stale,
            tcp_connections: self.tcp_connections,
            tcp_connections_per_client: self.tcp_connections_per_client,
            tcp_idle_timeout: self.tcp_idle_timeout,
            tls_ca: self.tls_ca.clone(),
            xdp_mode: self.xdp_mode,
            no_xdp: self.no_xdp.then_some(true),
            cache_size: self.cache_size,
            kernel_cache_size: self.kernel_cache_size,
            daemon_cache_size: self.daemon_cache_size,
            daemon_cache_memory: self.daemon_cache_memory,
            in_flight_memory: self.in_flight_memory,
            min_ttl: self.min_ttl,
            max_ttl: self.max_ttl,
            max_negative_ttl: self.max_negative_ttl,
            prefetch: self.no_prefetch.then_some(false),
            prefetch_min_hits: self.prefetch_min_hits,
            fresh_cache: self.fresh_cache.then_some(true),
            pin_dir: self.pin_dir.clone(),
            metrics: self.metrics.clone(),
            query_log: self.query_log.clone(),
            query_log_sample: self.query_log_sample,
            log_level: self.log_level,
            control: self.control.clone(),
            allow: list(&self.allow),
            deny: list(&self.deny),
            acl_action: self.acl_action,
            ratelimit_qps: self.ratelimit_qps,
            ratelimit_burst: self.ratelimit_burst,
            ratelimit_v4_prefix: self.ratelimit_v4_prefix,
            ratelimit_v6_prefix: self.ratelimit_v6_prefix,
            ratelimit_action: self.ratelimit_action,
            ratelimit_exempt: list(&self.ratelimit_exempt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn cache_flush_takes_exactly_one_of_a_name_a_suffix_or_all() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["dnsxdp", "cache"], args].concat());
        let cli = parse(&["flush", "www.example.test", "AAAA", "--json"]).unwrap();
        let Command::Cache(args) = cli.command else {
            panic!("not cache")
        };
        assert!(args.json);
        assert!(matches!(
            args.command,
            CacheCommand::Flush { name: Some(n), qtype: Some(t), all: false, .. }
                if n == "www.example.test" && t == "AAAA"
        ));
        assert!(parse(&["flush", "--suffix", "example.test"]).is_ok());
        assert!(parse(&["flush", "--all"]).is_ok());
        for bad in [
            &["flush"][..],
            &["flush", "www.example.test", "--all"],
            &["flush", "--suffix", "example.test", "--all"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn repeatable_flags_and_absent_options() {
        let cli = Cli::try_parse_from([
            "dnsxdp",
            "run",
            "--iface",
            "a",
            "--iface",
            "b",
            "--upstream",
            "198.18.0.2",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let s = args.settings();
        assert_eq!(s.iface, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(s.listen, None);
        assert_eq!(s.no_xdp, None);
        assert_eq!(s.cache_size, None);
        assert_eq!(s.query_timeout, None);
    }

    #[test]
    fn upstream_flags() {
        let cli = Cli::try_parse_from([
            "dnsxdp",
            "run",
            "--upstream-strategy",
            "round-robin",
            "--upstream-timeout",
            "300ms",
            "--upstream-max-fails",
            "0",
            "--upstream-retries",
            "1",
            "--query-timeout",
            "2s",
            "--serve-stale",
            "0",
            "--tls-ca",
            "/etc/ca.pem",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let s = args.settings();
        assert_eq!(s.upstream_strategy, Some(Strategy::RoundRobin));
        assert_eq!(s.upstream_timeout, Some(Duration::from_millis(300)));
        assert_eq!(s.upstream_max_fails, Some(0));
        assert_eq!(s.upstream_retries, Some(1));
        assert_eq!(s.query_timeout, Some(Duration::from_secs(2)));
        assert_eq!(s.serve_stale, Some(Duration::ZERO));
        assert_eq!(s.tls_ca, Some("/etc/ca.pem".into()));
        let e = Cli::try_parse_from(["dnsxdp", "run", "--query-timeout", "soon"]).unwrap_err();
        assert!(e.to_string().contains("--query-timeout"), "{e}");
    }
}
