//! `cargo xtask`: set up the machine, build, run and test dnsxdp.

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
    }
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
