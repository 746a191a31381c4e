//! The Prometheus endpoint of the real daemon, scraped from the client namespace: the text is
//! well-formed OpenMetrics, its counters agree with `dnsxdp stats --json`, and the Grafana
//! dashboard queries only metrics it serves. Run as root (`cargo xtask test`).

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use dnsxdp_tests::{
    client::{exchange_tcp, exchange_udp, query},
    daemon::Daemon,
    netns::{SERVER_V4, Topology, UPSTREAM_V4, UPSTREAM_V6},
    upstream::Nsd,
};
use hickory_proto::{op::ResponseCode, rr::RecordType};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(2);
const METRICS_PORT: u16 = 9153;

/// One sample line: its name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a scrape, parsed strictly.
struct Scrape(Vec<Sample>);

impl Scrape {
    /// The value of the one sample named `name` with exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let found: Vec<&Sample> = self
            .0
            .iter()
            .filter(|s| s.name == name && s.labels == labels)
            .collect();
        match found.as_slice() {
            [one] => Ok(one.value),
            _ => bail!("{} samples {name}{labels:?}", found.len()),
        }
    }

    /// `get` for a value that must be a whole number, as every counter here is.
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> Result<u64> {
        let value = self.get(name, labels)?;
        ensure!(
            value >= 0.0 && value.fract() == 0.0,
            "{name}{labels:?} is {value}"
        );
        Ok(value as u64)
    }

    fn names(&self) -> BTreeSet<&str> {
        self.0.iter().map(|s| s.name.as_str()).collect()
    }
}

/// The metric family a sample line belongs to, as its HELP, TYPE and UNIT lines declared it.
struct Family {
    name: String,
    kind: String,
    help: bool,
}

/// Parses the OpenMetrics text the exporter writes: every family declared by `# HELP`, then
/// `# TYPE` (and `# UNIT` when its name ends in one) before its samples, each sample named
/// as its type allows, label values quoted, and `# EOF` last.
fn parse(text: &str) -> Result<Scrape> {
    let body = text
        .strip_suffix("# EOF\n")
        .context("the text does not end with # EOF")?;
    let mut families: Vec<Family> = Vec::new();
    let mut samples = Vec::new();
    for (n, line) in body.lines().enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let (keyword, rest) = rest.split_once(' ').with_context(at)?;
            let (name, arg) = rest.split_once(' ').with_context(at)?;
            ensure!(!arg.is_empty(), "{}: empty", at());
            match keyword {
                "HELP" => {
                    ensure!(
                        families.iter().all(|f| f.name != name),
                        "{}: declared twice",
                        at()
                    );
                    families.push(Family {
                        name: name.into(),
                        kind: String::new(),
                        help: true,
                    });
                }
                "TYPE" | "UNIT" => {
                    let family = families
                        .last_mut()
                        .filter(|f| f.name == name && f.help)
                        .with_context(|| format!("{}: no HELP before", at()))?;
                    if keyword == "TYPE" {
                        ensure!(["counter", "gauge", "histogram"].contains(&arg), "{}", at());
                        family.kind = arg.into();
                    } else {
                        ensure!(name.ends_with(&format!("_{arg}")), "{}", at());
                    }
                }
                _ => bail!("{}: unknown comment", at()),
            }
            continue;
        }
        let family = families
            .last()
            .with_context(|| format!("{}: no family", at()))?;
        let sample = parse_sample(line).with_context(at)?;
        let suffixes: &[&str] = match family.kind.as_str() {
            "counter" => &["_total"],
            "gauge" => &[""],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => bail!("{}: no TYPE before", at()),
        };
        ensure!(
            suffixes
                .iter()
                .any(|s| sample.name == format!("{}{s}", family.name)),
            "{}: not a sample of {}",
            at(),
            family.name
        );
        ensure!(
            sample.labels.contains_key("le") == sample.name.ends_with("_bucket"),
            "{}",
            at()
        );
        samples.push(sample);
    }
    Ok(Scrape(samples))
}

/// `name{key="value",...} value`.
fn parse_sample(line: &str) -> Result<Sample> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .context("no value")?;
    let (name, mut rest) = line.split_at(name_end);
    ensure!(name.starts_with("dnsxdp_"), "not a dnsxdp metric");
    let mut labels = BTreeMap::new();
    if let Some(mut inside) = rest.strip_prefix('{') {
        loop {
            let (key, after) = inside.split_once("=\"").context("no label value")?;
            ensure!(
                !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad label name {key:?}"
            );
            let (value, after) = unquote(after)?;
            ensure!(
                labels.insert(key.to_string(), value).is_none(),
                "label {key} twice"
            );
            match after.chars().next() {
                Some(',') => inside = &after[1..],
                Some('}') => {
                    rest = &after[1..];
                    break;
                }
                _ => bail!("bad label list"),
            }
        }
    }
    let value = rest
        .strip_prefix(' ')
        .context("no space before the value")?;
    Ok(Sample {
        name: name.into(),
        labels,
        value: value
            .parse()
            .with_context(|| format!("bad value {value:?}"))?,
    })
}

