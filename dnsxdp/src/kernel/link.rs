//! XDP attached through bpf links pinned beside the kernel cache. A pinned link keeps the
//! program attached, and answering from its cache, while no daemon runs: after a crash, a
//! SIGKILL or an OOM kill, and across a SIGTERM for an upgrade. The next daemon swaps its own
//! program into the same link, atomically, so no query falls between the two.

use std::path::{Path, PathBuf};

use aya::programs::{
    Xdp, XdpMode as AttachMode,
    links::{FdLink, LinkError, PinnedLink},
    xdp::{XdpLink, XdpLinkId},
};
use tracing::{info, warn};

use super::settings::XdpMode;

/// Where the link for `iface` is pinned under `pin_dir`.
fn path(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join(format!("link-{iface}"))
}

/// Attaches `program` to `iface`: into the link a previous run pinned, if it is still attached,
/// else through a new link, pinned when `pin_dir` can hold it. Returns the pinned link, if it
/// is one (otherwise the program holds the attachment, and it ends with the program), and what
/// was done, for the log.
pub fn attach(
    program: &mut Xdp,
    iface: &str,
    mode: XdpMode,
    pin_dir: Option<&Path>,
) -> anyhow::Result<(Option<FdLink>, String)> {
    let Some(dir) = pin_dir else {
        let (_, used) = attach_new(program, iface, mode)?;
        return Ok((None, format!("{used} mode")));
    };
    let path = path(dir, iface);
    if path.exists() {
        match take_over(program, &path) {
            Ok(link) => {
                let done = "replaced the program of the link the last run pinned".to_string();
                return Ok((Some(link), done));
            }
            Err(e) => {
                info!(
                    "the link pinned at {} is not taken over ({e:#}); attaching anew",
                    path.display()
                );
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let (id, used) = attach_new(program, iface, mode)?;
    match pin(program, id, &path) {
        Ok(link) => Ok((Some(link), format!("{used} mode"))),
        Err(e) => {
            warn!("XDP on {iface} is not pinned ({e:#}): it detaches when dnsxdp exits");
            // Taking the link out to pin it detached it.
            let (_, used) = attach_new(program, iface, mode)?;
            Ok((None, format!("{used} mode")))
        }
    }
}

/// Puts `program` into the link pinned at `path` with BPF_LINK_UPDATE.
fn take_over(program: &mut Xdp, path: &Path) -> anyhow::Result<FdLink> {
    let fd: FdLink = PinnedLink::from_pin(path)?.into();
    let link = XdpLink::try_from(fd)?;
    let id = program.attach_to_link(link)?;
    Ok(FdLink::try_from(program.take_link(id)?)?)
}

/// Takes the link `id` from the program and pins it at `path`.
fn pin(program: &mut Xdp, id: XdpLinkId, path: &Path) -> anyhow::Result<FdLink> {
    let fd = FdLink::try_from(program.take_link(id)?).map_err(|e| match e {
        LinkError::InvalidLink => {
            anyhow::anyhow!("attached through netlink, not a bpf link (kernels before 5.9)")
        }
        e => e.into(),
    })?;
    Ok(fd.pin(path)?.into())
}

/// Attaches through a new link, returning it and the mode used.
fn attach_new(
    program: &mut Xdp,
    iface: &str,
    mode: XdpMode,
) -> anyhow::Result<(XdpLinkId, &'static str)> {
    let try_mode = |program: &mut Xdp, m: AttachMode, name: &'static str| {
        program.attach(iface, m).map(|id| (id, name)).map_err(|e| {
            anyhow::anyhow!(
                "attaching XDP to {iface} in {name} mode failed: {:#}",
                anyhow::Error::from(e)
            )
        })
    };
    match mode {
        XdpMode::Native => try_mode(program, AttachMode::Driver, "native")
            .map_err(|e| e.context("try --xdp-mode skb")),
        XdpMode::Skb => try_mode(program, AttachMode::Skb, "skb"),
        XdpMode::Auto => try_mode(program, AttachMode::Driver, "native").or_else(|e| {
            warn!("{e:#}; falling back to skb mode");
            try_mode(program, AttachMode::Skb, "skb")
        }),
    }
}
