//! DNS over HTTPS (RFC 8484): HTTP/2 and HTTP/1.1 on a TLS connection the stream listener
//! accepted, a query per request as `GET ?dns=` (base64url) or `POST` of
//! `application/dns-message`, on one path.
//!
//! Replies say how long they may be cached (`Cache-Control: max-age`, the smallest TTL in
//! them) and are padded when the query was. A connection with no request for the idle timeout
//! is closed.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use data_encoding::BASE64URL_NOPAD;
use dnsxdp_common::entry::skip_name;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::{
    pipeline::{Admitted, Dropped, Pipeline},
    stream_options::{self, Asked},
    tcp::Activity,
};
use crate::{access::Via, dns::reply::Transport};

const DNS_MESSAGE: &str = "application/dns-message";
/// The largest DNS message.
const MAX_MESSAGE: usize = u16::MAX as usize;

/// The DoH listener's own settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpsSettings {
    /// The path queries are asked on.
    pub path: String,
    /// HTTP/2 streams a connection may have open at once.
    pub max_streams: u32,
}

/// Serves one connection, whose TLS handshake is done, until it closes or has been idle for
/// `idle`.
pub async fn connection<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
    stream: S,
    peer: SocketAddr,
    pipeline: &Pipeline,
    activity: &Arc<Activity>,
    idle: Duration,
    settings: &Arc<HttpsSettings>,
) {
    let service = hyper::service::service_fn({
        let (pipeline, activity, settings) = (pipeline.clone(), activity.clone(), settings.clone());
        move |req| {
            let (pipeline, activity, settings) =
                (pipeline.clone(), activity.clone(), settings.clone());
            async move {
                activity.touch();
                let response = answer(req, peer, &pipeline, &settings).await;
                activity.touch();
                Ok::<_, std::convert::Infallible>(response)
            }
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(settings.max_streams);
    let stream = super::coalesce::Coalescing::new(stream);
    let served = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);
    loop {
        let quiet = activity.quiet();
        if quiet >= idle {
            debug!(%peer, "HTTPS connection idle: closed");
            return;
        }
        tokio::select! {
            done = &mut served => {
                if let Err(e) = done {
                    debug!(%peer, "HTTPS connection: {e}");
                }
                return;
            }
            () = tokio::time::sleep(idle - quiet) => {}
        }
    }
}

/// The response to one request.
async fn answer(
    req: Request<Incoming>,
    peer: SocketAddr,
    pipeline: &Pipeline,
    settings: &HttpsSettings,
) -> Response<Full<Bytes>> {
    if req.uri().path() != settings.path {
        return status(StatusCode::NOT_FOUND);
    }
    let client = pipeline.proxies.client_of(peer, req.headers());
    let packet = match query(req).await {
        Ok(packet) => packet,
        Err(code) => return status(code),
    };
    let asked = Asked::of(&packet);
    let reply = match pipeline
        .admit(packet, client, Via::Tcp, Transport::Https)
        .await
    {
        Ok(Admitted::Now(reply)) => Some(reply),
        Ok(Admitted::Later(answer)) => answer.await,
        Err(Dropped { denied: true }) => return status(StatusCode::FORBIDDEN),
        Err(Dropped { denied: false }) => return status(StatusCode::TOO_MANY_REQUESTS),
    };
    // A message the resolver does not answer, such as a response.
    let Some(reply) = reply else {
        return status(StatusCode::BAD_REQUEST);
    };
    let reply = stream_options::apply(reply, asked, None, true);
    let max_age = smallest_ttl(&reply);
    let mut response = Response::new(Full::new(Bytes::from(reply)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
    if let Ok(value) = HeaderValue::from_str(&format!("max-age={max_age}")) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    response
}

/// The DNS message a request carries, or the status that says why there is none.
async fn query(req: Request<Incoming>) -> Result<Vec<u8>, StatusCode> {
    match *req.method() {
        Method::GET => {
            let query = req.uri().query().unwrap_or_default();
            let dns = (query.split('&'))
                .find_map(|pair| pair.strip_prefix("dns="))
                .ok_or(StatusCode::BAD_REQUEST)?;
            // Some clients pad base64url, which RFC 8484 leaves out.
            let dns = dns.trim_end_matches('=');
            BASE64URL_NOPAD
                .decode(dns.as_bytes())
                .map_err(|_| StatusCode::BAD_REQUEST)
        }
        Method::POST => {
            let content_type = req.headers().get(header::CONTENT_TYPE);
            if content_type.and_then(|v| v.to_str().ok()) != Some(DNS_MESSAGE) {
                return Err(StatusCode::UNSUPPORTED_MEDIA_TYPE);
            }
            let body = Limited::new(req.into_body(), MAX_MESSAGE);
            let body = body
                .collect()
                .await
                .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE)?;
            Ok(body.to_bytes().to_vec())
        }
        _ => Err(StatusCode::METHOD_NOT_ALLOWED),
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}

/// The smallest TTL of the answer and authority records in `reply` (RFC 8484 §5.1), 0 if it
/// has none or cannot be read. Read off the wire: a hit's reply is never parsed whole.
fn smallest_ttl(reply: &[u8]) -> u32 {
    let count = |at: usize| {
        reply
            .get(at..at + 2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
    };
    let (Some(qd), Some(an), Some(ns)) = (count(4), count(6), count(8)) else {
        return 0;
    };
    let mut pos = 12;
    for _ in 0..qd {
        let Ok(end) = skip_name(reply, pos) else {
            return 0;
        };
        pos = end + 4;
    }
    let mut smallest = None;
    for _ in 0..u32::from(an) + u32::from(ns) {
        let Some(fixed) =
            (skip_name(reply, pos).ok()).and_then(|p| reply.get(p..p + 10).map(|f| (p, f)))
        else {
            return 0;
        };
        let (at, f) = fixed;
        let ttl = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
        smallest = Some(smallest.unwrap_or(u32::MAX).min(ttl));
        pos = at + 10 + usize::from(u16::from_be_bytes([f[8], f[9]]));
    }
    smallest.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use hickory_proto::{
        op::{Message, Query},
        rr::{Name, RData, Record, RecordType, rdata::A},
    };

    use super::*;

    #[test]
    fn the_smallest_ttl_is_read_off_the_wire() {
        let name = Name::from_ascii("www.example.").unwrap();
        let mut m = Message::new();
        m.add_query(Query::query(name.clone(), RecordType::A));
        assert_eq!(smallest_ttl(&m.to_vec().unwrap()), 0);
        for ttl in [300, 60, 120] {
            m.add_answer(Record::from_rdata(
                name.clone(),
                ttl,
                RData::A(A::new(1, 2, 3, 4)),
            ));
        }
        let wire = m.to_vec().unwrap();
        assert_eq!(smallest_ttl(&wire), 60);
        assert_eq!(smallest_ttl(&wire[..wire.len() - 20]), 0, "cut short");
    }
}
