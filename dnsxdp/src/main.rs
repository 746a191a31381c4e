use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use dnsxdp::{
    cache_ops::Selection,
    cli::{CacheArgs, CacheCommand, Cli, Command},
    config::{self, Config},
    control, daemon, local_addrs,
};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Stats(args) => match args.top {
            Some(count) => control::print_top(&args.control, count, args.json),
            None => control::print_stats(&args.control, args.json),
        },
        Command::Reload(args) => control::reload(&args.control),
        Command::Cache(args) => cache(args),
        Command::Run(args) => {
            let local = local_addrs::local_addrs()?;
            let config = Config::resolve(config::settings(&args)?, &local, || {
                std::fs::read_to_string("/etc/resolv.conf")
            })?;
            tracing_subscriber::fmt()
                .with_max_level(config.log_level.as_tracing())
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .init();
            tokio::runtime::Runtime::new()?.block_on(daemon::run(config, *args))
        }
    }
}

fn cache(args: CacheArgs) -> anyhow::Result<()> {
    let (path, json) = (&args.control, args.json);
    match args.command {
        CacheCommand::List { limit } => control::print_cache(path, Selection::All, limit, json),
        CacheCommand::Get { name, qtype } => {
            let selection = Selection::name(&name, qtype.as_deref())?;
            control::print_cache(path, selection, None, json)
        }
        CacheCommand::Flush {
            name: Some(name),
            qtype,
            ..
        } => control::flush_cache(path, Selection::name(&name, qtype.as_deref())?, json),
        CacheCommand::Flush {
            suffix: Some(zone), ..
        } => control::flush_cache(path, Selection::suffix(&zone)?, json),
        // The argument group lets nothing else through.
        CacheCommand::Flush { .. } => control::flush_cache(path, Selection::All, json),
    }
}
