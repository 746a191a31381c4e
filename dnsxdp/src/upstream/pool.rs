//! The configured upstreams as one: which to ask, retrying another within the client's
//! patience, and probing the ones that are down until they answer again.

use std::{path::Path, sync::Arc, time::Duration};

use hickory_proto::op::{Message, ResponseCode};
use prometheus_client::metrics::histogram::Histogram;
use tokio::{
    task::JoinSet,
    time::{Instant, MissedTickBehavior, interval, timeout},
};
use tracing::{debug, info, warn};

use super::health::{UpstreamCounters, UpstreamState};
use super::{
    Failure, Upstream,
    health::Change,
    question::{self, Question},
    spec::UpstreamSpec,
    strategy::{Candidate, Selector, Strategy},
    tls::Connectors,
};

/// How often the upstreams that are down are asked whether they are back.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    pub strategy: Strategy,
    /// The longest one query to one upstream may take.
    pub attempt_timeout: Duration,
    /// Failures in a row that take an upstream down; 0: never.
    pub max_fails: u32,
    /// Queries to upstreams one miss may cost after the first.
    pub retries: u32,
}

pub struct Pool {
    upstreams: Vec<Upstream>,
    selector: Selector,
    settings: PoolSettings,
}

impl Pool {
    /// `tls_ca` replaces the system's certificate authorities for tls:// and https://.
    pub fn new(
        specs: Vec<UpstreamSpec>,
        settings: PoolSettings,
        tls_ca: Option<&Path>,
    ) -> anyhow::Result<Pool> {
        let connectors = if specs.iter().any(UpstreamSpec::uses_tls) {
            Some(Connectors::new(tls_ca)?)
        } else {
            None
        };
        let upstreams: Vec<Upstream> = specs
            .into_iter()
            .map(|spec| Upstream::new(spec, connectors.as_ref()))
            .collect();
        Ok(Pool {
            selector: Selector::new(settings.strategy, upstreams.len()),
            upstreams,
            settings,
        })
    }

    /// Whether every upstream is on a private address: the network's own servers.
    pub fn all_private(&self) -> bool {
        (self.upstreams.iter()).all(|u| super::rebind::private(u.spec.addr.ip()))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.upstreams.iter().map(Upstream::name)
    }

    /// The first usable reply to `q`, trying upstreams in the strategy's order until one
    /// answers, `deadline` passes or the retries are used up; those that timed out are tried
    /// once more after the others, as a lost packet may have been all that was wrong. `None`
    /// when none answered.
    pub async fn resolve(&self, q: &Question<'_>, deadline: Instant) -> Option<Message> {
        let candidates: Vec<Candidate> = self
            .upstreams
            .iter()
            .map(|u| Candidate {
                down: u.health.is_down(),
                weight: u.spec.weight,
                srtt: u.health.srtt(),
            })
            .collect();
        let order = self.selector.order(&candidates);
        let mut timed_out = Vec::new();
        let mut attempts = 0..=self.settings.retries;
        for i in order {
            attempts.next()?;
            match self.attempt(&self.upstreams[i], q, deadline).await? {
                Ok(reply) => return Some(reply),
                Err(Failure::TimedOut) => timed_out.push(i),
                Err(_) => {}
            }
        }
        for i in timed_out {
            attempts.next()?;
            if let Ok(reply) = self.attempt(&self.upstreams[i], q, deadline).await? {
                return Some(reply);
            }
        }
        None
    }

