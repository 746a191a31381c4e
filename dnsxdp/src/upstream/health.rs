//! One upstream's health: its counters, smoothed latency, latency histogram, and whether it is
//! down.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use prometheus_client::metrics::histogram::Histogram;
use serde::{Deserialize, Serialize};

use super::fall_log::FallLog;

/// Each latency sample moves the smoothed value by 1/8 of the difference, as TCP's SRTT.
const SMOOTHING: u32 = 8;

/// Upper bounds in seconds of the latency histogram's buckets: from a resolver next door
/// (0.5 ms) to one that answers just within the default query timeout (2 s).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
];

pub struct Health {
    queries: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    /// Latencies of answered queries; timeouts and failures are counted, not timed.
    latency: Histogram,
    state: Mutex<State>,
    falls: Mutex<FallLog>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            queries: AtomicU64::default(),
            failures: AtomicU64::default(),
            timeouts: AtomicU64::default(),
            latency: Histogram::new(LATENCY_BUCKETS),
            state: Mutex::default(),
            falls: Mutex::default(),
        }
    }
}

#[derive(Default)]
struct State {
    failures_in_a_row: u32,
    down: bool,
    srtt: Option<Duration>,
}

/// What happened to one query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Answered(Duration),
    /// Answered SERVFAIL or REFUSED: not useful, so counted as a failure, but the upstream is
    /// alive. One broken zone must not take every upstream down.
    Unusable(Duration),
    /// No usable reply within `Duration`, which counts as that much latency.
    TimedOut(Duration),
    /// A transport error or a malformed or mismatched reply.
    Failed,
}

/// A change of state a query caused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    None,
    WentDown,
    CameBack,
}

pub struct Snapshot {
    pub queries: u64,
    pub failures: u64,
    pub timeouts: u64,
    pub srtt: Option<Duration>,
    pub down: bool,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a query. `max_fails` failures in a row take the upstream down (0: never).
    pub fn record(&self, outcome: Outcome, max_fails: u32) -> Change {
        self.queries.fetch_add(1, Relaxed);
        if let Outcome::Answered(rtt) | Outcome::Unusable(rtt) = outcome {
            self.latency.observe(rtt.as_secs_f64());
        }
        if let Outcome::Unusable(_) = outcome {
            self.failures.fetch_add(1, Relaxed);
        }
        let mut state = self.lock();
        match outcome {
            Outcome::Answered(rtt) | Outcome::Unusable(rtt) => {
                state.sample(rtt);
                state.failures_in_a_row = 0;
                // Tried while down (all were) and it answered.
                if std::mem::take(&mut state.down) {
                    return Change::CameBack;
                }
                Change::None
            }
            Outcome::TimedOut(_) | Outcome::Failed => {
                self.failures.fetch_add(1, Relaxed);
                if let Outcome::TimedOut(waited) = outcome {
                    self.timeouts.fetch_add(1, Relaxed);
                    state.sample(waited);
                }
                state.failures_in_a_row = state.failures_in_a_row.saturating_add(1);
                if max_fails > 0 && state.failures_in_a_row >= max_fails && !state.down {
                    state.down = true;
                    return Change::WentDown;
                }
                Change::None
            }
        }
    }

    /// A probe answered after `rtt`: up again, its latency measured afresh. Returns whether
    /// it was down.
    pub fn recovered(&self, rtt: Duration) -> bool {
        let mut state = self.lock();
        let was_down = state.down;
        *state = State {
            srtt: Some(rtt),
            ..State::default()
        };
        was_down
    }

    /// Which of its falls and returns are logged.
    pub fn fall_log(&self) -> std::sync::MutexGuard<'_, FallLog> {
        self.falls.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_down(&self) -> bool {
        self.lock().down
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.lock().srtt
    }

    pub fn latency(&self) -> &Histogram {
        &self.latency
    }

    pub fn snapshot(&self) -> Snapshot {
        let state = self.lock();
        Snapshot {
            queries: self.queries.load(Relaxed),
            failures: self.failures.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            srtt: state.srtt,
            down: state.down,
        }
    }
}

impl State {
    fn sample(&mut self, rtt: Duration) {
        self.srtt = Some(match self.srtt {
            None => rtt,
            Some(srtt) if rtt > srtt => srtt + (rtt - srtt) / SMOOTHING,
            Some(srtt) => srtt - (srtt - rtt) / SMOOTHING,
        });
    }
}

/// One upstream's counters.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct UpstreamCounters {
    /// Its URL.
    pub upstream: String,
    pub state: UpstreamState,
    pub queries: u64,
    /// Queries it did not answer usefully: timeouts, errors, SERVFAIL, REFUSED.
    pub failures: u64,
    pub timeouts: u64,
    /// Smoothed latency; null until it has answered or timed out.
    pub latency_ms: Option<f64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamState {
    Up,
    /// Failed too many queries in a row; probed until it answers again.
    Down,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn goes_down_after_max_fails_in_a_row() {
        let h = Health::default();
        assert_eq!(h.record(Outcome::Failed, 3), Change::None);
        assert_eq!(h.record(Outcome::Failed, 3), Change::None);
        assert_eq!(h.record(Outcome::Answered(MS), 3), Change::None);
        assert_eq!(h.record(Outcome::Failed, 3), Change::None);
        assert_eq!(h.record(Outcome::TimedOut(MS), 3), Change::None);
        assert_eq!(h.record(Outcome::Failed, 3), Change::WentDown);
        assert!(h.is_down());
        assert_eq!(h.record(Outcome::Failed, 3), Change::None);
        let s = h.snapshot();
        assert_eq!((s.queries, s.failures, s.timeouts), (7, 6, 1));
        assert_eq!(h.record(Outcome::Answered(MS), 3), Change::CameBack);
        assert!(!h.is_down());
    }

    #[test]
    fn zero_max_fails_never_goes_down() {
        let h = Health::default();
        for _ in 0..100 {
            assert_eq!(h.record(Outcome::Failed, 0), Change::None);
        }
        assert!(!h.is_down());
    }

    #[test]
    fn latency_is_smoothed_and_timeouts_raise_it() {
        let h = Health::default();
        assert_eq!(h.srtt(), None);
        h.record(Outcome::Answered(80 * MS), 3);
        assert_eq!(h.srtt(), Some(80 * MS));
        h.record(Outcome::Answered(Duration::ZERO), 3);
        assert_eq!(h.srtt(), Some(70 * MS));
        h.record(Outcome::TimedOut(1000 * MS), 3);
        assert!(h.srtt().unwrap() > 150 * MS);
        h.record(Outcome::Failed, 1);
        assert!(h.recovered(5 * MS));
        assert!(!h.is_down());
        assert_eq!(h.srtt(), Some(5 * MS));
    }

    #[test]
    fn only_answered_queries_are_timed() {
        let h = Health::default();
        h.record(Outcome::Answered(2 * MS), 3);
        h.record(Outcome::Answered(8 * MS), 3);
        h.record(Outcome::TimedOut(1000 * MS), 3);
        h.record(Outcome::Failed, 3);
        // A probe's answer is no client query's latency.
        h.recovered(MS);
        assert_eq!(h.latency().count(), 2);
        assert!((h.latency().sum() - 0.010).abs() < 1e-9);
    }
}
