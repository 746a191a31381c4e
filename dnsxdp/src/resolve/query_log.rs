//! The query log: one JSON object per line for every answer the daemon sends and for sampled
//! XDP hits. Lines go through a bounded queue to a writer thread, so a slow disk never delays
//! an answer; when the queue is full, lines are dropped and counted.

use std::{
    fs::OpenOptions,
    io::{self, BufWriter, Write},
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use serde::Serialize;

use crate::dns::reply::Transport;

/// Lines waiting for the writer at most.
const QUEUE: usize = 65_536;
/// The longest a written line waits in the writer's buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Where query log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryLogTarget {
    Stdout,
    File(PathBuf),
}

impl QueryLogTarget {
    /// For messages: the path, or standard output.
    pub fn describe(&self) -> String {
        match self {
            QueryLogTarget::Stdout => "standard output".into(),
            QueryLogTarget::File(path) => path.display().to_string(),
        }
    }

    /// `-` is standard output.
    pub fn from_path(path: PathBuf) -> QueryLogTarget {
        match path.as_os_str() == "-" {
            true => QueryLogTarget::Stdout,
            false => QueryLogTarget::File(path),
        }
    }
}

/// Which part of dnsxdp answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// The XDP program, from the kernel cache.
    Xdp,
    /// The daemon's cache.
    Cache,
    /// An upstream, for this query or one it joined.
    Upstream,
    /// An expired answer, as no upstream answered.
    Stale,
    /// The daemon itself without a lookup: an error such as FORMERR, REFUSED, SERVFAIL.
    Local,
    /// A blocklist.
    Blocked,
    /// Local records (--local-record, --hosts-file).
    Records,
}

/// One line of the log.
#[derive(Debug, Serialize)]
pub struct Line {
    /// RFC 3339, UTC, in milliseconds.
    pub time: String,
    pub client: SocketAddr,
    /// How the query came: `udp` (XDP hits too), `tcp`, `tls` or `https`.
    pub transport: Transport,
    /// Presentation format, as asked (XDP hits: lower-cased).
    pub name: String,
    #[serde(rename = "type")]
    pub qtype: String,
    pub rcode: String,
    pub layer: Layer,
    /// The list rule that blocked the name, for a blocked answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<Box<str>>,
    /// From the query's arrival to the answer; null for XDP hits, which take under a
    /// microsecond of the kernel's time and are never seen by the daemon.
    pub latency_us: Option<u64>,
}

pub struct QueryLog {
    queue: SyncSender<Message>,
    /// Lines lost because the writer fell behind.
    dropped: AtomicU64,
}

/// What the writer thread is sent.
enum Message {
    Line(Line),
    /// Close the file and open it again, after logrotate moved it away.
    Reopen,
}

impl QueryLog {
    /// Opens `target` (a file is appended to) and starts the writer thread; lines it drops
    /// are counted.
    pub fn open(target: &QueryLogTarget) -> anyhow::Result<QueryLog> {
        let out = open_target(target)
            .with_context(|| format!("query-log: opening {}", target.describe()))?;
        let (queue, messages) = sync_channel(QUEUE);
        let target = target.clone();
        std::thread::Builder::new()
            .name("query-log".into())
            .spawn(move || write_lines(messages, out, &target))
            .context("query-log: starting the writer")?;
        Ok(QueryLog {
            queue,
            dropped: AtomicU64::new(0),
        })
    }

    /// Lines lost so far because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    pub fn log(&self, line: Line) {
        if self.queue.try_send(Message::Line(line)).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Has the file opened again by name (on SIGHUP), so that a rotated log is not written on.
    pub fn reopen(&self) {
        if self.queue.try_send(Message::Reopen).is_err() {
            tracing::warn!("query-log: the writer is behind; the log was not reopened");
        }
    }
}

fn open_target(target: &QueryLogTarget) -> io::Result<BufWriter<Box<dyn Write + Send>>> {
    let out: Box<dyn Write + Send> = match target {
        QueryLogTarget::Stdout => Box::new(io::stdout()),
        QueryLogTarget::File(path) => {
            Box::new(OpenOptions::new().create(true).append(true).open(path)?)
        }
    };
    Ok(BufWriter::new(out))
}

