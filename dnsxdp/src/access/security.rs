//! The security log: a warning for each query the ACL or the rate limit stopped, in the
//! daemon or in XDP, itself limited so that a flood cannot flood the log.

use std::{
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use tracing::warn;

/// Lines a second at most; the rest are counted and summed up in one line.
pub const LINES_PER_SEC: u32 = 10;

/// What was done to a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Denied by the ACL, and dropped (`false`) or answered REFUSED (`true`).
    Denied { refused: bool },
    /// Over the rate limit, and dropped (`false`) or answered with TC=1 (`true`).
    Limited { slipped: bool },
}

impl Action {
    fn describe(self) -> &'static str {
        match self {
            Action::Denied { refused: false } => "denied by the ACL: dropped",
            Action::Denied { refused: true } => "denied by the ACL: answered REFUSED",
            Action::Limited { slipped: false } => "over the rate limit: dropped",
            Action::Limited { slipped: true } => "over the rate limit: answered TC=1",
        }
    }
}

/// Where the query was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Xdp,
    Daemon,
}

#[derive(Debug)]
pub struct SecurityLog {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    lines: u32,
    /// Events not logged in this window.
    suppressed: u64,
}

impl Default for SecurityLog {
    fn default() -> Self {
        SecurityLog {
            window: Mutex::new(Window {
                start: Instant::now(),
                lines: 0,
                suppressed: 0,
            }),
        }
    }
}

impl SecurityLog {
    /// Logs that a query from `client` met `action` in `layer`, unless this second's lines
    /// are used up. Returns whether a line was written.
    pub fn record(&self, client: IpAddr, action: Action, layer: Layer) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if w.start.elapsed() >= Duration::from_secs(1) {
            if w.suppressed > 0 {
                warn!(
                    target: "dnsxdp::security",
                    "{} more queries denied or limited in the last {:.1} s, not logged one by one (dnsxdp stats counts them all)",
                    w.suppressed,
                    w.start.elapsed().as_secs_f64()
                );
            }
            *w = Window {
                start: Instant::now(),
                lines: 0,
                suppressed: 0,
            };
        }
        if w.lines >= LINES_PER_SEC {
            w.suppressed += 1;
            return false;
        }
        w.lines += 1;
        let layer = match layer {
            Layer::Xdp => "xdp",
            Layer::Daemon => "daemon",
        };
        warn!(target: "dnsxdp::security", %client, layer, "query {}", action.describe());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_gets_a_few_lines_a_second() {
        let log = SecurityLog::default();
        let client: IpAddr = "198.18.1.50".parse().unwrap();
        let logged = (0..1000)
            .filter(|_| log.record(client, Action::Denied { refused: false }, Layer::Xdp))
            .count();
        assert_eq!(logged, LINES_PER_SEC as usize);
        assert_eq!(log.window.lock().unwrap().suppressed, 990);
        log.window.lock().unwrap().start -= Duration::from_secs(1);
        assert!(log.record(client, Action::Limited { slipped: true }, Layer::Daemon));
        assert_eq!(log.window.lock().unwrap().suppressed, 0);
    }
}
