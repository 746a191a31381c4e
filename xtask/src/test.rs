//! `cargo xtask test`: the unit and kernel tests on the running kernel, then the kernel
//! matrix's load-and-answer subset, ending with one line that totals every test binary.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};
use clap::ValueEnum;

use crate::{cargo, target_dir, test_result_counts, vm, workspace_root};

/// Debian 12's kernel, what most gateways run.
const LTS_KERNEL: &str = "6.1";

/// The load-and-answer subset run across the matrix: filters on the kernel tests' names, a
/// module for all of a feature. The program passes the verifier and answers (xdp_program,
/// access_program) from every tier of its cache (cache_tiers), with its debug lines on too
/// (kernel_log), every query is charged once however it is framed (charged_once) and
/// answers over a VLAN go back tagged (vlan_offload), both with VLANs the host's kernel may
/// lack, the daemon fills it end to end (e2e), and it answers through a restart (service).
const SUBSET: &[&str] = &[
    "xdp_program::",
    "cache_tiers::",
    "access_program::",
    "kernel_log::",
    "charged_once::",
    "vlan_offload::",
    "e2e::repeat_is_answered_by_xdp",
    "service::a_sigkill_and_a_restart_lose_no_cached_query",
];

/// The kernel tests' binary: tests/tests/kernel, a module per feature.
const KERNEL_TESTS: &str = "kernel";

/// Read by the kernel tests (tests/src/daemon.rs): the mode XDP is attached in.
const XDP_MODE_ENV: &str = "DNSXDP_TEST_XDP_MODE";

#[derive(clap::Args)]
pub struct Args {
    /// Run the kernel tests on this kernel under qemu only: a Debian version such as 6.1
    /// (its newest linux-image package) or the path of a vmlinuz-RELEASE image.
    #[arg(long, value_name = "VERSION|PATH")]
    kernel: Option<String>,
    /// Attach XDP in this mode in the kernel tests only [default: the kernel's choice, native
    /// on veth].
    #[arg(long, value_enum)]
    xdp_mode: Option<Mode>,
    /// Extra arguments for the test binaries, e.g. a test name filter (after `--`); with them
    /// the matrix is left out.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Native,
    Skb,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Skb => "skb",
        }
    }
}

/// Passed and failed tests, and whether anything failed to run.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    broken: Vec<String>,
}

impl Tally {
    fn add(&mut self, what: &str, (passed, failed, ok): (u64, u64, bool)) {
        self.passed += passed;
        self.failed += failed;
        if !ok {
            self.broken.push(what.to_string());
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    // The kernel tests drive the dnsxdp binary, so it must exist first.
    cargo(&["build", "--package", "dnsxdp"], false)?;
    let mut tally = Tally::default();
    match &args.kernel {
        // The packaging tests (a binary of their own) build a package with cargo, which needs
        // a writable target directory: they run on the host only.
        Some(kernel) => {
            let bin = kernel_binary()?;
            in_vm(&mut tally, &bin, kernel, args.xdp_mode, &args.args)?;
        }
        None => {
            tally.add("cargo test", host(args.xdp_mode, &args.args)?);
            if args.xdp_mode.is_none() && args.args.is_empty() {
                let bin = kernel_binary()?;
                let subset: Vec<String> = SUBSET.iter().map(|s| s.to_string()).collect();
                let what = format!("{} (skb)", bin.display());
                tally.add(&what, run_binary(&bin, &subset, Mode::Skb)?);
                for mode in [Mode::Native, Mode::Skb] {
                    in_vm(&mut tally, &bin, LTS_KERNEL, Some(mode), &subset)?;
                }
            }
        }
    }
    println!("tests: {} passed, {} failed", tally.passed, tally.failed);
    if !tally.broken.is_empty() || tally.failed > 0 {
        bail!("tests failed: {}", tally.broken.join(", "));
    }
    Ok(())
}

/// `cargo test` over the workspace on the running kernel.
fn host(mode: Option<Mode>, extra: &[String]) -> Result<(u64, u64, bool)> {
    // The eBPF crate only builds for the BPF target; dnsxdp's build script builds it.
    let mut cmd = cargo_cmd();
    cmd.args(["test", "--workspace", "--exclude", "dnsxdp-ebpf"]);
    if !extra.is_empty() {
        cmd.arg("--").args(extra);
    }
    if let Some(mode) = mode {
        cmd.env(XDP_MODE_ENV, mode.name());
    }
    counted(cmd)
}

/// The kernel tests with filters, on the running kernel in `mode`.
fn run_binary(bin: &Path, filter: &[String], mode: Mode) -> Result<(u64, u64, bool)> {
    let mut cmd = Command::new(bin);
    cmd.args(["--test-threads", "2"])
        .args(filter)
        .current_dir(workspace_root())
        .env(XDP_MODE_ENV, mode.name());
    println!("     Running {} ({})", bin.display(), mode.name());
    counted(cmd)
}

/// The kernel tests' binary `bin` with `args` (filters, say) on `kernel` under qemu.
fn in_vm(
    tally: &mut Tally,
    bin: &Path,
    kernel: &str,
    mode: Option<Mode>,
    args: &[String],
) -> Result<()> {
    let root = workspace_root();
    let target = target_dir(&root);
    let kernel = vm::Kernel::resolve(kernel, &target.join("kernels"))?;
    let mut env = vec![(
        "DNSXDP_BIN",
        target.join("debug/dnsxdp").display().to_string(),
    )];
    if let Some(mode) = mode {
        env.push((XDP_MODE_ENV, mode.name().to_string()));
    }
    let mut shares = vec![root.clone()];
    if !target.starts_with(&root) {
        shares.push(target.clone());
    }
    let run = vm::Run {
        workspace: &root,
        shares,
        binary: bin,
        args,
        env,
    };
    let what = format!("{} ({})", kernel.release, mode.map_or("auto", Mode::name));
    let result = vm::run_tests(&kernel, &run, &target.join("vm").join(&kernel.release))?;
    tally.add(&what, result);
    Ok(())
}

/// The kernel tests' binary, built.
fn kernel_binary() -> Result<PathBuf> {
    let out = cargo_cmd()
        .args(["test", "--package", "dnsxdp-tests", "--no-run"])
        .args(["--test", KERNEL_TESTS])
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .context("building the kernel tests")?;
    if !out.status.success() {
        bail!("building the kernel tests failed");
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|msg| match msg["target"]["name"] == KERNEL_TESTS {
            true => msg["executable"].as_str().map(PathBuf::from),
            false => None,
        })
        .context("cargo built no kernel test binary")
}

fn cargo_cmd() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Runs `cmd`, echoing its output and counting libtest's summary lines.
fn counted(mut cmd: Command) -> Result<(u64, u64, bool)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        if let Some((p, f)) = test_result_counts(&line) {
            passed += p;
            failed += f;
        }
    }
    Ok((passed, failed, child.wait()?.success()))
}
