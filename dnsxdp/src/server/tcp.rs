//! DNS over TCP: length-prefixed messages, several per connection, answered as they complete
//! (RFC 7766 allows out-of-order replies).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Mutex, Semaphore},
    time::timeout,
};
use tracing::{debug, warn};

use crate::{
    access::{Access, Screened, Via},
    reply::Transport,
    resolver::Resolver,
};

/// A connection with no query arriving for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open client connections; further ones wait in the accept queue.
const MAX_CONNECTIONS: usize = 512;
/// Queries of one connection being answered at once; beyond that, reading waits.
const MAX_PIPELINED: usize = 64;

pub async fn serve(listener: TcpListener, resolver: Arc<Resolver>, access: Arc<Access>) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = connections.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!("TCP accept failed: {e}");
                continue;
            }
        };
        let (resolver, access) = (resolver.clone(), access.clone());
        tokio::spawn(async move {
            connection(stream, peer, resolver, access).await;
            debug!(%peer, "TCP connection closed");
            drop(permit);
        });
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    resolver: Arc<Resolver>,
    access: Arc<Access>,
) {
    let (mut reader, writer) = stream.into_split();
    let writer = Arc::new(Mutex::new(writer));
    let pipelined = Arc::new(Semaphore::new(MAX_PIPELINED));
    loop {
        let Ok(Ok(len)) = timeout(IDLE_TIMEOUT, reader.read_u16()).await else {
            return;
        };
        let mut packet = vec![0u8; len as usize];
        let Ok(Ok(_)) = timeout(IDLE_TIMEOUT, reader.read_exact(&mut packet)).await else {
            return;
        };
        let screened = match access.screen(&packet, peer.ip(), Via::Tcp) {
            Screened::Serve => None,
            Screened::Answer(reply) => Some(reply),
            // A client that may not ask at all gets no connection either.
            Screened::Drop { denied: true } => return,
            Screened::Drop { denied: false } => continue,
        };
        let Ok(permit) = pipelined.clone().acquire_owned().await else {
            return;
        };
        let (resolver, writer) = (resolver.clone(), writer.clone());
        tokio::spawn(async move {
            let reply = match screened {
                Some(reply) => Some(reply),
                None => resolver.handle(&packet, peer, Transport::Tcp).await,
            };
            if let Some(reply) = reply {
                let mut frame = Vec::with_capacity(2 + reply.len());
                frame.extend_from_slice(&(reply.len() as u16).to_be_bytes());
                frame.extend_from_slice(&reply);
                if let Err(e) = writer.lock().await.write_all(&frame).await {
                    debug!("TCP reply failed: {e}");
                }
            }
            drop(permit);
        });
    }
}
