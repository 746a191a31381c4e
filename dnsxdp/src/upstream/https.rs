//! DNS over HTTPS (RFC 8484): queries POSTed, or asked by GET `?dns=`, on one HTTP/2
//! connection, one stream each.

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
    /// GET rather than POST.
    get: bool,
    idle: Arc<Idle>,
    closed: Arc<AtomicBool>,
}

impl H2Conn {
    /// HTTP/2 over `tls`, whose handshake must have chosen `h2`, for requests to `uri`, by
    /// GET if `get`.
    pub async fn start(
        tls: TlsStream<TcpStream>,
        uri: Uri,
        get: bool,
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
            get,
            idle,
            closed,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Asks the query `wire` and returns the response body.
    pub async fn exchange(&self, wire: Vec<u8>) -> io::Result<Vec<u8>> {
        let _busy = self.idle.begin();
        let mut send = self.send.clone().ready().await.map_err(connection_error)?;
        let response = match self.get {
            true => {
                let request = Request::get(get_uri(&self.uri, &wire)?)
                    .header(ACCEPT, DNS_MESSAGE)
                    .body(())
                    .map_err(io::Error::other)?;
                let (response, _) = (send.send_request(request, true)).map_err(connection_error)?;
                response
            }
            false => {
                let request = Request::post(self.uri.clone())
                    .header(CONTENT_TYPE, DNS_MESSAGE)
                    .header(ACCEPT, DNS_MESSAGE)
                    .body(())
                    .map_err(io::Error::other)?;
                let (response, mut body) =
                    (send.send_request(request, false)).map_err(connection_error)?;
                body.send_data(Bytes::from(wire), true)
                    .map_err(stream_error)?;
                response
            }
        };
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

/// `uri` asking `wire` by GET: `?dns=` and the query in base64url without padding.
fn get_uri(uri: &Uri, wire: &[u8]) -> io::Result<Uri> {
    let dns = data_encoding::BASE64URL_NOPAD.encode(wire);
    format!("{uri}?dns={dns}").parse().map_err(io::Error::other)
}

/// A failure of the connection as a whole, so a reused one is retried on a new one.
fn connection_error(e: h2::Error) -> io::Error {
    debug!("HTTPS upstream connection: {e}");
    closed()
}

fn stream_error(e: h2::Error) -> io::Error {
    io::Error::other(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_carries_the_query_in_base64url() {
        let uri: Uri = "https://dns.example/dns-query".parse().unwrap();
        let got = get_uri(&uri, &[0, 0, 1, 0, 0xfb, 0xff]).unwrap();
        assert_eq!(
            got.to_string(),
            "https://dns.example/dns-query?dns=AAABAPv_"
        );
    }
}
