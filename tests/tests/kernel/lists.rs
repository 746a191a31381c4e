//! Block and allow lists end to end: downloaded from a real HTTP server, blocked names
//! answered by XDP with the daemon frozen, a failed refresh keeping the last good list, a
//! restart without the network, and a list change forgetting what it no longer justifies.
//! Run as root (`cargo xtask test`).

use std::{
    net::UdpSocket,
    path::{Path, PathBuf},
    thread::sleep,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use dnsxdp_tests::{
    client::{exchange_udp, query, query_edns},
    daemon::Daemon,
    http::HttpServer,
    netns::{Topology, UPSTREAM_V4, UPSTREAM_V6},
    upstream::Nsd,
};
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{
        RData, RecordType,
        rdata::opt::{EdnsCode, EdnsOption},
    },
};

const WAIT: Duration = Duration::from_secs(2);

const BLOCKLIST: &str = "\
# hosts, adblock and wildcard rules, and a line no tool reads
0.0.0.0 www.example.test
||mail.example.test^
*.many.example.test
this is not a rule
";

/// A directory removed when dropped.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Sandbox {
    daemon: Daemon,
    sock: UdpSocket,
    http: HttpServer,
    cache_dir: Dir,
    nsd: Nsd,
    topo: Topology,
}

impl Sandbox {
    /// dnsxdp with the blocklist served over HTTP, `extra` flags, and the list in force.
    fn new(extra: &[&str]) -> Result<Self> {
        let topo = Topology::new()?;
        let nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
        let http = HttpServer::start(&topo.upstream)?;
        http.put("block.txt", BLOCKLIST)?;
        let cache_dir = std::env::temp_dir().join(format!("dnsxdp-lists-{}", topo.server.name));
        let _ = std::fs::remove_dir_all(&cache_dir);
        let daemon = start(&topo, &http, &cache_dir, extra)?;
        let sock = topo.client.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
        let s = Sandbox {
            daemon,
            sock,
            http,
            cache_dir: Dir(cache_dir),
            nsd,
            topo,
        };
        s.wait_for_rules(3)?;
        Ok(s)
    }

    fn ask(&self, name: &str, rtype: RecordType) -> Result<Message> {
        exchange_udp(&self.sock, self.daemon.v4, &query(name, rtype), WAIT)
    }

    /// Waits until the blocklist holds `rules` rules.
    fn wait_for_rules(&self, rules: u64) -> Result<serde_json::Value> {
        for _ in 0..100 {
            let lists = self.daemon.lists(false)?;
            if blocklist(&lists)["rules"].as_u64() == Some(rules) {
                return Ok(lists);
            }
            sleep(Duration::from_millis(100));
        }
        bail!(
            "the blocklist never held {rules} rules: {}",
            self.daemon.lists(false)?
        )
    }
}

fn start(topo: &Topology, http: &HttpServer, cache_dir: &Path, extra: &[&str]) -> Result<Daemon> {
    let dir = cache_dir.to_string_lossy().into_owned();
    let url = http.url("block.txt");
    let flags = [&["--block-list", &url, "--list-cache-dir", &dir][..], extra].concat();
    Daemon::start(topo, &flags)
}

/// The blocklist's row of `dnsxdp lists --json` (allowlists come first).
fn blocklist(lists: &serde_json::Value) -> &serde_json::Value {
    let rows = lists.as_array().map(Vec::as_slice).unwrap_or_default();
    rows.iter()
        .find(|l| l["allow"] == false)
        .unwrap_or(&serde_json::Value::Null)
}

fn address(m: &Message) -> Option<RData> {
    m.answers().first().map(|r| r.data().clone())
}

const NULL_V4: RData = RData::A(hickory_proto::rr::rdata::A::new(0, 0, 0, 0));

