//! Datagrams a batch at a time: recvmmsg(2) reads up to `BATCH` queries and sendmmsg(2) sends
//! the replies ready, one system call each instead of one per datagram.
//!
//! A socket bound to a wildcard address must answer from the address each query was sent to,
//! or the client drops the reply; the kernel reports it (IP_PKTINFO / IPV6_PKTINFO) and the
//! reply is sent from it.

use std::{
    io,
    mem::{size_of, size_of_val, zeroed},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::RawFd,
    ptr,
};

use super::socket::{from_sockaddr, to_sockaddr};

/// Datagrams read or sent per system call.
pub const BATCH: usize = 32;
/// The largest UDP payload.
const DATAGRAM: usize = u16::MAX as usize;

/// Room for one IPv4 or IPv6 packet-info control message, aligned for `cmsghdr`.
type ControlBuf = [u64; 8];

/// The local end of a received datagram.
#[derive(Clone, Copy, Debug)]
pub struct Local {
    /// The address to answer from.
    pub ip: IpAddr,
    /// The destination in its IP header: a broadcast address, say, where `ip` is unicast.
    pub dest: IpAddr,
    pub ifindex: u32,
}

impl Local {
    /// Sent to a broadcast or multicast address: the kernel gives a copy to every socket of a
    /// SO_REUSEPORT group, where a unicast datagram goes to one.
    pub fn reaches_every_socket(&self) -> bool {
        self.ip != self.dest || self.dest.is_multicast()
    }
}

/// The buffers one recvmmsg(2) fills.
pub struct Received {
    data: Box<[u8]>,
    peers: Box<[libc::sockaddr_storage; BATCH]>,
    controls: Box<[ControlBuf; BATCH]>,
    /// Per datagram: its length and how much control data came with it.
    lens: [(usize, usize); BATCH],
    count: usize,
}

impl Received {
    pub fn new() -> Received {
        Received {
            data: vec![0; BATCH * DATAGRAM].into(),
            // SAFETY: all-zero is valid for these plain C structs.
            peers: Box::new(unsafe { zeroed() }),
            controls: Box::new([[0; 8]; BATCH]),
            lens: [(0, 0); BATCH],
            count: 0,
        }
    }

    /// Reads what is queued on `fd`, up to `BATCH` datagrams; `WouldBlock` if nothing is.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: all-zero is valid for these plain C structs.
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let data = self.data.as_mut_ptr();
        for (i, (msg, iov)) in msgs.iter_mut().zip(&mut iovs).enumerate() {
            // SAFETY: each datagram's slot lies inside `data`.
            iov.iov_base = unsafe { data.add(i * DATAGRAM) }.cast();
            iov.iov_len = DATAGRAM;
            let h = &mut msg.msg_hdr;
            h.msg_name = (&mut self.peers[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = iov;
            h.msg_iovlen = 1;
            h.msg_control = self.controls[i].as_mut_ptr().cast();
            h.msg_controllen = size_of::<ControlBuf>();
        }
        // SAFETY: every pointer in `msgs` is valid for the lengths given for the whole call.
        let n = unsafe { libc::recvmmsg(fd, msgs.as_mut_ptr(), BATCH as u32, 0, ptr::null_mut()) };
        if n < 0 {
            self.count = 0;
            return Err(io::Error::last_os_error());
        }
        self.count = n as usize;
        for (len, msg) in self.lens.iter_mut().zip(&msgs).take(self.count) {
            *len = (msg.msg_len as usize, msg.msg_hdr.msg_controllen);
        }
        Ok(self.count)
    }

    /// The `i`th datagram read, its sender and its local end; `None` if the sender is not an
    /// IP address.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr, Option<Local>)> {
        if i >= self.count {
            return None;
        }
        let (len, control_len) = self.lens[i];
        let peer = from_sockaddr(&self.peers[i])?;
        let packet = &self.data[i * DATAGRAM..i * DATAGRAM + len];
        Some((packet, peer, local(&self.controls[i], control_len)))
    }
}

