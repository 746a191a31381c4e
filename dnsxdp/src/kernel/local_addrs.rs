//! The IP addresses configured on this host's interfaces.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// Every address on every interface (getifaddrs), loopback included.
pub fn local_addrs() -> io::Result<Vec<IpAddr>> {
    Ok(local_addrs_by_iface()?
        .into_iter()
        .map(|(ip, _)| ip)
        .collect())
}

/// Every address on every interface with the index of its interface (0 if it has none now).
pub fn local_addrs_by_iface() -> io::Result<Vec<(IpAddr, u32)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, which is still alive.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr whose family says which struct it is.
        let ip = unsafe {
            match (*ifa.ifa_addr).sa_family as i32 {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
                }
                _ => continue,
            }
        };
        // SAFETY: ifa_name is a NUL-terminated string in the same list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }.to_string_lossy();
        // An IPv4 alias is labelled `eth0:1`.
        let iface = name.split(':').next().and_then(if_index).unwrap_or(0);
        out.push((ip, iface));
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Whether `ip` reaches this host: loopback, unspecified, or an interface address.
pub fn is_this_host(ip: IpAddr, local: &[IpAddr]) -> bool {
    ip.is_loopback() || ip.is_unspecified() || local.contains(&ip)
}

/// The index of interface `name`, or `None` if there is no such interface.
pub fn if_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_listed_and_is_this_host() {
        let addrs = local_addrs().unwrap();
        assert!(addrs.iter().any(|a| a.is_loopback()));
        assert!(is_this_host("127.0.0.53".parse().unwrap(), &[]));
        assert!(is_this_host("::".parse().unwrap(), &[]));
        let mine: IpAddr = "198.18.0.1".parse().unwrap();
        assert!(is_this_host(mine, &[mine]));
        assert!(!is_this_host("198.18.0.2".parse().unwrap(), &[mine]));
    }

    #[test]
    fn loopback_addresses_are_on_lo() {
        let lo = if_index("lo").unwrap();
        let addrs = local_addrs_by_iface().unwrap();
        assert!(
            addrs.contains(&("127.0.0.1".parse().unwrap(), lo)),
            "{addrs:?}"
        );
    }

    #[test]
    fn lo_has_an_index() {
        assert!(if_index("lo").is_some());
        assert!(if_index("no-such-if0").is_none());
    }
}