/// Writes lines until every sender is gone, flushing at least every `FLUSH_EVERY`.
fn write_lines(
    messages: Receiver<Message>,
    mut out: BufWriter<Box<dyn Write + Send>>,
    target: &QueryLogTarget,
) {
    let mut flushed = Instant::now();
    loop {
        match messages.recv_timeout(FLUSH_EVERY) {
            Ok(Message::Reopen) => {
                let _ = out.flush();
                match open_target(target) {
                    Ok(reopened) => out = reopened,
                    Err(e) => tracing::warn!(
                        "query-log: reopening {} failed, writing on: {e}",
                        target.describe()
                    ),
                }
            }
            Ok(Message::Line(line)) => {
                let written = serde_json::to_writer(&mut out, &line)
                    .map_err(io::Error::from)
                    .and_then(|()| out.write_all(b"\n"));
                if let Err(e) = written {
                    tracing::warn!("query-log: writing failed, the log stops: {e}");
                    return;
                }
                if flushed.elapsed() < FLUSH_EVERY {
                    continue;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let _ = out.flush();
        flushed = Instant::now();
    }
    let _ = out.flush();
}

/// The mnemonic of an RCODE, as dig prints it.
pub fn rcode_name(rcode: u16) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        16 => "BADVERS".into(),
        n => format!("RCODE{n}"),
    }
}

/// `at` as RFC 3339 in UTC with milliseconds, e.g. `2026-11-21T16:03:35.123Z`.
pub fn rfc3339(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60,
        since.subsec_millis()
    )
}

/// Year, month, day of the `days`th day after 1970-01-01 (proleptic Gregorian calendar;
/// H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_276_415_123);
        assert_eq!(rfc3339(at), "2026-11-21T15:53:35.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // A leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn a_reopen_writes_on_in_a_new_file_of_the_same_name() {
        let path = std::env::temp_dir().join(format!("dnsxdp-qlog-rot-{}", std::process::id()));
        let rotated = path.with_extension("1");
        let log = QueryLog::open(&QueryLogTarget::File(path.clone())).unwrap();
        let line = |name: &str| Line {
            time: rfc3339(UNIX_EPOCH),
            client: "198.18.1.2:5353".parse().unwrap(),
            transport: Transport::Udp,
            name: name.into(),
            qtype: "A".into(),
            rcode: "NOERROR".into(),
            layer: Layer::Xdp,
            rule: None,
            latency_us: None,
        };
        log.log(line("before."));
        wait_for_line(&path);
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        log.log(line("after."));
        let after = wait_for_line(&path);
        let before = std::fs::read_to_string(&rotated).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(&rotated).unwrap();
        assert!(before.contains("\"before.\"") && !before.contains("after."));
        assert!(after.contains("\"after.\"") && !after.contains("before."));
    }

    /// The file's text once it ends a line, waiting for the writer's flush.
    fn wait_for_line(path: &std::path::Path) -> String {
        for _ in 0..50 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.ends_with('\n') {
                return text;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("nothing written to {}", path.display())
    }

    #[test]
    fn lines_are_json_with_the_documented_keys() {
        let dir = std::env::temp_dir().join(format!("dnsxdp-qlog-{}", std::process::id()));
        let log = QueryLog::open(&QueryLogTarget::File(dir.clone())).unwrap();
        log.log(Line {
            time: rfc3339(UNIX_EPOCH),
            client: "198.18.1.2:5353".parse().unwrap(),
            transport: Transport::Udp,
            name: "www.example.test.".into(),
            qtype: "A".into(),
            rcode: "NOERROR".into(),
            layer: Layer::Cache,
            rule: None,
            latency_us: Some(42),
        });
        let dropped = log.dropped();
        drop(log);
        let mut text = String::new();
        for _ in 0..50 {
            text = std::fs::read_to_string(&dir).unwrap_or_default();
            if text.ends_with('\n') {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(dropped, 0);
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "time": "1970-01-01T00:00:00.000Z",
                "client": "198.18.1.2:5353",
                "transport": "udp",
                "name": "www.example.test.",
                "type": "A",
                "rcode": "NOERROR",
                "layer": "cache",
                "latency_us": 42,
            })
        );
    }
}
