//! Coalescing: the same question asked again while it is on its way upstream waits for that
//! query's answer instead of sending another.

use std::{
    collections::HashMap,
    future::Future,
    hash::Hash,
    sync::{Arc, Mutex},
};

use tokio::sync::watch;

type Map<K, V> = Arc<Mutex<HashMap<K, watch::Receiver<Option<V>>>>>;

pub struct Flights<K, V> {
    map: Map<K, V>,
}

/// A fetch under way, to wait for.
pub struct Flight<V>(watch::Receiver<Option<V>>);

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Flights {
            map: Arc::default(),
        }
    }
}

impl<K, V> Flights<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The fetch for `key` under way, or a new one of `fetch()` and `true`. It runs on a task
    /// of its own, so it finishes (and fills the caches) even if every client stops waiting.
    pub fn join<F>(&self, key: K, fetch: impl FnOnce() -> F) -> (Flight<V>, bool)
    where
        F: Future<Output = V> + Send + 'static,
    {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(under_way) = map.get(&key) {
            return (Flight(under_way.clone()), false);
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.clone(), rx.clone());
        drop(map);
        let fetch = fetch();
        // Removes the entry however the task ends, a panic included.
        let landed = Landed {
            map: self.map.clone(),
            key,
        };
        tokio::spawn(async move {
            let value = fetch.await;
            // Sent before the entry goes, so that whoever finds it still gets the value.
            tx.send_replace(Some(value));
            drop(landed);
        });
        (Flight(rx), true)
    }

    /// Fetches under way.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

struct Landed<K: Hash + Eq, V> {
    map: Map<K, V>,
    key: K,
}

impl<K: Hash + Eq, V> Drop for Landed<K, V> {
    fn drop(&mut self) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

impl<V: Clone> Flight<V> {
    /// The fetch's result; `None` if its task died without one.
    pub async fn wait(mut self) -> Option<V> {
        let landed = self.0.wait_for(Option::is_some).await.ok()?;
        landed.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    use tokio::sync::Semaphore;

    use super::*;

    #[tokio::test]
    async fn the_same_key_shares_one_fetch_and_others_get_their_own() {
        let flights = Flights::<&str, u32>::default();
        let fetches = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Semaphore::new(0));
        let fetch = |value| {
            let (fetches, release) = (fetches.clone(), release.clone());
            move || async move {
                fetches.fetch_add(1, Relaxed);
                release.acquire().await.unwrap().forget();
                value
            }
        };
        let (first, started) = flights.join("a", fetch(1));
        assert!(started);
        let joined: Vec<Flight<u32>> = (0..99)
            .map(|_| {
                let (flight, started) = flights.join("a", fetch(2));
                assert!(!started);
                flight
            })
            .collect();
        let (other, started) = flights.join("b", fetch(3));
        assert!(started);
        assert_eq!(flights.len(), 2);
        release.add_permits(2);
        assert_eq!(first.wait().await, Some(1));
        for flight in joined {
            assert_eq!(flight.wait().await, Some(1));
        }
        assert_eq!(other.wait().await, Some(3));
        assert_eq!(fetches.load(Relaxed), 2);
        assert_eq!(flights.len(), 0, "landed flights are forgotten");
        let (again, started) = flights.join("a", || async { 4 });
        assert!(started);
        assert_eq!(again.wait().await, Some(4));
    }

    #[tokio::test]
    async fn a_fetch_that_panics_lands_empty_and_is_forgotten() {
        let flights = Flights::<u8, u8>::default();
        let (flight, _) = flights.join(1, || async { panic!("fetch failed") });
        assert_eq!(flight.wait().await, None);
        assert_eq!(flights.len(), 0);
    }
}
