//! Which pool a query goes to: the pool of the longest forward zone that holds its name, as
//! for a company's or the LAN's own servers, or else the default one.

use std::sync::Arc;

use hickory_proto::rr::Name;

use super::{pool::Pool, rebind::Rebind};

pub struct Routes {
    default: Arc<Pool>,
    /// Longest zones first, so that the first that holds a name is the longest match.
    zones: Vec<(Name, Arc<Pool>)>,
    rebind: Option<Rebind>,
}

impl Routes {
    /// Queries for names in `zones` to their pools, others to `default`; answers from public
    /// upstreams held to `rebind` if given.
    pub fn new(
        default: Arc<Pool>,
        mut zones: Vec<(Name, Arc<Pool>)>,
        rebind: Option<Rebind>,
    ) -> Routes {
        zones.sort_by_key(|(zone, _)| std::cmp::Reverse(zone.num_labels()));
        Routes {
            default,
            zones,
            rebind,
        }
    }

    /// Every query to `default`.
    #[cfg(test)]
    pub fn single(default: Arc<Pool>) -> Routes {
        Routes::new(default, Vec::new(), None)
    }

    /// The rebinding protection answers about `name` are held to: none when it is off or
    /// when the name's upstreams are all on private addresses, such as the LAN's own server.
    pub fn rebind(&self, name: &Name) -> Option<&Rebind> {
        self.rebind
            .as_ref()
            .filter(|_| !self.for_name(name).all_private())
    }

    /// The pool for questions about `name`.
    pub fn for_name(&self, name: &Name) -> &Arc<Pool> {
        self.zones
            .iter()
            .find(|(zone, _)| zone.zone_of(name))
            .map_or(&self.default, |(_, pool)| pool)
    }

    /// The default pool, then each zone's.
    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        std::iter::once(&self.default).chain(self.zones.iter().map(|(_, pool)| pool))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{pool::PoolSettings, spec::UpstreamSpec};

    fn pool(addr: &str) -> Arc<Pool> {
        let settings = PoolSettings {
            strategy: Default::default(),
            attempt_timeout: std::time::Duration::from_secs(1),
            max_fails: 3,
            retries: 2,
        };
        let spec = UpstreamSpec::parse(addr).unwrap();
        Arc::new(Pool::new(vec![spec], settings, None).unwrap())
    }

    #[test]
    fn the_longest_zone_wins() {
        let name = |s: &str| Name::from_ascii(s).unwrap();
        let routes = Routes::new(
            pool("198.18.0.1"),
            vec![
                (name("corp.example."), pool("198.18.0.2")),
                (name("lab.corp.example."), pool("198.18.0.3")),
                (name("home.arpa."), pool("192.168.1.1")),
            ],
            Some(Rebind::new(Vec::new())),
        );
        let to = |s: &str| routes.for_name(&name(s)).names().next().unwrap().to_owned();
        assert_eq!(to("www.example."), "udp://198.18.0.1:53");
        assert_eq!(to("corp.example."), "udp://198.18.0.2:53");
        assert_eq!(to("WWW.Corp.Example."), "udp://198.18.0.2:53");
        assert_eq!(to("x.lab.corp.example."), "udp://198.18.0.3:53");
        assert_eq!(to("notcorp.example."), "udp://198.18.0.1:53");
        assert_eq!(routes.pools().count(), 4);
        // The LAN's own server may answer with the LAN's addresses.
        assert!(routes.rebind(&name("nas.home.arpa.")).is_none());
        assert!(routes.rebind(&name("www.example.")).is_some());
    }
}
