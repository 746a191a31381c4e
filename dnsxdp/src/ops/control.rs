//! The control socket: one JSON request per line, one JSON response line each.

use std::{
    os::unix::{fs::PermissionsExt, net::UnixStream as StdUnixStream},
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context as _, anyhow, bail};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader},
    net::{UnixListener, UnixStream},
};
use tracing::{debug, info, warn};

use crate::{
    access::Access,
    dns::clock,
    filter::ListReport,
    kernel::cache::KernelCache,
    kernel::maps::XdpMaps,
    ops::cache_ops::{self, Selection},
    ops::stats::{CacheReport, DaemonCounters, GroupBlocked, Lookups, Report, with_allowed},
    resolve::Resolver,
    resolve::lists::Keeper,
    resolve::query_log::QueryLog,
    upstream::routes::Routes,
};

const NO_LISTS: &str = "no block lists: the daemon runs without --block-list";

/// A request; `cmd` names it. New commands are new variants.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Stats,
    /// The `count` client prefixes the rate limit stopped most often.
    Top {
        count: usize,
    },
    /// Read the config file again and apply its ACL and rate limit.
    Reload,
    /// The cached answers `selection` picks from both layers: the first `limit` (all if null)
    /// in name order.
    CacheList {
        selection: Selection,
        limit: Option<usize>,
    },
    /// Remove the answers `selection` picks from both layers.
    CacheFlush {
        selection: Selection,
    },
    /// The block and allow lists in force: `dnsxdp lists`.
    Lists,
    /// Fetch every list again, then answer as `Lists`: `dnsxdp lists refresh`.
    ListsRefresh,
    /// Detach XDP, remove the pins and exit: `dnsxdp stop`.
    Stop,
}

/// The reply to `Stop`, sent before the daemon shuts down.
#[derive(Serialize, Deserialize, Debug)]
pub struct Stopping {
    pub stopping: bool,
}

/// The reply to `Reload`: the access settings now in force.
#[derive(Serialize, Deserialize, Debug)]
pub struct Reloaded {
    pub reloaded: String,
}

/// The reply to a request that failed.
#[derive(Serialize, Deserialize, Debug)]
pub struct ErrorReply {
    pub error: String,
}

/// What the control commands read.
pub struct State {
    pub query_log: Option<Arc<QueryLog>>,
    pub xdp: Option<Arc<XdpMaps>>,
    pub upstreams: Arc<Routes>,
    pub access: Arc<Access>,
    /// Puts the config file's access settings in force and describes them.
    pub reload: Box<dyn Fn() -> anyhow::Result<String> + Send + Sync>,
    /// Holds the daemon cache.
    pub resolver: Arc<Resolver>,
    /// Keeps the block and allow lists, when there are any.
    pub lists: Option<Arc<Keeper>>,
    /// Told when `dnsxdp stop` asks the daemon to stop.
    pub stop: Arc<tokio::sync::Notify>,
}

impl State {
    /// What `dnsxdp stats` prints and the metrics endpoint serves.
    pub(crate) fn report(&self) -> anyhow::Result<Report> {
        let xdp = self
            .xdp
            .as_ref()
            .map(|x| x.counters().map(with_allowed))
            .transpose()?;
        let daemon = DaemonCounters {
            resolve: self.resolver.counts(),
            access: self.access.counts(),
            query_log_dropped: self.query_log.as_ref().map_or(0, |log| log.dropped()),
        };
        let now = clock::now_ns();
        let kernel_size = self.kernel().map(|k| k.size(now)).transpose()?;
        let daemon_size = self.resolver.lock_cache().size(now);
        let cache = CacheReport::new(
            kernel_size.zip(xdp.as_ref()),
            daemon_size,
            Lookups::of(&daemon),
        );
        Ok(Report {
            xdp,
            daemon,
            cache,
            upstreams: self.upstreams.pools().flat_map(|p| p.counters()).collect(),
            groups: self.groups()?,
        })
    }

    /// The blocked answers of each client group, in both layers; none without groups.
    fn groups(&self) -> anyhow::Result<Vec<GroupBlocked>> {
        let Some(filter) = self.lists.as_ref().map(|k| &k.filter) else {
            return Ok(Vec::new());
        };
        let groups = filter.groups();
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let daemon = filter.blocked_by_group();
        let count = daemon.len() as u8;
        let xdp = self
            .xdp
            .as_ref()
            .map(|x| x.group_blocked(count))
            .transpose()?;
        Ok((groups.ids().zip(daemon))
            .map(|(g, daemon)| GroupBlocked {
                group: groups.name(g).to_string(),
                xdp: xdp.as_ref().and_then(|x| x.get(usize::from(g)).copied()),
                daemon,
            })
            .collect())
    }

