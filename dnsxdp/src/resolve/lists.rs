//! Keeping the block and allow lists current, and both caches true to them: each new set is
//! built aside and put in force at once, and only then are the answers it no longer justifies
//! forgotten, in the daemon's cache and the kernel's.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsConnector;
use tracing::{info, warn};

use super::Resolver;
use crate::filter::{Filter, Lists, plain, source::Source};

pub struct Keeper {
    pub filter: Arc<Filter>,
    resolver: Arc<Resolver>,
    tls: Option<TlsConnector>,
    asks: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

impl Keeper {
    /// Puts the lists' copies on disk in force, so that blocking starts with the first query,
    /// and returns the keeper with the task that refreshes them from then on.
    pub async fn start(
        filter: Arc<Filter>,
        resolver: Arc<Resolver>,
        tls: Option<TlsConnector>,
    ) -> (Arc<Keeper>, impl Future<Output = ()> + Send + 'static) {
        let (asks, asked) = mpsc::unbounded_channel();
        let keeper = Arc::new(Keeper {
            filter,
            resolver,
            tls,
            asks,
        });
        keeper.update(false).await;
        (keeper.clone(), keeper.run(asked))
    }

    /// Has every list fetched again now; the receiver hears once the new set is in force.
    pub fn refresh(&self) -> oneshot::Receiver<()> {
        let (done, heard) = oneshot::channel();
        let _ = self.asks.send(done);
        heard
    }

    /// Refreshes when a list's copy is `list-refresh` old, and when asked.
    async fn run(self: Arc<Self>, mut asked: mpsc::UnboundedReceiver<oneshot::Sender<()>>) {
        loop {
            let wait = self.until_due();
            let done = tokio::select! {
                ask = asked.recv() => match ask {
                    Some(done) => Some(done),
                    None => return,
                },
                () = tokio::time::sleep(wait) => None,
            };
            self.update(true).await;
            if let Some(done) = done {
                let _ = done.send(());
            }
        }
    }

    /// How long until the oldest downloaded list is due again; a URL without a copy is due
    /// now. Files are read again with the downloads, or when asked.
    fn until_due(&self) -> Duration {
        let refresh = self.filter.config().refresh;
        let lists = self.filter.current();
        let now = SystemTime::now();
        let urls = lists
            .loaded
            .iter()
            .filter(|l| matches!(l.source, Source::Url(_)));
        urls.map(|l| {
            let age = l.fetched.and_then(|t| now.duration_since(t).ok());
            age.map_or(Duration::ZERO, |age| refresh.saturating_sub(age))
        })
        .min()
        .unwrap_or(refresh)
    }

    /// Fetches the lists (`network`: downloads, else the copies on disk), puts them in force
    /// and forgets the answers of every name whose fate they changed.
    async fn update(&self, network: bool) {
        let old = self.filter.current();
        let new = self.filter.fetch(&old, network, self.tls.as_ref()).await;
        let rules: usize = new.loaded.iter().map(|l| l.parsed.rules).sum();
        self.filter.swap(new);
        let new = self.filter.current();
        let resolver = self.resolver.clone();
        let forgot = tokio::task::spawn_blocking(move || {
            resolver.forget_names(|name, group| changed(&old, &new, group, &plain(name)))
        })
        .await;
        match forgot {
            Ok(Ok((daemon, kernel))) => info!(
                "lists in force: {rules} rules; forgot {daemon} answers in the daemon cache and {kernel} in the kernel's"
            ),
            Ok(Err(e)) => {
                warn!("lists in force, but forgetting the answers they changed failed: {e:#}")
            }
            Err(e) => warn!("lists in force, but forgetting the answers they changed failed: {e}"),
        }
    }
}

/// Whether `name` is blocked for clients of `group` under one set of lists and not the other.
fn changed(old: &Lists, new: &Lists, group: u8, name: &str) -> bool {
    old.decide(group, name).is_some() != new.decide(group, name).is_some()
}
