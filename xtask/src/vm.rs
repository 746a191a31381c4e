//! Runs the kernel tests on another kernel: Debian's packaged ones, booted under qemu.
//!
//! The guest needs no disk image: a small initramfs (busybox and the modules for 9p) mounts
//! the host's root read-only over 9p, puts tmpfs where the tests write, and runs the kernel
//! tests' binary the host built. KVM is used where it can run a guest, else TCG, which boots a
//! kernel in seconds even inside a VM without nested virtualisation.

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

/// Modules the guest loads before it can reach the host's root, and the veth pairs, VLANs and
/// bridges the tests build. Their dependencies are added from the modules' own `depends=`.
const MODULES: &[&str] = &[
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "veth",
    "8021q",
    "bridge",
];

/// Where Debian's busybox-static puts its binary.
const BUSYBOX: &str = "/bin/busybox";

/// Set once a KVM guest failed to start, so later boots of the same run go straight to TCG.
static KVM_HANGS: AtomicBool = AtomicBool::new(false);

/// How the guest mounts the host's directories. Nothing changes them while it runs, so the
/// guest may keep what it read: without that, every start of the 100 MB debug binary (each
/// `dnsxdp stats` a test runs) reads it over 9p again.
const MOUNT_9P: &str = "trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose";

/// The last line the guest prints, with the tests' exit status.
const EXIT_MARK: &str = "dnsxdp-vm: exit ";

/// A kernel to boot and the modules built for it.
pub struct Kernel {
    pub release: String,
    image: PathBuf,
    modules: PathBuf,
}

impl Kernel {
    /// `spec` is a path to a kernel image (its modules in `../lib/modules/RELEASE` beside its
    /// `boot/`, as in /boot), or a version such as `6.1` for Debian's newest package of it,
    /// downloaded and unpacked under `cache`.
    pub fn resolve(spec: &str, cache: &Path) -> Result<Self> {
        let path = Path::new(spec);
        if path.is_file() {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let release = name
                .strip_prefix("vmlinuz-")
                .with_context(|| format!("{spec}: a kernel image is named vmlinuz-RELEASE"))?;
            let root = path
                .parent()
                .and_then(Path::parent)
                .context("the image's directory")?;
            return Self::at(root, release);
        }
        let package = newest_package(spec)?;
        let release = package
            .strip_prefix("linux-image-")
            .expect("matched on the prefix")
            .to_string();
        let root = cache.join(&release);
        if !root
            .join("boot")
            .join(format!("vmlinuz-{release}"))
            .is_file()
        {
            download(&package, cache, &root)?;
        }
        Self::at(&root, &release)
    }

    fn at(root: &Path, release: &str) -> Result<Self> {
        let kernel = Self {
            release: release.to_string(),
            image: root.join("boot").join(format!("vmlinuz-{release}")),
            modules: root.join("lib/modules").join(release),
        };
        if !kernel.modules.is_dir() {
            bail!("no modules for {release} at {}", kernel.modules.display());
        }
        Ok(kernel)
    }
}

/// Debian's newest `linux-image-VERSION.*-amd64` package.
fn newest_package(version: &str) -> Result<String> {
    let find = || -> Result<Option<String>> {
        let out = Command::new("apt-cache")
            .args(["search", "--names-only", &format!("^linux-image-{version}")])
            .output()
            .context("running apt-cache")?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(newest(
            text.lines().filter_map(|l| l.split(' ').next()),
            version,
        ))
    };
    if let Some(found) = find()? {
        return Ok(found);
    }
    // A machine whose package lists were never fetched finds nothing.
    crate::setup::apt_update()?;
    find()?.with_context(|| format!("Debian has no linux-image-{version}.*-amd64 package"))
}

/// The highest-numbered plain amd64 image among `names` for `version` (not -rt, -cloud, -dbg
/// or -unsigned).
fn newest<'a>(names: impl Iterator<Item = &'a str>, version: &str) -> Option<String> {
    names
        .filter_map(|name| {
            let release = name.strip_prefix("linux-image-")?.strip_suffix("-amd64")?;
            let rest = release.strip_prefix(version)?.strip_prefix('.')?;
            // "0-48": the patch level and Debian's ABI number.
            let numbers: Vec<u32> = rest
                .split('-')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            Some((numbers, name.to_string()))
        })
        .max()
        .map(|(_, name)| name)
}

fn download(package: &str, cache: &Path, root: &Path) -> Result<()> {
    println!("vm: downloading {package}");
    fs::create_dir_all(cache)?;
    run(Command::new("apt-get")
        .args(["download", "-q", package])
        .current_dir(cache))?;
    let deb = fs::read_dir(cache)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .context("apt-get download left no .deb")?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root))?;
    fs::remove_file(&deb)?;
    Ok(())
}

