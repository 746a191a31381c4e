//! DNS over UDP: queries read and replies sent a batch at a time (`datagrams`). A cache hit
//! is answered in the batch; anything else on a task of its own.

use std::{
    net::{Ipv4Addr, SocketAddr},
    os::fd::AsRawFd,
    sync::Arc,
};

use tokio::{io::Interest, net::UdpSocket, sync::Semaphore};
use tracing::{debug, warn};

use super::{
    datagrams::{self, BATCH, Received, Reply},
    pipeline::Pipeline,
};
use crate::{access::Via, dns::reply::Transport};

/// Queries of one socket being answered on tasks at once; beyond that, reading waits.
const MAX_IN_FLIGHT: usize = 4096;

/// Answers the queries on `socket`; those every socket of its group gets (broadcasts) only if
/// it `answers_broadcasts`, as one socket of a group does.
pub async fn serve(socket: UdpSocket, pipeline: Pipeline, answers_broadcasts: bool) {
    let bound = match socket.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            warn!("UDP socket without a local address: {e}");
            return;
        }
    };
    let port = bound.port();
    // A socket bound to one address answers from it without being told.
    let wildcard = bound.ip().is_unspecified();
    let socket = Arc::new(socket);
    let tasks = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut received = Received::new();
    let mut outbox = Outbox::default();
    loop {
        // Room for at least one more task before reading.
        let Ok(first) = tasks.clone().acquire_owned().await else {
            return;
        };
        let mut permit = Some(first);
        let fd = socket.as_raw_fd();
        let count = match socket
            .async_io(Interest::READABLE, || received.recv(fd))
            .await
        {
            Ok(count) => count,
            Err(e) => {
                warn!("UDP receive failed: {e}");
                continue;
            }
        };
        for i in 0..count {
            let Some((packet, peer, local)) = received.get(i) else {
                continue;
            };
            if !answers_broadcasts && local.is_some_and(|l| l.reaches_every_socket()) {
                continue;
            }
            // Before the ACL, whose REFUSED would be an answer too.
            if pipeline.access.from_reflective_port(peer) {
                continue;
            }
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
            let from = local.filter(|_| wildcard);
            let mut bytes = outbox.buffer();
            match pipeline.answer_now(packet, peer, via, Transport::Udp, &mut bytes) {
                Ok(true) => {
                    outbox.replies.push(Reply { bytes, peer, from });
                    continue;
                }
                Err(_) => {
                    outbox.spare.push(bytes);
                    continue;
                }
                Ok(false) => outbox.spare.push(bytes),
            }
            let permit = match permit.take() {
                Some(p) => p,
                None => match tasks.clone().try_acquire_owned() {
                    Ok(p) => p,
                    // The replies ready go before waiting for room.
                    Err(_) => {
                        outbox.send(&socket).await;
                        let Ok(p) = tasks.clone().acquire_owned().await else {
                            return;
                        };
                        p
                    }
                },
            };
            let answer = pipeline
                .answer_later(packet.to_vec(), peer, Transport::Udp)
                .await;
            let socket = socket.clone();
            tokio::spawn(async move {
                if let Some(bytes) = answer.await {
                    let mut outbox = Outbox::default();
                    outbox.replies.push(Reply { bytes, peer, from });
                    outbox.send(&socket).await;
                }
                drop(permit);
            });
        }
        outbox.send(&socket).await;
    }
}

/// Replies waiting to be sent, and the buffers of those sent, for the next ones: a hit
/// answered in the batch allocates nothing.
#[derive(Default)]
struct Outbox {
    replies: Vec<Reply>,
    spare: Vec<Vec<u8>>,
}

impl Outbox {
    /// A buffer for a reply, empty.
    fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Sends the replies and keeps their buffers; one that cannot be sent is dropped, as a
    /// lost datagram.
    async fn send(&mut self, socket: &UdpSocket) {
        let fd = socket.as_raw_fd();
        while !self.replies.is_empty() {
            match socket
                .async_io(Interest::WRITABLE, || datagrams::send(fd, &self.replies))
                .await
            {
                Ok(sent) => {
                    let buffers = self.replies.drain(..sent).map(|r| r.bytes);
                    self.spare.extend(buffers);
                }
                Err(e) => {
                    let failed = self.replies.remove(0);
                    debug!(peer = %failed.peer, "UDP reply failed: {e}");
                    self.spare.push(failed.bytes);
                }
            }
        }
        // As many as a batch of hits takes, and no more.
        self.spare.truncate(BATCH);
    }
}