/// A label value up to its closing quote, escapes undone, and what follows the quote.
fn unquote(s: &str) -> Result<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, c @ ('\\' | '"'))) => value.push(c),
                _ => bail!("bad escape"),
            },
            '\n' => bail!("newline in a label value"),
            c => value.push(c),
        }
    }
    bail!("unterminated label value")
}

/// `GET path` over HTTP/1.1 from the client namespace: the status, the content type and the
/// body.
fn get(topo: &Topology, addr: SocketAddr, path: &str) -> Result<(u16, String, String)> {
    let mut stream = topo
        .client
        .enter(move || TcpStream::connect_timeout(&addr, WAIT))??;
    stream.set_read_timeout(Some(WAIT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no end of the response head")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1.1 "))
        .and_then(|l| l.get(..3))
        .context("no status line")?
        .parse()?;
    let header = |name: &str| {
        lines.clone().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let length: usize = header("content-length")
        .context("no content-length")?
        .parse()?;
    ensure!(
        length == body.len(),
        "content-length {length}, body {}",
        body.len()
    );
    Ok((
        status,
        header("content-type").unwrap_or_default(),
        body.into(),
    ))
}

fn u64_at(stats: &Value, pointer: &str) -> Result<u64> {
    stats
        .pointer(pointer)
        .and_then(Value::as_u64)
        .with_context(|| format!("no {pointer} in {stats}"))
}

/// A sample's name and labels.
type SampleKey = (&'static str, &'static [(&'static str, &'static str)]);

/// Daemon counters of `dnsxdp stats --json` and the samples that carry them.
const DAEMON: [(&str, SampleKey); 20] = [
    (
        "queries_udp",
        ("dnsxdp_queries_total", &[("transport", "udp")]),
    ),
    (
        "queries_tcp",
        ("dnsxdp_queries_total", &[("transport", "tcp")]),
    ),
    (
        "queries_tls",
        ("dnsxdp_queries_total", &[("transport", "tls")]),
    ),
    (
        "queries_https",
        ("dnsxdp_queries_total", &[("transport", "https")]),
    ),
    (
        "queries_quic",
        ("dnsxdp_queries_total", &[("transport", "quic")]),
    ),
    (
        "cache_hits",
        ("dnsxdp_cache_hits_total", &[("layer", "daemon")]),
    ),
    (
        "upstream_queries",
        ("dnsxdp_cache_misses_total", &[("layer", "daemon")]),
    ),
    ("coalesced", ("dnsxdp_coalesced_total", &[])),
    ("stale_answers", ("dnsxdp_stale_answers_total", &[])),
    ("blocked", ("dnsxdp_blocked_total", &[("layer", "daemon")])),
    ("rebind_removed", ("dnsxdp_rebind_removed_total", &[])),
    ("failures", ("dnsxdp_failures_total", &[])),
    ("prefetches", ("dnsxdp_prefetches_total", &[])),
    ("query_log_dropped", ("dnsxdp_query_log_dropped_total", &[])),
    (
        "allowed",
        (
            "dnsxdp_access_total",
            &[("layer", "daemon"), ("action", "allowed")],
        ),
    ),
    (
        "denied_dropped",
        (
            "dnsxdp_access_total",
            &[("layer", "daemon"), ("action", "denied_dropped")],
        ),
    ),
    (
        "denied_refused",
        (
            "dnsxdp_access_total",
            &[("layer", "daemon"), ("action", "denied_refused")],
        ),
    ),
    (
        "limited_dropped",
        (
            "dnsxdp_access_total",
            &[("layer", "daemon"), ("action", "limited_dropped")],
        ),
    ),
    (
        "limited_slipped",
        (
            "dnsxdp_access_total",
            &[("layer", "daemon"), ("action", "limited_slipped")],
        ),
    ),
    (
        "dropped_source_port",
        (
            "dnsxdp_access_total",
            &[("layer", "daemon"), ("action", "dropped_source_port")],
        ),
    ),
];

/// The sample that carries the XDP counter `name` of `dnsxdp stats --json`.
fn xdp_sample(name: &str) -> (String, Vec<(&'static str, &str)>) {
    match name {
        "packets" => ("dnsxdp_xdp_packets_total".into(), vec![]),
        "events_lost" => ("dnsxdp_xdp_events_lost_total".into(), vec![]),
        "dropped_header_chain" | "dropped_entry_changed" => (
            "dnsxdp_xdp_dropped_total".into(),
            vec![("reason", name.trim_start_matches("dropped_"))],
        ),
        "hits" | "misses" | "expired" => {
            (format!("dnsxdp_cache_{name}_total"), vec![("layer", "xdp")])
        }
        "hits_blocked" => ("dnsxdp_blocked_total".into(), vec![("layer", "xdp")]),
        _ => match name.strip_prefix("pass_") {
            Some(reason) => ("dnsxdp_xdp_passed_total".into(), vec![("reason", reason)]),
            None => (
                "dnsxdp_access_total".into(),
                vec![("layer", "xdp"), ("action", name)],
            ),
        },
    }
}

/// Every counter of `stats` has the same value in `scrape`.
fn agrees(scrape: &Scrape, stats: &Value) -> Result<()> {
    let xdp = stats["xdp"].as_object().context("no xdp counters")?;
    for (name, value) in xdp {
        let (metric, labels) = xdp_sample(name);
        ensure!(
            scrape.count(&metric, &labels)? == value.as_u64().context("xdp counter")?,
            "xdp {name}"
        );
    }
    let daemon = stats["daemon"].as_object().context("no daemon counters")?;
    for (name, value) in daemon {
        // The sum of the transports, and the response codes, checked below.
        if ["queries", "rcodes"].contains(&name.as_str()) {
            continue;
        }
        let (_, (metric, labels)) = DAEMON
            .iter()
            .find(|(n, _)| n == name)
            .with_context(|| format!("daemon.{name} has no metric"))?;
        ensure!(
            scrape.count(metric, labels)? == value.as_u64().context("daemon counter")?,
            "daemon {name}"
        );
    }
    let transports: u64 = ["udp", "tcp", "tls", "https", "quic"]
        .iter()
        .map(|t| scrape.count("dnsxdp_queries_total", &[("transport", t)]))
        .sum::<Result<_>>()?;
    ensure!(transports == u64_at(stats, "/daemon/queries")?);
    let rcodes = daemon["rcodes"].as_object().context("no rcodes")?;
    for (rcode, value) in rcodes {
        ensure!(
            scrape.count("dnsxdp_answers_total", &[("rcode", rcode)])?
                == value.as_u64().context("rcode")?,
            "rcode {rcode}"
        );
    }
    for (layer, section) in [("xdp", "kernel"), ("daemon", "daemon")] {
        let entries = u64_at(stats, &format!("/cache/{section}/entries"))?;
        let labels = [("layer", layer)];
        ensure!(scrape.count("dnsxdp_cache_entries", &labels)? == entries);
        let evictions = u64_at(stats, &format!("/cache/{section}/evictions"))?;
        ensure!(scrape.count("dnsxdp_cache_evictions_total", &labels)? == evictions);
    }
    for upstream in stats["upstreams"].as_array().context("no upstreams")? {
        let url = upstream["upstream"].as_str().context("no upstream URL")?;
        let labels = [("upstream", url)];
        for counter in ["queries", "failures", "timeouts"] {
            let value = upstream[counter].as_u64().context("upstream counter")?;
            let metric = format!("dnsxdp_upstream_{counter}_total");
            ensure!(scrape.count(&metric, &labels)? == value, "{url} {counter}");
        }
        let up = u64::from(upstream["state"] == "up");
        ensure!(scrape.count("dnsxdp_upstream_up", &labels)? == up);
    }
    Ok(())
}

/// The histogram of `upstream`: its count, and its buckets cumulative up to `+Inf` = count.
fn latency_count(scrape: &Scrape, upstream: &str) -> Result<u64> {
    let count = scrape.count(
        "dnsxdp_upstream_latency_seconds_count",
        &[("upstream", upstream)],
    )?;
    let mut buckets: Vec<(f64, f64)> = scrape
        .0
        .iter()
        .filter(|s| {
            s.name == "dnsxdp_upstream_latency_seconds_bucket" && s.labels["upstream"] == upstream
        })
        .map(|s| Ok((s.labels["le"].parse::<f64>()?, s.value)))
        .collect::<Result<_>>()?;
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    ensure!(buckets.len() >= 10, "buckets {buckets:?}");
    ensure!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "buckets not cumulative: {buckets:?}"
    );
    ensure!(
        buckets.last() == Some(&(f64::INFINITY, count as f64)),
        "{buckets:?}"
    );
    Ok(count)
}

/// The `dnsxdp_...` names in the dashboard's queries: panel targets and template variables.
fn dashboard_metrics() -> Result<BTreeSet<String>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana/dnsxdp.json");
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let dashboard: Value = serde_json::from_str(&text).context("the dashboard is not JSON")?;
    let mut queries = Vec::new();
    collect_queries(&dashboard, &mut queries);
    let mut names = BTreeSet::new();
    for q in queries {
        let mut rest = q;
        while let Some(start) = rest.find("dnsxdp_") {
            let tail = &rest[start..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    Ok(names)
}

fn collect_queries<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "query" | "definition", Value::String(q)) => out.push(q),
                    _ => collect_queries(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_queries(i, out)),
        _ => {}
    }
}

