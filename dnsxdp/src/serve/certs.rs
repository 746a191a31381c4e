//! The certificate the encrypted listeners present: read from PEM files, and read again when
//! the files change or on SIGHUP, so that a renewal needs no restart. A new pair that does not
//! load (a half-written file, a key that is not the certificate's) leaves the one in force.
//! Handshakes take whatever is in force when they start; open connections keep theirs.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, anyhow};
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tracing::{info, warn};

/// How often the files are looked at for a change.
const WATCH_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times as of the pair in force.
    loaded: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl Certificates {
    /// The pair in `cert` (the chain, leaf first) and `key`; an error names the key of the
    /// setting at fault.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<Certificates>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamps = stamps(cert, key);
        let pair = read_pair(cert, key, &provider)?;
        Ok(Arc::new(Certificates {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(pair)),
            loaded: Mutex::new(stamps),
        }))
    }

    /// The server settings of a listener offering the `alpn` protocols: TLS 1.3, and 1.2.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> anyhow::Result<Arc<ServerConfig>> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// The QUIC settings of a listener offering the `alpn` protocols: TLS 1.3 only, as QUIC
    /// has it.
    pub fn quic_config(self: &Arc<Self>, alpn: &[&[u8]]) -> anyhow::Result<quinn::ServerConfig> {
        let mut tls = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .context("TLS settings for QUIC")?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
    }

    /// Reads the files again and puts the pair in force; on an error the old pair stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let stamps = stamps(&self.cert, &self.key);
        let pair = read_pair(&self.cert, &self.key, &self.provider)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(pair);
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = stamps;
        Ok(())
    }

    /// Reloads whenever the files' modification times change; logs what came of it.
    pub async fn watch(self: Arc<Self>) {
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            let now = stamps(&self.cert, &self.key);
            let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            if now == *loaded {
                continue;
            }
            // Tried once per change: a bad pair is not read again until the files change.
            *loaded = now;
            drop(loaded);
            self.reload_and_log("the certificate files changed");
        }
    }

    /// `reload`, logging the outcome, for `why`.
    pub fn reload_and_log(&self, why: &str) {
        match self.reload() {
            Ok(()) => info!("{why}: certificate {} in force", self.cert.display()),
            Err(e) => warn!("{why}, but {e:#}; the certificate in force is kept"),
        }
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn stamps(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (modified(cert), modified(key))
}

fn read_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("tls-cert: {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(anyhow!(
            "tls-cert: {}: no certificate in it",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow!("tls-key: {}: {e}", key.display()))?;
    CertifiedKey::from_der(chain, private, provider)
        .map_err(|e| anyhow!("tls-key: {}: {e}", key.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed pair for `name`, written to `dir`.
    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = rcgen::generate_simple_self_signed(vec![name.into()]).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.cert.pem()).unwrap();
        std::fs::write(&k, cert.key_pair.serialize_pem()).unwrap();
        (c, k)
    }

    fn leaf(certs: &Certificates) -> Vec<u8> {
        certs.current.read().unwrap().cert[0].to_vec()
    }

    #[test]
    fn a_bad_new_pair_keeps_the_old_one() {
        let dir = std::env::temp_dir().join(format!("dnsxdp-certs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = write_pair(&dir, "one.example");
        let certs = Certificates::load(&cert, &key).unwrap();
        let first = leaf(&certs);
        // Another certificate with the old key: not a pair.
        let other = rcgen::generate_simple_self_signed(vec!["two.example".into()]).unwrap();
        std::fs::write(&cert, other.cert.pem()).unwrap();
        let e = certs.reload().unwrap_err().to_string();
        assert!(e.starts_with("tls-key: "), "{e}");
        assert_eq!(leaf(&certs), first);
        std::fs::write(&cert, "garbage").unwrap();
        let e = certs.reload().unwrap_err().to_string();
        assert!(e.starts_with("tls-cert: "), "{e}");
        // A whole new pair is taken.
        write_pair(&dir, "two.example");
        certs.reload().unwrap();
        assert_ne!(leaf(&certs), first);
        let missing = Certificates::load(&dir.join("none.pem"), &key).unwrap_err();
        assert!(missing.to_string().starts_with("tls-cert: "), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
