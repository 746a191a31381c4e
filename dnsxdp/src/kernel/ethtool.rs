//! The one ethtool setting the daemon reads: whether an interface checks received checksums
//! for the stack (rx checksum offload), which decides which checksums the stack takes.

use std::{io, os::fd::AsRawFd as _};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GRXCSUM: u32 = 0x14;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct Ifreq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut EthtoolValue,
    _pad: [u8; 16],
}

/// Whether `iface` has rx checksum offload on.
pub fn rx_checksum_offload(iface: &str) -> io::Result<bool> {
    if iface.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    let sock =
        std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"))?;
    let mut value = EthtoolValue {
        cmd: ETHTOOL_GRXCSUM,
        data: 0,
    };
    let mut req = Ifreq {
        name: [0; libc::IFNAMSIZ],
        data: &mut value,
        _pad: [0; 16],
    };
    for (dst, src) in req.name.iter_mut().zip(iface.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCETHTOOL with an ifreq whose data points at a live ethtool_value.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.data != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_answers_and_unknown_interfaces_are_errors() {
        assert!(rx_checksum_offload("lo").is_ok());
        assert!(rx_checksum_offload("no-such-if0").is_err());
    }
}
