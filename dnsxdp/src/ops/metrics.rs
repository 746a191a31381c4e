//! The Prometheus endpoint: `GET /metrics` serves, in the OpenMetrics text format, the counters
//! `dnsxdp stats` reports, read afresh at every scrape, and each upstream's latency histogram.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    fmt, io,
    net::{SocketAddr, TcpListener as StdTcpListener},
    sync::Arc,
    time::Duration,
};

use anyhow::anyhow;
use dnsxdp_common::Counter;
use hyper::{
    Method, Request, Response, StatusCode,
    header::{ALLOW, CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, text},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge, histogram::Histogram},
    registry::{Registry, Unit},
};
use tokio::{
    net::{TcpListener, TcpStream},
    task::{JoinSet, spawn_blocking},
};
use tracing::{debug, warn};

use crate::{
    kernel::cache::CacheSize,
    ops::control::State,
    ops::stats::{CacheLayer, CacheReport, DaemonCounters, Report, XDP_ALLOWED},
    upstream::health::{UpstreamCounters, UpstreamState},
};

const PATH: &str = "/metrics";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// A client that has not sent a whole request head by then is disconnected.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The bound metrics listener.
pub struct Endpoint {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Endpoint {
    /// Binds `addr`; the error is one line naming it.
    pub fn bind(addr: SocketAddr) -> anyhow::Result<Endpoint> {
        let listener = StdTcpListener::bind(addr)
            .and_then(|l| {
                l.set_nonblocking(true)?;
                TcpListener::from_std(l)
            })
            .map_err(|e| anyhow!("metrics: binding {addr} failed: {}", bind_error(&e)))?;
        Ok(Endpoint { listener, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers scrapes from `state` until dropped, open connections included.
    pub async fn serve(self, state: Arc<State>) {
        let registry = Arc::new(registry(state));
        let mut connections = JoinSet::new();
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    while connections.try_join_next().is_some() {}
                    connections.spawn(connection(stream, registry.clone()));
                }
                Err(e) => {
                    warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

fn bind_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => "address in use".into(),
        io::ErrorKind::AddrNotAvailable => "not an address of this host".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn registry(state: Arc<State>) -> Registry {
    let mut registry = Registry::with_prefix("dnsxdp");
    registry.register_collector(Box::new(StateCollector(state)));
    registry
}

async fn connection(stream: TcpStream, registry: Arc<Registry>) {
    let service = service_fn(move |request| {
        let registry = registry.clone();
        // Sizing the kernel cache walks the whole map: not on a thread that serves queries.
        let response = spawn_blocking(move || respond(&request, &registry));
        async move {
            Ok::<_, Infallible>(response.await.unwrap_or_else(|e| {
                warn!("metrics: rendering failed: {e}");
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "rendering failed\n".into(),
                )
            }))
        }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        debug!("metrics: connection failed: {e}");
    }
}

fn respond<B>(request: &Request<B>, registry: &Registry) -> Response<String> {
    if request.uri().path() != PATH {
        return plain(StatusCode::NOT_FOUND, format!("not found; try {PATH}\n"));
    }
    if request.method() != Method::GET {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    let mut body = String::new();
    match text::encode(&mut body, registry) {
        Ok(()) => {
            let mut response = Response::new(body);
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
            response
        }
        Err(fmt::Error) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading the counters failed; the daemon's log says why\n".into(),
        ),
    }
}

fn plain(status: StatusCode, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// Renders the daemon's report at each scrape, so the values are those `dnsxdp stats` shows.
struct StateCollector(Arc<State>);

impl fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateCollector")
    }
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let report = self.0.report().map_err(|e| {
            warn!("metrics: reading the counters failed: {e:#}");
            fmt::Error
        })?;
        encode_report(&report, &mut encoder)?;
        if let Some(keeper) = &self.0.lists {
            let lists = keeper.filter.report();
            let blocking = lists.iter().filter(|l| !l.allow);
            counters(
                &mut encoder,
                "list_blocked",
                "Answers the daemon sent for names each blocklist blocks (its cache's hits \
                 included).",
                blocking.map(|l| ([("list", l.source.as_str())], l.blocked)),
            )?;
        }
        let latencies = self.0.upstreams.pools().flat_map(|p| p.latencies());
        encode_latencies(latencies, &mut encoder)
    }
}

/// Every counter of `report`, under the names the README's Metrics section lists.
fn encode_report(report: &Report, e: &mut DescriptorEncoder) -> fmt::Result {
    encode_daemon(&report.daemon, e)?;
    encode_lookups(report, e)?;
    if let Some(xdp) = &report.xdp {
        encode_xdp(xdp, e)?;
    }
    encode_access(report, e)?;
    encode_cache(&report.cache, e)?;
    encode_upstreams(&report.upstreams, e)
}

/// An XDP counter by `Counter::name()`.
fn xdp_counter(xdp: &BTreeMap<String, u64>, name: &str) -> u64 {
    xdp.get(name).copied().unwrap_or(0)
}

/// What only the daemon counts: queries, answers, and how misses went.
fn encode_daemon(d: &DaemonCounters, e: &mut DescriptorEncoder) -> fmt::Result {
    counters(
        e,
        "queries",
        "Queries the daemon received, by transport; XDP cache hits never reach it.",
        [
            ("udp", d.resolve.queries_udp),
            ("tcp", d.resolve.queries_tcp),
            ("tls", d.resolve.queries_tls),
            ("https", d.resolve.queries_https),
            ("quic", d.resolve.queries_quic),
        ]
        .map(|(t, n)| ([("transport", t)], n)),
    )?;
    counters(
        e,
        "answers",
        "Answers the daemon sent, by response code.",
        d.resolve
            .rcodes
            .iter()
            .map(|(rcode, &n)| ([("rcode", rcode.as_str())], n)),
    )?;
    counter(
        e,
        "stale_answers",
        "Expired answers sent because no upstream answered (RFC 8767).",
        d.resolve.stale_answers,
    )?;
    counter(
        e,
        "rebind_removed",
        "Private addresses removed from public upstreams' answers (--rebind-protection).",
        d.resolve.rebind_removed,
    )?;
    counter(
        e,
        "failures",
        "SERVFAILs sent because no upstream answered and no stale answer was left.",
        d.resolve.failures,
    )?;
    counter(
        e,
        "coalesced",
        "Queries that waited for the same question already on its way upstream.",
        d.resolve.coalesced,
    )?;
    counter(
        e,
        "prefetches",
        "Popular answers refreshed before they expired.",
        d.resolve.prefetches,
    )?;
    counter(
        e,
        "query_log_dropped",
        "Query log lines dropped because the disk could not keep up.",
        d.query_log_dropped,
    )
}

/// Cache hits and misses of each layer; no XDP samples without XDP (--no-xdp).
fn encode_lookups(report: &Report, e: &mut DescriptorEncoder) -> fmt::Result {
    let by_layer = |counter: Counter, daemon: u64| {
        let xdp = report.xdp.as_ref();
        xdp.map(|x| ([("layer", "xdp")], xdp_counter(x, counter.name())))
            .into_iter()
            .chain([([("layer", "daemon")], daemon)])
    };
    counters(
        e,
        "cache_hits",
        "Queries answered from the cache, by layer: the XDP program or the daemon.",
        by_layer(Counter::Hits, report.daemon.resolve.cache_hits),
    )?;
    counters(
        e,
        "cache_misses",
        "Cacheable queries the XDP program found no entry for, and queries the daemon \
         forwarded upstream, by layer.",
        by_layer(Counter::Misses, report.daemon.resolve.upstream_queries),
    )?;
    counters(
        e,
        "blocked",
        "Answers sent for names a blocklist blocks, by layer: the XDP program's hits, and the \
         daemon's answers (its cache's hits included).",
        by_layer(Counter::HitsBlocked, report.daemon.resolve.blocked),
    )?;
    if !report.groups.is_empty() {
        let layers = report.groups.iter().flat_map(|g| {
            let xdp = g
                .xdp
                .map(|n| ([("group", g.group.as_str()), ("layer", "xdp")], n));
            xdp.into_iter()
                .chain([([("group", g.group.as_str()), ("layer", "daemon")], g.daemon)])
        });
        counters(
            e,
            "group_blocked",
            "Answers sent for names a blocklist blocks, by client group and layer.",
            layers,
        )?;
    }
    let Some(xdp) = &report.xdp else {
        return Ok(());
    };
    counters(
        e,
        "cache_expired",
        "Cacheable queries whose entry had expired, passed to the daemon, by layer.",
        [(
            [("layer", "xdp")],
            xdp_counter(xdp, Counter::Expired.name()),
        )],
    )
}

/// The XDP program's packets, why it passed some to the daemon unanswered, and the reports
/// it could not send.
fn encode_xdp(xdp: &BTreeMap<String, u64>, e: &mut DescriptorEncoder) -> fmt::Result {
    counter(
        e,
        "xdp_packets",
        "UDP packets to a served address and port the XDP program saw.",
        xdp_counter(xdp, Counter::Packets.name()),
    )?;
    counter(
        e,
        "xdp_events_lost",
        "Reports of the XDP program (prefetch requests, logged hits, security events) lost to a full ring buffer.",
        xdp_counter(xdp, Counter::EventsLost.name()),
    )?;
    counters(
        e,
        "xdp_dropped",
        "Packets the XDP program dropped outside the ACL and the rate limit, by reason: an IPv6 header chain longer than it follows, or an answer whose entry changed while it was copied.",
        [Counter::DroppedHeaderChain, Counter::DroppedEntryChanged]
            .into_iter()
            .map(|c| {
                let reason = c.name().trim_start_matches("dropped_");
                ([("reason", reason)], xdp_counter(xdp, c.name()))
            }),
    )?;
    counters(
        e,
        "xdp_passed",
        "Packets the XDP program passed to the daemon without a cache lookup, by reason.",
        Counter::ALL.iter().filter_map(|c| {
            let reason = c.name().strip_prefix("pass_")?;
            Some(([("reason", reason)], xdp_counter(xdp, c.name())))
        }),
    )
}

/// What the ACL and the rate limit did, in each layer.
fn encode_access(report: &Report, e: &mut DescriptorEncoder) -> fmt::Result {
    let actions = [
        XDP_ALLOWED,
        Counter::DeniedDropped.name(),
        Counter::DeniedRefused.name(),
        Counter::LimitedDropped.name(),
        Counter::LimitedSlipped.name(),
        Counter::DroppedSourcePort.name(),
    ];
    let d = &report.daemon;
    let daemon = [
        d.access.allowed,
        d.access.denied_dropped,
        d.access.denied_refused,
        d.access.limited_dropped,
        d.access.limited_slipped,
        d.access.dropped_source_port,
    ];
    let xdp = report
        .xdp
        .as_ref()
        .map(|x| actions.map(|a| ([("layer", "xdp"), ("action", a)], xdp_counter(x, a))));
    let daemon = actions
        .iter()
        .zip(daemon)
        .map(|(&a, n)| ([("layer", "daemon"), ("action", a)], n));
    counters(
        e,
        "access",
        "Queries by what the ACL and the rate limit did with them, by layer: allowed, \
         denied_dropped, denied_refused, limited_dropped (over the limit), limited_slipped \
         (answered with TC=1) or dropped_source_port (from a port never answered).",
        xdp.into_iter().flatten().chain(daemon),
    )
}

/// The `cache` section: each layer's size, evictions and hit ratio.
fn encode_cache(cache: &CacheReport, e: &mut DescriptorEncoder) -> fmt::Result {
    // The kernel layer is "xdp" here, as in the hit and miss counters.
    let layers: Vec<(&str, &CacheLayer)> = cache
        .kernel
        .as_ref()
        .map(|k| ("xdp", k))
        .into_iter()
        .chain([("daemon", &cache.daemon)])
        .collect();
    let each = |value: fn(&CacheSize) -> u64| {
        layers
            .iter()
            .map(move |(layer, l)| ([("layer", *layer)], value(&l.size)))
    };
    gauges(
        e,
        "cache_entries",
        "Answers each cache layer would serve now: unexpired.",
        None,
        each(|s| s.entries),
    )?;
    gauges(
        e,
        "cache_occupancy",
        "Answers each cache layer holds, expired ones not yet removed included.",
        None,
        each(|s| s.occupancy),
    )?;
    gauges(
        e,
        "cache_capacity",
        "Answers each cache layer has room for.",
        None,
        each(|s| s.capacity),
    )?;
    counters(
        e,
        "cache_evictions",
        "Answers each cache layer pushed out to make room for others.",
        each(|s| s.evictions),
    )?;
    let ratios = layers
        .iter()
        .map(|(layer, l)| (*layer, l.hit_ratio))
        .chain([("all", cache.hit_ratio)])
        .filter_map(|(layer, ratio)| Some(([("layer", layer)], ratio?)));
    gauges(
        e,
        "cache_hit_ratio",
        "Hits over lookups since the daemon started, by layer (all: both together, a query \
         counted once); absent before the first lookup.",
        None,
        ratios,
    )
}

/// Each upstream's counters, state and smoothed latency.
fn encode_upstreams(upstreams: &[UpstreamCounters], e: &mut DescriptorEncoder) -> fmt::Result {
    let each = |value: fn(&UpstreamCounters) -> u64| {
        upstreams
            .iter()
            .map(move |u| ([("upstream", u.upstream.as_str())], value(u)))
    };
    counters(
        e,
        "upstream_queries",
        "Queries sent to each upstream, retries included.",
        each(|u| u.queries),
    )?;
    counters(
        e,
        "upstream_failures",
        "Queries each upstream did not answer usefully: timeouts, errors, SERVFAIL, REFUSED.",
        each(|u| u.failures),
    )?;
    counters(
        e,
        "upstream_timeouts",
        "Queries each upstream did not answer in time.",
        each(|u| u.timeouts),
    )?;
    gauges(
        e,
        "upstream_up",
        "Whether each upstream is up (1) or down after too many failures in a row (0).",
        None,
        each(|u| u64::from(u.state == UpstreamState::Up)),
    )?;
    gauges(
        e,
        "upstream_smoothed_latency",
        "Each upstream's smoothed latency, which the fastest strategy compares; absent until \
         it has answered or timed out.",
        Some(&Unit::Seconds),
        upstreams.iter().filter_map(|u| {
            let ms = u.latency_ms?;
            Some(([("upstream", u.upstream.as_str())], ms / 1000.0))
        }),
    )
}

/// The latency histogram of each upstream's answered queries.
fn encode_latencies<'a>(
    upstreams: impl Iterator<Item = (&'a str, &'a Histogram)>,
    e: &mut DescriptorEncoder,
) -> fmt::Result {
    let mut family = e.encode_descriptor(
        "upstream_latency",
        "Latency of the queries each upstream answered.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (upstream, histogram) in upstreams {
        histogram.encode(family.encode_family(&[("upstream", upstream)])?)?;
    }
    Ok(())
}

/// A counter family without labels.
fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    ConstCounter::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// A counter family of one sample per label set.
fn counters<L: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A gauge family of one sample per label set.
fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result {
    let mut family = e.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in samples {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::stats::{GroupBlocked, Lookups, with_allowed};

    /// Renders a fixed report the way `StateCollector` renders the daemon's.
    #[derive(Debug)]
    struct Fixed {
        report: Report,
        latencies: Vec<(String, Histogram)>,
    }

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
            encode_report(&self.report, &mut encoder)?;
            let latencies = self.latencies.iter().map(|(n, h)| (n.as_str(), h));
            encode_latencies(latencies, &mut encoder)
        }
    }

    fn fixed_registry(report: Report, latencies: Vec<(String, Histogram)>) -> Registry {
        let mut registry = Registry::with_prefix("dnsxdp");
        registry.register_collector(Box::new(Fixed { report, latencies }));
        registry
    }

    fn render(report: Report, latencies: Vec<(String, Histogram)>) -> String {
        let mut out = String::new();
        text::encode(&mut out, &fixed_registry(report, latencies)).unwrap();
        out
    }

    const UPSTREAM: &str = "udp://198.18.2.2:53";

    fn report(xdp: bool) -> Report {
        let resolve = crate::resolve::counters::Counters::default();
        for _ in 0..3 {
            resolve.query(crate::dns::reply::Transport::Udp);
        }
        resolve.query(crate::dns::reply::Transport::Tcp);
        resolve.cache_hit();
        resolve.upstream_query();
        resolve.upstream_query();
        resolve.answered(0);
        resolve.answered(3);
        resolve.prefetch();
        let access = crate::access::counters::Counters::default();
        access.denied(true);
        let with_xdp = xdp;
        let xdp = xdp.then(|| {
            with_allowed(
                Counter::ALL
                    .iter()
                    .zip(1..)
                    .map(|(c, n)| (c.name().to_string(), n * 10))
                    .collect::<BTreeMap<_, _>>(),
            )
        });
        let size = |entries| CacheSize {
            entries,
            occupancy: entries + 1,
            capacity: 64,
            evictions: entries * 2,
        };
        let lookups = Lookups {
            lookups: 4,
            hits: 1,
        };
        let cache = CacheReport::new(xdp.as_ref().map(|x| (size(6), x)), size(3), lookups);
        Report {
            xdp,
            daemon: DaemonCounters {
                resolve: resolve.counts(),
                access: access.counts(),
                query_log_dropped: 0,
            },
            cache,
            upstreams: vec![UpstreamCounters {
                upstream: UPSTREAM.into(),
                state: UpstreamState::Down,
                queries: 5,
                failures: 3,
                timeouts: 1,
                latency_ms: Some(2.5),
            }],
            groups: vec![GroupBlocked {
                group: "kids".into(),
                xdp: with_xdp.then_some(9),
                daemon: 4,
            }],
        }
    }

    fn latencies() -> Vec<(String, Histogram)> {
        let histogram = Histogram::new([0.0025, 0.005, 0.5]);
        histogram.observe(0.004);
        histogram.observe(0.3);
        vec![(UPSTREAM.into(), histogram)]
    }

    fn has(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in\n{text}"
        );
    }

