//! Installs what a fresh Debian machine lacks to build, run and test dnsxdp.
//!
//! Every step checks before it acts, so a machine that has everything costs a few process
//! spawns and no downloads.

use std::{
    env, fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// Debian packages the tests use: namespaces and veth (iproute2), offload settings (ethtool),
/// the authoritative upstream (nsd), clients and load generators (dig, dnsperf, kxdpgun, and
/// h2load for DNS over HTTPS), map inspection (bpftool), an HTTP client for the metrics and
/// DNS over HTTPS (curl), the servers the bench compares with (unbound, dnsmasq,
/// knot-resolver), a reverse proxy in front of DNS over HTTPS (nginx), the venv of the
/// Kubernetes manifest validator and the tests' HTTP server for block lists (python3-venv,
/// with python3), and what boots other kernels for the kernel matrix (qemu, and a static
/// busybox for its initramfs).
const PACKAGES: &[&str] = &[
    "iproute2",
    "ethtool",
    "nsd",
    "dnsutils",
    "dnsperf",
    "knot-dnsutils",
    "nghttp2-client",
    "bpftool",
    "curl",
    "unbound",
    "dnsmasq",
    "knot-resolver",
    "nginx",
    "python3-venv",
    "qemu-system-x86",
    "busybox-static",
];

/// Services Debian starts on install; the tests and the bench start their own in namespaces,
/// and one on the host would also hold port 53.
const SERVICES: &[(&str, &[&str])] = &[
    ("nsd", &["nsd"]),
    ("unbound", &["unbound", "unbound-resolvconf"]),
    ("dnsmasq", &["dnsmasq"]),
    ("nginx", &["nginx"]),
    (
        "knot-resolver",
        &["kresd.target", "kresd@1", "kres-cache-gc"],
    ),
];

const NIGHTLY: &str = "nightly";

/// `cargo xtask setup`: install everything that is missing, saying what it does.
pub fn run() -> Result<()> {
    let missing = missing()?;
    if missing.is_empty() {
        println!("setup: everything is installed");
    }
    install(&missing)
}

/// Called by build, run and test: installs only when something is missing.
pub fn ensure() -> Result<()> {
    let missing = missing()?;
    if !missing.is_empty() {
        eprintln!("setup: installing what is missing first");
    }
    install(&missing)
}

#[derive(Debug, PartialEq)]
enum Missing {
    Nightly,
    RustSrc,
    BpfLinker,
    Packages(Vec<&'static str>),
    PythonTools,
}

fn missing() -> Result<Vec<Missing>> {
    let mut missing = Vec::new();
    let installed = output(
        "rustup",
        &["component", "list", "--installed", "--toolchain", NIGHTLY],
    );
    match installed {
        None => missing.extend([Missing::Nightly, Missing::RustSrc]),
        Some(list) if !list.lines().any(|l| l.starts_with("rust-src")) => {
            missing.push(Missing::RustSrc)
        }
        Some(_) => {}
    }
    if !on_path("bpf-linker") {
        missing.push(Missing::BpfLinker);
    }
    let packages: Vec<_> = PACKAGES
        .iter()
        .copied()
        .filter(|p| !package_installed(p))
        .collect();
    if !packages.is_empty() {
        missing.push(Missing::Packages(packages));
    }
    let validator = venv().join("bin/kubernetes-validate");
    let python = venv().join("bin/python");
    let check = "import dns.version, aioquic; print(dns.version.version, aioquic.__version__)";
    if output(&validator.to_string_lossy(), &["--version"])
        .is_none_or(|v| v.trim() != KUBERNETES_VALIDATE)
        || output(&python.to_string_lossy(), &["-c", check])
            .is_none_or(|v| v.trim() != format!("{DNSPYTHON} {AIOQUIC}"))
    {
        missing.push(Missing::PythonTools);
    }
    Ok(missing)
}

fn install(missing: &[Missing]) -> Result<()> {
    for item in missing {
        match item {
            Missing::Nightly => {
                println!("setup: installing the nightly toolchain");
                run_cmd(
                    "rustup",
                    &["toolchain", "install", NIGHTLY, "--profile", "minimal"],
                    &[],
                )?;
            }
            Missing::RustSrc => {
                println!("setup: adding rust-src to nightly");
                run_cmd(
                    "rustup",
                    &["component", "add", "rust-src", "--toolchain", NIGHTLY],
                    &[],
                )?;
            }
            Missing::BpfLinker => install_bpf_linker()?,
            Missing::Packages(packages) => install_packages(packages)?,
            Missing::PythonTools => install_python_tools()?,
        }
    }
    Ok(())
}

/// cargo-fuzz, for `cargo xtask fuzz` only: CI does not fuzz.
pub fn ensure_cargo_fuzz() -> Result<()> {
    if !on_path("cargo-fuzz") {
        println!("setup: installing cargo-fuzz");
        run_cmd("cargo", &["install", "--locked", "cargo-fuzz"], &[])?;
    }
    Ok(())
}

/// Builds bpf-linker against nightly's own libLLVM: there is no prebuilt one to download, and
/// linking the LLVM that produced the bitcode avoids version skew.
fn install_bpf_linker() -> Result<()> {
    let verbose = output("rustc", &["+nightly", "-vV"]).context("rustc +nightly -vV failed")?;
    let major = llvm_major(&verbose)?;
    let sysroot = output("rustc", &["+nightly", "--print", "sysroot"])
        .context("rustc +nightly --print sysroot failed")?;
    let lib_dir = Path::new(sysroot.trim()).join("lib");
    let libllvm = fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        // The real library is named by its soname, libLLVM.so.<ver>-rust-<ver>-nightly.
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .with_context(|| format!("no libLLVM.so.* in {}", lib_dir.display()))?;
    let prefix = env::temp_dir().join(format!("dnsxdp-llvm-{major}"));
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)?;
    let soname = libllvm.file_name().expect("a file");
    for link in [prefix_lib.join("libLLVM.so"), prefix_lib.join(soname)] {
        let _ = fs::remove_file(&link);
        symlink(&libllvm, &link).with_context(|| format!("linking {}", link.display()))?;
    }
    println!("setup: building bpf-linker against nightly's LLVM {major} (about a minute)");
    let feature = format!("llvm-{major}");
    run_cmd(
        "cargo",
        &[
            "install",
            "bpf-linker",
            "--no-default-features",
            "--features",
            &feature,
        ],
        &[("LLVM_PREFIX", prefix.as_os_str())],
    )?;
    if !on_path("bpf-linker") {
        bail!("bpf-linker was installed but is not on PATH: add ~/.cargo/bin to PATH");
    }
    Ok(())
}

/// The LLVM major version from `rustc -vV` output ("LLVM version: 22.1.4").
fn llvm_major(verbose: &str) -> Result<String> {
    verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .filter(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_owned)
        .context("rustc +nightly -vV printed no LLVM version")
}

/// The Python tools from PyPI, which Debian has no packages of at these versions: they go in a
/// venv under the target directory, where the tests look for them. kubernetes-validate checks
/// packaging/kubernetes offline, against the schemas it ships; dnspython with aioquic is a DNS
/// over QUIC client.
const KUBERNETES_VALIDATE: &str = "1.34.1";
const DNSPYTHON: &str = "2.7.0";
const AIOQUIC: &str = "1.2.0";
const VENV: &str = "tools/venv";

fn venv() -> PathBuf {
    crate::target_dir(&crate::workspace_root()).join(VENV)
}

fn install_python_tools() -> Result<()> {
    println!(
        "setup: installing kubernetes-validate {KUBERNETES_VALIDATE}, dnspython {DNSPYTHON} and \
         aioquic {AIOQUIC} in target/{VENV}"
    );
    let venv = venv();
    let venv = venv.to_str().context("target directory path")?;
    // Debian's Python: its venv module is what python3-venv provides.
    run_cmd("/usr/bin/python3", &["-m", "venv", venv], &[])?;
    let pip = format!("{venv}/bin/pip");
    let packages = [
        format!("kubernetes-validate=={KUBERNETES_VALIDATE}"),
        format!("dnspython=={DNSPYTHON}"),
        format!("aioquic=={AIOQUIC}"),
    ];
    let mut args = vec!["install", "--quiet"];
    args.extend(packages.iter().map(String::as_str));
    run_cmd(&pip, &args, &[])
}

fn install_packages(packages: &[&str]) -> Result<()> {
    println!("setup: installing Debian packages: {}", packages.join(" "));
    let env = [("DEBIAN_FRONTEND", "noninteractive".as_ref())];
    apt_update()?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(packages);
    run_cmd("apt-get", &args, &env)?;
    for (package, services) in SERVICES {
        if packages.contains(package) {
            services.iter().for_each(|s| stop_service(s));
        }
    }
    Ok(())
}

/// Fetches Debian's package lists.
pub fn apt_update() -> Result<()> {
    let env = [("DEBIAN_FRONTEND", "noninteractive".as_ref())];
    run_cmd("apt-get", &["update", "-q"], &env)
}

/// Stops and disables a service; best effort, as containers often run no systemd.
fn stop_service(service: &str) {
    let _ = Command::new("systemctl")
        .args(["disable", "--now", service])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn package_installed(name: &str) -> bool {
    output("dpkg-query", &["-W", "-f=${db:Status-Status}", name]).is_some_and(|s| s == "installed")
}

fn on_path(bin: &str) -> bool {
    let cargo_bin = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|h| h.join("bin"));
    env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(cargo_bin)
        .any(|dir| dir.join(bin).is_file())
}

/// Stdout of a successful command, or None.
fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_cmd(cmd: &str, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Result<()> {
    let status = Command::new(cmd)
        .args(args)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("starting {cmd}"))?;
    if !status.success() {
        bail!("{cmd} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_from_rustc_output() {
        let v = "rustc 1.97.0-nightly\nhost: x86_64-unknown-linux-gnu\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(v).unwrap(), "22");
        assert!(llvm_major("rustc 1.0\n").is_err());
    }
}
