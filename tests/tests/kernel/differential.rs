//! The XDP program answers only as the daemon would: the same queries, well-formed and
//! mutated, to dnsxdp with XDP and to dnsxdp with `--no-xdp`, each asked twice (the second
//! time XDP may answer), get the same replies, TTLs aside. Each daemon has its own topology
//! and NSD with the same zone. Run as root (`cargo xtask test`).

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream, UdpSocket},
    thread,
    time::Duration,
};

use anyhow::Result;
use dnsxdp_common::{QTYPE_A, QTYPE_AAAA};
use dnsxdp_tests::{
    client::{exchange_raw, without_ttls},
    daemon::Daemon,
    netns::{Topology, UPSTREAM_V4, UPSTREAM_V6},
    testrun::query::{Edns, FLAG_CD, FLAG_RD, Query},
    upstream::Nsd,
};
use hickory_proto::op::Message;

/// How long to wait for a reply that may rightly never come.
const WAIT: Duration = Duration::from_millis(250);

/// Names of the test zone: positive, negative, chained, too big, of several types, and ANY.
const QUESTIONS: [(&str, u16); 10] = [
    ("www.example.test", QTYPE_A),
    ("WWW.Example.TEST", QTYPE_AAAA),
    ("alias.example.test", QTYPE_A),
    ("nope.example.test", QTYPE_A),
    ("mail.example.test", QTYPE_AAAA),
    ("txt.example.test", 16),
    ("big.example.test", QTYPE_A),
    ("mail.example.test", 15),
    ("www.example.test", 65),
    ("www.example.test", 255),
];

/// OPT records: none, sizes, DO, another version, options ignored or not.
fn opts() -> Vec<Option<Edns>> {
    let mut dnssec = Edns::new(1232);
    dnssec.dnssec_ok = true;
    let mut v1 = Edns::new(1232);
    v1.version = 1;
    vec![
        None,
        Some(Edns::new(512)),
        Some(Edns::new(1232)),
        Some(Edns::new(4096)),
        Some(dnssec),
        Some(v1),
        Some(Edns::new(1232).option(10, &[1; 8])),
        Some(Edns::new(1232).option(12, &[0; 16])),
        Some(Edns::new(1232).option(8, &[0, 1, 24, 0, 198, 18, 1])),
    ]
}

/// Every question with every OPT record and header flags.
fn well_formed() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut id = 1u16;
    for (name, qtype) in QUESTIONS {
        for edns in opts() {
            for flags in [[FLAG_RD, 0], [FLAG_RD, FLAG_CD], [0, 0], [FLAG_RD, 0x20]] {
                let mut q = Query::new(name, qtype);
                q.id = id;
                q.flags = flags;
                q.edns = edns.clone();
                out.push(q.to_wire());
                id += 1;
            }
        }
    }
    out
}

/// `well_formed`, then each once more with a byte or two changed by a fixed pseudo-random
/// sequence.
fn queries() -> Vec<Vec<u8>> {
    let mut out = well_formed();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mutated: Vec<Vec<u8>> = out
        .iter()
        .map(|wire| {
            let mut m = wire.clone();
            for _ in 0..1 + next() % 2 {
                // Past the ID, so that replies stay matched to queries.
                let at = 2 + next() as usize % (m.len() - 2);
                m[at] = next() as u8;
            }
            m
        })
        .collect();
    out.extend(mutated);
    out
}

/// A reply as compared: parsed with every TTL zero, or its bytes if it does not parse.
fn shown(reply: Option<Vec<u8>>) -> String {
    let Some(bytes) = reply else {
        return "no reply".into();
    };
    match Message::from_vec(&bytes) {
        Ok(m) => format!("{:?}", without_ttls(m)),
        Err(_) => format!("unparsed {bytes:02x?}"),
    }
}

/// A daemon on its own topology and NSD.
struct Side {
    daemon: Daemon,
    topo: Topology,
    _nsd: Nsd,
}

impl Side {
    fn new(flags: &[&str]) -> Result<Side> {
        let topo = Topology::new()?;
        let nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
        let daemon = Daemon::start(&topo, flags)?;
        Ok(Side {
            daemon,
            topo,
            _nsd: nsd,
        })
    }

    /// Each query twice, in order: what came back each time.
    fn replies(&self, queries: &[Vec<u8>]) -> Result<Vec<String>> {
        let sock = self.topo.client.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
        let to: SocketAddr = self.daemon.v4;
        let mut out = Vec::new();
        for q in queries {
            for _ in 0..2 {
                out.push(shown(exchange_raw(&sock, to, q, WAIT).ok()));
            }
        }
        Ok(out)
    }
}

#[test]
fn with_and_without_xdp_every_reply_is_the_same() -> Result<()> {
    let queries = queries();
    let (xdp, plain) = (Side::new(&[])?, Side::new(&["--no-xdp"])?);
    let (with, without) = thread::scope(|s| {
        let with = s.spawn(|| xdp.replies(&queries));
        let without = plain.replies(&queries);
        (with.join().expect("the XDP side"), without)
    });
    let (with, without) = (with?, without?);
    let hits = xdp.daemon.xdp("hits")?;
    let differences: Vec<String> = queries
        .iter()
        .flat_map(|q| [q, q])
        .zip(with.iter().zip(&without))
        .filter(|(_, (a, b))| a != b)
        .map(|(q, (a, b))| format!("query {q:02x?}\n  with XDP:    {a}\n  without XDP: {b}"))
        .collect();
    assert!(
        differences.is_empty(),
        "{} of {} replies differ:\n{}",
        differences.len(),
        with.len(),
        differences[..differences.len().min(5)].join("\n")
    );
    // The comparison covered answers the program gave.
    assert!(hits > 50, "only {hits} XDP hits");
    Ok(())
}

#[test]
fn daemon_cache_hits_over_udp_equal_its_answers_over_tcp() -> Result<()> {
    // Without XDP, a UDP query the daemon reads as the XDP program would is answered from the
    // answer's wire form, a miss as well as a repeat; over TCP the answer is rendered in full.
    let side = Side::new(&["--no-xdp"])?;
    let queries = well_formed();
    let udp = side.replies(&queries)?;
    let hits = side.daemon.counter("cache_hits")?;
    let addr = side.daemon.v4;
    let mut differences = Vec::new();
    for (q, asked) in queries.iter().zip(udp.chunks(2)) {
        let mut stream = side
            .topo
            .client
            .enter(move || TcpStream::connect_timeout(&addr, WAIT))??;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(&[&(q.len() as u16).to_be_bytes()[..], q].concat())?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len)?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut reply)?;
        let tcp = shown(Some(reply));
        // Over UDP a reply too big for the client is truncated; over TCP it is not.
        for udp in asked {
            if *udp != tcp && !udp.contains("truncation: true") {
                differences.push(format!("query {q:02x?}\n  UDP: {udp}\n  TCP: {tcp}"));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} differ:\n{}",
        differences.len(),
        udp.len(),
        differences[..differences.len().min(5)].join("\n")
    );
    assert!(
        hits >= queries.len() as u64 / 2,
        "only {hits} daemon cache hits"
    );
    Ok(())
}
