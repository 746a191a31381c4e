//! What names resolve to, decided before any upstream is asked: block and allow lists, and
//! the answer a blocked name gets.

pub mod answer;
pub mod groups;
pub mod list;
pub mod settings;
pub mod source;

use std::{
    hash::{DefaultHasher, Hash as _, Hasher as _},
    net::IpAddr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::SystemTime,
};

use hickory_proto::{
    op::{Message, Query},
    rr::Name,
};
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsConnector;
use tracing::warn;

use self::{
    groups::Groups,
    list::{List, Parsed},
    settings::{Config, ListSource},
    source::Source,
};

/// A list in force.
pub struct Loaded {
    pub source: Source,
    pub allow: bool,
    /// The client group it is for; `None`: every client.
    pub group: Option<u8>,
    pub list: Arc<List>,
    pub parsed: Parsed,
    /// Of the text the list was parsed from: an unchanged download is not parsed again.
    digest: u64,
    /// When the copy in force was fetched (a kept download: when it was downloaded); `None`
    /// when there has been none.
    pub fetched: Option<SystemTime>,
    /// Why the last refresh kept this copy, if it failed.
    pub error: Option<String>,
}

/// The lists in force: the config's allowlists, then its blocklists, in its order.
#[derive(Default)]
pub struct Lists {
    pub loaded: Vec<Loaded>,
}

impl Lists {
    /// The blocklist and rule that block `name` (lower-case, no final dot) for clients of
    /// `group`, unless an allowing rule of a list of theirs matches it.
    pub fn decide(&self, group: u8, name: &str) -> Option<Blocked> {
        let theirs =
            || (self.loaded.iter().enumerate()).filter(|(_, l)| l.group.is_none_or(|g| g == group));
        let (at, found) = list::decide(theirs().map(|(_, l)| &*l.list), name)?;
        if found.allow {
            return None;
        }
        let (at, _) = theirs().nth(at)?;
        Some(Blocked {
            list: self.loaded[..at].iter().filter(|l| !l.allow).count(),
            rule: found.rule,
        })
    }
}

/// What blocked a name: the blocklist's place among the config's blocklists, and its rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub list: usize,
    pub rule: String,
}

/// One list as `dnsxdp lists` shows it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ListReport {
    pub source: String,
    pub allow: bool,
    /// The client group it is for; `None`: every client.
    pub group: Option<String>,
    pub rules: usize,
    pub bad: usize,
    pub skipped: usize,
    /// Seconds since the copy in force was fetched; `None` if there is none.
    pub age_secs: Option<u64>,
    pub error: Option<String>,
    /// Queries it blocked (blocklists only).
    pub blocked: u64,
}

pub struct Filter {
    config: Config,
    lists: RwLock<Arc<Lists>>,
    /// Queries blocked by each blocklist, in the config's order.
    blocked: Vec<AtomicU64>,
    /// Queries blocked for each client group's clients, by group.
    group_blocked: Vec<AtomicU64>,
}