    /// One query to `upstream` in what is left of the time until `deadline`; `None` when
    /// nothing is left.
    async fn attempt(
        &self,
        upstream: &Upstream,
        q: &Question<'_>,
        deadline: Instant,
    ) -> Option<Result<Message, Failure>> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let limit = left.min(self.settings.attempt_timeout);
        let (result, change) = upstream.query(q, limit, self.settings.max_fails).await;
        self.report(upstream, change);
        if let Err(failure) = &result {
            debug!(upstream = upstream.name(), name = %q.query.name(), "{failure}");
        }
        Some(result)
    }

    fn report(&self, upstream: &Upstream, change: Change) {
        match change {
            Change::None => {}
            Change::WentDown => match upstream.health.fall_log().fell(std::time::Instant::now()) {
                Some(unlogged) => self.log_fall(upstream, unlogged),
                None => debug!(upstream = upstream.name(), "down again"),
            },
            Change::CameBack => {
                if upstream.health.fall_log().returned() {
                    info!("upstream {} answers again", upstream.name());
                }
            }
        }
    }

    /// Logs a fall of `upstream`, after `unlogged` that were not.
    fn log_fall(&self, upstream: &Upstream, unlogged: u32) {
        let more = match unlogged {
            0 => String::new(),
            n => format!(" (and {n} times more since the last such line)"),
        };
        warn!(
            "upstream {} is down after {} failed queries in a row{more}; probing it every {}s",
            upstream.name(),
            self.settings.max_fails,
            PROBE_INTERVAL.as_secs()
        );
    }

    /// Whether every upstream is down: a query would most likely wait in vain.
    pub fn all_down(&self) -> bool {
        self.upstreams.iter().all(|u| u.health.is_down())
    }

    /// Asks the upstreams that are down, every `PROBE_INTERVAL`, for the root's name servers;
    /// any reply but SERVFAIL brings one back. Runs until dropped.
    pub async fn probe_down(self: Arc<Self>) {
        let mut tick = interval(PROBE_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut probes = JoinSet::new();
            for i in 0..self.upstreams.len() {
                let upstream = &self.upstreams[i];
                if upstream.health.is_down() {
                    let now = std::time::Instant::now();
                    let lasting = upstream.health.fall_log().still_down(now, PROBE_INTERVAL);
                    if let Some(unlogged) = lasting {
                        self.log_fall(upstream, unlogged);
                    }
                    let pool = self.clone();
                    probes.spawn(async move { pool.probe(&pool.upstreams[i]).await });
                }
            }
            probes.join_all().await;
        }
    }

    async fn probe(&self, upstream: &Upstream) {
        let query = question::probe();
        let q = Question {
            query: &query,
            dnssec_ok: false,
            checking_disabled: false,
        };
        let start = Instant::now();
        match timeout(self.settings.attempt_timeout, upstream.exchange(&q)).await {
            Ok(Ok(reply)) if reply.response_code() != ResponseCode::ServFail => {
                if upstream.health.recovered(start.elapsed())
                    && upstream.health.fall_log().returned()
                {
                    info!("upstream {} answers probes again", upstream.name());
                }
            }
            Ok(Ok(reply)) => {
                debug!(
                    upstream = upstream.name(),
                    "probe answered {}",
                    reply.response_code()
                );
            }
            Ok(Err(e)) => debug!(upstream = upstream.name(), "probe failed: {e}"),
            Err(_) => debug!(upstream = upstream.name(), "probe timed out"),
        }
    }

    /// Each upstream's name and the latencies of the queries it answered, in the configured
    /// order.
    pub fn latencies(&self) -> impl Iterator<Item = (&str, &Histogram)> {
        self.upstreams
            .iter()
            .map(|u| (u.name(), u.health.latency()))
    }

    /// Counters of each upstream, in the configured order.
    pub fn counters(&self) -> Vec<UpstreamCounters> {
        self.upstreams
            .iter()
            .map(|u| {
                let s = u.health.snapshot();
                UpstreamCounters {
                    upstream: u.name().to_owned(),
                    state: if s.down {
                        UpstreamState::Down
                    } else {
                        UpstreamState::Up
                    },
                    queries: s.queries,
                    failures: s.failures,
                    timeouts: s.timeouts,
                    latency_ms: s.srtt.map(|d| (d.as_secs_f64() * 10_000.0).round() / 10.0),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    use hickory_proto::{
        op::{MessageType, Query},
        rr::{Name, RecordType},
    };
    use tokio::net::UdpSocket;

    use super::*;

    /// A loopback upstream answering every query with `rcode`, or never; it counts queries.
    async fn upstream(rcode: Option<ResponseCode>) -> (UpstreamSpec, Arc<AtomicUsize>) {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let spec = UpstreamSpec::udp(server.local_addr().unwrap());
        let queries = Arc::new(AtomicUsize::new(0));
        let count = queries.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let (len, from) = server.recv_from(&mut buf).await.unwrap();
                count.fetch_add(1, Relaxed);
                let Some(rcode) = rcode else { continue };
                let mut m = Message::from_vec(&buf[..len]).unwrap();
                m.set_message_type(MessageType::Response)
                    .set_response_code(rcode);
                server.send_to(&m.to_vec().unwrap(), from).await.unwrap();
            }
        });
        (spec, queries)
    }

    fn pool(specs: Vec<UpstreamSpec>, retries: u32) -> Pool {
        pool_failing_after(specs, retries, 0)
    }

    fn pool_failing_after(specs: Vec<UpstreamSpec>, retries: u32, max_fails: u32) -> Pool {
        let settings = PoolSettings {
            strategy: Strategy::Ordered,
            attempt_timeout: Duration::from_millis(100),
            max_fails,
            retries,
        };
        Pool::new(specs, settings, None).unwrap()
    }

    async fn resolve(pool: &Pool) -> Option<Message> {
        let query = Query::query(Name::from_ascii("www.t.").unwrap(), RecordType::A);
        let q = Question {
            query: &query,
            dnssec_ok: false,
            checking_disabled: false,
        };
        pool.resolve(&q, Instant::now() + Duration::from_secs(2))
            .await
    }

    #[tokio::test]
    async fn failures_move_on_until_one_answers_and_timeouts_get_a_second_try() {
        let (silent, silent_queries) = upstream(None).await;
        let (servfail, servfail_queries) = upstream(Some(ResponseCode::ServFail)).await;
        let (good, good_queries) = upstream(Some(ResponseCode::NXDomain)).await;
        let p = pool(vec![silent.clone(), servfail.clone(), good], 5);
        let reply = resolve(&p).await.unwrap();
        assert_eq!(reply.response_code(), ResponseCode::NXDomain);
        let counts =
            |c: &[&Arc<AtomicUsize>]| c.iter().map(|c| c.load(Relaxed)).collect::<Vec<_>>();
        assert_eq!(
            counts(&[&silent_queries, &servfail_queries, &good_queries]),
            [1, 1, 1]
        );
        let p = pool(vec![silent, servfail], 5);
        assert!(resolve(&p).await.is_none());
        assert_eq!(counts(&[&silent_queries, &servfail_queries]), [3, 2]);
        let c = p.counters();
        assert_eq!((c[0].queries, c[0].timeouts, c[1].failures), (2, 2, 1));
    }

    #[tokio::test]
    async fn servfail_and_refused_never_take_an_upstream_down_but_silence_does() {
        let (servfail, _) = upstream(Some(ResponseCode::ServFail)).await;
        let (refused, _) = upstream(Some(ResponseCode::Refused)).await;
        let p = pool_failing_after(vec![servfail, refused], 1, 3);
        for _ in 0..5 {
            assert!(resolve(&p).await.is_none());
        }
        let c = p.counters();
        assert_eq!((c[0].failures, c[1].failures), (5, 5));
        assert!(p.upstreams.iter().all(|u| !u.health.is_down()));
        let (silent, _) = upstream(None).await;
        let p = pool_failing_after(vec![silent], 0, 3);
        for _ in 0..3 {
            assert!(resolve(&p).await.is_none());
        }
        assert!(p.all_down());
    }

    #[tokio::test]
    async fn retries_bound_the_queries_one_miss_costs() {
        let mut specs = Vec::new();
        let mut counts = Vec::new();
        for _ in 0..4 {
            let (spec, count) = upstream(Some(ResponseCode::ServFail)).await;
            specs.push(spec);
            counts.push(count);
        }
        assert!(resolve(&pool(specs.clone(), 1)).await.is_none());
        assert!(resolve(&pool(specs, 0)).await.is_none());
        let counts: Vec<usize> = counts.iter().map(|c| c.load(Relaxed)).collect();
        assert_eq!(counts, [2, 1, 0, 0]);
    }
}
