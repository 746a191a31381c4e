//! The packaging in packaging/, checked with the tools that consume it: systemd-analyze for the
//! unit, dpkg for the package (installed into a throwaway root), the daemon itself for the
//! configs, kubernetes-validate for the DaemonSet, and the real daemon run with only the
//! unit's capabilities. Run as root (`cargo xtask test`).

mod capabilities;
mod config;
mod container;
mod deb;
mod kubernetes;
mod systemd;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use anyhow::{Context as _, Result, bail};
use dnsxdp_tests::daemon::binary;

/// The capabilities the daemon needs, each shown needed by `capabilities.rs`: BPF to load the
/// program and maps, PERFMON for the verifier to allow its variable-offset packet pointer
/// arithmetic, NET_ADMIN to attach XDP, NET_BIND_SERVICE to serve on port 53.
const CAPABILITIES: [&str; 4] = [
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
];

/// The workspace root, where packaging/ is.
fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
}

/// A file of the workspace.
fn read(path: &str) -> String {
    let path = workspace().join(path);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Runs `cmd`; its standard output if it succeeded, else an error with all it printed.
fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The version the built binary reports, which the package and the image are named for.
fn version() -> String {
    let out = run(Command::new(binary().unwrap()).arg("--version")).unwrap();
    out.trim()
        .strip_prefix("dnsxdp ")
        .expect("dnsxdp VERSION")
        .to_owned()
}

/// The `[Service]` settings of the systemd unit, as (key, value) in order.
fn unit_settings() -> Vec<(String, String)> {
    let unit = read("packaging/systemd/dnsxdp.service");
    let mut section = "";
    let mut settings = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]"
            && !line.starts_with('#')
            && let Some((key, value)) = line.split_once('=')
        {
            settings.push((key.to_owned(), value.to_owned()));
        }
    }
    settings
}

/// The capabilities the unit leaves the daemon: its bounding set.
fn unit_capabilities() -> Vec<String> {
    let settings = unit_settings();
    let sets: Vec<&str> = settings
        .iter()
        .filter(|(k, _)| k == "CapabilityBoundingSet")
        .map(|(_, v)| v.as_str())
        .collect();
    // Several lines add up, and one that is empty resets: one line keeps it plain.
    assert_eq!(sets.len(), 1, "one CapabilityBoundingSet= line: {sets:?}");
    sets[0].split_whitespace().map(str::to_owned).collect()
}

/// What `cargo xtask package` made of the debug binary: built once for all the tests.
struct Package {
    deb: PathBuf,
    /// The staged tree the package was built from, and the container image's build context.
    stage: PathBuf,
}

fn package() -> &'static Package {
    static PACKAGE: OnceLock<Package> = OnceLock::new();
    PACKAGE.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("packaging");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let printed = run(Command::new(cargo)
            .args(["xtask", "package", "--binary"])
            .arg(binary().unwrap())
            .arg("--out")
            .arg(&out)
            .current_dir(workspace()))
        .unwrap();
        let deb = PathBuf::from(printed.lines().last().expect("the .deb's path").trim());
        assert_eq!(
            deb,
            out.join(format!("dnsxdp_{}_amd64.deb", version())),
            "printed"
        );
        Package {
            deb,
            stage: out.join("stage"),
        }
    })
}

/// A directory under the target directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("packaging-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
