//! `cargo xtask package`: the Debian package, built by dpkg-deb from a staged tree of what it
//! installs. The tree is kept: it is also the build context of packaging/Containerfile.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// Files the package installs besides the binary: (source in the workspace, installed path).
const FILES: &[(&str, &str)] = &[
    (
        "packaging/systemd/dnsxdp.service",
        "lib/systemd/system/dnsxdp.service",
    ),
    ("packaging/dnsxdp.toml", "etc/dnsxdp/dnsxdp.toml"),
    (
        "packaging/debian/copyright",
        "usr/share/doc/dnsxdp/copyright",
    ),
];
const BINARY: &str = "usr/bin/dnsxdp";
/// Kept on upgrade when the administrator changed it, and removed only on purge.
const CONFFILES: &[&str] = &["/etc/dnsxdp/dnsxdp.toml"];
const ARCH: &str = "amd64";
/// What `objdump -p` calls an amd64 binary.
const ELF_FORMAT: &str = "file format elf64-x86-64";

/// The Debian package of each shared library the binary links, and the prefix of that
/// library's symbol versions, which name the upstream release that added each symbol.
const LIBRARIES: &[(&str, &str, &str)] = &[
    ("libc.so.6", "libc6", "GLIBC_"),
    ("libm.so.6", "libc6", "GLIBC_"),
    ("ld-linux-x86-64.so.2", "libc6", "GLIBC_"),
    ("libgcc_s.so.1", "libgcc-s1", "GCC_"),
];

const DESCRIPTION: &str = "\
caching DNS forwarder with an XDP fast path
 dnsxdp forwards DNS queries to upstream resolvers (plain DNS, DNS over TLS or
 DNS over HTTPS) and caches their answers. Repeat A and AAAA queries are
 answered by an XDP program on the network interface, before the kernel's
 network stack.
 .
 The service is not started on installation: set iface (and upstream) in
 /etc/dnsxdp/dnsxdp.toml first, then run systemctl enable --now dnsxdp.";

#[derive(clap::Args)]
pub struct Args {
    /// Package this dnsxdp binary instead of building one in release mode.
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// Where the .deb and the staged tree (stage/) go [default: target/package].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let root = crate::workspace_root();
    let binary = match args.binary {
        Some(binary) => binary,
        None => {
            crate::setup::ensure()?;
            crate::cargo(&["build", "--package", "dnsxdp"], true)?;
            crate::target_dir(&root).join("release/dnsxdp")
        }
    };
    let out = args
        .out
        .unwrap_or_else(|| crate::target_dir(&root).join("package"));
    let deb = build(&root, &binary, &out)?;
    println!("{}", deb.display());
    Ok(())
}

/// Stages the package's files under `out/stage` and builds `out/dnsxdp_<version>_amd64.deb`.
fn build(root: &Path, binary: &Path, out: &Path) -> Result<PathBuf> {
    let version = version(binary)?;
    let depends = depends(binary)?;
    let stage = out.join("stage");
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    strip(binary, &stage.join(BINARY))?;
    for (source, installed) in FILES {
        install(&root.join(source), &stage.join(installed), 0o644)?;
    }
    let installed_kib = size(&stage)?.div_ceil(1024);
    let control = format!(
        "Package: dnsxdp\nVersion: {version}\nArchitecture: {ARCH}\nMaintainer: {}\n\
         Installed-Size: {installed_kib}\nDepends: {depends}\n\
         Recommends: ca-certificates\nSection: net\nPriority: optional\n\
         Description: {DESCRIPTION}\n",
        maintainer()
    );
    write(&stage.join("DEBIAN/control"), &control)?;
    write(
        &stage.join("DEBIAN/conffiles"),
        &(CONFFILES.join("\n") + "\n"),
    )?;
    // Directories as dpkg expects them, whatever the umask.
    dirs_mode(&stage, 0o755)?;
    let deb = out.join(format!("dnsxdp_{version}_{ARCH}.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&stage)
        .arg(&deb)
        .status()
        .context("running dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb --build failed ({status})");
    }
    Ok(deb)
}

/// The version the binary reports (`dnsxdp 0.1.0`), so the package is named for what it holds.
fn version(binary: &Path) -> Result<String> {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .strip_prefix("dnsxdp ")
        .filter(|v| out.status.success() && v.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_owned)
        .with_context(|| format!("{} --version printed {text:?}", binary.display()))
}

/// The Depends field: the package of each library the binary needs, at least at the newest
/// symbol version it uses from it (what dpkg-shlibdeps would find for these libraries).
fn depends(binary: &Path) -> Result<String> {
    let out = Command::new("objdump")
        .arg("-p")
        .arg(binary)
        .output()
        .context("running objdump (binutils)")?;
    if !out.status.success() {
        bail!("objdump -p {} failed", binary.display());
    }
    let dump = String::from_utf8_lossy(&out.stdout);
    if !dump.contains(ELF_FORMAT) {
        bail!("{} is not an {ARCH} binary", binary.display());
    }
    depends_of(&dump)
}

/// Depends from `objdump -p` output: its NEEDED libraries and its version references.
fn depends_of(dump: &str) -> Result<String> {
    // (package, newest version needed), in the order first needed.
    let mut needs: Vec<(&str, Vec<u32>)> = Vec::new();
    let mut library = None;
    for line in dump.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("NEEDED") {
            let (_, package, _) = known(name.trim())?;
            if !needs.iter().any(|(p, _)| *p == package) {
                needs.push((package, Vec::new()));
            }
        } else if let Some(name) = line.strip_prefix("required from ") {
            library = Some(known(name.trim_end_matches(':'))?);
        } else if let Some((_, package, prefix)) = library
            // `0x069691b4 0x00 02 GLIBC_2.34`
            && let Some(version) = numeric(line.split_whitespace().nth(3), prefix)
            && let Some((_, newest)) = needs.iter_mut().find(|(p, _)| *p == package)
        {
            *newest = version.max(std::mem::take(newest));
        }
    }
    Ok(needs
        .iter()
        .map(|(package, version)| match &version[..] {
            [] => package.to_string(),
            v => {
                let v: Vec<String> = v.iter().map(u32::to_string).collect();
                format!("{package} (>= {})", v.join("."))
            }
        })
        .collect::<Vec<_>>()
        .join(", "))
}

