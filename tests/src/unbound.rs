//! Unbound as an encrypted front end in the upstream namespace: DNS over TLS and DNS over
//! HTTPS, resolving from NSD, with a certificate from a CA made for the test.

use std::{
    fmt::Write as _,
    fs,
    net::{IpAddr, SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};

use crate::{netns::Netns, upstream::ZONE};

pub const DOT_PORT: u16 = 853;
pub const DOH_PORT: u16 = 443;

/// A CA, and a certificate it signed for some names and addresses, in files.
pub struct TestCa {
    dir: PathBuf,
    /// The CA certificate, for --tls-ca.
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    /// `tag` keeps the files of tests running side by side apart.
    pub fn new(tag: &str, names: &[&str], ips: &[&str]) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("dnsxdp-ca-{tag}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, format!("dnsxdp test CA {tag}"));
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let mut leaf =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        for ip in ips {
            leaf.subject_alt_names
                .push(SanType::IpAddress(ip.parse::<IpAddr>()?));
        }
        let leaf_key = KeyPair::generate()?;
        let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key)?;
        let ca = Self {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
            dir,
        };
        fs::write(&ca.ca_file, ca_cert.pem())?;
        fs::write(&ca.cert_file, leaf_cert.pem())?;
        fs::write(&ca.key_file, leaf_key.serialize_pem())?;
        Ok(ca)
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Unbound serving DNS over TLS on `ip`:853 and DNS over HTTPS on `ip`:443 (path
/// /dns-query), resolving `ZONE` from the authoritative `stub`; killed when dropped.
pub struct Unbound {
    child: Child,
    dir: PathBuf,
}

impl Unbound {
    pub fn start(ns: &Netns, ip: &str, cert: &TestCa, stub: SocketAddr) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("dnsxdp-unbound-{}", ns.name));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let d = dir.display();
        let mut conf = String::new();
        write!(
            conf,
            "server:\n  interface: {ip}@{DOT_PORT}\n  interface: {ip}@{DOH_PORT}\n  \
             tls-port: {DOT_PORT}\n  https-port: {DOH_PORT}\n  http-endpoint: \"/dns-query\"\n  \
             tls-service-key: \"{key}\"\n  tls-service-pem: \"{pem}\"\n  \
             access-control: 0.0.0.0/0 allow\n  access-control: ::/0 allow\n  \
             username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  \
             use-syslog: no\n  logfile: \"{d}/unbound.log\"\n  verbosity: 1\n  \
             num-threads: 1\n  module-config: \"iterator\"\n  do-not-query-localhost: no\n  \
             local-zone: \"test.\" nodefault\n\
             remote-control:\n  control-enable: no\n\
             stub-zone:\n  name: \"{ZONE}\"\n  stub-addr: {stub_ip}@{stub_port}\n",
            key = cert.key_file.display(),
            pem = cert.cert_file.display(),
            stub_ip = stub.ip(),
            stub_port = stub.port(),
        )?;
        // The stub zone is not signed: without the validator module no trust anchor is needed.
        // Unbound answers NXDOMAIN for the special-use test. itself unless told not to.
        fs::write(dir.join("unbound.conf"), conf)?;
        let child = ns
            .command("unbound")
            .args(["-d", "-c"])
            .arg(dir.join("unbound.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting unbound (cargo xtask setup installs it)")?;
        let mut unbound = Self { child, dir };
        for port in [DOT_PORT, DOH_PORT] {
            unbound.wait_listening(ns, SocketAddr::new(ip.parse()?, port))?;
        }
        Ok(unbound)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("unbound.log")).unwrap_or_default()
    }

    fn wait_listening(&mut self, ns: &Netns, addr: SocketAddr) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("unbound exited ({status}): {}", self.log());
            }
            let connect = move || TcpStream::connect_timeout(&addr, Duration::from_millis(200));
            if ns.enter(connect)?.is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "unbound did not listen on {addr} within 10 s: {}",
            self.log()
        )
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
