//! A DNS over TLS client for the tests: blocking, over one connection, trusting a test CA.

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    path::Path,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, Result};
use hickory_proto::op::Message;
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned,
    pki_types::{CertificateDer, ServerName, pem::PemObject as _},
};

use crate::client::tcp_from;

pub struct TlsClient {
    stream: StreamOwned<ClientConnection, TcpStream>,
}

impl TlsClient {
    /// A connection from `from` to `to` whose certificate, for `name`, the CA in `ca` signed;
    /// the handshake is done when it returns.
    pub fn connect(from: IpAddr, to: SocketAddr, ca: &Path, name: &str) -> Result<Self> {
        Self::connect_after(from, to, ca, name, &[])
    }

    /// The same, sending `preamble` (a PROXY protocol header, say) before the handshake.
    pub fn connect_after(
        from: IpAddr,
        to: SocketAddr,
        ca: &Path,
        name: &str,
        preamble: &[u8],
    ) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)? {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"dot".to_vec()];
        let name = ServerName::try_from(name.to_string())?;
        let conn = ClientConnection::new(Arc::new(config), name)?;
        let mut tcp = tcp_from(from, to, None)?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        tcp.write_all(preamble)?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .context("TLS handshake")?;
        }
        Ok(Self { stream })
    }

    /// One query and its reply, length-prefixed as over TCP.
    pub fn exchange(&mut self, query: &Message) -> Result<Message> {
        let bytes = query.to_vec()?;
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        self.stream.write_all(&framed)?;
        self.stream.flush()?;
        let mut len = [0u8; 2];
        self.stream.read_exact(&mut len)?;
        let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut reply)?;
        Message::from_vec(&reply).context("parsing the TLS reply")
    }

    /// The certificate the server presented.
    pub fn server_certificate(&self) -> Vec<u8> {
        let certs = self.stream.conn.peer_certificates().unwrap_or_default();
        certs.first().map(|c| c.to_vec()).unwrap_or_default()
    }
}