    fn lists(&self) -> anyhow::Result<Vec<ListReport>> {
        let keeper = self.lists.as_ref().context(NO_LISTS)?;
        Ok(keeper.filter.report())
    }

    fn kernel(&self) -> Option<&KernelCache> {
        self.xdp.as_deref().map(|x| &x.cache)
    }

    /// The reply line to `request`; to one that could not be parsed, why.
    fn answer(&self, request: anyhow::Result<Request>) -> String {
        let reply = request.and_then(|request| match request {
            Request::Stats => Ok(serde_json::to_value(self.report()?)?),
            Request::Top { count } => Ok(serde_json::to_value(self.access.top(count)?)?),
            Request::Reload => {
                let reloaded = (self.reload)().inspect_err(|e| {
                    warn!("reload failed, the rules in force are kept: {e:#}");
                })?;
                info!("reloaded: {reloaded}");
                Ok(serde_json::to_value(Reloaded { reloaded })?)
            }
            Request::CacheList { selection, limit } => {
                let listing = cache_ops::list(&self.resolver, self.kernel(), &selection, limit)?;
                Ok(serde_json::to_value(listing)?)
            }
            Request::CacheFlush { selection } => {
                let flushed = cache_ops::flush(&self.resolver, self.kernel(), &selection)?;
                info!("flushed {selection}: {}", flushed.describe());
                Ok(serde_json::to_value(flushed)?)
            }
            Request::Lists => Ok(serde_json::to_value(self.lists()?)?),
            Request::ListsRefresh => {
                let keeper = self.lists.as_ref().context(NO_LISTS)?;
                // This runs on a blocking thread: waiting here holds no query up.
                keeper
                    .refresh()
                    .blocking_recv()
                    .context("the lists' keeper stopped")?;
                Ok(serde_json::to_value(self.lists()?)?)
            }
            // The daemon is told once the reply is sent (`connection`).
            Request::Stop => Ok(serde_json::to_value(Stopping { stopping: true })?),
        });
        match reply {
            Ok(value) => value.to_string(),
            Err(e) => serde_json::to_string(&ErrorReply {
                error: format!("{e:#}"),
            })
            .unwrap_or_default(),
        }
    }
}

/// The bound control socket; its file is removed when this is dropped.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Binds `path`, creating its directory. A socket file nobody answers on is left over
    /// from a daemon that died and is replaced; one that answers belongs to a running daemon.
    pub fn bind(path: &Path) -> anyhow::Result<ControlSocket> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating {} for the control socket", dir.display()))?;
        }
        if path.exists() {
            if StdUnixStream::connect(path).is_ok() {
                bail!(
                    "control socket {} is in use — is another dnsxdp running? (pass --control)",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale control socket {}", path.display()))?;
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("binding control socket {}", path.display()))?;
        // Owner and group only: later commands will change the daemon's state.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .with_context(|| format!("setting permissions of {}", path.display()))?;
        Ok(ControlSocket {
            listener,
            path: path.to_owned(),
        })
    }

    pub async fn serve(&self, state: Arc<State>) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, state.clone()));
                }
                Err(e) => warn!("control socket accept failed: {e}"),
            }
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn connection(stream: UnixStream, state: Arc<State>) {
    let (reader, mut writer) = stream.into_split();
    let mut lines = AsyncBufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        let request = parse(&line);
        let stop = matches!(request, Ok(Request::Stop));
        // Off the runtime's workers: reading a large kernel map takes a while, and queries
        // should not wait behind it.
        let answering = state.clone();
        let Ok(mut reply) = tokio::task::spawn_blocking(move || answering.answer(request)).await
        else {
            return;
        };
        reply.push('\n');
        if let Err(e) = writer.write_all(reply.as_bytes()).await {
            debug!("control reply failed: {e}");
            return;
        }
        // Only now: the shutdown it starts ends this task, and `dnsxdp stop` waits for the reply.
        if stop {
            state.stop.notify_one();
            return;
        }
    }
}

