//! A DNS client for the tests: builds queries and exchanges them over UDP and TCP.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream, UdpSocket},
    str::FromStr as _,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query},
    rr::{Name, RecordType},
};

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
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if from == to && n >= 2 && buf[..2] == bytes[..2] => {
                return Ok(buf[..n].to_vec());
            }
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
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