#[test]
fn blocked_names_are_answered_by_xdp_with_the_daemon_frozen() -> Result<()> {
    let s = Sandbox::new(&["--metrics", "198.18.1.1:9153"])?;
    let lists = s.daemon.lists(false)?;
    assert_eq!(
        (
            blocklist(&lists)["bad"].as_u64(),
            blocklist(&lists)["error"].as_str()
        ),
        (Some(1), None)
    );
    // The domain, its subdomains, and a wildcard's subdomains but not the wildcard's domain.
    for name in [
        "www.example.test.",
        "a.b.www.example.test.",
        "mail.example.test.",
        "x.many.example.test.",
    ] {
        assert_eq!(
            address(&s.ask(name, RecordType::A)?),
            Some(NULL_V4),
            "{name}"
        );
    }
    let aaaa = s.ask("www.example.test.", RecordType::AAAA)?;
    assert_eq!(
        address(&aaaa),
        Some(RData::AAAA(std::net::Ipv6Addr::UNSPECIFIED.into()))
    );
    let mx = s.ask("mail.example.test.", RecordType::MX)?;
    assert_eq!(
        (mx.response_code(), mx.answers().len()),
        (ResponseCode::NoError, 0)
    );
    assert_eq!(mx.name_servers()[0].record_type(), RecordType::SOA);
    // NSD's NODATA, with the zone's SOA, not a block answer's.
    let apex = s.ask("many.example.test.", RecordType::A)?;
    assert!(
        apex.answers().is_empty(),
        "a wildcard does not cover its own domain"
    );
    assert_eq!(apex.name_servers()[0].name().to_ascii(), "example.test.");
    let other = s.ask("alias.example.test.", RecordType::A)?;
    assert!(!other.answers().is_empty() && address(&other) != Some(NULL_V4));

    // The daemon's answer to an EDNS client says why: Extended DNS Error 15, Blocked.
    let edns = |m: Message| {
        let ede = m
            .extensions()
            .as_ref()?
            .option(EdnsCode::Unknown(15))?
            .clone();
        Some((address(&m), ede))
    };
    let said = Some((Some(NULL_V4), EdnsOption::Unknown(15, vec![0, 15])));
    let ask_edns = || {
        let q = query_edns("www.example.test.", RecordType::A, 1232, false);
        exchange_udp(&s.sock, s.daemon.v4, &q, WAIT)
    };
    assert_eq!(edns(ask_edns()?), said);

    let (hits, blocked_hits) = (s.daemon.xdp("hits")?, s.daemon.xdp("hits_blocked")?);
    s.daemon.signal(libc::SIGSTOP)?;
    let frozen = s.ask("www.example.test.", RecordType::A);
    let frozen_mx = s.ask("mail.example.test.", RecordType::MX);
    let frozen_edns = ask_edns();
    s.daemon.signal(libc::SIGCONT)?;
    assert_eq!(address(&frozen?), Some(NULL_V4));
    assert_eq!(frozen_mx?.name_servers()[0].record_type(), RecordType::SOA);
    assert_eq!(edns(frozen_edns?), said, "XDP's answer says so too");
    assert_eq!(s.daemon.xdp("hits")? - hits, 3);
    assert_eq!(s.daemon.xdp("hits_blocked")? - blocked_hits, 3);
    let blocked = s.daemon.counter("blocked")?;
    assert!(blocked >= 6);
    assert_eq!(
        blocklist(&s.daemon.lists(false)?)["blocked"].as_u64(),
        Some(blocked)
    );
    // curl, from the client's side, sees the same count for the list.
    let out = s
        .topo
        .client
        .command("curl")
        .args(["-sf", "http://198.18.1.1:9153/metrics"])
        .output()?;
    let metrics = String::from_utf8_lossy(&out.stdout);
    let lines = [
        format!(
            "dnsxdp_list_blocked_total{{list=\"{}\"}} {blocked}",
            s.http.url("block.txt")
        ),
        format!("dnsxdp_blocked_total{{layer=\"daemon\"}} {blocked}"),
        format!(
            "dnsxdp_blocked_total{{layer=\"xdp\"}} {}",
            s.daemon.xdp("hits_blocked")?
        ),
    ];
    for line in lines {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    Ok(())
}

#[test]
fn other_block_answers_and_an_allowlist() -> Result<()> {
    let dir = Dir(std::env::temp_dir().join(format!("dnsxdp-allow-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let allow = dir.0.join("allow.txt");
    std::fs::write(&allow, "@@||www.example.test^\n")?;
    let allow_arg = allow.to_string_lossy().into_owned();
    let s = Sandbox::new(&[
        "--block-answer",
        "nxdomain",
        "--block-ttl",
        "30",
        "--allow-list",
        &allow_arg,
    ])?;
    let nx = s.ask("mail.example.test.", RecordType::A)?;
    assert_eq!(nx.response_code(), ResponseCode::NXDomain);
    // Counting down from --block-ttl, which a second may have passed.
    let ttl = nx.name_servers()[0].ttl();
    assert!((29..=30).contains(&ttl), "{ttl}");
    let allowed = s.ask("www.example.test.", RecordType::A)?;
    assert_eq!(allowed.response_code(), ResponseCode::NoError);
    assert_ne!(address(&allowed), Some(NULL_V4));
    Ok(())
}

/// A client group's own list blocks a name for its clients only, in both layers, and the two
/// answers never cross: each comes from the XDP program with the daemon frozen.
#[test]
fn groups_get_their_own_answers_and_they_never_cross() -> Result<()> {
    const KID: &str = "198.18.1.50";
    let kids_list = format!("kids=http://{UPSTREAM_V4}:8080/kids.txt");
    let s = Sandbox::new(&[
        "--client-group",
        &format!("kids={KID}/32"),
        "--group-block-list",
        &kids_list,
    ])?;
    s.http.put("kids.txt", "ns.example.test\n")?;
    let lists = s.daemon.lists(true)?;
    let kids = lists.as_array().and_then(|rows| {
        rows.iter()
            .find(|l| l["group"] == "kids" && l["rules"] == 1)
    });
    assert!(kids.is_some(), "{lists}");
    s.topo
        .client
        .ip(&["addr", "add", &format!("{KID}/24"), "dev", "veth0"])?;
    let kid = s
        .topo
        .client
        .enter(|| UdpSocket::bind(format!("{KID}:0")))??;
    let ask_kid = |name: &str| exchange_udp(&kid, s.daemon.v4, &query(name, RecordType::A), WAIT);
    let ns = Some(RData::A(hickory_proto::rr::rdata::A::new(198, 18, 2, 2)));

    // Each asks twice: the daemon answers, then the XDP program.
    for _ in 0..2 {
        assert_eq!(address(&s.ask("ns.example.test.", RecordType::A)?), ns);
        assert_eq!(address(&ask_kid("ns.example.test.")?), Some(NULL_V4));
        assert_eq!(address(&ask_kid("www.example.test.")?), Some(NULL_V4));
    }
    let hits = s.daemon.xdp("hits")?;
    s.daemon.signal(libc::SIGSTOP)?;
    let frozen = (0..3)
        .map(|_| {
            let other = s.ask("ns.example.test.", RecordType::A);
            Ok((address(&other?), address(&ask_kid("ns.example.test.")?)))
        })
        .collect::<Result<Vec<_>>>();
    s.daemon.signal(libc::SIGCONT)?;
    assert_eq!(frozen?, vec![(ns.clone(), Some(NULL_V4)); 3]);
    assert_eq!(s.daemon.xdp("hits")? - hits, 6);

    let groups = s.daemon.stats()?["groups"].clone();
    let kids = groups
        .as_array()
        .and_then(|g| g.iter().find(|g| g["group"] == "kids"))
        .with_context(|| format!("no kids in {groups}"))?;
    // ns and www blocked by the daemon once each, then five times by XDP.
    assert_eq!(
        (kids["daemon"].as_u64(), kids["xdp"].as_u64()),
        (Some(2), Some(5))
    );
    Ok(())
}

#[test]
fn a_failed_refresh_keeps_the_list_and_a_restart_needs_no_network() -> Result<()> {
    let s = Sandbox::new(&[])?;
    // The server answers 404 now: the list in force stays, with the error.
    std::fs::remove_file(s.http.path("block.txt"))?;
    let lists = s.daemon.lists(true)?;
    assert_eq!(blocklist(&lists)["rules"].as_u64(), Some(3));
    let error = blocklist(&lists)["error"].as_str().unwrap_or_default();
    assert!(error.contains("404"), "{lists}");
    assert_eq!(
        address(&s.ask("www.example.test.", RecordType::A)?),
        Some(NULL_V4)
    );
    // A page that is no list keeps it too.
    s.http.put("block.txt", "<html>gone</html>\n")?;
    let lists = s.daemon.lists(true)?;
    assert_eq!(blocklist(&lists)["rules"].as_u64(), Some(3), "{lists}");

    // A restart with the server gone starts from the copy kept on disk.
    let Sandbox {
        daemon,
        topo,
        http,
        cache_dir,
        sock,
        nsd,
    } = s;
    daemon.stop()?;
    let url = http.url("block.txt");
    drop(http);
    let dir = cache_dir.0.to_string_lossy().into_owned();
    let daemon = Daemon::start(&topo, &["--block-list", &url, "--list-cache-dir", &dir])?;
    let reply = exchange_udp(
        &sock,
        daemon.v4,
        &query("www.example.test.", RecordType::A),
        WAIT,
    )?;
    assert_eq!(address(&reply), Some(NULL_V4));
    drop((daemon, nsd));
    Ok(())
}

#[test]
fn a_list_change_forgets_the_answers_it_no_longer_justifies() -> Result<()> {
    let s = Sandbox::new(&[])?;
    // In both caches: a blocked name, and one the new list blocks.
    for _ in 0..2 {
        assert_eq!(
            address(&s.ask("www.example.test.", RecordType::A)?),
            Some(NULL_V4)
        );
        assert_ne!(
            address(&s.ask("alias.example.test.", RecordType::A)?),
            Some(NULL_V4)
        );
    }
    s.http.put("block.txt", "alias.example.test\n")?;
    s.daemon.lists(true)?;
    s.wait_for_rules(1)?;
    let hits = s.daemon.xdp("hits")?;
    let freed = s.ask("www.example.test.", RecordType::A)?;
    assert!(
        !freed.answers().is_empty() && address(&freed) != Some(NULL_V4),
        "{freed:?}"
    );
    let now_blocked = s.ask("alias.example.test.", RecordType::A)?;
    assert_eq!(address(&now_blocked), Some(NULL_V4));
    assert_eq!(
        s.daemon.xdp("hits")?,
        hits,
        "neither came from an old kernel entry"
    );
    Ok(())
}
