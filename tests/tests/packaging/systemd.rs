//! packaging/systemd/dnsxdp.service: systemd accepts it, and it runs the daemon as the package
//! installs it, with no more capabilities than the daemon needs.

use std::{fs, process::Command};

use dnsxdp_tests::daemon::binary;

use super::{CAPABILITIES, TempDir, read, unit_capabilities, unit_settings};

const BINARY: &str = "/usr/bin/dnsxdp";
const CONFIG: &str = "/etc/dnsxdp/dnsxdp.toml";

fn setting(key: &str) -> Vec<String> {
    unit_settings()
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn systemd_analyze_verifies_the_unit_without_a_warning() {
    // verify checks that the commands exist: a copy runs the built binary instead.
    let unit = read("packaging/systemd/dnsxdp.service");
    assert!(unit.contains(BINARY));
    let dir = TempDir::new("unit");
    let copy = dir.0.join("dnsxdp.service");
    let built = binary().unwrap();
    fs::write(&copy, unit.replace(BINARY, built.to_str().unwrap())).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze (systemd)");
    // It exits 0 after warnings about unknown keys or values, which it then ignores.
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.is_empty(),
        "{}:\n{said}",
        out.status
    );
}

#[test]
fn the_unit_grants_only_the_capabilities_the_daemon_needs() {
    let mut granted = unit_capabilities();
    granted.sort();
    let mut needed = CAPABILITIES.map(str::to_owned).to_vec();
    needed.sort();
    assert_eq!(granted, needed);
    // Root, for the root-owned bpffs; the bounding set is all it keeps, so nothing may add
    // capabilities back or gain new ones on exec.
    assert_eq!(setting("User"), ["root"]);
    assert_eq!(setting("AmbientCapabilities"), Vec::<String>::new());
    assert_eq!(setting("NoNewPrivileges"), ["yes"]);
}

#[test]
fn the_unit_runs_the_installed_daemon_with_its_config() {
    assert_eq!(setting("Type"), ["simple"], "the daemon does not sd_notify");
    assert_eq!(
        setting("ExecStart"),
        [format!("{BINARY} run --config {CONFIG}")]
    );
    // Only while the daemon runs: after a crash the restarted daemon adopts the program.
    let stop = setting("ExecStop");
    assert_eq!(stop.len(), 1);
    assert!(
        stop[0].contains(&format!("exec {BINARY} stop --config {CONFIG}'"))
            && stop[0].contains("$MAINPID"),
        "{stop:?}"
    );
    assert_eq!(setting("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(setting("Restart"), ["always"]);
    // The default control socket is in the runtime directory systemd makes.
    let runtime = setting("RuntimeDirectory");
    assert_eq!(
        dnsxdp::ops::settings::DEFAULT_CONTROL,
        format!("/run/{}/control.sock", runtime.join(""))
    );
    // Everything else is read-only: the pins must not be.
    assert_eq!(setting("ProtectSystem"), ["strict"]);
    let writable = setting("ReadWritePaths").join(" ");
    assert!(
        writable
            .split_whitespace()
            .any(|p| dnsxdp::kernel::pin::PIN_ROOT.starts_with(p)),
        "{} is not in ReadWritePaths={writable}",
        dnsxdp::kernel::pin::PIN_ROOT
    );
}
