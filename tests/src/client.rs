//! A DNS client for the tests: builds queries and exchanges them over UDP and TCP.

use std::{
    io::{self, ErrorKind, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    str::FromStr as _,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query},
    rr::{Name, RecordType},
};

/// `op` again while it fails with EINTR. A socket read with a timeout fails so, even without
/// a signal handler, when the process was stopped and continued (signal(7)); a test run that
/// is paused and resumed must not fail for it.
pub fn uninterrupted<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            done => return done,
        }
    }
}

/// A recursive query for `name` (case kept as given) without EDNS.
pub fn query(name: &str, rtype: RecordType) -> Message {
    let mut m = Message::new();
    m.set_id(rand_id())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(
            Name::from_str(name).expect("valid name"),
            rtype,
        ));
    m
}

/// The same with an EDNS OPT advertising `size`, and the DO bit if `dnssec_ok`.
pub fn query_edns(name: &str, rtype: RecordType, size: u16, dnssec_ok: bool) -> Message {
    let mut m = query(name, rtype);
    let mut edns = Edns::new();
    edns.set_max_payload(size).set_dnssec_ok(dnssec_ok);
    m.set_edns(edns);
    m
}

fn rand_id() -> u16 {
    // Distinct enough for tests that match replies by ID; no crate needed.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos >> 4) as u16
}

/// Sends `query` and waits up to `timeout` for the reply with its ID.
pub fn exchange_udp(
    sock: &UdpSocket,
    to: SocketAddr,
    query: &Message,
    timeout: Duration,
) -> Result<Message> {
    let bytes = query.to_vec()?;
    let reply = exchange_raw(sock, to, &bytes, timeout)?;
    Message::from_vec(&reply).context("parsing reply")
}

/// Sends raw bytes and returns the first datagram from `to` whose ID matches theirs.
pub fn exchange_raw(
    sock: &UdpSocket,
    to: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>> {
    sock.send_to(bytes, to)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 65535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no reply from {to} within {timeout:?}");
        }
        sock.set_read_timeout(Some(left))?;
        match uninterrupted(|| sock.recv_from(&mut buf)) {
            Ok((n, from)) if from == to && n >= 2 && buf[..2] == bytes[..2] => {
                return Ok(buf[..n].to_vec());
            }
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                bail!("no reply from {to} within {timeout:?}")
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// One query over a TCP stream (RFC 1035 §4.2.2 length prefix).
pub fn exchange_tcp(stream: &mut TcpStream, query: &Message, timeout: Duration) -> Result<Message> {
    stream.set_read_timeout(Some(timeout))?;
    let bytes = query.to_vec()?;
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut reply)?;
    Message::from_vec(&reply).context("parsing TCP reply")
}

/// A TCP connection from `from` (any port) to `to`, with a receive buffer of `rcvbuf` bytes
/// if given (set before connecting, so the window stays that small): std cannot bind before
/// connecting.
pub fn tcp_from(from: IpAddr, to: SocketAddr, rcvbuf: Option<i32>) -> Result<TcpStream> {
    let sockaddr = |a: SocketAddr| -> (libc::sockaddr_storage, libc::socklen_t) {
        // SAFETY: all-zero is a valid sockaddr_storage, large enough for either family.
        let mut s: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match a {
            SocketAddr::V4(a) => {
                let sin = unsafe { &mut *(&mut s as *mut _ as *mut libc::sockaddr_in) };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = unsafe { &mut *(&mut s as *mut _ as *mut libc::sockaddr_in6) };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                size_of::<libc::sockaddr_in6>()
            }
        };
        (s, len as libc::socklen_t)
    };
    let family = if to.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket calls on a descriptor owned by `fd`, with valid sockaddrs.
    unsafe {
        let raw = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if raw < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let fd = OwnedFd::from_raw_fd(raw);
        if let Some(size) = rcvbuf {
            let len = size_of::<i32>() as libc::socklen_t;
            let size: *const i32 = &size;
            if libc::setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, size.cast(), len) != 0 {
                return Err(std::io::Error::last_os_error()).context("SO_RCVBUF");
            }
        }
        for (addr, call) in [
            (
                SocketAddr::new(from, 0),
                libc::bind as unsafe extern "C" fn(_, _, _) -> _,
            ),
            (to, libc::connect),
        ] {
            let (sa, len) = sockaddr(addr);
            if call(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_storage).cast(),
                len,
            ) != 0
            {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("{from} -> {to}"));
            }
        }
        Ok(TcpStream::from(fd))
    }
}

/// `m` with every record's TTL zero: for comparing answers whose lifetimes count down apart.
pub fn without_ttls(mut m: Message) -> Message {
    let zero = |records: &mut Vec<hickory_proto::rr::Record>| {
        for r in records {
            r.set_ttl(0);
        }
    };
    zero(m.answers_mut());
    zero(m.name_servers_mut());
    zero(m.additionals_mut());
    m
}

#[cfg(test)]
mod tests {
    use std::{os::unix::net::UnixDatagram, process::Command, thread};

    use super::*;

    /// The process stops and continues while it waits for a datagram that comes later.
    #[test]
    fn a_read_survives_the_process_being_stopped_and_continued() -> Result<()> {
        let (reader, writer) = UnixDatagram::pair()?;
        reader.set_read_timeout(Some(Duration::from_secs(5)))?;
        let pid = std::process::id();
        let mut pauser = Command::new("sh")
            .args([
                "-c",
                &format!("sleep 0.3; kill -STOP {pid}; sleep 0.3; kill -CONT {pid}"),
            ])
            .spawn()?;
        let sender = thread::spawn(move || {
            thread::sleep(Duration::from_millis(1500));
            writer.send(b"late")
        });
        let mut buf = [0u8; 8];
        let read = uninterrupted(|| reader.recv(&mut buf));
        pauser.wait()?;
        sender.join().expect("sender")?;
        assert_eq!(&buf[..read?], b"late");
        Ok(())
    }
}