impl Filter {
    pub fn new(config: Config) -> Filter {
        Filter {
            blocked: config.block.iter().map(|_| AtomicU64::new(0)).collect(),
            group_blocked: config.groups.ids().map(|_| AtomicU64::new(0)).collect(),
            config,
            lists: RwLock::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The lists in force.
    pub fn current(&self) -> Arc<Lists> {
        self.lists.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `new` in force at once.
    pub fn swap(&self, new: Lists) {
        *self.lists.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
    }

    /// Every list fetched again: from the network when `network`, else from the copies on
    /// disk. One that cannot be fetched, or whose new copy has no rules where the old had
    /// some, keeps the copy in `old`, with the error.
    pub async fn fetch(&self, old: &Lists, network: bool, tls: Option<&TlsConnector>) -> Lists {
        let sources = (self.config.allow.iter().map(|s| (s, true)))
            .chain(self.config.block.iter().map(|s| (s, false)));
        let mut loaded = Vec::new();
        for (i, (ListSource { source, group }, allow)) in sources.enumerate() {
            let dir = &self.config.cache_dir;
            let fetched = match network {
                true => (source.fetch(dir, tls).await).map(|text| (text, SystemTime::now())),
                false => source.last_good(dir),
            };
            let before = old.loaded.get(i).filter(|l| &l.source == source);
            let mut list = match fetched {
                Ok((text, when)) => match parse(source, allow, text, when, before).await {
                    Ok((list, text)) => {
                        if network {
                            source.keep(dir, &text);
                        }
                        list
                    }
                    Err(e) => kept(source, allow, before, e),
                },
                Err(e) => kept(source, allow, before, format!("{e:#}")),
            };
            list.group = *group;
            if let Some(e) = &list.error {
                warn!("list {source}: {e}; keeping the copy in force");
            }
            loaded.push(list);
        }
        Lists { loaded }
    }

    /// The answer for `q` from a client of `group` if a list blocks its name, and what
    /// blocked it.
    pub fn check(&self, group: u8, q: &Query) -> Option<(Message, Blocked)> {
        if self.config.block.is_empty() {
            return None;
        }
        let blocked = self.current().decide(group, &plain(q.name()))?;
        Some((
            answer::message(q, &self.config.answer, self.config.ttl),
            blocked,
        ))
    }

    /// Counts a query from a client of `group` answered as blocked by blocklist `list`.
    pub fn count(&self, list: usize, group: u8) {
        let counts = [
            self.blocked.get(list),
            self.group_blocked.get(usize::from(group)),
        ];
        for c in counts.into_iter().flatten() {
            c.fetch_add(1, Relaxed);
        }
    }

    /// The client groups.
    pub fn groups(&self) -> &Groups {
        &self.config.groups
    }

    /// The clients' group at `ip`.
    pub fn group_of(&self, ip: IpAddr) -> u8 {
        self.config.groups.of(ip)
    }

    /// Queries the daemon answered as blocked, by client group.
    pub fn blocked_by_group(&self) -> Vec<u64> {
        self.group_blocked.iter().map(|c| c.load(Relaxed)).collect()
    }

    /// Every list in force, for `dnsxdp lists`.
    pub fn report(&self) -> Vec<ListReport> {
        let now = SystemTime::now();
        let lists = self.current();
        let mut block_index = 0;
        lists
            .loaded
            .iter()
            .map(|l| {
                let blocked = match l.allow {
                    true => 0,
                    false => {
                        block_index += 1;
                        self.blocked
                            .get(block_index - 1)
                            .map_or(0, |c| c.load(Relaxed))
                    }
                };
                ListReport {
                    source: l.source.to_string(),
                    allow: l.allow,
                    group: l.group.map(|g| self.config.groups.name(g).to_string()),
                    rules: l.list.len(),
                    bad: l.parsed.bad,
                    skipped: l.parsed.skipped,
                    age_secs: l
                        .fetched
                        .and_then(|t| now.duration_since(t).ok())
                        .map(|d| d.as_secs()),
                    error: l.error.clone(),
                    blocked,
                }
            })
            .collect()
    }
}

/// The list of `text`, fetched `when`; the one `before` if the text is the same. Its error if
/// it has no rules where `before` had some. The text comes back for keeping.
async fn parse(
    source: &Source,
    allow: bool,
    text: String,
    when: SystemTime,
    before: Option<&Loaded>,
) -> Result<(Loaded, String), String> {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    let digest = h.finish();
    let (list, parsed, text) = match before.filter(|b| b.digest == digest) {
        Some(b) => (b.list.clone(), b.parsed, text),
        // Off the runtime's threads: a large list takes a second or more.
        None => tokio::task::spawn_blocking(move || {
            let (list, parsed) = List::parse(&text, allow);
            (Arc::new(list), parsed, text)
        })
        .await
        .map_err(|e| e.to_string())?,
    };
    if parsed.rules == 0 && before.is_some_and(|b| b.parsed.rules > 0) {
        return Err(format!(
            "the new copy has no rules ({} bad lines)",
            parsed.bad
        ));
    }
    let loaded = Loaded {
        source: source.clone(),
        allow,
        group: None,
        list,
        parsed,
        digest,
        fetched: Some(when),
        error: None,
    };
    Ok((loaded, text))
}

/// The list `before`, kept with `error`; an empty one if there was none.
fn kept(source: &Source, allow: bool, before: Option<&Loaded>, error: String) -> Loaded {
    match before {
        Some(b) => Loaded {
            source: source.clone(),
            allow,
            group: None,
            list: b.list.clone(),
            parsed: b.parsed,
            digest: b.digest,
            fetched: b.fetched,
            error: Some(error),
        },
        None => Loaded {
            source: source.clone(),
            allow,
            group: None,
            list: Arc::new(List::parse("", allow).0),
            parsed: Parsed::default(),
            digest: 0,
            fetched: None,
            error: Some(error),
        },
    }
}

/// `name` as lists write names: lower-case, without the final dot.
pub fn plain(name: &Name) -> String {
    let mut s = name.to_lowercase().to_ascii();
    if s.len() > 1 && s.ends_with('.') {
        s.pop();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(text: &str, allow: bool, group: Option<u8>) -> Loaded {
        let (list, parsed) = List::parse(text, allow);
        Loaded {
            source: Source::File(format!("{text}.txt").into()),
            allow,
            group,
            list: Arc::new(list),
            parsed,
            digest: 0,
            fetched: None,
            error: None,
        }
    }

    /// Each group gets the lists for every client and its own, and no other group's.
    #[test]
    fn a_group_gets_the_common_lists_and_its_own() {
        let lists = Lists {
            loaded: vec![
                loaded("cdn.example", true, Some(2)),
                loaded("ads.example", false, None),
                loaded("games.example", false, Some(1)),
                loaded("cdn.example", false, Some(1)),
            ],
        };
        let blocked_by = |group, name| lists.decide(group, name).map(|b| b.list);
        assert_eq!(blocked_by(0, "ads.example"), Some(0));
        assert_eq!(blocked_by(1, "x.ads.example"), Some(0));
        assert_eq!(blocked_by(0, "games.example"), None);
        assert_eq!(blocked_by(1, "games.example"), Some(1));
        assert_eq!(blocked_by(2, "games.example"), None);
        assert_eq!(blocked_by(1, "cdn.example"), Some(2));
        // Group 2's allowlist is its own.
        assert_eq!(blocked_by(2, "cdn.example"), None);
        assert_eq!(blocked_by(0, "cdn.example"), None);
    }
}