#[test]
fn scrape_agrees_with_stats_and_serves_the_dashboards_metrics() -> Result<()> {
    let topo = Topology::new()?;
    let _nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
    let addr = SocketAddr::new(SERVER_V4.parse()?, METRICS_PORT);
    let daemon = Daemon::start(&topo, &["--metrics", &addr.to_string()])?;
    ensure!(
        daemon
            .log()
            .contains(&format!("metrics at http://{addr}/metrics")),
        "{}",
        daemon.log()
    );
    let sock = topo.client.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
    let ask = |name: &str, rtype| exchange_udp(&sock, daemon.v4, &query(name, rtype), WAIT);
    // Misses, then repeats the XDP program answers, an NXDOMAIN, and one query over TCP.
    for (name, rtype) in [
        ("www.example.test.", RecordType::A),
        ("www.example.test.", RecordType::AAAA),
        ("alias.example.test.", RecordType::A),
    ] {
        ensure!(ask(name, rtype)?.response_code() == ResponseCode::NoError);
        ask(name, rtype)?;
    }
    let nx = ask("absent.example.test.", RecordType::A)?;
    ensure!(nx.response_code() == ResponseCode::NXDomain);
    let dns = daemon.v4;
    let mut tcp = topo
        .client
        .enter(move || TcpStream::connect_timeout(&dns, WAIT))??;
    exchange_tcp(&mut tcp, &query("txt.example.test.", RecordType::TXT), WAIT)?;

    let (status, content_type, body) = get(&topo, addr, "/metrics")?;
    let stats = daemon.stats()?;
    ensure!(status == 200, "status {status}: {body}");
    ensure!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let scrape = parse(&body)?;
    agrees(&scrape, &stats).with_context(|| format!("scrape:\n{body}\nstats: {stats:#}"))?;

    ensure!(scrape.count("dnsxdp_cache_hits_total", &[("layer", "xdp")])? >= 3);
    ensure!(scrape.count("dnsxdp_answers_total", &[("rcode", "nxdomain")])? >= 1);
    ensure!(scrape.count("dnsxdp_queries_total", &[("transport", "tcp")])? >= 1);
    // NSD answers every query: each one is timed.
    let nsd = &stats["upstreams"][0];
    let url = nsd["upstream"].as_str().context("no upstream URL")?;
    let queries = u64_at(nsd, "/queries")? - u64_at(nsd, "/failures")?;
    let timed = latency_count(&scrape, url)?;
    ensure!(
        timed == queries && timed >= 5,
        "{timed} answers timed, {queries} answered"
    );

    let served = scrape.names();
    let used = dashboard_metrics()?;
    ensure!(used.len() >= 10, "the dashboard's queries: {used:?}");
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !served.contains(n.as_str()))
        .collect();
    ensure!(
        missing.is_empty(),
        "the dashboard uses metrics not served: {missing:?}"
    );

    let (status, _, _) = get(&topo, addr, "/")?;
    ensure!(status == 404, "GET / gave {status}");
    let (status, _, _) = get(&topo, addr, "/metricsx")?;
    ensure!(status == 404, "GET /metricsx gave {status}");
    Ok(())
}

#[test]
fn a_taken_metrics_address_stops_startup_with_one_line() -> Result<()> {
    let topo = Topology::new()?;
    let _nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
    let addr = SocketAddr::new(SERVER_V4.parse()?, METRICS_PORT);
    let _taken = topo.server.enter(move || TcpListener::bind(addr))??;
    let Err(e) = Daemon::start(&topo, &["--metrics", &addr.to_string(), "--no-xdp"]) else {
        bail!("dnsxdp started with {addr} taken");
    };
    let expected = format!("error: metrics: binding {addr} failed: address in use");
    ensure!(
        format!("{e:#}").lines().any(|l| l == expected),
        "expected {expected:?} in {e:#}"
    );
    Ok(())
}
