//! DNS over TLS and over HTTPS to the daemon, with real clients: kdig and curl get what UDP
//! gets; the certificate is swapped under open connections; a denied client gets no
//! handshake; a thousand idle connections lock nobody out. Run as root (`cargo xtask test`).

use std::{
    io::Read as _,
    net::{IpAddr, SocketAddr, UdpSocket},
    process::Output,
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use dnsxdp_tests::{
    client::{exchange_udp, query, tcp_from},
    daemon::{Daemon, went_up},
    http::HttpServer,
    netns::{CLIENT_V4, SERVER_V4, Topology, UPSTREAM_V4, UPSTREAM_V6},
    tls::TlsClient,
    unbound::TestCa,
    upstream::{MANY_ZONE, Nsd},
};
use hickory_proto::rr::{RData, RecordType};

const WAIT: Duration = Duration::from_secs(2);
const NAME: &str = "dns.test";

struct Sandbox {
    daemon: Daemon,
    ca: TestCa,
    topo: Topology,
    _nsd: Nsd,
}

impl Sandbox {
    /// dnsxdp with DoT on 853 and DoH on 443 of `SERVER_V4`, and `extra` flags.
    fn new(tag: &str, extra: &[&str]) -> Result<Self> {
        let topo = Topology::new()?;
        let nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
        let ca = TestCa::new(
            &format!("{tag}-{}", topo.server.name),
            &[NAME],
            &[SERVER_V4],
        )?;
        let (cert, key) = (path(&ca.cert_file), path(&ca.key_file));
        let flags = [
            &[
                "--listen-tls",
                SERVER_V4,
                "--listen-https",
                SERVER_V4,
                "--listen-quic",
                SERVER_V4,
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
            ][..],
            extra,
        ]
        .concat();
        let daemon = Daemon::start(&topo, &flags)?;
        Ok(Self {
            daemon,
            ca,
            topo,
            _nsd: nsd,
        })
    }

    /// kdig in the client's namespace, trusting the test CA.
    fn kdig(&self, args: &[&str]) -> Result<Output> {
        let ca = format!("+tls-ca={}", path(&self.ca.ca_file));
        let host = format!("+tls-hostname={NAME}");
        let out = (self.topo.client.command("kdig"))
            .args([&format!("@{SERVER_V4}"), &ca, &host, "+time=2", "+retry=0"])
            .args(args)
            .output()
            .context("kdig (cargo xtask setup installs knot-dnsutils)")?;
        Ok(out)
    }

    /// The addresses `kdig +short` prints, sorted.
    fn kdig_short(&self, args: &[&str]) -> Result<Vec<String>> {
        let out = self.kdig(&[args, &["+short"]].concat())?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && !text.trim().is_empty(),
            "kdig {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        Ok(lines)
    }

    fn udp_addresses(&self, name: &str) -> Result<Vec<String>> {
        let sock = self.topo.client.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
        let reply = exchange_udp(&sock, self.daemon.v4, &query(name, RecordType::A), WAIT)?;
        let mut a: Vec<String> = (reply.answers().iter())
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(a.to_string()),
                _ => None,
            })
            .collect();
        a.sort();
        Ok(a)
    }

    fn tls_client(&self, from: &str) -> Result<TlsClient> {
        let (from, ca) = (from.parse::<IpAddr>()?, self.ca.ca_file.clone());
        let to: SocketAddr = format!("{SERVER_V4}:853").parse()?;
        self.topo
            .client
            .enter(move || TlsClient::connect(from, to, &ca, NAME))?
    }
}

