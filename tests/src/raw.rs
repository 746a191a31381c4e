//! Frames on a link as they are: an AF_PACKET socket on an interface, and interface MACs, for
//! tests that send what no socket would and see every frame that comes back.

use std::{
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, ensure};

use crate::{client::uninterrupted, netns::Netns};

/// An AF_PACKET socket bound to `iface` in the calling thread's namespace, seeing every
/// frame, with a receive buffer of `rcvbuf` bytes and reads that give up after `timeout`.
pub fn packet_socket(iface: &str, rcvbuf: i32, timeout: Duration) -> Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket call; owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    ensure!(fd >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
    // SAFETY: just opened, owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let index =
        dnsxdp::kernel::local_addrs::if_index(iface).with_context(|| format!("no {iface}"))?;
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    // SAFETY: a valid sockaddr_ll of its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    ensure!(
        rc == 0,
        "bind AF_PACKET: {}",
        std::io::Error::last_os_error()
    );
    let timeout = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: an int and a timeval option of their sizes.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&rcvbuf as *const i32).cast(),
            4,
        );
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as u32,
        );
    }
    Ok(fd)
}

/// Sends one frame on a packet socket.
pub fn send(fd: &OwnedFd, frame: &[u8]) -> Result<()> {
    // SAFETY: a valid buffer on a bound packet socket.
    let sent = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
    ensure!(
        sent == frame.len() as isize,
        "send: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// The next frame, if one came before the socket's timeout.
pub fn recv(fd: &OwnedFd, buf: &mut [u8]) -> Option<usize> {
    let n = uninterrupted(|| {
        // SAFETY: a valid buffer.
        match unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) } {
            -1 => Err(std::io::Error::last_os_error()),
            n => Ok(n as usize),
        }
    });
    n.ok().filter(|&n| n > 0)
}

/// The MAC address of `iface` in `ns`.
pub fn link_mac(ns: &Netns, iface: &str) -> Result<[u8; 6]> {
    let out = ns
        .command("cat")
        .arg(format!("/sys/class/net/{iface}/address"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()?;
    bytes.try_into().map_err(|_| anyhow!("MAC {text}"))
}