/// What to run in the guest: the kernel tests' binary with its arguments.
pub struct Run<'a> {
    pub workspace: &'a Path,
    /// Host directories the guest must see as they are (the workspace and the target dir):
    /// shared again on their own, since the guest's tmpfs on /tmp or /run would hide them.
    pub shares: Vec<PathBuf>,
    pub binary: &'a Path,
    pub args: &'a [String],
    pub env: Vec<(&'static str, String)>,
}

/// Boots `kernel` and runs `run` in it, printing what the tests print; returns the passed and
/// failed counts, and whether the tests exited successfully.
pub fn run_tests(kernel: &Kernel, run: &Run, scratch: &Path) -> Result<(u64, u64, bool)> {
    fs::create_dir_all(scratch)?;
    let initrd = scratch.join("initrd.cpio");
    write_initramfs(&initrd, kernel, &guest_script(run))?;
    // /dev/kvm may exist on a VM whose own guests hang after their BIOS: KVM is tried with a
    // deadline for the guest's first line, then TCG.
    if Path::new("/dev/kvm").exists() && !KVM_HANGS.load(Ordering::Relaxed) {
        match boot(
            kernel,
            run,
            &initrd,
            scratch,
            "kvm",
            Duration::from_secs(30),
        )? {
            Some(result) => return Ok(result),
            None => {
                println!("vm: no guest under KVM within 30 s; using TCG");
                KVM_HANGS.store(true, Ordering::Relaxed);
            }
        }
    }
    boot(
        kernel,
        run,
        &initrd,
        scratch,
        "tcg",
        Duration::from_secs(300),
    )?
    .context("the guest did not start under TCG within 300 s")
}

