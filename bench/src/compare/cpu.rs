//! CPU time of the server under test, its NAPI thread and the load generator.
//!
//! On veth the receive work runs in whatever context polls the receiving device. The sandbox
//! makes that a NAPI kthread per device, pinned next to the process it serves, so the cost of
//! a query is the server process's time plus its NAPI thread's. Task times are exact (the
//! kernel scales the tick-sampled split to the scheduler's runtime); per-CPU busy time in
//! /proc/stat is only tick-sampled, which misses a thread that runs in short bursts, so it is
//! not used.

use std::fs;

use anyhow::{Context as _, Result};

/// utime + stime of a process (all its threads, live and exited) or of a kthread, in ns.
pub fn task_ns(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(stat_ticks(&stat)? * tick_ns())
}

/// CPU time of all reaped children of this process, in ns.
pub fn children_ns() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let ns = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1_000;
    ns(ru.ru_utime) + ns(ru.ru_stime)
}

fn tick_ns() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1_000_000_000 / hz.max(1) as u64
}

/// utime + stime from a /proc/PID/stat line, in clock ticks. The command name may contain
/// spaces and parentheses, so fields are counted from the last ')'.
fn stat_ticks(stat: &str) -> Result<u64> {
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("no ')' in stat")?;
    // Fields 14 and 15 of the line; `rest` starts at field 3.
    let mut f = rest.split_whitespace().skip(11);
    let mut next = || -> Result<u64> { Ok(f.next().context("short stat line")?.parse()?) };
    Ok(next()? + next()?)
}

/// Counters sampled at the start and end of a measured window.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub server_ns: u64,
    pub napi_ns: u64,
    pub generator_ns: u64,
    pub client_napi_ns: u64,
}

/// What the sandbox knows about where the work of a run happens.
#[derive(Clone, Copy, Debug)]
pub struct Tasks {
    pub server: u32,
    pub napi: u32,
    pub client_napi: u32,
}

impl Tasks {
    pub fn sample(&self) -> Result<Sample> {
        Ok(Sample {
            server_ns: task_ns(self.server)?,
            napi_ns: task_ns(self.napi)?,
            generator_ns: children_ns(),
            client_napi_ns: task_ns(self.client_napi)?,
        })
    }
}

impl Sample {
    pub fn since(&self, before: &Sample) -> Sample {
        Sample {
            server_ns: self.server_ns - before.server_ns,
            napi_ns: self.napi_ns - before.napi_ns,
            generator_ns: self.generator_ns - before.generator_ns,
            client_napi_ns: self.client_napi_ns - before.client_napi_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_an_awkward_name() {
        let line = "4242 (napi/veth0 (x) 1) S 2 0 0 0 -1 2129984 0 0 0 0 1234 567 0 0 20 0 1 0 \
                    100 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 0 0 0";
        assert_eq!(stat_ticks(line).unwrap(), 1234 + 567);
        assert!(stat_ticks("12 (x) S 1 2").is_err());
    }

    #[test]
    fn own_process_is_measurable() {
        let t = task_ns(std::process::id()).unwrap();
        let spin = std::time::Instant::now();
        while spin.elapsed().as_millis() < 30 {}
        assert!(task_ns(std::process::id()).unwrap() >= t);
    }
}
