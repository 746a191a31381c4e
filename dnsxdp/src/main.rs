use std::{io::IsTerminal, process::ExitCode, time::Duration};

use anyhow::bail;
use clap::Parser;
use dnsxdp::{
    cli::{CacheArgs, CacheCommand, Cli, Command, DEFAULT_CONTROL, StopArgs},
    config::{self, Config},
    daemon,
    kernel::{local_addrs, pin},
    ops::{cache_ops::Selection, control},
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
        Command::Stop(args) => stop(args),
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

/// Asks a running daemon to stop; then removes whatever pins are left, which detaches XDP if
/// no daemon was running to do it.
fn stop(args: StopArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => config::load_file(path)?,
        None => config::Settings::default(),
    };
    let control = args
        .control
        .or(file.control)
        .unwrap_or_else(|| DEFAULT_CONTROL.into());
    let ifaces = match args.iface.is_empty() {
        true => file.iface.unwrap_or_default(),
        false => args.iface,
    };
    let pin_dir = args.pin_dir.or(file.pin_dir);
    let stopped = control::stop(&control, Duration::from_secs(10))?;
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
    let pin_dir = config::pin_dir(pin_dir, &ifaces);
    if pin_dir.exists() {
        pin::remove_all(&pin_dir);
        println!("removed {}: XDP is detached", pin_dir.display());
    }
    Ok(())
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