/// One boot under `accel`; None if the guest said nothing within `first_line`.
fn boot(
    kernel: &Kernel,
    run: &Run,
    initrd: &Path,
    scratch: &Path,
    accel: &str,
    first_line: Duration,
) -> Result<Option<(u64, u64, bool)>> {
    let console = scratch.join("console.log");
    println!("vm: booting {} under qemu ({accel})", kernel.release);
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", accel, "-smp", "2", "-m", "4096"])
        .args(["-nographic", "-no-reboot", "-nic", "none", "-kernel"])
        .arg(&kernel.image)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .args(share("host", Path::new("/")))
        .args(
            run.shares
                .iter()
                .enumerate()
                .flat_map(|(i, dir)| share(&format!("share{i}"), dir)),
        )
        // The kernel's console to a file; the tests' output, on ttyS1, to us.
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .args(["-serial", "stdio", "-monitor", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64 (cargo xtask setup installs it)")?;
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    match lines.recv_timeout(first_line) {
        Ok(up) => println!("{up}"),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
    }
    let (mut passed, mut failed, mut status) = (0, 0, None);
    for line in lines {
        let line = line.trim_end_matches('\r');
        if let Some(code) = line.strip_prefix(EXIT_MARK) {
            status = Some(code.trim() == "0");
            continue;
        }
        println!("{line}");
        if let Some((p, f)) = crate::test_result_counts(line) {
            passed += p;
            failed += f;
        }
    }
    child.wait()?;
    let Some(ok) = status else {
        bail!(
            "the {} guest stopped before the tests ended; its console is in {}",
            kernel.release,
            console.display()
        );
    };
    Ok(Some((passed, failed, ok)))
}

/// qemu's arguments to export `dir` read-only to the guest under `tag`.
fn share(tag: &str, dir: &Path) -> [String; 4] {
    [
        "-fsdev".into(),
        format!(
            "local,id={tag},path={},readonly=on,security_model=none,multidevs=remap",
            dir.display()
        ),
        "-device".into(),
        format!("virtio-9p-pci,fsdev={tag},mount_tag={tag}"),
    ]
}

/// The script the guest runs once the host's root is mounted.
fn guest_script(run: &Run) -> String {
    let mut s = String::from("export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root\n");
    for (key, value) in &run.env {
        s += &format!("export {key}='{value}'\n");
    }
    for (i, dir) in run.shares.iter().enumerate() {
        s += &format!(
            "mkdir -p '{0}' && mount -t 9p -o {MOUNT_9P} share{i} '{0}'\n",
            dir.display()
        );
    }
    s += &format!("ip link set lo up\ncd '{}'\n", run.workspace.display());
    let args: String = run.args.iter().map(|a| format!(" '{a}'")).collect();
    s += &format!(
        "echo \"     Running {0} on $(uname -r)\"\n'{0}' --color never --test-threads 2{args} 2>&1\n",
        run.binary.display()
    );
    s += &format!("echo \"{EXIT_MARK}$?\"\n");
    s
}

/// The guest's first process: load the modules, mount the host's root read-only, give the
/// tests writable /tmp and /run, and run the script with its output on ttyS1.
const INIT: &str = r#"#!/bin/busybox sh
B=/bin/busybox
$B mkdir -p /proc /sys /dev /root
$B mount -t proc proc /proc
$B mount -t devtmpfs dev /dev
echo "dnsxdp-vm: $($B uname -r) up" > /dev/ttyS1
for m in $($B cat /modules/order); do $B insmod /modules/$m.ko || echo "insmod $m failed"; done
$B mount -t 9p -o MOUNT_9P host /root
for d in tmp run var/tmp; do $B mount -t tmpfs tmpfs /root/$d; done
$B mount -t proc proc /root/proc
$B mount -t sysfs sys /root/sys
$B mount -t devtmpfs dev /root/dev
$B cp /test.sh /root/tmp/dnsxdp-vm.sh
$B chroot /root /bin/sh /tmp/dnsxdp-vm.sh > /dev/ttyS1 2>&1
$B poweroff -f
"#;

fn write_initramfs(path: &Path, kernel: &Kernel, script: &str) -> Result<()> {
    let modules = module_order(&kernel.modules)?;
    let mut cpio = Cpio::default();
    cpio.dir("bin");
    cpio.dir("modules");
    cpio.file("bin/busybox", 0o755, &fs::read(BUSYBOX).context(BUSYBOX)?);
    cpio.file("init", 0o755, INIT.replace("MOUNT_9P", MOUNT_9P).as_bytes());
    cpio.file("test.sh", 0o644, script.as_bytes());
    let mut order = String::new();
    for (name, file) in &modules {
        cpio.file(&format!("modules/{name}.ko"), 0o644, &fs::read(file)?);
        order += &format!("{name}\n");
    }
    cpio.file("modules/order", 0o644, order.as_bytes());
    fs::File::create(path)?.write_all(&cpio.finish())?;
    Ok(())
}

/// `MODULES` and everything they depend on, each after its dependencies, with their files.
fn module_order(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut files = BTreeMap::new();
    index_modules(dir, &mut files)?;
    let mut order = Vec::new();
    for name in MODULES {
        add_module(name, &files, &mut order)?;
    }
    Ok(order)
}

fn add_module(
    name: &str,
    files: &BTreeMap<String, PathBuf>,
    order: &mut Vec<(String, PathBuf)>,
) -> Result<()> {
    if order.iter().any(|(n, _)| n == name) {
        return Ok(());
    }
    let file = files.get(name).with_context(|| {
        format!("module {name} (.ko) not found; compressed modules are not supported")
    })?;
    for dep in depends(&fs::read(file)?) {
        add_module(&dep, files, order)?;
    }
    order.push((name.to_string(), file.clone()));
    Ok(())
}

/// Every `.ko` under `dir`, by module name (dashes read as underscores, as the kernel does).
fn index_modules(dir: &Path, files: &mut BTreeMap<String, PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            index_modules(&path, files)?;
        } else if let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".ko"))
        {
            files.insert(stem.replace('-', "_"), path);
        }
    }
    Ok(())
}

/// The `depends=` list of a module's .modinfo section.
fn depends(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(at) = ko.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let rest = &ko[at + KEY.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.replace('-', "_"))
        .collect()
}

/// An archive in the "newc" cpio format the kernel unpacks as its initramfs.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, &[]);
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | perm, data);
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.out
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_plain_image_of_a_version_is_chosen() {
        let names = [
            "linux-image-6.1.0-9-amd64",
            "linux-image-6.1.0-48-amd64",
            "linux-image-6.1.0-48-rt-amd64",
            "linux-image-6.1.0-48-cloud-amd64",
            "linux-image-6.12.0-1-amd64",
            "linux-image-6.1.0-47-amd64-unsigned",
        ];
        assert_eq!(
            newest(names.into_iter(), "6.1").as_deref(),
            Some("linux-image-6.1.0-48-amd64")
        );
        assert_eq!(newest(names.into_iter(), "5.10"), None);
    }

    #[test]
    fn module_dependencies_come_from_modinfo() {
        let ko = b"\x7fELF...\0license=GPL\0depends=9pnet,netfs\0vermagic=6.1\0";
        assert_eq!(depends(ko), ["9pnet", "netfs"]);
        assert!(depends(b"\0depends=\0").is_empty());
    }

    #[test]
    fn cpio_entries_are_newc_and_word_aligned() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"abc");
        let out = c.finish();
        assert!(out.starts_with(b"070701"));
        assert_eq!(&out[110..115], b"init\0");
        assert_eq!(&out[116..119], b"abc");
        assert!(out.len().is_multiple_of(4));
        assert!(out.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
