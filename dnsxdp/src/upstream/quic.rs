//! DNS over QUIC (RFC 9250) to an upstream: one connection, a bidirectional stream per query,
//! the query length-prefixed with ID 0.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use quinn::{ClientConfig, Connection, Endpoint, crypto::rustls::QuicClientConfig};

pub struct QuicConn {
    conn: Connection,
}

/// The largest reply: a length prefix and a DNS message.
const MAX_FRAME: usize = 2 + u16::MAX as usize;

/// The client settings: `tls` offering `doq`, and connections closed after `idle` without
/// queries.
pub fn client_config(tls: &rustls::ClientConfig, idle: Duration) -> io::Result<ClientConfig> {
    let mut tls = tls.clone();
    tls.alpn_protocols = vec![b"doq".to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(io::Error::other)?;
    let mut config = ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(idle.try_into().ok());
    config.transport_config(Arc::new(transport));
    Ok(config)
}

impl QuicConn {
    /// A connection to `addr`, whose certificate must name `server_name`, from a new local
    /// endpoint of `addr`'s family.
    pub async fn start(
        addr: SocketAddr,
        server_name: &str,
        config: ClientConfig,
    ) -> io::Result<Self> {
        let local: SocketAddr = match addr {
            SocketAddr::V4(_) => "0.0.0.0:0",
            SocketAddr::V6(_) => "[::]:0",
        }
        .parse()
        .map_err(io::Error::other)?;
        let mut endpoint = Endpoint::client(local)?;
        endpoint.set_default_client_config(config);
        let connecting = endpoint
            .connect(addr, server_name)
            .map_err(io::Error::other)?;
        let conn = connecting.await.map_err(io::Error::other)?;
        Ok(QuicConn { conn })
    }

    pub fn is_closed(&self) -> bool {
        self.conn.close_reason().is_some()
    }

    /// Sends the query `wire` (ID 0) on a stream of its own and returns the reply.
    pub async fn exchange(&self, wire: Vec<u8>) -> io::Result<Vec<u8>> {
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(closed_or_other)?;
        let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&wire);
        send.write_all(&framed).await.map_err(io::Error::other)?;
        send.finish().map_err(io::Error::other)?;
        let frame = recv
            .read_to_end(MAX_FRAME)
            .await
            .map_err(io::Error::other)?;
        let len = frame
            .get(..2)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])));
        match (len, frame.get(2..)) {
            (Some(len), Some(reply)) if reply.len() == len => Ok(reply.to_vec()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a stream that is not one length-prefixed message",
            )),
        }
    }
}

/// A connection the server closed is retried on a new one, as a stream's is.
fn closed_or_other(e: quinn::ConnectionError) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, e)
}
