//! `cargo xtask`: set up the machine, build, run, test, benchmark and demo dnsxdp.

mod fuzz;
mod package;
mod setup;
mod test;
mod vm;

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Developer tasks for dnsxdp")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need: rust-src, bpf-linker, Debian packages.
    Setup,
    /// Build the daemon and its XDP program.
    Build {
        /// Optimised build.
        #[arg(long)]
        release: bool,
    },
    /// Build in release mode and run `dnsxdp run ARGS`.
    Run {
        /// Arguments for `dnsxdp run` (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the unit tests and the kernel tests on the running kernel, then the kernel matrix's
    /// load-and-answer subset (generic mode here, and Debian 12's 6.1 under qemu in native and
    /// generic mode) (needs root).
    Test(test::Args),
    /// Benchmark dnsxdp against Unbound, dnsmasq and Knot Resolver in network namespaces;
    /// results go to target/bench/<time>/ (needs root).
    Bench {
        /// A few seconds per scenario: a smoke run.
        #[arg(long)]
        quick: bool,
        /// More arguments for the bench, e.g. `--server unbound` (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Start dnsxdp in a sandbox of network namespaces and show it answering from XDP; stays
    /// up until Ctrl-C (needs root).
    Demo,
    /// Build the Debian package target/package/dnsxdp_<version>_amd64.deb (release build).
    Package(package::Args),
    /// Send a flood of malformed and hostile frames at the XDP program while a client asks,
    /// and check every reply (needs root).
    Flood {
        /// Frames to send.
        #[arg(long, default_value_t = 1_000_000)]
        packets: u64,
    },
    /// Mixed traffic with upstream failures for a while, sampling the daemon's memory and
    /// descriptors into soak.csv and soak.svg (needs root).
    Soak {
        #[arg(long, default_value_t = 30)]
        minutes: u64,
        /// Directory for the results [default: target/soak].
        #[arg(long, value_name = "DIR")]
        out: Option<String>,
    },
    /// Run the fuzz targets in fuzz/ with cargo-fuzz for a while (needs root and nightly); keeps
    /// their corpus, and any input that fails a check as a regression test.
    Fuzz(fuzz::Args),
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Build { release } => {
            setup::ensure()?;
            cargo(&["build", "--package", "dnsxdp"], release)
        }
        Task::Run { args } => {
            setup::ensure()?;
            cargo(&["build", "--package", "dnsxdp"], true)?;
            let bin = workspace_root().join("target/release/dnsxdp");
            let err = Command::new(&bin).arg("run").args(args).exec();
            Err(err).with_context(|| format!("exec {}", bin.display()))
        }
        Task::Test(args) => {
            if !is_root() {
                bail!(
                    "the kernel tests load XDP programs and create network namespaces: run as root"
                );
            }
            setup::ensure()?;
            test::run(&args)
        }
        Task::Bench { quick, args } => {
            let mut bench = vec!["bench".to_owned()];
            if quick {
                bench.push("--quick".into());
            }
            bench.extend(args);
            sandbox(&bench)
        }
        Task::Demo => sandbox(&["demo".to_owned()]),
        Task::Flood { packets } => {
            sandbox(&["flood".into(), "--packets".into(), packets.to_string()])
        }
        Task::Soak { minutes, out } => {
            let mut args = vec!["soak".into(), "--minutes".into(), minutes.to_string()];
            if let Some(out) = out {
                args.extend(["--out".into(), out]);
            }
            sandbox(&args)
        }
        Task::Package(args) => package::run(args),
        Task::Fuzz(args) => fuzz::run(&args),
    }
}

/// Runs the binary of the bench crate, which drives the release dnsxdp binary.
/// It replaces this process, so that Ctrl-C reaches only the binary, which then tears its
/// namespaces down.
fn sandbox(args: &[String]) -> Result<()> {
    if !is_root() {
        bail!("the sandbox creates network namespaces and attaches XDP programs: run as root");
    }
    setup::ensure()?;
    cargo(&["build", "--package", "dnsxdp"], true)?;
    let root = workspace_root();
    let err = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["run", "--quiet", "--release", "--package", "dnsxdp-bench"])
        .args(["--bin", "dnsxdp-bench", "--"])
        .args(args)
        .env("DNSXDP_BIN", target_dir(&root).join("release/dnsxdp"))
        .current_dir(&root)
        .exec();
    Err(err).context("exec cargo run")
}

pub(crate) fn cargo(args: &[&str], release: bool) -> Result<()> {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(args).current_dir(workspace_root());
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Where cargo puts what it builds.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// Passed and failed counts of a libtest summary line
/// (`test result: ok. 3 passed; 0 failed; ...`).
pub(crate) fn test_result_counts(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    let count = |word: &str| {
        rest.split(';')
            .find_map(|part| {
                part.trim()
                    .trim_start_matches(|c: char| !c.is_ascii_digit())
                    .strip_suffix(word)
            })
            .and_then(|n| n.trim().parse().ok())
    };
    Some((count("passed")?, count("failed")?))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_summary_lines_are_counted() {
        let line = "test result: ok. 109 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 2.37s";
        assert_eq!(test_result_counts(line), Some((109, 2)));
        assert_eq!(test_result_counts("test foo ... ok"), None);
    }
}
