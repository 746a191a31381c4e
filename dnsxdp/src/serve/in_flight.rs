//! The bytes of the queries being answered, UDP and TCP together. A query is taken into the
//! budget before it is answered and leaves it with its answer; while the budget is spent,
//! reading waits, so a flood of large queries to a slow upstream holds a bounded amount.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget is kept in units of this many bytes, a query taking at least one.
const UNIT: usize = 1024;
/// The largest message, so that any one query fits a budget of any size.
const MAX_MESSAGE: usize = u16::MAX as usize + 1;

#[derive(Clone)]
pub struct InFlight(Arc<Semaphore>);

impl InFlight {
    /// A budget of `bytes`, and at least one message's worth.
    pub fn new(bytes: u64) -> InFlight {
        let bytes = usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .max(MAX_MESSAGE);
        let units = (bytes / UNIT).min(Semaphore::MAX_PERMITS);
        InFlight(Arc::new(Semaphore::new(units)))
    }

    /// Room for a query of `len` bytes, once there is; it is given back when dropped.
    pub async fn take(&self, len: usize) -> OwnedSemaphorePermit {
        let units = len.clamp(1, MAX_MESSAGE).div_ceil(UNIT) as u32;
        self.0
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("the budget's semaphore is never closed")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn queries_past_the_budget_wait_for_room() {
        let budget = InFlight::new(160 * 1024);
        let first = budget.take(60_000).await;
        let _second = budget.take(60_000).await;
        let third = tokio::time::timeout(Duration::from_millis(50), budget.take(60_000));
        assert!(third.await.is_err(), "a third 60 KB query fit in 160 KiB");
        // Small ones still fit in what is left, a unit each.
        let small: Vec<_> = futures_all(&budget, 40).await;
        drop(first);
        let third = tokio::time::timeout(Duration::from_millis(50), budget.take(60_000));
        assert!(third.await.is_ok(), "no room made by the first");
        drop(small);
        // However small the budget, one largest message fits.
        let tiny = InFlight::new(1);
        drop(tiny.take(65_535).await);
    }

    async fn futures_all(budget: &InFlight, n: usize) -> Vec<OwnedSemaphorePermit> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(budget.take(100).await);
        }
        out
    }
}
