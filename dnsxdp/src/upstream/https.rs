//! DNS over HTTPS (RFC 8484): POSTed queries on one HTTP/2 connection, one stream each.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use bytes::Bytes;
use h2::client::SendRequest;
use http::{
    Request, StatusCode, Uri,
    header::{ACCEPT, CONTENT_TYPE},
};
use tokio::{io::AsyncWriteExt as _, net::TcpStream, time::sleep_until};
use tokio_rustls::client::TlsStream;
use tracing::debug;

use super::{idle::Idle, stream::closed};

const DNS_MESSAGE: &str = "application/dns-message";
/// The largest DNS message.
const MAX_MESSAGE: usize = u16::MAX as usize;

pub struct H2Conn {
    send: SendRequest<Bytes>,
    uri: Uri,
    idle: Arc<Idle>,
    closed: Arc<AtomicBool>,
}

impl H2Conn {
    /// HTTP/2 over `tls`, whose handshake must have chosen `h2`, for requests to `uri`.
    pub async fn start(
        tls: TlsStream<TcpStream>,
        uri: Uri,
        idle_timeout: Duration,
    ) -> io::Result<H2Conn> {
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            let mut tls = tls;
            let _ = tls.shutdown().await;
            return Err(io::Error::other("the server does not offer HTTP/2"));
        }
        let (send, connection) = h2::client::handshake(tls).await.map_err(connection_error)?;
        let idle = Idle::new(idle_timeout);
        let closed = Arc::new(AtomicBool::new(false));
        let (watch_idle, set_closed) = (idle.clone(), closed.clone());
        tokio::spawn(async move {
            tokio::pin!(connection);
            loop {
                tokio::select! {
                    end = &mut connection => {
                        if let Err(e) = end {
                            debug!("HTTPS upstream connection: {e}");
                        }
                        break;
                    }
                    () = sleep_until(watch_idle.check_at()) => if watch_idle.expired() {
                        break;
                    },
                }
            }
            set_closed.store(true, Relaxed);
        });
        Ok(H2Conn {
            send,
            uri,
            idle,
            closed,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// POSTs the query `wire` and returns the response body.
    pub async fn exchange(&self, wire: Vec<u8>) -> io::Result<Vec<u8>> {
        let _busy = self.idle.begin();
        let mut send = self.send.clone().ready().await.map_err(connection_error)?;
        let request = Request::post(self.uri.clone())
            .header(CONTENT_TYPE, DNS_MESSAGE)
            .header(ACCEPT, DNS_MESSAGE)
            .body(())
            .map_err(io::Error::other)?;
        let (response, mut body) = send
            .send_request(request, false)
            .map_err(connection_error)?;
        body.send_data(Bytes::from(wire), true)
            .map_err(stream_error)?;
        let response = response.await.map_err(stream_error)?;
        if response.status() != StatusCode::OK {
            return Err(io::Error::other(format!(
                "HTTP status {}",
                response.status()
            )));
        }
        let mut body = response.into_body();
        let mut reply = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(stream_error)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if reply.len() + chunk.len() > MAX_MESSAGE {
                return Err(io::Error::other("reply longer than a DNS message"));
            }
            reply.extend_from_slice(&chunk);
        }
        Ok(reply)
    }
}

/// A failure of the connection as a whole, so a reused one is retried on a new one.
fn connection_error(e: h2::Error) -> io::Error {
    debug!("HTTPS upstream connection: {e}");
    closed()
}

fn stream_error(e: h2::Error) -> io::Error {
    io::Error::other(e)
}
