//! The bench, the demo sandbox, the flood and the soak: `cargo xtask bench|demo|flood|soak` run
//! them.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use dnsxdp_bench::{
    compare::{self, contender::Kind},
    demo, flood, proc, soak,
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
    /// Malformed and hostile frames at the XDP program while a client asks; fails on any
    /// wrong answer (needs root).
    Flood {
        /// Frames to send.
        #[arg(long, default_value_t = 1_000_000)]
        packets: u64,
    },
    /// Mixed traffic with upstream failures for a while; fails if the daemon stops, or its
    /// memory or descriptors grow (needs root).
    Soak {
        #[arg(long, default_value_t = 30)]
        minutes: u64,
        /// Directory for soak.csv and soak.svg [default: target/soak].
        #[arg(long, value_name = "DIR", default_value = "target/soak")]
        out: PathBuf,
    },
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
            let opts = compare::Options {
                quick,
                out,
                servers,
                command: format!("cargo xtask {}", args.join(" ")),
            };
            compare::run(&opts).map(|dir| eprintln!("bench: results in {}", dir.display()))
        }
        Cmd::Demo => demo::run(),
        Cmd::Flood { packets } => flood(packets),
        Cmd::Soak { minutes, out } => soak::run(&soak::Options { minutes, out }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the flood and prints what it measured; an error if any answer was wrong.
fn flood(packets: u64) -> anyhow::Result<()> {
    let r = flood::run(&flood::Options { packets })?;
    println!(
        "flood: {} frames in {:.1} s ({:.0} a second), {} replies to them, {} wrong",
        r.sent,
        r.seconds,
        r.sent as f64 / r.seconds,
        r.replies,
        r.wrong.len()
    );
    println!(
        "legitimate client: {} of {} answered, p50 {:.2} ms, p99 {:.2} ms",
        r.legit_answered, r.legit_asked, r.legit_p50_ms, r.legit_p99_ms
    );
    println!("xdp counters: {}", r.xdp);
    for why in r.wrong.iter().take(10) {
        println!("wrong: {why}");
    }
    if !r.wrong.is_empty() {
        anyhow::bail!("{} wrong answers", r.wrong.len());
    }
    Ok(())
}
