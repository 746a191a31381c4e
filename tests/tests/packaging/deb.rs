//! The Debian package `cargo xtask package` builds: what dpkg-deb says of it, and installing,
//! running, removing and purging it with dpkg in a throwaway root.

use std::{collections::BTreeSet, fs, path::Path, process::Command};

use super::{TempDir, package, read, run, version};

/// What the package installs, with modes; all root's.
const FILES: [(&str, &str); 4] = [
    ("-rw-r--r--", "./etc/dnsxdp/dnsxdp.toml"),
    ("-rw-r--r--", "./lib/systemd/system/dnsxdp.service"),
    ("-rwxr-xr-x", "./usr/bin/dnsxdp"),
    ("-rw-r--r--", "./usr/share/doc/dnsxdp/copyright"),
];
const CONFFILE: &str = "/etc/dnsxdp/dnsxdp.toml";

fn field(deb: &Path, name: &str) -> String {
    run(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn dpkg_deb_shows_the_fields_files_and_conffile() {
    let deb = &package().deb;
    assert_eq!(field(deb, "Package"), "dnsxdp");
    assert_eq!(field(deb, "Version"), version());
    assert_eq!(field(deb, "Architecture"), "amd64");
    assert!(!field(deb, "Maintainer").is_empty());
    let contents = run(Command::new("dpkg-deb").arg("--contents").arg(deb)).unwrap();
    let files: BTreeSet<(&str, &str)> = contents
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| !w[0].starts_with('d'))
        .map(|w| {
            assert_eq!(w[1], "root/root", "{w:?}");
            (w[0], w[5])
        })
        .collect();
    assert_eq!(files, BTreeSet::from(FILES));
    // Nothing runs on install: the service waits for the site's settings.
    let control = TempDir::new("control");
    run(Command::new("dpkg-deb")
        .arg("--control")
        .arg(deb)
        .arg(&control.0))
    .unwrap();
    let mut members: Vec<String> = fs::read_dir(&control.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    members.sort();
    assert_eq!(members, ["conffiles", "control"]);
    assert_eq!(
        fs::read_to_string(control.0.join("conffiles")).unwrap(),
        format!("{CONFFILE}\n")
    );
}

/// Depends names the package of every library the binary loads, at a version this host has,
/// and libc6 at least at the newest glibc symbol version the binary uses.
#[test]
fn depends_covers_the_libraries_the_binary_loads() {
    let depends: Vec<(String, Option<String>)> = field(&package().deb, "Depends")
        .split(", ")
        .map(|d| match d.split_once(" (>= ") {
            Some((name, v)) => (name.into(), Some(v.trim_end_matches(')').into())),
            None => (d.into(), None),
        })
        .collect();
    let binary = package().stage.join("usr/bin/dnsxdp");
    let loaded = run(Command::new("ldd").arg(&binary)).unwrap();
    // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`; the vDSO has no file.
    for path in loaded.split_whitespace().filter(|w| w.starts_with('/')) {
        let owner = run(Command::new("dpkg").args(["-S", path])).unwrap();
        let owner = owner.split(':').next().unwrap();
        assert!(
            depends.iter().any(|(name, _)| name == owner),
            "{path} is in {owner}, not in Depends {depends:?}"
        );
    }
    for (name, bound) in &depends {
        let host = run(Command::new("dpkg-query").args(["-W", "-f=${Version}", name])).unwrap();
        if let Some(bound) = bound {
            let ok = Command::new("dpkg")
                .args(["--compare-versions", &host, "ge", bound])
                .status()
                .unwrap();
            assert!(ok.success(), "{name} {host} here, Depends >= {bound}");
        }
    }
    let bytes = fs::read(&binary).unwrap();
    let newest = bytes
        .windows(6)
        .enumerate()
        .filter(|(_, w)| *w == b"GLIBC_")
        .filter_map(|(i, _)| {
            let digits = bytes[i + 6..]
                .iter()
                .take_while(|b| b.is_ascii_digit() || **b == b'.');
            let version = String::from_utf8(digits.copied().collect()).ok()?;
            let parts: Option<Vec<u32>> = version.split('.').map(|p| p.parse().ok()).collect();
            parts
        })
        .max()
        .expect("the binary uses versioned glibc symbols");
    let libc = depends
        .iter()
        .find(|(name, _)| name == "libc6")
        .and_then(|(_, bound)| bound.clone())
        .expect("Depends: libc6 (>= VERSION)");
    let libc: Vec<u32> = libc.split('.').map(|p| p.parse().unwrap()).collect();
    assert!(
        libc >= newest,
        "libc6 (>= {libc:?}) but the binary uses GLIBC_{newest:?}"
    );
}

#[test]
fn dpkg_installs_runs_removes_and_purges_it() {
    let root = TempDir::new("root");
    let root = &root.0;
    fs::create_dir_all(root.join("var/lib/dpkg/info")).unwrap();
    fs::create_dir_all(root.join("var/lib/dpkg/updates")).unwrap();
    fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let dpkg = |args: &[&str]| {
        // Depends: the throwaway root has no libc6 package, only the host's libraries.
        run(Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .arg("--force-depends")
            .args(args))
        .unwrap()
    };
    dpkg(&["--install", package().deb.to_str().unwrap()]);

    let installed = root.join("usr/bin/dnsxdp");
    let said = run(Command::new(&installed).arg("--version")).unwrap();
    assert_eq!(said.trim(), format!("dnsxdp {}", version()));
    assert_eq!(
        fs::read_to_string(root.join("lib/systemd/system/dnsxdp.service")).unwrap(),
        read("packaging/systemd/dnsxdp.service")
    );
    let conffile = root.join(CONFFILE.trim_start_matches('/'));
    assert_eq!(
        fs::read_to_string(&conffile).unwrap(),
        read("packaging/dnsxdp.toml")
    );
    // In a network namespace of its own, should it ever get as far as serving.
    let out = Command::new("unshare")
        .arg("--net")
        .arg(&installed)
        .args(["run", "--config"])
        .arg(&conffile)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: no --iface given"),
        "not the missing site setting: {stderr}"
    );

    // Removing keeps the administrator's config; purging takes it too.
    dpkg(&["--remove", "dnsxdp"]);
    assert!(!installed.exists());
    assert!(!root.join("lib/systemd/system/dnsxdp.service").exists());
    assert!(conffile.exists());
    dpkg(&["--purge", "dnsxdp"]);
    let left: Vec<_> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name != "var")
        .collect();
    assert!(left.is_empty(), "left after purge: {left:?}");
}
