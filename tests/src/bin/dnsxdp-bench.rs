//! The bench and the demo sandbox; `cargo xtask bench` and `cargo xtask demo` run them.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use dnsxdp_tests::{
    bench::{self, contender::Kind, proc},
    demo,
};

#[derive(Parser)]
#[command(about = "dnsxdp against other caching forwarders, in network namespaces")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure every server; writes results.json, results.md and chart.svg (needs root).
    Bench {
        /// A few seconds per scenario: a smoke run.
        #[arg(long)]
        quick: bool,
        /// Directory for the results [default: target/bench/<UTC time>].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Only this server (repeatable).
        #[arg(long = "server", value_enum, value_name = "SERVER")]
        servers: Vec<Kind>,
    },
    /// dnsxdp in the sandbox, shown answering from XDP; stays up until Ctrl-C (needs root).
    Demo,
}

fn main() -> ExitCode {
    proc::install_handlers();
    let result = match Cli::parse().command {
        Cmd::Bench {
            quick,
            out,
            servers,
        } => {
            let args: Vec<String> = std::env::args().skip(1).collect();
            let opts = bench::Options {
                quick,
                out,
                servers,
                command: format!("cargo xtask {}", args.join(" ")),
            };
            bench::run(&opts).map(|dir| eprintln!("bench: results in {}", dir.display()))
        }
        Cmd::Demo => demo::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
