//! Who holds the TCP connections. A client may hold `per_client` of them and all clients
//! `connections`; past either limit a new connection takes the place of the one in that count
//! that has been quiet longest, so that neither idle nor stalled connections lock anyone out.

use std::{
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use tokio::task::AbortHandle;

/// The TCP limits and timeout (`tcp-*` settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpLimits {
    /// Connections open at once, from all clients.
    pub connections: usize,
    /// Connections open at once from one client: an IPv4 address or an IPv6 /64.
    pub per_client: usize,
    /// A connection is closed when no query has arrived, or a reply could not be written, for
    /// this long (RFC 7766 §6.2.3).
    pub idle_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            connections: 512,
            per_client: 64,
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// When a connection last completed a query or a reply.
pub struct Activity {
    /// Milliseconds since `Slots::epoch`.
    at_ms: AtomicU64,
    epoch: Instant,
}

impl Activity {
    pub fn touch(&self) {
        self.at_ms
            .store(self.epoch.elapsed().as_millis() as u64, Relaxed);
    }

    /// How long since the last `touch`.
    pub fn quiet(&self) -> Duration {
        let at = Duration::from_millis(self.at_ms.load(Relaxed));
        self.epoch.elapsed().saturating_sub(at)
    }
}

struct Slot {
    id: u64,
    client: [u8; 16],
    activity: Arc<Activity>,
    abort: AbortHandle,
}

pub struct Slots {
    limits: TcpLimits,
    epoch: Instant,
    open: Mutex<Vec<Slot>>,
}

impl Slots {
    pub fn new(limits: TcpLimits) -> Slots {
        Slots {
            limits,
            epoch: Instant::now(),
            open: Mutex::new(Vec::new()),
        }
    }

    /// A fresh activity record for a connection about to be admitted.
    pub fn activity(&self) -> Arc<Activity> {
        let activity = Activity {
            at_ms: AtomicU64::new(0),
            epoch: self.epoch,
        };
        activity.touch();
        Arc::new(activity)
    }

    /// Counts connection `id` from `peer`, whose task `abort` ends, closing the quietest
    /// others to stay within the limits. Returns how many it closed.
    pub fn admit(
        &self,
        id: u64,
        peer: IpAddr,
        activity: Arc<Activity>,
        abort: AbortHandle,
    ) -> usize {
        let client = client_key(peer);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut closed = 0;
        loop {
            let own = open.iter().filter(|s| s.client == client).count();
            let quietest = if own >= self.limits.per_client {
                quietest(&open, |s| s.client == client)
            } else if open.len() >= self.limits.connections {
                quietest(&open, |_| true)
            } else {
                break;
            };
            let Some(i) = quietest else { break };
            open.swap_remove(i).abort.abort();
            closed += 1;
        }
        open.push(Slot {
            id,
            client,
            activity,
            abort,
        });
        closed
    }

    /// Forgets connection `id`, once it has ended.
    pub fn release(&self, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = open.iter().position(|s| s.id == id) {
            open.swap_remove(i);
        }
    }

    pub fn limits(&self) -> TcpLimits {
        self.limits
    }
}

/// The index of the slot `counted` picks that was active least recently.
fn quietest(open: &[Slot], counted: impl Fn(&Slot) -> bool) -> Option<usize> {
    open.iter()
        .enumerate()
        .filter(|(_, s)| counted(s))
        .min_by_key(|(_, s)| s.activity.at_ms.load(Relaxed))
        .map(|(i, _)| i)
}

/// A client as the limits count it: an IPv4 address, or an IPv6 /64, which one host often
/// has to itself.
fn client_key(ip: IpAddr) -> [u8; 16] {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => {
            let mut key = v6.octets();
            key[8..].fill(0);
            key
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that runs until aborted.
    fn task() -> (AbortHandle, tokio::task::JoinHandle<()>) {
        let handle = tokio::spawn(std::future::pending::<()>());
        (handle.abort_handle(), handle)
    }

    #[tokio::test]
    async fn the_quietest_connection_of_a_full_count_makes_room() {
        let slots = Slots::new(TcpLimits {
            connections: 3,
            per_client: 2,
            idle_timeout: Duration::from_secs(1),
        });
        let (a, b): (IpAddr, IpAddr) =
            ("198.18.1.2".parse().unwrap(), "fd00:1::2".parse().unwrap());
        let mut handles = Vec::new();
        let mut activities = Vec::new();
        for (id, peer) in [(0, a), (1, a), (2, b)] {
            let (abort, handle) = task();
            let activity = slots.activity();
            activities.push(activity.clone());
            assert_eq!(slots.admit(id, peer, activity, abort), 0);
            handles.push(handle);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Connection 0 has just been active: a third from `a` takes the place of 1.
        activities[0].touch();
        let (abort, handle) = task();
        assert_eq!(slots.admit(3, a, slots.activity(), abort), 1);
        handles.push(handle);
        // All three places taken: a new client takes the quietest of all, 2's.
        let (abort, handle) = task();
        let other: IpAddr = "198.18.1.3".parse().unwrap();
        assert_eq!(slots.admit(4, other, slots.activity(), abort), 1);
        handles.push(handle);
        let aborted = finished(handles).await;
        assert_eq!(aborted, [false, true, true, false, false]);
        slots.release(0);
        assert_eq!(slots.open.lock().unwrap().len(), 2);
    }

    /// Which of the never-ending tasks ended: those aborted.
    async fn finished(handles: Vec<tokio::task::JoinHandle<()>>) -> Vec<bool> {
        tokio::task::yield_now().await;
        handles
            .into_iter()
            .map(|h| {
                let done = h.is_finished();
                h.abort();
                done
            })
            .collect()
    }

    #[test]
    fn ipv6_clients_are_their_64() {
        let key = |s: &str| client_key(s.parse().unwrap());
        assert_eq!(key("fd00:1::2"), key("fd00:1::ffff:2"));
        assert_ne!(key("fd00:1::2"), key("fd00:1:0:1::2"));
        assert_eq!(key("198.18.1.2"), key("::ffff:198.18.1.2"));
        assert_ne!(key("198.18.1.2"), key("198.18.1.3"));
    }
}
