//! Listening sockets, made with libc because the IPv6 ones need IPV6_V6ONLY before bind() (so
//! `0.0.0.0:53` and `[::]:53` can both be bound) and UDP ones need packet info to reply from
//! the address a query was sent to.

use std::{
    io,
    mem::{size_of, zeroed},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

/// `addr` as a sockaddr for libc calls.
pub fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// The address in a sockaddr filled in by the kernel, if it is IPv4 or IPv6.
pub fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(sin.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id).into())
        }
        _ => None,
    }
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn set_option(fd: &OwnedFd, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` is a valid int option value of the size given.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// A non-blocking socket of `kind` bound to `addr`, IPv6 ones IPv6-only; `shared` ones in a
/// SO_REUSEPORT group.
fn bound(addr: &SocketAddr, kind: libc::c_int, shared: bool) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the returned descriptor is owned below.
    let raw =
        check(unsafe { libc::socket(family, kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if addr.is_ipv6() {
        set_option(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)?;
    }
    if shared {
        set_option(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT)?;
    }
    if kind == libc::SOCK_STREAM {
        // Restarts must not wait out TIME_WAIT connections.
        set_option(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
    } else if addr.is_ipv4() {
        set_option(&fd, libc::IPPROTO_IP, libc::IP_PKTINFO)?;
    } else {
        set_option(&fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)?;
    }
    let (sa, len) = to_sockaddr(addr);
    // SAFETY: `sa` is a valid sockaddr of `len` bytes.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_storage).cast(),
            len,
        )
    })?;
    Ok(fd)
}

/// `count` UDP sockets on `addr`, which the kernel shares queries between by their flow.
pub fn bind_udp(addr: &SocketAddr, count: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    // Alone first: a SO_REUSEPORT bind succeeds beside another server's SO_REUSEPORT socket
    // (Unbound's default) and would silently take half its queries.
    let alone = std::net::UdpSocket::from(bound(addr, libc::SOCK_DGRAM, false)?);
    if count == 1 {
        return Ok(vec![alone]);
    }
    // The port the kernel chose, if `addr` left it to it.
    let addr = alone.local_addr()?;
    drop(alone);
    (0..count)
        .map(|_| Ok(bound(&addr, libc::SOCK_DGRAM, true)?.into()))
        .collect()
}

pub fn bind_tcp(addr: &SocketAddr) -> io::Result<std::net::TcpListener> {
    let fd = bound(addr, libc::SOCK_STREAM, false)?;
    // SAFETY: listen(2) on a bound stream socket.
    check(unsafe { libc::listen(fd.as_raw_fd(), 1024) })?;
    Ok(fd.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        for s in ["198.18.1.1:53", "[fd00::1]:5353", "[fe80::1%2]:53"] {
            let addr: SocketAddr = s.parse().unwrap();
            assert_eq!(from_sockaddr(&to_sockaddr(&addr).0), Some(addr));
        }
    }

    #[test]
    fn v4_and_v6_wildcards_bind_the_same_port() {
        let v4 = bind_udp(&"0.0.0.0:0".parse().unwrap(), 1).unwrap();
        let port = v4[0].local_addr().unwrap().port();
        let v6 = bind_udp(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port), 1).unwrap();
        assert_eq!(v6[0].local_addr().unwrap().port(), port);
        let err = bind_udp(&SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port), 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn a_group_shares_one_port_and_keeps_others_out() {
        let group = bind_udp(&"127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let addr = group[0].local_addr().unwrap();
        assert!(group.iter().all(|s| s.local_addr().unwrap() == addr));
        for count in [1, 2] {
            let err = bind_udp(&addr, count).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{count} sockets");
        }
        // Nor may another server's SO_REUSEPORT socket join it.
        drop(group);
        let theirs = bound(&addr, libc::SOCK_DGRAM, true).unwrap();
        let err = bind_udp(&addr, 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(theirs);
    }

    #[test]
    fn every_socket_of_a_group_gets_queries() {
        let group = bind_udp(&"127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = group[0].local_addr().unwrap();
        for s in &group {
            s.set_nonblocking(true).unwrap();
        }
        // The kernel picks a socket by the sender's address and port.
        for _ in 0..64 {
            let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            client.send_to(b"q", addr).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut buf = [0; 8];
        for (i, s) in group.iter().enumerate() {
            assert!(s.recv_from(&mut buf).is_ok(), "socket {i} got nothing");
        }
    }
}
