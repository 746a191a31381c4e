//! DNS over a TCP or TLS connection (RFC 7766, RFC 7858): length-prefixed messages, many
//! queries in flight at once, replies matched by ID in whatever order they come.

use std::{
    collections::HashMap,
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::BytesMut;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf},
    sync::{mpsc, oneshot, watch},
    time::{sleep_until, timeout},
};
use tracing::debug;

use super::idle::{Busy, Idle};

/// Queries one connection carries at once; more wait for another attempt.
const MAX_IN_FLIGHT: usize = 1024;
/// Queries queued for writing.
const QUEUE: usize = 256;
/// How long a closing connection may take to say goodbye (TLS close_notify, FIN).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// An open connection; a reader and a writer task serve it until it is closed, by either
/// end, by going idle, or by dropping this.
pub struct StreamConn {
    outgoing: mpsc::Sender<Vec<u8>>,
    shared: Arc<Shared>,
}

struct Shared {
    /// Who waits for the reply to each ID in flight; `None` once the connection is closed.
    pending: Mutex<Option<HashMap<u16, oneshot::Sender<Vec<u8>>>>>,
    idle: Arc<Idle>,
    closed: watch::Sender<bool>,
}

/// The error for exchanges the connection ended; on a reused connection they are retried on a
/// new one.
pub fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "connection closed")
}

impl StreamConn {
    pub fn start(io: impl Io, idle_timeout: Duration) -> StreamConn {
        let (reader, writer) = tokio::io::split(io);
        let (outgoing, queue) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Some(HashMap::new())),
            idle: Idle::new(idle_timeout),
            closed: watch::Sender::new(false),
        });
        tokio::spawn(read_loop(reader, shared.clone()));
        tokio::spawn(write_loop(writer, queue, shared.clone()));
        StreamConn { outgoing, shared }
    }

    pub fn is_closed(&self) -> bool {
        *self.shared.closed.borrow()
    }

    /// Sends the query `wire` under an ID no other query on this connection has, and returns
    /// that ID with the reply carrying it.
    pub async fn exchange(&self, mut wire: Vec<u8>) -> io::Result<(u16, Vec<u8>)> {
        let _busy: Busy = self.shared.idle.begin();
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut pending = self.shared.lock();
            let map = pending.as_mut().ok_or_else(closed)?;
            if map.len() >= MAX_IN_FLIGHT {
                return Err(io::Error::other("too many queries in flight"));
            }
            let id = loop {
                let id = rand::random();
                if !map.contains_key(&id) {
                    break id;
                }
            };
            map.insert(id, tx);
            id
        };
        // Given up (timed out) or not, the ID is free again afterwards.
        let _registered = Registered(&self.shared, id);
        wire[..2].copy_from_slice(&id.to_be_bytes());
        let len = u16::try_from(wire.len()).map_err(|_| io::Error::other("query too long"))?;
        let mut frame = Vec::with_capacity(2 + wire.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&wire);
        self.outgoing.send(frame).await.map_err(|_| closed())?;
        let reply = rx.await.map_err(|_| closed())?;
        Ok((id, reply))
    }
}

struct Registered<'a>(&'a Shared, u16);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Some(map) = self.0.lock().as_mut() {
            map.remove(&self.1);
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<HashMap<u16, oneshot::Sender<Vec<u8>>>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a reply to whoever waits for its ID; one nobody asked for is dropped.
    fn deliver(&self, reply: Vec<u8>) {
        let Some(id) = reply.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
            return;
        };
        let waiter = self.lock().as_mut().and_then(|map| map.remove(&id));
        match waiter {
            Some(tx) => {
                let _ = tx.send(reply);
            }
            None => debug!(id, "dropping a reply to no query in flight"),
        }
    }

    /// Fails every exchange in flight and stops both tasks.
    fn close(&self) {
        self.lock().take();
        self.closed.send_replace(true);
    }
}

/// Resolves once the connection is closed.
async fn until_closed(mut closed: watch::Receiver<bool>) {
    let _ = closed.wait_for(|&c| c).await;
}

async fn read_loop(mut reader: ReadHalf<impl Io>, shared: Arc<Shared>) {
    let closed = until_closed(shared.closed.subscribe());
    tokio::pin!(closed);
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        while let Some(reply) = take_message(&mut buf) {
            shared.deliver(reply);
        }
        tokio::select! {
            // Cancel safe: when another branch wins, nothing was read.
            read = reader.read_buf(&mut buf) => match read {
                Ok(n) if n > 0 => {}
                Ok(_) => break,
                Err(e) => {
                    debug!("upstream connection: {e}");
                    break;
                }
            },
            () = sleep_until(shared.idle.check_at()) => if shared.idle.expired() {
                break;
            },
            () = &mut closed => break,
        }
    }
    shared.close();
}

