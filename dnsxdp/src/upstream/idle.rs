//! When a reused upstream connection has been idle long enough to close.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

pub struct Idle {
    timeout: Duration,
    state: Mutex<State>,
}

struct State {
    /// Exchanges under way.
    open: usize,
    /// When the last one ended (or the connection was made).
    last: Instant,
}

/// One exchange under way; ending it (dropping this) starts the idle clock again.
pub struct Busy(Arc<Idle>);

impl Idle {
    pub fn new(timeout: Duration) -> Arc<Idle> {
        Arc::new(Idle {
            timeout,
            state: Mutex::new(State {
                open: 0,
                last: Instant::now(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn begin(self: &Arc<Self>) -> Busy {
        self.lock().open += 1;
        Busy(self.clone())
    }

    /// When to look again whether the connection is idle.
    pub fn check_at(&self) -> Instant {
        let state = self.lock();
        if state.open == 0 {
            state.last + self.timeout
        } else {
            Instant::now() + self.timeout
        }
    }

    /// No exchange under way, and none for the whole timeout.
    pub fn expired(&self) -> bool {
        let state = self.lock();
        state.open == 0 && state.last.elapsed() >= self.timeout
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.open -= 1;
        state.last = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expires_only_after_the_last_exchange_plus_the_timeout() {
        let idle = Idle::new(Duration::from_secs(10));
        let busy = idle.begin();
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(!idle.expired(), "busy");
        drop(busy);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!idle.expired());
        assert_eq!(idle.check_at(), Instant::now() + Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(idle.expired());
    }
}
