//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Settings;

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
    Run(RunArgs),
    /// Print the counters of a running daemon.
    Stats(StatsArgs),
}

#[derive(Args, Debug, Default)]
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
    /// Upstream server, port 53 if omitted (repeatable) [default: /etc/resolv.conf].
    #[arg(long, value_name = "HOST[:PORT]")]
    pub upstream: Vec<String>,
    /// XDP attach mode; auto tries native and falls back to skb [default: auto].
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpMode>,
    /// Serve everything from userspace; load no eBPF.
    #[arg(long)]
    pub no_xdp: bool,
    /// Entries in the kernel and daemon caches [default: 65536].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub cache_size: Option<u32>,
    /// Longest time an answer is cached, in seconds [default: 86400].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_ttl: Option<u32>,
    /// Log verbosity [default: info].
    #[arg(long, value_enum)]
    pub log_level: Option<LogLevel>,
    /// Control socket path [default: /run/dnsxdp/control.sock].
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Print the daemon's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Control socket of the daemon.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL)]
    pub control: PathBuf,
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
            xdp_mode: self.xdp_mode,
            no_xdp: self.no_xdp.then_some(true),
            cache_size: self.cache_size,
            max_ttl: self.max_ttl,
            log_level: self.log_level,
            control: self.control.clone(),
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
    }
}
