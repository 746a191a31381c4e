use std::process::ExitCode;

use clap::CommandFactory as _;
use dnsxdp::cli::{self, Cli};

fn main() -> ExitCode {
    match cli::run(&Cli::command().get_matches()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
