//! A real authoritative server (NSD) as the upstream, serving a fixture zone.

use std::{
    fmt::Write as _,
    fs,
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use hickory_proto::op::ResponseCode;

use crate::{client, netns::Netns};

pub const ZONE: &str = "example.test.";

/// A label long enough that `WIDE_NAME`'s 16 AAAA records fit a kernel entry but not a
/// 512-byte reply.
pub const WIDE_NAME: &str =
    "wide-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.test.";
/// Records for `big.example.test.` (more than a kernel entry or a plain UDP reply holds) and
/// `huge.example.test.` (more than a 1232-byte EDNS reply holds).
pub const BIG_COUNT: u8 = 40;
pub const HUGE_COUNT: u8 = 100;
/// TTL of `short.example.test.`, for expiry tests.
pub const SHORT_TTL: u32 = 3;
/// Every name under this zone has an A record (a wildcard): as many distinct names as a test
/// needs.
pub const MANY_ZONE: &str = "many.example.test.";

/// A name with an A record (from the wildcard) too long for the kernel cache, whose answers
/// only the daemon gives.
pub fn too_long_for_the_kernel() -> String {
    format!("{}.{}.{MANY_ZONE}", "l".repeat(63), "m".repeat(63))
}

/// The zone: A and AAAA names, a CNAME chain, records of other types (MX, TXT, HTTPS, SRV,
/// PTR, CAA and an unknown one), a name with a private address beside a public one, a few
/// DNSSEC records, a short TTL, answers of every size class, and a wildcard.
pub fn zone_text() -> String {
    let mut z = String::from(
        "$ORIGIN example.test.\n$TTL 300\n\
         @ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60\n\
         @ IN NS ns\n\
         ns IN A 198.18.2.2\n\
         www IN A 198.18.10.1\n\
         www IN A 198.18.10.2\n\
         www IN AAAA fd00:10::1\n\
         alias IN CNAME alias2\n\
         alias2 IN CNAME www\n\
         mail IN MX 10 www\n\
         txt IN TXT \"hello\"\n\
         www IN HTTPS 1 . alpn=h2\n\
         _sip._udp IN SRV 10 5 5060 www\n\
         ptr IN PTR www\n\
         @ IN CAA 0 issue \"ca.example.test\"\n\
         opaque IN TYPE65000 \\# 3 c0ff00\n\
         lan IN A 192.168.1.10\n\
         lan IN A 198.18.10.8\n",
    );
    // Signatures (never checked: the daemon forwards, it does not validate) and a denial of
    // existence, which NSD sends to queries with DO.
    let sig = "20300101000000 20200101000000 12345 example.test. AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";
    let key =
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";
    writeln!(z, "@ IN DNSKEY 257 3 13 {key}").unwrap();
    // NSD sends DNSSEC records for a zone whose DNSKEY set is signed.
    let signed = [("@", "DNSKEY", 300), ("@", "SOA", 300), ("www", "A", 300)];
    for (owner, covered, ttl) in signed.into_iter().chain([("mail", "NSEC", 60)]) {
        writeln!(z, "{owner} IN RRSIG {covered} 13 2 {ttl} {sig}").unwrap();
    }
    z.push_str("mail 60 IN NSEC txt.example.test. MX RRSIG NSEC\n");
    writeln!(z, "*.{MANY_ZONE} IN A 198.18.13.1").unwrap();
    writeln!(z, "short {SHORT_TTL} IN A 198.18.10.3").unwrap();
    writeln!(z, "short {SHORT_TTL} IN AAAA fd00:10::3").unwrap();
    for i in 0..BIG_COUNT {
        writeln!(z, "big IN A 198.18.11.{i}").unwrap();
    }
    for i in 0..HUGE_COUNT {
        writeln!(z, "huge IN A 198.18.12.{i}").unwrap();
    }
    for i in 0..16 {
        writeln!(z, "{WIDE_NAME} IN AAAA fd00:11::{i:x}").unwrap();
    }
    z
}

/// NSD running in a namespace; killed when dropped.
pub struct Nsd {
    child: Child,
    dir: PathBuf,
    pub addr: SocketAddr,
}

impl Nsd {
    /// Starts NSD on `ip`:53 inside `ns` and waits until it answers.
    pub fn start(ns: &Netns, ips: &[&str]) -> Result<Self> {
        Self::start_with_zone(ns, ips, &zone_text())
    }

    /// The same, serving `zone` (a zone file for `ZONE` that has `ns.ZONE`) instead of the fixture.
    pub fn start_with_zone(ns: &Netns, ips: &[&str], zone: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("dnsxdp-nsd-{}", ns.name));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("zone"), zone)?;
        let mut conf = String::from("server:\n");
        for ip in ips {
            writeln!(conf, "  ip-address: {ip}")?;
        }
        let d = dir.display();
        write!(
            conf,
            "  port: 53\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  \
             database: \"\"\n  pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  \
             zonelistfile: \"{d}/zone.list\"\n  logfile: \"{d}/nsd.log\"\n  \
             minimal-responses: yes\n  server-count: 1\n  verbosity: 1\n  \
             rrl-ratelimit: 0\n\
             remote-control:\n  control-enable: no\n\
             zone:\n  name: \"{ZONE}\"\n  zonefile: \"zone\"\n"
        )?;
        // rrl-ratelimit 0: response rate limiting would drop bursts of negative and wildcard
        // answers, which the benchmarks send.
        fs::write(dir.join("nsd.conf"), conf)?;
        let child = ns
            .command("nsd")
            .args(["-d", "-c"])
            .arg(dir.join("nsd.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nsd (cargo xtask setup installs it)")?;
        let addr = SocketAddr::new(ips[0].parse()?, 53);
        let mut nsd = Self { child, dir, addr };
        nsd.wait_ready(ns)?;
        Ok(nsd)
    }

    /// Process id of NSD's main process (it forks its server processes from it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&mut self, ns: &Netns) -> Result<()> {
        let addr = self.addr;
        let sock = ns.enter(move || UdpSocket::bind(SocketAddr::new(addr.ip(), 0)))??;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                let log = fs::read_to_string(self.dir.join("nsd.log")).unwrap_or_default();
                bail!("nsd exited ({status}): {log}");
            }
            let q = client::query(&format!("ns.{ZONE}"), hickory_proto::rr::RecordType::A);
            // NOERROR, not just a reply: NSD answers SERVFAIL for a zone it failed to load.
            if let Ok(reply) = client::exchange_udp(&sock, addr, &q, Duration::from_millis(200)) {
                if reply.response_code() == ResponseCode::NoError {
                    return Ok(());
                }
                let log = fs::read_to_string(self.dir.join("nsd.log")).unwrap_or_default();
                bail!("nsd answered {}: {log}", reply.response_code());
            }
        }
        bail!("nsd did not answer within 10 s")
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