    #[test]
    fn every_counter_of_the_report_is_rendered() {
        let text = render(report(true), latencies());
        for line in [
            "# HELP dnsxdp_queries Queries the daemon received, by transport; XDP cache hits never reach it.",
            "# TYPE dnsxdp_queries counter",
            r#"dnsxdp_queries_total{transport="udp"} 3"#,
            r#"dnsxdp_queries_total{transport="tcp"} 1"#,
            r#"dnsxdp_answers_total{rcode="noerror"} 1"#,
            r#"dnsxdp_answers_total{rcode="nxdomain"} 1"#,
            r#"dnsxdp_answers_total{rcode="servfail"} 0"#,
            // Counter::Hits is the second counter, Misses the third, ...
            r#"dnsxdp_cache_hits_total{layer="xdp"} 20"#,
            r#"dnsxdp_cache_hits_total{layer="daemon"} 1"#,
            r#"dnsxdp_cache_misses_total{layer="xdp"} 30"#,
            r#"dnsxdp_cache_misses_total{layer="daemon"} 2"#,
            r#"dnsxdp_cache_expired_total{layer="xdp"} 40"#,
            // The last counter.
            r#"dnsxdp_blocked_total{layer="xdp"} 240"#,
            r#"dnsxdp_blocked_total{layer="daemon"} 0"#,
            r#"dnsxdp_group_blocked_total{group="kids",layer="xdp"} 9"#,
            r#"dnsxdp_group_blocked_total{group="kids",layer="daemon"} 4"#,
            "dnsxdp_xdp_packets_total 10",
            r#"dnsxdp_xdp_passed_total{reason="not_query"} 50"#,
            r#"dnsxdp_xdp_passed_total{reason="malformed"} 90"#,
            "dnsxdp_xdp_events_lost_total 140",
            r#"dnsxdp_xdp_dropped_total{reason="header_chain"} 200"#,
            r#"dnsxdp_xdp_dropped_total{reason="entry_changed"} 210"#,
            // 10 packets, of which 100 + 110 + 120 + 130 were stopped: none allowed.
            r#"dnsxdp_access_total{layer="xdp",action="allowed"} 0"#,
            r#"dnsxdp_access_total{layer="xdp",action="limited_slipped"} 130"#,
            r#"dnsxdp_access_total{layer="daemon",action="denied_refused"} 1"#,
            r#"dnsxdp_access_total{layer="daemon",action="denied_dropped"} 0"#,
            r#"dnsxdp_cache_entries{layer="xdp"} 6"#,
            r#"dnsxdp_cache_entries{layer="daemon"} 3"#,
            r#"dnsxdp_cache_occupancy{layer="xdp"} 7"#,
            r#"dnsxdp_cache_capacity{layer="daemon"} 64"#,
            r#"dnsxdp_cache_evictions_total{layer="xdp"} 12"#,
            // 20 hits of 90 XDP lookups; 1 of 4 in the daemon; (20 + 1) / (20 + 4) in all.
            r#"dnsxdp_cache_hit_ratio{layer="daemon"} 0.25"#,
            r#"dnsxdp_cache_hit_ratio{layer="all"} 0.875"#,
            "dnsxdp_prefetches_total 1",
            "dnsxdp_failures_total 0",
            r#"dnsxdp_upstream_queries_total{upstream="udp://198.18.2.2:53"} 5"#,
            r#"dnsxdp_upstream_failures_total{upstream="udp://198.18.2.2:53"} 3"#,
            r#"dnsxdp_upstream_timeouts_total{upstream="udp://198.18.2.2:53"} 1"#,
            r#"dnsxdp_upstream_up{upstream="udp://198.18.2.2:53"} 0"#,
            "# UNIT dnsxdp_upstream_smoothed_latency_seconds seconds",
            r#"dnsxdp_upstream_smoothed_latency_seconds{upstream="udp://198.18.2.2:53"} 0.0025"#,
            "# TYPE dnsxdp_upstream_latency_seconds histogram",
            r#"dnsxdp_upstream_latency_seconds_count{upstream="udp://198.18.2.2:53"} 2"#,
            r#"dnsxdp_upstream_latency_seconds_bucket{le="0.0025",upstream="udp://198.18.2.2:53"} 0"#,
            r#"dnsxdp_upstream_latency_seconds_bucket{le="0.005",upstream="udp://198.18.2.2:53"} 1"#,
            r#"dnsxdp_upstream_latency_seconds_bucket{le="+Inf",upstream="udp://198.18.2.2:53"} 2"#,
        ] {
            has(&text, line);
        }
        assert!(text.ends_with("# EOF\n"));
        let passed = text
            .lines()
            .filter(|l| l.starts_with("dnsxdp_xdp_passed_total"))
            .count();
        assert_eq!(passed, 11);
    }

