//! The client side of the control socket: the commands that ask a running daemon and print
//! its replies.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};

use crate::{
    access::LimitedClient,
    filter::ListReport,
    ops::{
        cache_ops::{self, Flushed, Listing, Selection},
        control::{ErrorReply, Reloaded, Request, Stopping},
        stats::Report,
    },
    values::duration,
};

/// Sends `request` to the daemon at `path` and returns its reply line.
fn ask(path: &Path, request: &Request) -> anyhow::Result<String> {
    let mut stream = UnixStream::connect(path)
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

/// Asks the daemon at `path` to stop and waits, up to `wait`, until it has: its control socket
/// is gone. False if no daemon answers there.
pub fn stop(path: &Path, wait: std::time::Duration) -> anyhow::Result<bool> {
    if UnixStream::connect(path).is_err() {
        return Ok(false);
    }
    let reply = ask(path, &Request::Stop)?;
    let _: Stopping =
        serde_json::from_str(&reply).context("the daemon's stop reply is not valid")?;
    let deadline = std::time::Instant::now() + wait;
    while path.exists() {
        if std::time::Instant::now() > deadline {
            bail!(
                "the daemon at {} did not stop within {wait:?}",
                path.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(true)
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

/// `dnsxdp lists [refresh]`: the lists in force, after fetching them again if `refresh`.
pub fn print_lists(path: &Path, refresh: bool, json: bool) -> anyhow::Result<()> {
    let request = match refresh {
        true => Request::ListsRefresh,
        false => Request::Lists,
    };
    let reply = ask(path, &request)?;
    let lists: Vec<ListReport> =
        serde_json::from_str(&reply).context("the daemon's lists reply is not valid")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&lists)?);
        return Ok(());
    }
    let mut rows = vec![
        [
            "list", "kind", "group", "rules", "bad", "skipped", "age", "blocked", "error",
        ]
        .map(String::from),
    ];
    for l in &lists {
        rows.push([
            l.source.clone(),
            (if l.allow { "allow" } else { "block" }).into(),
            l.group.clone().unwrap_or_else(|| "all".into()),
            l.rules.to_string(),
            l.bad.to_string(),
            l.skipped.to_string(),
            l.age_secs
                .map_or("-".into(), |s| duration::display(Duration::from_secs(s))),
            l.blocked.to_string(),
            l.error.clone().unwrap_or_default(),
        ]);
    }
    print!("{}", columns(&rows));
    Ok(())
}

/// `rows` in columns as wide as their widest cell, two spaces apart.
fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = (r.iter().zip(&widths))
            .map(|(cell, &w)| format!("{cell:<w$}"))
            .collect();
        out += cells.join("  ").trim_end();
        out.push('\n');
    }
    out
}

/// `dnsxdp cache list` and `get`: the answers `selection` picks, at most `limit` of them (the
/// table shows 100 unless told).
pub fn print_cache(
    path: &Path,
    selection: Selection,
    limit: Option<usize>,
    json: bool,
) -> anyhow::Result<()> {
    let limit = limit.or((!json).then_some(DEFAULT_LIST_LIMIT));
    let reply = ask(path, &Request::CacheList { selection, limit })?;
    let listing: Listing =
        serde_json::from_str(&reply).context("the daemon's cache reply is not valid")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&listing.answers)?);
    } else {
        print!("{}", cache_ops::table(&listing));
    }
    Ok(())
}

/// Rows `dnsxdp cache list` prints without `--limit` or `--json`.
const DEFAULT_LIST_LIMIT: usize = 100;

/// `dnsxdp cache flush`: prints how many entries each layer lost.
pub fn flush_cache(path: &Path, selection: Selection, json: bool) -> anyhow::Result<()> {
    let reply = ask(path, &Request::CacheFlush { selection })?;
    let flushed: Flushed =
        serde_json::from_str(&reply).context("the daemon's flush reply is not valid")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&flushed)?);
    } else {
        println!("removed {}", flushed.describe());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_daemon_is_said_so() {
        let path = std::env::temp_dir().join(format!("dnsxdp-absent-{}.sock", std::process::id()));
        let err = ask(&path, &Request::Stats).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("no dnsxdp daemon at {}: ", path.display())),
            "{err}"
        );
    }
}
