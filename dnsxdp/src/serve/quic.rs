//! DNS over QUIC (RFC 9250): a query per bidirectional stream, length-prefixed as over TCP,
//! each answered as it completes.
//!
//! A client the ACL denies is refused before the handshake. Connections count against the
//! same kind of limits as TCP's (`Slots`); QUIC itself closes one idle for the idle timeout
//! and holds each to a number of open streams.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use quinn::{Endpoint, Incoming};
use tokio::time::timeout;
use tracing::{debug, warn};

use super::{
    pipeline::{Admitted, Dropped, Pipeline},
    stream_options::{self, Asked},
    tcp::{Activity, Release, Slots, TcpLimits},
};
use crate::{access::Via, dns::reply::Transport};

/// A length prefix and the largest message it can announce.
const MAX_FRAME: usize = 2 + u16::MAX as usize;

/// QUIC's own settings for a listener: idle timeout and streams per connection.
pub fn transport(limits: TcpLimits, max_streams: u32) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(max_streams.into())
        .max_concurrent_uni_streams(0u8.into());
    if let Ok(idle) = limits.idle_timeout.try_into() {
        t.max_idle_timeout(Some(idle));
    }
    Arc::new(t)
}

pub async fn serve(
    endpoint: Endpoint,
    pipeline: Pipeline,
    limits: TcpLimits,
    handshake_timeout: Duration,
) {
    let slots = Arc::new(Slots::new(limits));
    for id in 0u64.. {
        let Some(incoming) = endpoint.accept().await else {
            warn!("DNS over QUIC: the endpoint closed");
            return;
        };
        let peer = incoming.remote_address();
        if !pipeline.access.admit_connection(peer.ip()) {
            incoming.refuse();
            continue;
        }
        let activity = slots.activity();
        let task = tokio::spawn({
            let (pipeline, slots, activity) = (pipeline.clone(), slots.clone(), activity.clone());
            async move {
                let _slot = Release(slots, id);
                connection(incoming, peer, pipeline, &activity, handshake_timeout).await;
                debug!(%peer, "QUIC connection closed");
            }
        });
        slots.admit(id, peer.ip(), activity, task.abort_handle());
    }
}

async fn connection(
    incoming: Incoming,
    peer: SocketAddr,
    pipeline: Pipeline,
    activity: &Activity,
    handshake_timeout: Duration,
) {
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => return debug!(%peer, "QUIC: {e}"),
    };
    let conn = match timeout(handshake_timeout, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return debug!(%peer, "QUIC handshake failed: {e}"),
        Err(_) => return debug!(%peer, "QUIC handshake timed out"),
    };
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        activity.touch();
        let pipeline = pipeline.clone();
        tokio::spawn(async move {
            let Ok(frame) = recv.read_to_end(MAX_FRAME).await else {
                return;
            };
            let Some(packet) = message(&frame) else {
                return;
            };
            let asked = Asked::of(packet);
            let packet = packet.to_vec();
            let reply = match pipeline
                .admit(packet, peer, Via::Tcp, Transport::Quic)
                .await
            {
                Ok(Admitted::Now(reply)) => reply,
                Ok(Admitted::Later(answer)) => match answer.await {
                    Some(reply) => reply,
                    None => return,
                },
                Err(Dropped { .. }) => return,
            };
            let reply = stream_options::apply(reply, asked, None, true);
            let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&reply);
            if send.write_all(&framed).await.is_ok() {
                let _ = send.finish();
            }
        });
    }
}

/// The message of a stream: its two-byte length, then exactly that many bytes.
fn message(frame: &[u8]) -> Option<&[u8]> {
    let len = usize::from(u16::from_be_bytes([*frame.first()?, *frame.get(1)?]));
    frame.get(2..).filter(|m| m.len() == len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_holds_one_whole_message() {
        assert_eq!(message(&[0, 2, 7, 8]), Some(&[7, 8][..]));
        assert_eq!(message(&[0, 3, 7, 8]), None);
        assert_eq!(message(&[0, 1, 7, 8]), None);
        assert_eq!(message(&[0]), None);
    }
}
