//! DNS over UDP.
//!
//! A socket bound to a wildcard address must answer from the address each query was sent to,
//! or the client drops the reply; the kernel reports it (IP_PKTINFO / IPV6_PKTINFO) and the
//! reply is sent from it.

use std::{
    io,
    mem::{size_of, size_of_val, zeroed},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, RawFd},
    ptr,
    sync::Arc,
};

use tokio::{io::Interest, net::UdpSocket, sync::Semaphore};
use tracing::{debug, warn};

use super::{
    pipeline::Pipeline,
    socket::{from_sockaddr, to_sockaddr},
};
use crate::{access::Via, dns::reply::Transport};

/// Queries of one socket being answered at once; beyond that, reading waits.
const MAX_IN_FLIGHT: usize = 4096;

/// The local end of a received datagram.
#[derive(Clone, Copy, Debug)]
struct Local {
    /// The address to answer from.
    ip: IpAddr,
    /// The destination in its IP header: a broadcast address, say, where `ip` is unicast.
    dest: IpAddr,
    ifindex: u32,
}

pub async fn serve(socket: UdpSocket, pipeline: Pipeline) {
    let port = match socket.local_addr() {
        Ok(addr) => addr.port(),
        Err(e) => {
            warn!("UDP socket without a local address: {e}");
            return;
        }
    };
    let socket = Arc::new(socket);
    let tasks = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; u16::MAX as usize];
    loop {
        let Ok(permit) = tasks.clone().acquire_owned().await else {
            return;
        };
        let fd = socket.as_raw_fd();
        let (len, peer, local) = match socket
            .async_io(Interest::READABLE, || recv(fd, &mut buf))
            .await
        {
            Ok(received) => received,
            Err(e) => {
                warn!("UDP receive failed: {e}");
                continue;
            }
        };
        // Before the ACL, whose REFUSED would be an answer too.
        if pipeline.access.from_reflective_port(peer) {
            continue;
        }
        // Screened here rather than in the task, so a flood that is dropped costs no task.
        let via = match local {
            Some(l) => Via::Udp {
                ifindex: l.ifindex,
                dest: SocketAddr::new(l.dest, port),
            },
            // Without packet info nothing says XDP saw it; the daemon charges it.
            None => Via::Udp {
                ifindex: 0,
                dest: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port),
            },
        };
        let packet = &buf[..len];
        match pipeline.answer_now(packet, peer, via) {
            Err(_) => continue,
            // From this task: a hit costs no task of its own.
            Ok(Some(reply)) => {
                let sent = socket
                    .async_io(Interest::WRITABLE, || send(fd, &reply, &peer, local))
                    .await;
                if let Err(e) = sent {
                    debug!(%peer, "UDP reply failed: {e}");
                }
                continue;
            }
            Ok(None) => {}
        }
        let answer = pipeline
            .answer_later(packet.to_vec(), peer, Transport::Udp)
            .await;
        let socket = socket.clone();
        tokio::spawn(async move {
            if let Some(reply) = answer.await {
                let fd = socket.as_raw_fd();
                let sent = socket
                    .async_io(Interest::WRITABLE, || send(fd, &reply, &peer, local))
                    .await;
                if let Err(e) = sent {
                    debug!(%peer, "UDP reply failed: {e}");
                }
            }
            drop(permit);
        });
    }
}

/// Room for one IPv4 or IPv6 packet-info control message, aligned for `cmsghdr`.
type ControlBuf = [u64; 8];

fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<Local>)> {
    // SAFETY: all-zero is valid for these plain C structs.
    let (mut peer, mut msg): (libc::sockaddr_storage, libc::msghdr) =
        unsafe { (zeroed(), zeroed()) };
    let mut control: ControlBuf = [0; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    msg.msg_name = (&mut peer as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: every pointer in `msg` is valid for the lengths given for the whole call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let peer = from_sockaddr(&peer).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "datagram from a non-IP address")
    })?;
    let mut local = None;
    // SAFETY: the CMSG_* helpers walk the control buffer the kernel filled within its length,
    // and each payload is read unaligned as the type its level and type announce.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let info: libc::in_pktinfo = ptr::read_unaligned(data.cast());
                    local = Some(Local {
                        ip: Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr)).into(),
                        dest: Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)).into(),
                        ifindex: info.ipi_ifindex as u32,
                    });
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info: libc::in6_pktinfo = ptr::read_unaligned(data.cast());
                    let ip = Ipv6Addr::from(info.ipi6_addr.s6_addr).into();
                    local = Some(Local {
                        ip,
                        dest: ip,
                        ifindex: info.ipi6_ifindex,
                    });
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, peer, local))
}

fn send(fd: RawFd, buf: &[u8], peer: &SocketAddr, local: Option<Local>) -> io::Result<usize> {
    let (mut name, name_len) = to_sockaddr(peer);
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    let mut control: ControlBuf = [0; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = name_len;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    match local.map(|l| (l.ip, l.ifindex)) {
        Some((IpAddr::V4(ip), _)) => {
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(ip).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            put_control(
                &mut msg,
                &mut control,
                libc::IPPROTO_IP,
                libc::IP_PKTINFO,
                info,
            );
        }
        Some((IpAddr::V6(ip), ifindex)) => {
            // Only a link-local source needs the interface pinned; leave others to routing.
            let link_local = ip.segments()[0] & 0xffc0 == 0xfe80;
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: ip.octets(),
                },
                ipi6_ifindex: if link_local { ifindex } else { 0 },
            };
            put_control(
                &mut msg,
                &mut control,
                libc::IPPROTO_IPV6,
                libc::IPV6_PKTINFO,
                info,
            );
        }
        None => {}
    }
    // SAFETY: every pointer in `msg` is valid for the lengths given for the whole call.
    let n = unsafe { libc::sendmsg(fd, &msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Makes `value` the single control message of `msg`, stored in `control`.
fn put_control<T>(msg: &mut libc::msghdr, control: &mut ControlBuf, level: i32, ty: i32, value: T) {
    // SAFETY: CMSG_SPACE of a packet-info struct fits `control` (checked below in debug
    // builds); the header and payload are written inside it.
    unsafe {
        let space = libc::CMSG_SPACE(size_of::<T>() as u32) as usize;
        debug_assert!(space <= size_of_val(control));
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(msg);
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = ty;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<T>() as u32) as usize;
        ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::socket::bind_udp;

    /// On a wildcard socket the destination address is reported and replies come from it.
    #[tokio::test]
    async fn wildcard_socket_replies_from_the_query_destination() {
        let server = UdpSocket::from_std(bind_udp(&"0.0.0.0:0".parse().unwrap()).unwrap()).unwrap();
        let port = server.local_addr().unwrap().port();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(b"ping", ("127.0.0.2", port)).await.unwrap();
        let fd = server.as_raw_fd();
        let mut buf = [0u8; 16];
        let (len, peer, local) = server
            .async_io(Interest::READABLE, || recv(fd, &mut buf))
            .await
            .unwrap();
        assert_eq!(&buf[..len], b"ping");
        assert_eq!(peer, client.local_addr().unwrap());
        let local = local.unwrap();
        assert_eq!(local.ip, IpAddr::from([127, 0, 0, 2]));
        server
            .async_io(Interest::WRITABLE, || send(fd, b"pong", &peer, Some(local)))
            .await
            .unwrap();
        let (len, from) = client.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"pong");
        assert_eq!(from, SocketAddr::from(([127, 0, 0, 2], port)));
    }
}