fn path(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn kdig_and_curl_get_over_tls_and_https_what_udp_gets() -> Result<()> {
    // A name for a page the client itself serves, for curl to fetch once DoH has resolved it.
    let s = Sandbox::new("clients", &["--local-record", "web.lan A 198.18.1.2"])?;
    let udp = s.udp_addresses("www.example.test.")?;
    assert_eq!(udp.len(), 2);
    let name = ["www.example.test", "A"];
    assert_eq!(s.kdig_short(&[&["+tls"][..], &name].concat())?, udp);
    assert_eq!(s.kdig_short(&[&["+https"][..], &name].concat())?, udp);
    assert_eq!(s.kdig_short(&[&["+https-get"][..], &name].concat())?, udp);

    // Padded to a multiple of 468 bytes when the query is padded (RFC 8467).
    let out = s.kdig(&["+tls", "+padding", "www.example.test", "A"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let received = (text.lines())
        .find_map(|l| l.strip_prefix(";; Received "))
        .and_then(|l| l.split(' ').next()?.parse::<usize>().ok())
        .with_context(|| format!("no size in {text}"))?;
    assert_eq!(received % 468, 0, "{text}");

    let page = HttpServer::start_on(&s.topo.client, CLIENT_V4)?;
    page.put("hello.txt", "hello over DoH")?;
    let ca = path(&s.ca.ca_file);
    let curl = |extra: &[&str]| -> Result<Output> {
        let doh = format!("https://{SERVER_V4}/dns-query");
        Ok(s.topo
            .client
            .command("curl")
            .args(["-sS", "--max-time", "5", "--cacert", &ca, "--doh-url", &doh])
            .args(extra)
            .output()?)
    };
    let out = curl(&["http://web.lan:8080/hello.txt"])?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello over DoH",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // HTTP/1.1, a POST by hand: the headers say what it is and how long it keeps.
    let body = query("www.example.test.", RecordType::A).to_vec()?;
    let file = page.path("query.bin");
    std::fs::write(&file, &body)?;
    let out = s
        .topo
        .client
        .command("curl")
        .args([
            "-sS",
            "--http1.1",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--cacert",
            &ca,
        ])
        .args([
            "-H",
            "content-type: application/dns-message",
            "--data-binary",
        ])
        .arg(format!("@{}", file.display()))
        .arg(format!("https://{NAME}/dns-query"))
        .args(["--resolve", &format!("{NAME}:443:{SERVER_V4}")])
        .output()?;
    let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(headers.starts_with("http/1.1 200"), "{headers}");
    assert!(
        headers.contains("content-type: application/dns-message"),
        "{headers}"
    );
    let max_age = (headers.lines())
        .find_map(|l| l.strip_prefix("cache-control: max-age="))
        .and_then(|v| v.trim().parse::<u32>().ok())
        .with_context(|| format!("no max-age in {headers}"))?;
    assert!((1..=300).contains(&max_age), "{headers}");
    // Not base64url: the listener's own answer.
    let bad = s
        .topo
        .client
        .command("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            &ca,
        ])
        .arg(format!("https://{SERVER_V4}/dns-query?dns=!!"))
        .output()?;
    assert_eq!(String::from_utf8_lossy(&bad.stdout), "400");

    let stats = s.daemon.stats()?;
    let counted = |key: &str| stats["daemon"][key].as_u64().unwrap_or(0);
    assert!(counted("queries_tls") >= 2, "{stats}");
    assert!(counted("queries_https") >= 4, "{stats}");
    Ok(())
}

#[test]
fn an_answer_fetched_over_https_is_then_answered_by_xdp_over_udp() -> Result<()> {
    let s = Sandbox::new("shared", &[])?;
    let name = format!("fresh.{MANY_ZONE}");
    let over_https = s.kdig_short(&["+https", &name, "A"])?;
    assert_eq!(over_https, ["198.18.13.1"]);
    let before = s.daemon.stats()?;
    assert_eq!(s.udp_addresses(&name)?, over_https);
    let after = s.daemon.stats()?;
    assert_eq!(
        (
            went_up(&before, &after, "xdp", "hits"),
            went_up(&before, &after, "daemon", "queries_udp")
        ),
        (1, 0),
        "{after}"
    );
    Ok(())
}

/// dnspython with aioquic (PyPI, in the venv `cargo xtask setup` makes) asks over QUIC.
#[test]
fn dnspython_gets_over_quic_what_udp_gets() -> Result<()> {
    let s = Sandbox::new("quic", &[])?;
    let udp = s.udp_addresses("www.example.test.")?;
    let python = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .context("target directory")?
        .join("tools/venv/bin/python");
    const ASK: &str = "import sys, dns.message, dns.query\n\
        q = dns.message.make_query('www.example.test', 'A')\n\
        r = dns.query.quic(q, sys.argv[1], port=853, verify=sys.argv[2], \
        server_hostname=sys.argv[3], timeout=3)\n\
        print('\\n'.join(sorted(rr.address for rrset in r.answer for rr in rrset)))\n";
    let out = (s.topo.client.command(&python.to_string_lossy()))
        .args(["-c", ASK, SERVER_V4, &path(&s.ca.ca_file), NAME])
        .output()
        .context("the venv's python (cargo xtask setup makes it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<String> = text.lines().map(String::from).collect();
    assert_eq!(got, udp);
    assert!(s.daemon.counter("queries_quic")? >= 1);
    Ok(())
}

/// A new certificate is presented from the first handshake after the files change, and a
/// connection made before goes on with the old one.
#[test]
fn a_certificate_swap_is_picked_up_without_dropping_connections() -> Result<()> {
    let s = Sandbox::new("swap", &[])?;
    let mut before = s.tls_client(CLIENT_V4)?;
    let first = before.server_certificate();
    let question = query("www.example.test.", RecordType::A);
    assert_eq!(before.exchange(&question)?.answers().len(), 2);

    // The same names from another CA: the old CA no longer vouches for what is presented.
    let next = TestCa::new(
        &format!("next-{}", s.topo.server.name),
        &[NAME],
        &[SERVER_V4],
    )?;
    std::fs::copy(&next.key_file, &s.ca.key_file)?;
    std::fs::copy(&next.cert_file, &s.ca.cert_file)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (from, to, ca) = (
            CLIENT_V4.parse::<IpAddr>()?,
            format!("{SERVER_V4}:853").parse::<SocketAddr>()?,
            next.ca_file.clone(),
        );
        let with_next = s
            .topo
            .client
            .enter(move || TlsClient::connect(from, to, &ca, NAME))?;
        if let Ok(mut c) = with_next {
            assert_ne!(c.server_certificate(), first);
            assert_eq!(c.exchange(&question)?.answers().len(), 2);
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the new certificate was never presented"
        );
        sleep(Duration::from_millis(200));
    }
    assert!(s.daemon.log().contains("the certificate files changed"));
    assert_eq!(
        before.exchange(&question)?.answers().len(),
        2,
        "the old connection"
    );
    Ok(())
}

/// The ACL closes a denied client's connection before a byte of TLS is sent.
#[test]
fn a_denied_client_gets_no_handshake() -> Result<()> {
    let s = Sandbox::new("denied", &["--allow", "198.18.1.0/25"])?;
    const DENIED: &str = "198.18.1.200";
    s.topo
        .client
        .ip(&["addr", "add", &format!("{DENIED}/24"), "dev", "veth0"])?;
    let to: SocketAddr = format!("{SERVER_V4}:853").parse()?;
    let from: IpAddr = DENIED.parse()?;
    let got = s.topo.client.enter(move || -> Result<Vec<u8>> {
        let mut tcp = tcp_from(from, to, None)?;
        tcp.set_read_timeout(Some(Duration::from_secs(3)))?;
        // A ClientHello would follow; the server has closed before it reads one.
        let mut got = Vec::new();
        match tcp.read_to_end(&mut got) {
            Ok(_) => Ok(got),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(got),
            Err(e) => bail!("the connection stayed open: {e}"),
        }
    })??;
    assert!(got.is_empty());
    let failed = s.tls_client(DENIED);
    assert!(failed.is_err());
    assert_eq!(s.kdig_short(&["+tls", "www.example.test"])?.len(), 2);
    Ok(())
}

/// A thousand connections that shook hands and went quiet are held to the limits, and a new
/// client is answered at once.
#[test]
fn a_thousand_idle_tls_connections_lock_nobody_out() -> Result<()> {
    raise_open_files(4096)?;
    let s = Sandbox::new(
        "idle",
        &[
            "--tcp-connections",
            "200",
            "--tcp-connections-per-client",
            "1000",
        ],
    )?;
    const HOARDER: &str = "198.18.1.60";
    s.topo
        .client
        .ip(&["addr", "add", &format!("{HOARDER}/24"), "dev", "veth0"])?;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        // The oldest are closed to make room: connecting still works.
        idle.push(s.tls_client(HOARDER)?);
    }
    let established = (s.topo.server.command("ss"))
        .args(["-Htn", "state", "established", "sport", "=", ":853"])
        .output()?;
    let open = String::from_utf8_lossy(&established.stdout).lines().count();
    assert!(open <= 200, "{open} connections open");
    let start = Instant::now();
    let mut fresh = s.tls_client(CLIENT_V4)?;
    let reply = fresh.exchange(&query("www.example.test.", RecordType::A))?;
    assert_eq!(reply.answers().len(), 2);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    Ok(())
}

fn raise_open_files(n: u64) -> Result<()> {
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        bail!("setrlimit: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// A PROXY protocol v2 header for a TCP connection from `client` over IPv4.
fn proxy_v2(client: &str, port: u16) -> Result<Vec<u8>> {
    let ip: std::net::Ipv4Addr = client.parse()?;
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend([0x21, 0x11, 0, 12]);
    h.extend(ip.octets());
    h.extend([198, 18, 1, 1]);
    h.extend(port.to_be_bytes());
    h.extend(853u16.to_be_bytes());
    Ok(h)
}

/// Behind a trusted proxy the ACL and the query log see the client the proxy names: in a
/// PROXY header over TCP and TLS, and in X-Forwarded-For from nginx in front of DNS over
/// HTTPS. An untrusted peer's PROXY header is not believed.
#[test]
fn clients_behind_a_trusted_proxy_are_seen_as_themselves() -> Result<()> {
    const DENIED: &str = "198.18.1.66";
    let log = std::env::temp_dir().join(format!("dnsxdp-proxy-log-{}", std::process::id()));
    let log_arg = path(&log);
    let s = Sandbox::new(
        "proxy",
        &[
            "--allow",
            "198.18.0.0/15",
            "--deny",
            DENIED,
            "--trusted-proxy",
            "198.18.1.1",
            "--trusted-proxy",
            CLIENT_V4,
            "--query-log",
            &log_arg,
        ],
    )?;
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let question = query("www.example.test.", RecordType::A);

    // TCP: the named client is screened, and logged.
    let tcp = |header: Vec<u8>| -> Result<Option<usize>> {
        let (from, to) = (
            CLIENT_V4.parse::<IpAddr>()?,
            format!("{SERVER_V4}:53").parse()?,
        );
        let q = question.clone();
        s.topo.client.enter(move || -> Result<Option<usize>> {
            let mut stream = tcp_from(from, to, None)?;
            std::io::Write::write_all(&mut stream, &header)?;
            Ok(dnsxdp_tests::client::exchange_tcp(&mut stream, &q, WAIT)
                .ok()
                .map(|m| m.answers().len()))
        })?
    };
    assert_eq!(tcp(proxy_v2("198.18.1.77", 40001)?)?, Some(2));
    assert_eq!(
        tcp(proxy_v2(DENIED, 40002)?)?,
        None,
        "a denied client behind the proxy"
    );
    // TLS, with a v1 header.
    let (from, to, ca) = (
        CLIENT_V4.parse::<IpAddr>()?,
        format!("{SERVER_V4}:853").parse::<SocketAddr>()?,
        s.ca.ca_file.clone(),
    );
    let header = b"PROXY TCP4 198.18.1.78 198.18.1.1 40003 853\r\n".to_vec();
    let mut tls =
        (s.topo.client).enter(move || TlsClient::connect_after(from, to, &ca, NAME, &header))??;
    assert_eq!(tls.exchange(&question)?.answers().len(), 2);

    // nginx terminates TLS for DoH and passes the client on in X-Forwarded-For.
    const BEHIND_NGINX: &str = "198.18.1.81";
    for ip in [BEHIND_NGINX, DENIED] {
        (s.topo.client).ip(&["addr", "add", &format!("{ip}/24"), "dev", "veth0"])?;
    }
    let nginx = Nginx::start(&s)?;
    let via_nginx = |from: &str| -> Vec<String> {
        let args = ["-b", from, "+https", "-p", "8443", "www.example.test", "A"];
        args.map(String::from).to_vec()
    };
    let args = via_nginx(BEHIND_NGINX);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(s.kdig_short(&args)?.len(), 2);
    let args = via_nginx(DENIED);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let denied = s.kdig(&args)?;
    let said = String::from_utf8_lossy(&denied.stdout);
    assert!(said.contains("status: 403"), "{said}");
    drop(nginx);
    // An untrusted peer's header is not a client: it is read as DNS, and fails.
    s.topo
        .client
        .ip(&["addr", "add", "198.18.1.79/24", "dev", "veth0"])?;
    let (from, to) = (
        "198.18.1.79".parse::<IpAddr>()?,
        format!("{SERVER_V4}:53").parse()?,
    );
    let (header, q) = (proxy_v2("198.18.1.80", 40004)?, question.clone());
    let untrusted = s.topo.client.enter(move || -> Result<bool> {
        let mut stream = tcp_from(from, to, None)?;
        std::io::Write::write_all(&mut stream, &header)?;
        Ok(dnsxdp_tests::client::exchange_tcp(&mut stream, &q, WAIT)
            .is_ok_and(|m| m.id() == q.id()))
    })??;
    assert!(!untrusted);

    let text = logged();
    let clients: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["client"].as_str().map(String::from))
        .collect();
    for seen in ["198.18.1.77:40001", "198.18.1.78:40003", "198.18.1.81:0"] {
        assert!(
            clients.iter().any(|c| c == seen),
            "no {seen} in {clients:?}"
        );
    }
    assert!(
        !clients.iter().any(|c| c.starts_with("198.18.1.1:")),
        "{clients:?}"
    );
    let _ = std::fs::remove_file(&log);
    Ok(())
}

/// nginx in the server's namespace: TLS on 8443 in front of dnsxdp's DNS over HTTPS.
struct Nginx {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Nginx {
    fn start(s: &Sandbox) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("dnsxdp-nginx-{}", s.topo.server.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  \
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
             scgi_temp_path {d}/scgi;\n  server {{\n    listen {SERVER_V4}:8443 ssl http2;\n    \
             ssl_certificate {};\n    ssl_certificate_key {};\n    location /dns-query {{\n      \
             proxy_pass https://{SERVER_V4}:443;\n      proxy_http_version 1.1;\n      \
             proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n  }}\n}}\n",
            s.ca.cert_file.display(),
            s.ca.key_file.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf)?;
        let child = (s.topo.server.command("nginx"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting nginx (cargo xtask setup installs it)")?;
        let nginx = Nginx { child, dir };
        let to: SocketAddr = format!("{SERVER_V4}:8443").parse()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reached = s.topo.client.enter(move || {
                std::net::TcpStream::connect_timeout(&to, Duration::from_millis(200))
            })?;
            if reached.is_ok() {
                return Ok(nginx);
            }
            ensure!(
                Instant::now() < deadline,
                "nginx did not listen: {}",
                std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default()
            );
            sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// dnsxdp asks a DNS over QUIC upstream, and a DNS over HTTPS one by GET: another dnsxdp in
/// the upstream's namespace, serving both from NSD.
#[test]
fn quic_and_https_get_upstreams_answer() -> Result<()> {
    const FAR: &str = "198.18.2.3";
    let topo = Topology::new()?;
    let _nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
    dnsxdp_tests::upstreams::add_address(&topo, FAR)?;
    let ca = TestCa::new(&format!("far-{}", topo.server.name), &[NAME], &[FAR])?;
    let far = FarDaemon::start(&topo, FAR, &ca)?;
    let ca_file = path(&ca.ca_file);
    let doh = format!("https://{NAME}/dns-query?bootstrap={FAR}&method=get");
    for (upstream, counter) in [
        (format!("quic://{FAR}:853#{NAME}"), "queries_quic"),
        (doh, "queries_https"),
    ] {
        let before = far.counter(counter)?;
        // A fresh cache: the last daemon's kernel cache would answer.
        let extra = ["--tls-ca", &ca_file, "--fresh-cache"];
        let daemon = Daemon::start_with_upstreams(&topo, &[&upstream], &extra)?;
        let sock = topo.client.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
        let reply = exchange_udp(
            &sock,
            daemon.v4,
            &query("www.example.test.", RecordType::A),
            WAIT,
        )?;
        assert_eq!(reply.answers().len(), 2, "{upstream}");
        let queried = daemon.upstream(&upstream)?;
        assert!(queried["queries"].as_u64() >= Some(1), "{queried}");
        assert!(far.counter(counter)? > before, "{upstream}");
    }
    Ok(())
}

/// dnsxdp as an encrypted upstream, in the upstream's namespace, resolving from NSD.
struct FarDaemon {
    child: std::process::Child,
    control: std::path::PathBuf,
}

impl FarDaemon {
    fn start(topo: &Topology, ip: &str, ca: &TestCa) -> Result<Self> {
        let control = std::env::temp_dir().join(format!("dnsxdp-far-{}.sock", topo.upstream.name));
        let bin = dnsxdp_tests::daemon::binary()?;
        let child = (topo.upstream.command(&bin.to_string_lossy()))
            .args(["run", "--no-xdp", "--listen", &format!("{ip}:53")])
            .args([
                "--upstream",
                &format!("{UPSTREAM_V4}:53"),
                "--allow",
                "198.18.0.0/15",
            ])
            .args([
                "--listen-quic",
                ip,
                "--listen-https",
                ip,
                "--log-level",
                "warn",
            ])
            .arg("--tls-cert")
            .arg(&ca.cert_file)
            .arg("--tls-key")
            .arg(&ca.key_file)
            .arg("--control")
            .arg(&control)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let far = FarDaemon { child, control };
        let to: SocketAddr = format!("{ip}:53").parse()?;
        let sock = topo.upstream.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
        let deadline = Instant::now() + Duration::from_secs(20);
        while exchange_udp(&sock, to, &query("ns.example.test.", RecordType::A), WAIT).is_err()
            || !far.control.exists()
        {
            ensure!(Instant::now() < deadline, "the far dnsxdp did not answer");
            sleep(Duration::from_millis(100));
        }
        Ok(far)
    }

    fn counter(&self, name: &str) -> Result<u64> {
        let out = std::process::Command::new(dnsxdp_tests::daemon::binary()?)
            .args(["stats", "--json", "--control"])
            .arg(&self.control)
            .output()?;
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        stats["daemon"][name]
            .as_u64()
            .with_context(|| format!("no {name} in {stats}"))
    }
}

impl Drop for FarDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.control);
    }
}
