//! `cargo xtask`: set up the machine, build, run, test, benchmark and demo dnsxdp.

mod setup;

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
    /// Run the host unit tests and the kernel integration tests (needs root).
    Test {
        /// Extra arguments for `cargo test`, e.g. a test name filter (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
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
        Task::Test { args } => {
            if !is_root() {
                bail!(
                    "the kernel tests load XDP programs and create network namespaces: run as root"
                );
            }
            setup::ensure()?;
            // The kernel tests drive the dnsxdp binary, so it must exist first.
            cargo(&["build", "--package", "dnsxdp"], false)?;
            // The eBPF crate only builds for the BPF target; dnsxdp's build script builds it.
            let mut test = vec!["test", "--workspace", "--exclude", "dnsxdp-ebpf"];
            if !args.is_empty() {
                test.push("--");
                test.extend(args.iter().map(String::as_str));
            }
            cargo(&test, false)
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
    }
}

/// Runs the bench/demo binary of the tests crate, which drives the release dnsxdp binary.
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
        .args(["run", "--quiet", "--release", "--package", "dnsxdp-tests"])
        .args(["--bin", "dnsxdp-bench", "--"])
        .args(args)
        .env("DNSXDP_BIN", target_dir(&root).join("release/dnsxdp"))
        .current_dir(&root)
        .exec();
    Err(err).context("exec cargo run")
}

fn cargo(args: &[&str], release: bool) -> Result<()> {
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
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}