/// The local end in the packet-info control message the kernel wrote into `control`.
fn local(control: &ControlBuf, len: usize) -> Option<Local> {
    // SAFETY: all-zero is a valid msghdr; only its control fields are set, for the CMSG_*
    // helpers, which walk the buffer within the length the kernel filled, and each payload is
    // read unaligned as the type its level and type announce.
    unsafe {
        let mut msg: libc::msghdr = zeroed();
        msg.msg_control = control.as_ptr() as *mut libc::c_void;
        msg.msg_controllen = len;
        let mut local = None;
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
        local
    }
}

/// A reply to send, from `from` when the socket's own address does not say.
pub struct Reply {
    pub bytes: Vec<u8>,
    pub peer: SocketAddr,
    pub from: Option<Local>,
}

/// Sends the first `BATCH` of `replies`; returns how many went. An error is that of the first.
pub fn send(fd: RawFd, replies: &[Reply]) -> io::Result<usize> {
    let count = replies.len().min(BATCH);
    // SAFETY: all-zero is valid for these plain C structs.
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
    let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
    let mut controls: [ControlBuf; BATCH] = [[0; 8]; BATCH];
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    for (i, reply) in replies.iter().take(count).enumerate() {
        let (name, name_len) = to_sockaddr(&reply.peer);
        names[i] = name;
        iovs[i] = libc::iovec {
            iov_base: reply.bytes.as_ptr() as *mut libc::c_void,
            iov_len: reply.bytes.len(),
        };
        let h = &mut msgs[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = name_len;
        h.msg_iov = &mut iovs[i];
        h.msg_iovlen = 1;
        if let Some(from) = reply.from {
            source(h, &mut controls[i], from);
        }
    }
    // SAFETY: every pointer in `msgs` is valid for the lengths given for the whole call.
    let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), count as u32, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Sets the source of the message `h` to `from`'s address, in `control`.
fn source(h: &mut libc::msghdr, control: &mut ControlBuf, from: Local) {
    match from.ip {
        IpAddr::V4(ip) => {
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(ip).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            put_control(h, control, libc::IPPROTO_IP, libc::IP_PKTINFO, info);
        }
        IpAddr::V6(ip) => {
            // Only a link-local source needs the interface pinned; leave others to routing.
            let link_local = ip.segments()[0] & 0xffc0 == 0xfe80;
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: ip.octets(),
                },
                ipi6_ifindex: if link_local { from.ifindex } else { 0 },
            };
            put_control(h, control, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, info);
        }
    }
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
    use std::os::fd::AsRawFd as _;

    use tokio::{io::Interest, net::UdpSocket};

    use super::*;
    use crate::serve::socket::bind_udp;

    /// On a wildcard socket the destination address is reported and replies come from it;
    /// several datagrams queued are read and answered in one call each.
    #[tokio::test]
    async fn a_batch_is_read_and_answered_from_each_query_destination() {
        let server = UdpSocket::from_std(
            bind_udp(&"0.0.0.0:0".parse().unwrap(), 1)
                .unwrap()
                .remove(0),
        )
        .unwrap();
        let port = server.local_addr().unwrap().port();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for (i, to) in ["127.0.0.2", "127.0.0.3", "127.0.0.2"]
            .into_iter()
            .enumerate()
        {
            client.send_to(&[b'q', i as u8], (to, port)).await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let fd = server.as_raw_fd();
        let mut received = Received::new();
        let n = server
            .async_io(Interest::READABLE, || received.recv(fd))
            .await
            .unwrap();
        assert_eq!(n, 3);
        let mut replies = Vec::new();
        for i in 0..n {
            let (packet, peer, local) = received.get(i).unwrap();
            assert_eq!(packet, &[b'q', i as u8]);
            assert_eq!(peer, client.local_addr().unwrap());
            replies.push(Reply {
                bytes: vec![b'r', i as u8],
                peer,
                from: local,
            });
        }
        let sent = server
            .async_io(Interest::WRITABLE, || send(fd, &replies))
            .await
            .unwrap();
        assert_eq!(sent, 3);
        let mut buf = [0u8; 16];
        for (i, from) in ["127.0.0.2", "127.0.0.3", "127.0.0.2"]
            .into_iter()
            .enumerate()
        {
            let (len, addr) = client.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..len], &[b'r', i as u8]);
            assert_eq!(addr, SocketAddr::new(from.parse().unwrap(), port));
        }
    }
}
