//! The control socket: one JSON request per line, one JSON response line each.

use std::{
    io::{BufRead, BufReader, Write},
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
    access::{Access, LimitedClient},
    reload::Reloader,
    stats::{Report, Stats, with_allowed},
    upstream::pool::Pool,
    xdp::XdpMaps,
};

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
}

/// The reply to `Reload`: the access settings now in force.
#[derive(Serialize, Deserialize, Debug)]
struct Reloaded {
    reloaded: String,
}

/// The reply to a request that failed.
#[derive(Serialize, Deserialize, Debug)]
struct ErrorReply {
    error: String,
}

/// What the control commands read.
pub struct State {
    pub stats: Arc<Stats>,
    pub xdp: Option<Arc<XdpMaps>>,
    pub upstreams: Arc<Pool>,
    pub access: Arc<Access>,
    pub reloader: Arc<Reloader>,
}

impl State {
    fn report(&self) -> anyhow::Result<Report> {
        Ok(Report {
            xdp: self
                .xdp
                .as_ref()
                .map(|x| x.counters().map(with_allowed))
                .transpose()?,
            daemon: self.stats.snapshot(),
            upstreams: self.upstreams.counters(),
        })
    }

    fn answer(&self, line: &str) -> String {
        let reply = serde_json::from_str::<Request>(line)
            .map_err(|e| anyhow!("bad request: {e}"))
            .and_then(|request| match request {
                Request::Stats => Ok(serde_json::to_value(self.report()?)?),
                Request::Top { count } => Ok(serde_json::to_value(self.access.top(count)?)?),
                Request::Reload => {
                    let reloaded = self.reloader.reload().inspect_err(|e| {
                        warn!("reload failed, the rules in force are kept: {e:#}");
                    })?;
                    info!("reloaded: {reloaded}");
                    Ok(serde_json::to_value(Reloaded { reloaded })?)
                }
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
        let mut reply = state.answer(&line);
        reply.push('\n');
        if let Err(e) = writer.write_all(reply.as_bytes()).await {
            debug!("control reply failed: {e}");
            return;
        }
    }
}

/// Sends `request` to the daemon at `path` and returns its reply line.
fn ask(path: &Path, request: &Request) -> anyhow::Result<String> {
    let mut stream = StdUnixStream::connect(path)
        .map_err(|e| anyhow!("no dnsxdp daemon at {}: {e}", path.display()))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .context("sending to the daemon")?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .context("reading the daemon's reply")?;
    if reply.is_empty() {
        bail!(
            "the daemon at {} closed the connection without replying",
            path.display()
        );
    }
    if let Ok(ErrorReply { error }) = serde_json::from_str(&reply) {
        bail!("the daemon says: {error}");
    }
    Ok(reply)
}

/// `dnsxdp stats`: prints the running daemon's counters as JSON or as a table.
pub fn print_stats(path: &Path, json: bool) -> anyhow::Result<()> {
    let reply = ask(path, &Request::Stats)?;
    let report: Report =
        serde_json::from_str(&reply).context("the daemon's stats reply is not valid")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// `dnsxdp stats --top N`: the client prefixes the rate limit stopped most often.
pub fn print_top(path: &Path, count: usize, json: bool) -> anyhow::Result<()> {
    let reply = ask(path, &Request::Top { count })?;
    let top: Vec<LimitedClient> =
        serde_json::from_str(&reply).context("the daemon's top reply is not valid")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&top)?);
        return Ok(());
    }
    let width = top.iter().map(|c| c.prefix.len()).max().unwrap_or(0).max(6);
    println!("{:<width$}  limited", "prefix");
    for c in &top {
        println!("{:<width$}  {:>7}", c.prefix, c.limited);
    }
    Ok(())
}

/// `dnsxdp reload`: has the daemon apply its config file's ACL and rate limit again.
pub fn reload(path: &Path) -> anyhow::Result<()> {
    let reply = ask(path, &Request::Reload)?;
    let Reloaded { reloaded } =
        serde_json::from_str(&reply).context("the daemon's reload reply is not valid")?;
    println!("reloaded: {reloaded}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let settings = crate::upstream::pool::PoolSettings {
            strategy: Default::default(),
            attempt_timeout: std::time::Duration::from_secs(1),
            max_fails: 3,
            retries: 2,
        };
        let upstream = crate::upstream::spec::UpstreamSpec::parse("198.18.0.2").unwrap();
        let args = crate::cli::RunArgs {
            no_xdp: true,
            upstream: vec!["198.18.0.2".into()],
            ratelimit_qps: Some(10),
            ..Default::default()
        };
        let config =
            crate::config::Config::resolve(args.settings(), &[], || unreachable!()).unwrap();
        let stats = Arc::new(Stats::default());
        let tables = Box::new(crate::access::memory::MemoryTables::default());
        let access = Arc::new(Access::new(tables, &config.access, vec![], stats.clone()).unwrap());
        State {
            stats,
            xdp: None,
            upstreams: Arc::new(Pool::new(vec![upstream], settings, None).unwrap()),
            access: access.clone(),
            reloader: Arc::new(Reloader::new(args, config, access)),
        }
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
        let reply = state.answer(r#"{"cmd":"top","count":5}"#);
        let top: Vec<LimitedClient> = serde_json::from_str(&reply).unwrap();
        assert_eq!(
            top,
            [LimitedClient {
                prefix: "192.168.1.9/32".into(),
                limited: 5
            }]
        );
        let reply = state.answer(r#"{"cmd":"reload"}"#);
        let Reloaded { reloaded } = serde_json::from_str(&reply).unwrap();
        assert!(reloaded.contains("10 queries/s"), "{reloaded}");
    }

    #[test]
    fn stats_request_gets_a_report() {
        let reply = state().answer(r#"{"cmd":"stats"}"#);
        let report: Report = serde_json::from_str(&reply).unwrap();
        assert!(report.xdp.is_none());
        assert_eq!(report.daemon.queries, 0);
        assert_eq!(report.upstreams[0].upstream, "udp://198.18.0.2:53");
    }

    #[test]
    fn unknown_commands_get_an_error() {
        let reply = state().answer(r#"{"cmd":"launch"}"#);
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert!(v["error"].as_str().unwrap().contains("launch"));
        let reply = state().answer("not json");
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
        let reply = tokio::task::spawn_blocking(move || ask(&client_path, &Request::Stats))
            .await
            .unwrap()
            .unwrap();
        assert!(reply.contains("\"daemon\""));
        server.abort();
        let _ = server.await;
        assert!(!path.exists());
        let err = ask(&path, &Request::Stats).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("no dnsxdp daemon at {}: ", path.display())),
            "{err}"
        );
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
}
