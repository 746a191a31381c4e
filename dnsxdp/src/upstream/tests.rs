//! The encrypted transports against loopback servers with a certificate made for the test.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use bytes::Bytes;
use hickory_proto::{
    op::{MessageType, Query},
    rr::{Name, RData, Record, RecordType, rdata::A},
};
use http::header::CONTENT_TYPE;
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_rustls::TlsAcceptor;

use super::*;

const NAME: &str = "dns.test";

/// A TLS server on loopback for `NAME`, and a CA file that trusts it.
struct Server {
    addr: SocketAddr,
    ca: std::path::PathBuf,
    acceptor: TlsAcceptor,
    listener: Option<TcpListener>,
    connections: Arc<AtomicUsize>,
}

impl Server {
    async fn new(alpn: &[&[u8]]) -> Server {
        let certified = rcgen::generate_simple_self_signed(vec![NAME.into()]).unwrap();
        let ca = std::env::temp_dir().join(format!(
            "dnsxdp-test-ca-{}-{}.pem",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::write(&ca, certified.cert.pem()).unwrap();
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
        let cert: CertificateDer<'static> = certified.cert.der().clone();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Server {
            addr: listener.local_addr().unwrap(),
            ca,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            listener: Some(listener),
            connections: Arc::default(),
        }
    }

    fn upstream(&self, url: &str) -> Upstream {
        let spec = UpstreamSpec::parse(&url.replace("ADDR", &self.addr.to_string())).unwrap();
        Upstream::new(spec, Some(&Connectors::new(Some(&self.ca)).unwrap()))
    }

    /// Serves DNS over TLS, answering every query in its own task; with `close_after_one`, each
    /// connection ends after its first answer, as a server closing idle connections would.
    fn serve_dot(&mut self, close_after_one: bool) {
        let (listener, acceptor) = (self.listener.take().unwrap(), self.acceptor.clone());
        let connections = self.connections.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                connections.fetch_add(1, Relaxed);
                let Ok(tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let (mut reader, writer) = tokio::io::split(tls);
                let writer = Arc::new(Mutex::new(writer));
                tokio::spawn(async move {
                    while let Ok(len) = reader.read_u16().await {
                        let mut query = vec![0; len as usize];
                        reader.read_exact(&mut query).await.unwrap();
                        let writer = writer.clone();
                        tokio::spawn(async move {
                            let reply = answer(&query);
                            let mut w = writer.lock().await;
                            let _ = w.write_u16(reply.len() as u16).await;
                            let _ = w.write_all(&reply).await;
                            if close_after_one {
                                let _ = w.shutdown().await;
                            }
                        });
                    }
                });
            }
        });
    }

    /// Serves DNS over HTTPS: POST with a DNS message body, answered with one.
    fn serve_doh(&mut self) {
        let (listener, acceptor) = (self.listener.take().unwrap(), self.acceptor.clone());
        let connections = self.connections.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                connections.fetch_add(1, Relaxed);
                let tls = acceptor.accept(tcp).await.unwrap();
                let mut h2 = h2::server::handshake(tls).await.unwrap();
                tokio::spawn(async move {
                    while let Some(Ok((request, mut respond))) = h2.accept().await {
                        tokio::spawn(async move {
                            assert_eq!(request.method(), http::Method::POST);
                            assert_eq!(request.uri().path(), "/dns-query");
                            assert_eq!(request.headers()[CONTENT_TYPE], "application/dns-message");
                            let mut body = request.into_body();
                            let mut query = Vec::new();
                            while let Some(chunk) = body.data().await {
                                query.extend_from_slice(&chunk.unwrap());
                            }
                            let response = http::Response::builder()
                                .header(CONTENT_TYPE, "application/dns-message")
                                .body(())
                                .unwrap();
                            let mut send = respond.send_response(response, false).unwrap();
                            send.send_data(Bytes::from(answer(&query)), true).unwrap();
                        });
                    }
                });
            }
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca);
    }
}

/// The query turned into a response with one A record.
fn answer(query: &[u8]) -> Vec<u8> {
    let mut m = Message::from_vec(query).unwrap();
    let owner = m.queries()[0].name().clone();
    m.set_message_type(MessageType::Response);
    m.add_answer(Record::from_rdata(
        owner,
        60,
        RData::A(A::new(198, 18, 0, 1)),
    ));
    m.to_vec().unwrap()
}

fn www(i: usize) -> Query {
    Query::query(
        Name::from_ascii(format!("www{i}.t.")).unwrap(),
        RecordType::A,
    )
}

async fn ask(upstream: &Upstream, i: usize) -> io::Result<Message> {
    let query = www(i);
    let q = Question {
        query: &query,
        dnssec_ok: false,
        checking_disabled: false,
    };
    upstream.exchange(&q).await
}

async fn ask_many(upstream: Arc<Upstream>, n: usize) {
    let asks: Vec<_> = (0..n)
        .map(|i| {
            let upstream = upstream.clone();
            tokio::spawn(async move { ask(&upstream, i).await })
        })
        .collect();
    for (i, asked) in asks.into_iter().enumerate() {
        let reply = asked.await.unwrap().unwrap();
        assert_eq!(reply.queries()[0], www(i));
        assert_eq!(reply.answers().len(), 1);
    }
}

#[tokio::test]
async fn dot_queries_share_one_pipelined_connection() {
    let mut server = Server::new(&[]).await;
    server.serve_dot(false);
    let upstream = Arc::new(server.upstream("tls://ADDR#dns.test"));
    ask_many(upstream.clone(), 20).await;
    ask_many(upstream, 20).await;
    assert_eq!(server.connections.load(Relaxed), 1);
}

#[tokio::test]
async fn dot_checks_the_certificate_name() {
    let mut server = Server::new(&[]).await;
    server.serve_dot(false);
    let e = ask(&server.upstream("tls://ADDR#other.test"), 0)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
    // Without a name, the certificate must carry the address, which this one does not.
    assert!(ask(&server.upstream("tls://ADDR"), 0).await.is_err());
}

#[tokio::test]
async fn a_connection_the_server_closed_is_replaced() {
    let mut server = Server::new(&[]).await;
    server.serve_dot(true);
    let upstream = server.upstream("tls://ADDR#dns.test");
    for i in 0..3 {
        ask(&upstream, i).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.connections.load(Relaxed), 3);
}

#[tokio::test]
async fn doh_queries_are_streams_of_one_http2_connection() {
    let mut server = Server::new(&[b"h2"]).await;
    server.serve_doh();
    let url = format!("https://{NAME}:PORT/dns-query?bootstrap=127.0.0.1")
        .replace("PORT", &server.addr.port().to_string());
    let upstream = Arc::new(server.upstream(&url));
    ask_many(upstream.clone(), 20).await;
    ask_many(upstream, 20).await;
    assert_eq!(server.connections.load(Relaxed), 1);
}

#[tokio::test]
async fn doh_needs_http2() {
    let mut server = Server::new(&[b"http/1.1"]).await;
    server.serve_dot(false);
    let url = format!("https://{NAME}:PORT/dns-query?bootstrap=127.0.0.1")
        .replace("PORT", &server.addr.port().to_string());
    assert!(ask(&server.upstream(&url), 0).await.is_err());
}
