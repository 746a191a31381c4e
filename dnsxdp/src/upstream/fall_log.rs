//! Which of an upstream's falls and returns are logged. An upstream that drops part of its
//! queries (one rate-limiting the daemon, say) falls after a few losses in a row and comes
//! back with the next reply, many times a second: a line for each would bury the log. So a fall
//! is logged at most once a `LOG_INTERVAL`, with a count of those that were not, and a return
//! only when its fall was; a fall that was not logged is once it has lasted a probe interval,
//! as an outage that follows a flapping spell must still be seen.

use std::time::{Duration, Instant};

/// The least time between two logged falls of one upstream, but for those that last.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct FallLog {
    /// When a fall was last logged.
    logged_at: Option<Instant>,
    /// Falls since then that were not.
    unlogged: u32,
    /// When the latest fall happened, if it was not logged and has not ended.
    quiet_since: Option<Instant>,
    /// Whether the latest fall was logged and has not ended.
    loud: bool,
}

impl FallLog {
    /// A fall at `now`: whether to log it, with how many falls went unlogged before it.
    pub fn fell(&mut self, now: Instant) -> Option<u32> {
        if self
            .logged_at
            .is_some_and(|at| now.duration_since(at) < LOG_INTERVAL)
        {
            self.unlogged += 1;
            (self.quiet_since, self.loud) = (Some(now), false);
            return None;
        }
        Some(self.logged(now))
    }

    /// The fall still on at `now`, checked every probe interval: whether to log it now, with how
    /// many falls went unlogged before it, as it has lasted `lasting`.
    pub fn still_down(&mut self, now: Instant, lasting: Duration) -> Option<u32> {
        let since = self.quiet_since?;
        if now.duration_since(since) < lasting {
            return None;
        }
        // Counted as unlogged when it happened; logged now.
        self.unlogged -= 1;
        Some(self.logged(now))
    }

    /// The upstream answers again: whether to log it, as its fall was.
    pub fn returned(&mut self) -> bool {
        self.quiet_since = None;
        std::mem::take(&mut self.loud)
    }

    fn logged(&mut self, now: Instant) -> u32 {
        (self.logged_at, self.quiet_since, self.loud) = (Some(now), None, true);
        std::mem::take(&mut self.unlogged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const PROBE: Duration = Duration::from_secs(1);

    #[test]
    fn a_flapping_upstream_is_logged_once_an_interval_with_a_count() {
        let t0 = Instant::now();
        let mut log = FallLog::default();
        assert_eq!(log.fell(t0), Some(0));
        assert!(log.returned());
        // A thousand falls and returns in the next ten seconds: none logged.
        for i in 1..=1000 {
            let at = t0 + i * 10 * MS;
            assert_eq!(log.fell(at), None);
            assert_eq!(log.still_down(at + 5 * MS, PROBE), None);
            assert!(!log.returned());
        }
        assert_eq!(log.fell(t0 + LOG_INTERVAL), Some(1000));
        assert!(log.returned());
    }

    #[test]
    fn an_unlogged_fall_that_lasts_is_logged_at_the_next_probe() {
        let t0 = Instant::now();
        let mut log = FallLog::default();
        log.fell(t0);
        log.returned();
        let fall = t0 + 10 * MS;
        assert_eq!(log.fell(fall), None);
        assert_eq!(log.still_down(fall + 500 * MS, PROBE), None);
        assert_eq!(log.still_down(fall + PROBE, PROBE), Some(0));
        // Once.
        assert_eq!(log.still_down(fall + 2 * PROBE, PROBE), None);
        assert!(log.returned(), "its return is logged as its fall was");
    }
}