async fn write_loop(
    mut writer: WriteHalf<impl Io>,
    mut queue: mpsc::Receiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let closed = until_closed(shared.closed.subscribe());
    tokio::pin!(closed);
    loop {
        tokio::select! {
            frame = queue.recv() => match frame {
                Some(frame) => {
                    if let Err(e) = writer.write_all(&frame).await {
                        debug!("upstream connection: {e}");
                        break;
                    }
                }
                None => break,
            },
            () = &mut closed => break,
        }
    }
    shared.close();
    let _ = timeout(SHUTDOWN_TIMEOUT, writer.shutdown()).await;
}

/// The next whole length-prefixed message in `buf`, taken out of it.
fn take_message(buf: &mut BytesMut) -> Option<Vec<u8>> {
    let len = u16::from_be_bytes([*buf.first()?, *buf.get(1)?]) as usize;
    if buf.len() < 2 + len {
        return None;
    }
    let frame = buf.split_to(2 + len);
    Some(frame[2..].to_vec())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    use super::*;

    async fn read_frame(server: &mut DuplexStream) -> Vec<u8> {
        let len = server.read_u16().await.unwrap();
        let mut msg = vec![0; len as usize];
        server.read_exact(&mut msg).await.unwrap();
        msg
    }

    async fn write_frame(server: &mut DuplexStream, msg: &[u8]) {
        server.write_u16(msg.len() as u16).await.unwrap();
        server.write_all(msg).await.unwrap();
    }

    /// Two queries in flight; the server answers the second first and in pieces.
    #[tokio::test]
    async fn replies_are_matched_by_id_in_any_order() {
        let (client, mut server) = duplex(4096);
        let conn = Arc::new(StreamConn::start(client, Duration::from_secs(10)));
        let ask = |payload: u8| {
            let conn = conn.clone();
            tokio::spawn(async move { conn.exchange(vec![0, 0, payload]).await.unwrap() })
        };
        let (first, second) = (ask(1), ask(2));
        let (a, b) = (read_frame(&mut server).await, read_frame(&mut server).await);
        assert_ne!(a[..2], b[..2], "IDs in flight differ");
        let mut replies = b.clone();
        replies.push(0xbb);
        let mut whole = (replies.len() as u16).to_be_bytes().to_vec();
        whole.extend(&replies);
        whole.extend((a.len() as u16 + 1).to_be_bytes());
        whole.extend(&a);
        whole.push(0xaa);
        for byte in whole {
            server.write_all(&[byte]).await.unwrap();
        }
        let (first, second) = (first.await.unwrap(), second.await.unwrap());
        assert_eq!(first.1[2..], [a[2], 0xaa]);
        assert_eq!(second.1[2..], [b[2], 0xbb]);
        assert_eq!(u16::from_be_bytes([first.1[0], first.1[1]]), first.0);
    }

    #[tokio::test]
    async fn the_server_closing_fails_what_is_in_flight() {
        let (client, mut server) = duplex(4096);
        let conn = Arc::new(StreamConn::start(client, Duration::from_secs(10)));
        let waiting = tokio::spawn({
            let conn = conn.clone();
            async move { conn.exchange(vec![0, 0, 1]).await }
        });
        read_frame(&mut server).await;
        drop(server);
        let err = waiting.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
        assert!(conn.is_closed());
        assert_eq!(
            conn.exchange(vec![0, 0, 2]).await.unwrap_err().kind(),
            io::ErrorKind::ConnectionAborted
        );
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_and_a_busy_one_is_not() {
        let (client, mut server) = duplex(4096);
        let conn = StreamConn::start(client, Duration::from_millis(100));
        let exchange = conn.exchange(vec![0, 0, 1]);
        let serve = async {
            let q = read_frame(&mut server).await;
            // Slower than the idle timeout: the query in flight keeps the connection open.
            tokio::time::sleep(Duration::from_millis(250)).await;
            write_frame(&mut server, &q).await;
        };
        let (reply, ()) = tokio::join!(exchange, serve);
        assert!(reply.is_ok());
        assert!(!conn.is_closed());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(conn.is_closed());
        let mut rest = Vec::new();
        assert_eq!(
            server.read_to_end(&mut rest).await.unwrap(),
            0,
            "EOF to the server"
        );
    }
}
