//! The bpf filesystem that the kernel cache and the XDP links are pinned in.
//!
//! A fresh machine may have nothing mounted at /sys/fs/bpf (systemd mounts it; a container or
//! a minimal boot may not), and `ip netns exec` mounts a /sys of its own without it. Like
//! bpftool, the daemon then mounts one itself rather than running without its pins.

use std::{
    ffi::CString,
    fs,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use tracing::{info, warn};

/// Where bpffs is mounted by convention, and where dnsxdp mounts it if nothing is.
const MOUNT_POINT: &str = "/sys/fs/bpf";

/// `statfs` type of a bpf filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Makes `dir` a directory on a bpf filesystem, mounting one at /sys/fs/bpf first when `dir`
/// lies under it and nothing is mounted there.
pub fn ensure(dir: &Path) -> anyhow::Result<()> {
    let mount_point = Path::new(MOUNT_POINT);
    if dir.starts_with(mount_point) && !is_bpffs(mount_point) {
        mount(mount_point)?;
        if own_mount_namespace() {
            warn!(
                "mounted a bpf filesystem at {MOUNT_POINT} in a mount namespace of this process's own (ip netns exec?): the pinned cache and XDP links end with it; for them to outlive this process, pass --pin-dir on a bpf filesystem of the host's"
            );
        } else {
            info!("mounted a bpf filesystem at {MOUNT_POINT}: nothing was mounted there");
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("creating --pin-dir {}", dir.display()))?;
    if !is_bpffs(dir) {
        bail!(
            "--pin-dir {} is not on a bpf filesystem: mount one there (mount -t bpf bpf DIR) or use a directory under {MOUNT_POINT}",
            dir.display()
        );
    }
    Ok(())
}

/// Whether `path` is on a bpf filesystem.
fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: a NUL-terminated path and a buffer of the size statfs writes.
    if unsafe { libc::statfs(c_path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: statfs succeeded, so it filled the buffer.
    unsafe { stat.assume_init() }.f_type == BPF_FS_MAGIC
}

fn mount(at: &Path) -> anyhow::Result<()> {
    let target = CString::new(at.as_os_str().as_bytes())?;
    // Only root may pin there, as with the mount systemd makes.
    let (source, fstype, data) = (c"bpf", c"bpf", c"mode=0700");
    // SAFETY: NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        bail!(
            "nothing is mounted at {MOUNT_POINT} and mounting a bpf filesystem there failed: {} (needs CAP_SYS_ADMIN; or mount it first: mount -t bpf bpf {MOUNT_POINT})",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Whether this process's mount namespace differs from init's, where a mount would outlive it.
fn own_mount_namespace() -> bool {
    let ns = |pid: &str| fs::read_link(PathBuf::from(format!("/proc/{pid}/ns/mnt"))).ok();
    match (ns("self"), ns("1")) {
        (Some(mine), Some(init)) => mine != init,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_directories_are_not_bpffs() {
        assert!(!is_bpffs(Path::new("/")));
        assert!(!is_bpffs(Path::new("/no/such/dir")));
    }
}