fn known(library: &str) -> Result<(&'static str, &'static str, &'static str)> {
    LIBRARIES
        .iter()
        .copied()
        .find(|(name, _, _)| *name == library)
        .with_context(|| {
            format!("the binary links {library}, whose Debian package xtask/src/package.rs does not know")
        })
}

/// `GLIBC_2.34` as [2, 34]; None for `GLIBC_PRIVATE` and the like.
fn numeric(symbol_version: Option<&str>, prefix: &str) -> Option<Vec<u32>> {
    let version = symbol_version?.strip_prefix(prefix)?;
    version.split('.').map(|part| part.parse().ok()).collect()
}

/// `DEBFULLNAME <DEBEMAIL>` as for other Debian tools, else the project's address.
fn maintainer() -> String {
    match (std::env::var("DEBFULLNAME"), std::env::var("DEBEMAIL")) {
        (Ok(name), Ok(email)) => format!("{name} <{email}>"),
        _ => "dnsxdp maintainers <maintainers@dnsxdp.invalid>".into(),
    }
}

/// Copies the binary without its debug information and symbols, as dh_strip does.
fn strip(binary: &Path, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest.parent().expect("installed paths have a directory"))?;
    let status = Command::new("strip")
        .args(["--remove-section=.comment", "--remove-section=.note"])
        .args(["--strip-unneeded", "-o"])
        .arg(dest)
        .arg(binary)
        .status()
        .context("running strip (binutils)")?;
    if !status.success() {
        bail!("strip {} failed ({status})", binary.display());
    }
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn install(source: &Path, dest: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(dest.parent().expect("installed paths have a directory"))?;
    fs::copy(source, dest)
        .with_context(|| format!("copying {} to {}", source.display(), dest.display()))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::create_dir_all(path.parent().expect("a directory"))?;
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// Bytes in the files under `dir`.
fn size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn dirs_mode(dir: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            dirs_mode(&entry.path(), mode)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_take_the_newest_symbol_version_of_each_package() {
        let dump = "
Dynamic Section:
  NEEDED               libgcc_s.so.1
  NEEDED               libm.so.6
  NEEDED               libc.so.6

Version References:
  required from libgcc_s.so.1:
    0x0b792650 0x00 04 GCC_3.0
    0x09276060 0x00 23 GCC_4.2.0
  required from libm.so.6:
    0x06969189 0x00 10 GLIBC_2.29
  required from libc.so.6:
    0x09691a75 0x00 03 GLIBC_2.2.5
    0x069691b4 0x00 02 GLIBC_2.34
    0x069691b3 0x00 17 GLIBC_2.33
    0x0963cf85 0x00 24 GLIBC_PRIVATE
";
        assert_eq!(
            depends_of(dump).unwrap(),
            "libgcc-s1 (>= 4.2.0), libc6 (>= 2.34)"
        );
        let e = depends_of("  NEEDED               libssl.so.3\n").unwrap_err();
        assert!(e.to_string().contains("libssl.so.3"), "{e}");
    }
}
