//! The command line: its commands, and what each does.

mod client;

use std::{io::IsTerminal, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use clap::{ArgMatches, Args, FromArgMatches as _, Parser, Subcommand};

use crate::{
    config::{self, Config, Settings, Sources},
    daemon,
    kernel::{local_addrs, pin},
    ops::{cache_ops::Selection, settings::DEFAULT_CONTROL},
};

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
    /// Show a running daemon's block and allow lists: size, age, errors, queries blocked.
    Lists(ListsArgs),
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
    #[command(flatten)]
    pub settings: Settings,
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
pub struct ListsArgs {
    /// `refresh`: fetch every list again now, then show them.
    #[arg(value_parser = ["refresh"])]
    pub action: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
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

/// Runs the command `matches` give.
pub fn run(matches: &ArgMatches) -> anyhow::Result<()> {
    let cli = Cli::from_arg_matches(matches)?;
    match cli.command {
        Command::Stats(args) => match args.top {
            Some(count) => client::print_top(&args.control, count, args.json),
            None => client::print_stats(&args.control, args.json),
        },
        Command::Reload(args) => client::reload(&args.control),
        Command::Cache(args) => cache(args),
        Command::Lists(args) => {
            client::print_lists(&args.control, args.action.is_some(), args.json)
        }
        Command::Stop(args) => stop(args),
        Command::Run(args) => {
            let sources = Sources {
                file: args.config,
                flags: matches
                    .subcommand_matches("run")
                    .context("no run arguments")?
                    .clone(),
            };
            let local = local_addrs::local_addrs()?;
            let config = Config::resolve(sources.settings()?, &local, || {
                std::fs::read_to_string("/etc/resolv.conf")
            })?;
            tracing_subscriber::fmt()
                .with_max_level(config.ops.log_level.as_tracing())
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .init();
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(config.serve.workers)
                .enable_all()
                .build()?
                .block_on(daemon::run(config, sources))
        }
    }
}

/// Asks a running daemon to stop; then removes whatever pins are left, which detaches XDP if
/// no daemon was running to do it.
fn stop(args: StopArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => config::load_file(path)?,
        None => Settings::default(),
    };
    let control = args
        .control
        .or(file.ops.control)
        .unwrap_or_else(|| DEFAULT_CONTROL.into());
    let ifaces = match args.iface.is_empty() {
        true => file.kernel.iface.unwrap_or_default(),
        false => args.iface,
    };
    let pin_dir = args.pin_dir.or(file.kernel.pin_dir);
    let stopped = client::stop(&control, Duration::from_secs(10))?;
    if stopped {
        println!("stopped the daemon at {}", control.display());
    }
    // Without an interface or a pin dir, the default pin dir would be all of dnsxdp's.
    if pin_dir.is_none() && ifaces.is_empty() {
        if !stopped {
            bail!(
                "no dnsxdp daemon at {}; to detach what one left attached, pass --iface or --config",
                control.display()
            );
        }
        return Ok(());
    }
    let pin_dir = pin::dir(pin_dir, &ifaces);
    if pin_dir.exists() {
        pin::remove_all(&pin_dir);
        println!("removed {}: XDP is detached", pin_dir.display());
    }
    Ok(())
}

fn cache(args: CacheArgs) -> anyhow::Result<()> {
    let (path, json) = (&args.control, args.json);
    match args.command {
        CacheCommand::List { limit } => client::print_cache(path, Selection::All, limit, json),
        CacheCommand::Get { name, qtype } => {
            let selection = Selection::name(&name, qtype.as_deref())?;
            client::print_cache(path, selection, None, json)
        }
        CacheCommand::Flush {
            name: Some(name),
            qtype,
            ..
        } => client::flush_cache(path, Selection::name(&name, qtype.as_deref())?, json),
        CacheCommand::Flush {
            suffix: Some(zone), ..
        } => client::flush_cache(path, Selection::suffix(&zone)?, json),
        // The argument group lets nothing else through.
        CacheCommand::Flush { .. } => client::flush_cache(path, Selection::All, json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::strategy::Strategy;

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
        let s = args.settings;
        assert_eq!(s.kernel.iface, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(s.serve.listen, None);
        assert_eq!(s.kernel.no_xdp, None);
        assert_eq!(s.cache_size, None);
        assert_eq!(s.resolve.query_timeout, None);
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
        let (u, r) = (&args.settings.upstream, &args.settings.resolve);
        assert_eq!(u.upstream_strategy, Some(Strategy::RoundRobin));
        assert_eq!(u.upstream_timeout, Some(Duration::from_millis(300)));
        assert_eq!(u.upstream_max_fails, Some(0));
        assert_eq!(u.upstream_retries, Some(1));
        assert_eq!(r.query_timeout, Some(Duration::from_secs(2)));
        assert_eq!(r.serve_stale, Some(Duration::ZERO));
        assert_eq!(u.tls_ca, Some("/etc/ca.pem".into()));
        let e = Cli::try_parse_from(["dnsxdp", "run", "--query-timeout", "soon"]).unwrap_err();
        assert!(e.to_string().contains("--query-timeout"), "{e}");
    }
}