    #[test]
    fn without_xdp_there_are_no_xdp_samples() {
        let text = render(report(false), latencies());
        assert!(!text.contains(r#"layer="xdp""#), "{text}");
        assert!(!text.contains("dnsxdp_xdp_"), "{text}");
        assert!(!text.contains("dnsxdp_cache_expired"), "{text}");
        has(&text, r#"dnsxdp_cache_evictions_total{layer="daemon"} 6"#);
        has(&text, r#"dnsxdp_cache_hits_total{layer="daemon"} 1"#);
        has(
            &text,
            r#"dnsxdp_access_total{layer="daemon",action="allowed"} 0"#,
        );
    }

    #[test]
    fn only_get_of_the_metrics_path_is_served() {
        let registry = fixed_registry(report(true), latencies());
        let request = |method: Method, path: &str| {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .unwrap();
            respond(&request, &registry)
        };
        let ok = request(Method::GET, "/metrics");
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[CONTENT_TYPE], OPENMETRICS);
        assert!(ok.body().contains("dnsxdp_queries_total"));
        assert_eq!(request(Method::GET, "/").status(), StatusCode::NOT_FOUND);
        assert_eq!(
            request(Method::GET, "/metrics/x").status(),
            StatusCode::NOT_FOUND
        );
        let post = request(Method::POST, "/metrics");
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[ALLOW], "GET");
    }

    #[tokio::test]
    async fn a_taken_address_is_a_one_line_error_naming_it() {
        let first = Endpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.listener.local_addr().unwrap();
        let err = Endpoint::bind(addr).err().unwrap().to_string();
        assert_eq!(
            err,
            format!("metrics: binding {addr} failed: address in use")
        );
    }
}
