//! `cargo xtask fuzz`: each target of fuzz/ under libFuzzer (cargo-fuzz, nightly) for its share
//! of the time, its corpus kept in fuzz/corpus/TARGET. An input that fails a check is copied to
//! fuzz/regressions/TARGET, where the corpus test replays it from then on, and the run fails.

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use crate::{is_root, setup, workspace_root};

#[derive(clap::Args)]
pub struct Args {
    /// Time for all the targets together, shared equally.
    #[arg(long, default_value_t = 60)]
    minutes: u64,
    /// Targets to run [default: all of `cargo fuzz list`].
    targets: Vec<String>,
}

/// What libFuzzer said at the end of one target's run.
struct Outcome {
    target: String,
    executions: u64,
    coverage: u64,
    corpus: usize,
}

pub fn run(args: &Args) -> Result<()> {
    if !is_root() {
        bail!("the xdp target loads the XDP program: run as root");
    }
    setup::ensure()?;
    setup::ensure_cargo_fuzz()?;
    let root = workspace_root();
    let targets = match args.targets.is_empty() {
        true => list(&root)?,
        false => args.targets.clone(),
    };
    let share = Duration::from_secs(args.minutes * 60 / targets.len().max(1) as u64);
    let mut outcomes = Vec::new();
    for target in &targets {
        let o = fuzz(&root, target, share)?;
        // As each ends, so that a later target's failure keeps the earlier figures.
        println!(
            "fuzz: {}: {} executions, {} edges, {} inputs kept",
            o.target, o.executions, o.coverage, o.corpus
        );
        outcomes.push(o);
    }
    println!("\n| target | executions | coverage (edges) | corpus |\n|---|---:|---:|---:|");
    for o in &outcomes {
        println!(
            "| {} | {} | {} | {} |",
            o.target, o.executions, o.coverage, o.corpus
        );
    }
    Ok(())
}

/// The targets in fuzz/Cargo.toml.
fn list(root: &Path) -> Result<Vec<String>> {
    let out = Command::new("cargo")
        .args(["+nightly", "fuzz", "list"])
        .current_dir(root)
        .output()
        .context("cargo fuzz list")?;
    if !out.status.success() {
        bail!("cargo fuzz list: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

fn fuzz(root: &Path, target: &str, time: Duration) -> Result<Outcome> {
    let fuzz = root.join("fuzz");
    let corpus = fuzz.join("corpus").join(target);
    let artifacts = root.join("target/fuzz/artifacts").join(target);
    fs::create_dir_all(&corpus)?;
    fs::create_dir_all(&artifacts)?;
    println!("fuzz: {target} for {}s", time.as_secs());
    let out = Command::new("cargo")
        .args(["+nightly", "fuzz", "run", "--sanitizer", "none", target])
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={}", time.as_secs()))
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .current_dir(root)
        .stdout(Stdio::inherit())
        .output()
        .with_context(|| format!("cargo fuzz run {target}"))?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let kept = keep_reproducers(&artifacts, &fuzz.join("regressions").join(target))?;
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{target} found a defect; reproducers kept: {}\n{}",
            kept.join(", "),
            tail.join("\n")
        );
    }
    Ok(Outcome {
        target: target.to_owned(),
        executions: stat(&log, "stat::number_of_executed_units:").unwrap_or(0),
        coverage: last_cov(&log).unwrap_or(0),
        corpus: fs::read_dir(&corpus)?.count(),
    })
}

/// Copies the crash and timeout inputs libFuzzer left into `regressions`; returns their names.
fn keep_reproducers(artifacts: &Path, regressions: &Path) -> Result<Vec<String>> {
    fs::create_dir_all(regressions)?;
    let mut kept = Vec::new();
    for entry in fs::read_dir(artifacts)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        fs::copy(&path, regressions.join(&name))?;
        kept.push(name);
    }
    Ok(kept)
}

/// The number after `key` in libFuzzer's final stats.
fn stat(log: &str, key: &str) -> Option<u64> {
    log.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

/// The edge coverage of libFuzzer's last status line (`#N ... cov: C ft: F ...`).
fn last_cov(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        let rest = l.split_once(" cov: ")?.1;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_stats_are_read() {
        let log = "#1024\tpulse  cov: 812 ft: 2001 corp: 40/1200b exec/s: 512\n\
                   #2048\tDONE   cov: 830 ft: 2100 corp: 41/1300b exec/s: 510\n\
                   stat::number_of_executed_units: 2048\n\
                   stat::peak_rss_mb: 60\n";
        assert_eq!(stat(log, "stat::number_of_executed_units:"), Some(2048));
        assert_eq!(last_cov(log), Some(830));
        assert_eq!(last_cov("nothing"), None);
    }
}
