//! Client TLS settings for DNS over TLS and DNS over HTTPS upstreams.

use std::{path::Path, sync::Arc};

use anyhow::{Context as _, bail};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, pem::PemObject as _},
};
use tokio_rustls::TlsConnector;

/// Connectors for the protocols, trusting the same certificate authorities.
#[derive(Clone)]
pub struct Connectors {
    pub dot: TlsConnector,
    /// Offers HTTP/2 only (ALPN `h2`), which RFC 8484 recommends.
    pub doh: TlsConnector,
    /// The settings both are made from, for QUIC's own.
    pub config: ClientConfig,
}

impl Connectors {
    /// Trusting the certificates in the PEM file `ca` if given, else the system's store.
    pub fn new(ca: Option<&Path>) -> anyhow::Result<Connectors> {
        let roots = match ca {
            Some(path) => roots_from_file(path)?,
            None => system_roots()?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut doh = config.clone();
        doh.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Connectors {
            dot: TlsConnector::from(Arc::new(config.clone())),
            doh: TlsConnector::from(Arc::new(doh)),
            config,
        })
    }
}

fn roots_from_file(path: &Path) -> anyhow::Result<RootCertStore> {
    let what = || format!("tls-ca {}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(what)?
        .collect::<Result<Vec<_>, _>>()
        .with_context(what)?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        bail!("{}: no usable certificate in it", what());
    }
    Ok(roots)
}

fn system_roots() -> anyhow::Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        bail!(
            "no trusted certificates for tls:// and https:// upstreams: install ca-certificates or pass --tls-ca FILE"
        );
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_an_error() {
        let path = std::env::temp_dir().join(format!("dnsxdp-empty-ca-{}", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = Connectors::new(Some(&path)).err().unwrap().to_string();
        assert!(
            e.starts_with("tls-ca ") && e.contains("no usable certificate"),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
        let e = format!("{:#}", Connectors::new(Some(&path)).err().unwrap());
        assert!(e.starts_with(&format!("tls-ca {}", path.display())), "{e}");
    }
}