fn parse(line: &str) -> anyhow::Result<Request> {
    serde_json::from_str(line).map_err(|e| anyhow!("bad request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        access::LimitedClient,
        ops::cache_ops::{Flushed, Listing},
    };

    fn state() -> State {
        let pool_settings = crate::upstream::pool::PoolSettings {
            strategy: Default::default(),
            attempt_timeout: std::time::Duration::from_secs(1),
            max_fails: 3,
            retries: 2,
        };
        let upstream = crate::upstream::spec::UpstreamSpec::parse("198.18.0.2").unwrap();
        let limited = crate::access::settings::Settings {
            ratelimit_qps: Some(10),
            ..Default::default()
        };
        let policy = crate::access::AccessPolicy::from_settings(&limited).unwrap();
        let tables = Box::new(crate::access::memory::MemoryTables::default());
        let access =
            Arc::new(Access::new(tables, &policy, crate::access::XdpPaths::default()).unwrap());
        let pool = Arc::new(
            crate::upstream::pool::Pool::new(vec![upstream], pool_settings, None).unwrap(),
        );
        let resolve = crate::resolve::settings::Settings {
            serve_stale: Some(std::time::Duration::ZERO),
            ..Default::default()
        };
        let routes = Arc::new(Routes::single(pool));
        let resolver = Resolver::new(
            routes.clone(),
            &resolve.config(8).unwrap(),
            None,
            None,
            None,
        );
        let reloaded = access.clone();
        State {
            query_log: None,
            xdp: None,
            upstreams: routes,
            access,
            reload: Box::new(move || {
                reloaded.apply(&policy)?;
                Ok(policy.summary())
            }),
            resolver: Arc::new(resolver),
            lists: None,
            stop: Default::default(),
        }
    }

    /// Puts an answer with TTL 300 for `name` and `qtype` in the daemon cache.
    fn cache(state: &State, name: &str, qtype: hickory_proto::rr::RecordType) {
        use hickory_proto::{
            op::{Message, Query, ResponseCode},
            rr::{Name, RData, Record, rdata::A},
        };
        let name = Name::from_ascii(name).unwrap();
        let query = crate::dns::query::ClientQuery::plain(Query::query(name.clone(), qtype));
        let mut msg = Message::new();
        msg.add_query(Query::query(name.clone(), qtype));
        msg.add_answer(Record::from_rdata(
            name,
            300,
            RData::A(A::new(198, 18, 0, 1)),
        ));
        msg.set_response_code(ResponseCode::NoError);
        let now = clock::now_ns();
        let answer = crate::dns::answer::Answer::from_upstream(msg, now, &Default::default());
        state
            .resolver
            .lock_cache()
            .insert(crate::resolve::cache::Key::of(&query), Arc::new(answer));
    }

    fn listing(state: &State, request: &str) -> Listing {
        serde_json::from_str(&state.answer(parse(request))).unwrap()
    }

    fn list_request(selection: Selection) -> String {
        let request = Request::CacheList {
            selection,
            limit: None,
        };
        serde_json::to_string(&request).unwrap()
    }

    #[test]
    fn cache_requests_list_get_and_flush_the_daemon_cache() {
        use hickory_proto::rr::RecordType;
        let state = state();
        for name in ["www.example.test.", "a.example.test.", "badexample.test."] {
            cache(&state, name, RecordType::A);
        }
        cache(&state, "www.example.test.", RecordType::MX);
        let all = listing(
            &state,
            r#"{"cmd":"cache_list","selection":{"match":"all"},"limit":2}"#,
        );
        assert_eq!(all.total, 4);
        // Canonical order: the zone's names together, after the name that sorts first.
        let names: Vec<&str> = all.answers.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["badexample.test.", "a.example.test."]);
        let www = Selection::name("www.example.test", None).unwrap();
        let www = listing(&state, &list_request(www));
        let types: Vec<&str> = www.answers.iter().map(|a| a.qtype.as_str()).collect();
        assert_eq!(types, ["A", "MX"]);
        let a = &www.answers[0];
        assert_eq!(
            (a.cache, a.rcode.as_str(), a.hits),
            (cache_ops::Layer::Daemon, "NOERROR", 0)
        );
        assert!(a.ttl == 300 || a.ttl == 299, "{}", a.ttl);

        let flush = |selection: &str| -> Flushed {
            let request = format!(r#"{{"cmd":"cache_flush","selection":{selection}}}"#);
            serde_json::from_str(&state.answer(parse(&request))).unwrap()
        };
        let flushed = flush(r#"{"match":"name","name":"www.example.test.","qtype":15}"#);
        assert_eq!(
            flushed,
            Flushed {
                kernel: None,
                daemon: 1
            }
        );
        let flushed = flush(r#"{"match":"suffix","zone":"example.test."}"#);
        assert_eq!(flushed.daemon, 2);
        let left = listing(&state, &list_request(Selection::All));
        assert_eq!(left.answers[0].name, "badexample.test.");
        assert_eq!(flush(r#"{"match":"all"}"#).daemon, 1);
        let bad = r#"{"cmd":"cache_list","selection":{"match":"name","name":"a..b"},"limit":1}"#;
        let bad = state.answer(parse(bad));
        assert!(bad.contains("invalid name 'a..b'"), "{bad}");
    }

    #[test]
    fn top_lists_limited_clients_and_reload_describes_the_rules() {
        let state = state();
        let query = [0u8; 12];
        let peer = "192.168.1.9".parse().unwrap();
        // 10 queries a second, bursts of 10, and as many again over TCP.
        for _ in 0..25 {
            state.access.screen(&query, peer, crate::access::Via::Tcp);
        }
        let reply = state.answer(parse(r#"{"cmd":"top","count":5}"#));
        let top: Vec<LimitedClient> = serde_json::from_str(&reply).unwrap();
        assert_eq!(
            top,
            [LimitedClient {
                prefix: "192.168.1.9/32".into(),
                limited: 5
            }]
        );
        let reply = state.answer(parse(r#"{"cmd":"reload"}"#));
        let Reloaded { reloaded } = serde_json::from_str(&reply).unwrap();
        assert!(reloaded.contains("10 queries/s"), "{reloaded}");
    }

    #[test]
    fn stats_request_gets_a_report() {
        let reply = state().answer(parse(r#"{"cmd":"stats"}"#));
        let report: Report = serde_json::from_str(&reply).unwrap();
        assert!(report.xdp.is_none());
        assert_eq!(report.daemon.resolve.queries, 0);
        assert!(report.cache.kernel.is_none());
        assert_eq!(report.cache.daemon.size.capacity, 8);
        assert_eq!(report.upstreams[0].upstream, "udp://198.18.0.2:53");
    }

    #[test]
    fn unknown_commands_get_an_error() {
        let reply = state().answer(parse(r#"{"cmd":"launch"}"#));
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert!(v["error"].as_str().unwrap().contains("launch"));
        let reply = state().answer(parse("not json"));
        assert!(serde_json::from_str::<ErrorReply>(&reply).is_ok());
    }

    #[tokio::test]
    async fn round_trip_over_the_socket_and_cleanup() {
        let dir = std::env::temp_dir().join(format!("dnsxdp-control-test-{}", std::process::id()));
        let path = dir.join("sub/control.sock");
        let socket = ControlSocket::bind(&path).unwrap();
        assert!(ControlSocket::bind(&path).is_err());
        let server = tokio::spawn(async move {
            socket.serve(Arc::new(state())).await;
        });
        let client_path = path.clone();
        let reply = tokio::task::spawn_blocking(move || {
            use std::io::{BufRead as _, Write as _};
            let mut stream = std::os::unix::net::UnixStream::connect(client_path)?;
            stream.write_all(b"{\"cmd\":\"stats\"}\n")?;
            let mut reply = String::new();
            std::io::BufReader::new(stream).read_line(&mut reply)?;
            std::io::Result::Ok(reply)
        })
        .await
        .unwrap()
        .unwrap();
        assert!(reply.contains("\"daemon\""));
        server.abort();
        let _ = server.await;
        assert!(!path.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stale_socket_files_are_replaced() {
        let dir = std::env::temp_dir().join(format!("dnsxdp-stale-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let socket = rt.block_on(async { ControlSocket::bind(&path) }).unwrap();
        drop(socket);
        assert!(!path.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn the_stop_reply_is_sent_before_the_daemon_is_told_to_stop() {
        use tokio::io::AsyncReadExt as _;
        let state = Arc::new(state());
        let (ours, theirs) = UnixStream::pair().unwrap();
        let stop = state.stop.clone();
        let notified = stop.notified();
        let (mut reading, mut writing) = ours.into_split();
        let serving = tokio::spawn(connection(theirs, state));
        writing.write_all(b"{\"cmd\":\"stop\"}\n").await.unwrap();
        notified.await;
        // The daemon shuts down from here, which ends this task wherever it is.
        serving.abort();
        let _ = serving.await;
        let mut reply = String::new();
        reading.read_to_string(&mut reply).await.unwrap();
        assert_eq!(reply, "{\"stopping\":true}\n");
    }
}
