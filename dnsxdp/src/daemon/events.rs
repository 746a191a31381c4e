//! What the XDP program reports through its ring buffer: hits that ask for a prefetch,
//! sampled hits for the query log, and queries it stopped, for the security log.

use std::{
    mem::size_of,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::{Duration, SystemTime},
};

use aya::maps::{MapData, RingBuf};
use dnsxdp_common::{
    Counter, EVENT_DENIED, EVENT_HIT, EVENT_LIMITED, EVENT_PREFETCH, Event, MAX_CACHED_NAME,
};
use hickory_proto::{
    rr::{Name, RecordType},
    serialize::binary::BinDecodable,
};
use tokio::io::{Interest, unix::AsyncFd};
use tracing::warn;

use crate::{
    access::Access,
    access::security::{self, Action},
    dns::{clock, reply::Transport},
    resolve::Resolver,
    resolve::query_log::{Layer, Line, QueryLog, rcode_name, rfc3339},
};

/// Where events go.
pub struct Sinks {
    pub resolver: Arc<Resolver>,
    pub query_log: Option<Arc<QueryLog>>,
    pub access: Arc<Access>,
}

/// Reads events as they come, for as long as the program runs.
pub async fn read(ring: RingBuf<MapData>, sinks: Sinks) {
    // SAFETY: the ring buffer owns its map's descriptor and keeps it open, unchanged, until
    // it is dropped with the AsyncFd.
    let mut ring = match unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) } {
        Ok(fd) => fd,
        Err(e) => {
            warn!("reading XDP events failed, no prefetch or XDP query log: {e}");
            return;
        }
    };
    loop {
        let mut ready = match ring.readable_mut().await {
            Ok(ready) => ready,
            Err(e) => {
                warn!("reading XDP events failed, no prefetch or XDP query log: {e}");
                return;
            }
        };
        let events = ready.get_inner_mut();
        while let Some(item) = events.next() {
            if let Some(bytes) = item.get(..size_of::<Event>()) {
                sinks.handle(&bytemuck::pod_read_unaligned(bytes));
            }
        }
        ready.clear_ready();
    }
}

impl Sinks {
    fn handle(&self, ev: &Event) {
        let name = &ev.name[..(ev.name_len as usize).min(MAX_CACHED_NAME)];
        match ev.kind {
            EVENT_PREFETCH => {
                let dnssec_ok = ev.dnssec_ok != 0;
                self.resolver
                    .prefetch_kernel_entry(name, ev.qtype, dnssec_ok, ev.group)
            }
            EVENT_HIT => {
                if let Some(log) = &self.query_log {
                    log.log(hit_line(ev, name));
                }
            }
            EVENT_DENIED | EVENT_LIMITED => {
                if let Some(action) = action(ev.action) {
                    let log = self.access.security_log();
                    log.record(client_ip(ev), action, security::Layer::Xdp);
                }
            }
            _ => {}
        }
    }
}

/// The query log line of an XDP hit.
fn hit_line(ev: &Event, name: &[u8]) -> Line {
    let ago = Duration::from_nanos(clock::now_ns().saturating_sub(ev.time_ns));
    Line {
        time: rfc3339(SystemTime::now() - ago),
        client: SocketAddr::new(client_ip(ev), ev.client_port),
        transport: Transport::Udp,
        name: Name::from_bytes(name).map_or_else(|_| "?".into(), |n| n.to_string()),
        qtype: RecordType::from(ev.qtype).to_string(),
        rcode: rcode_name(ev.rcode.into()),
        layer: Layer::Xdp,
        rule: None,
        latency_us: None,
    }
}

fn client_ip(ev: &Event) -> IpAddr {
    Ipv6Addr::from(ev.client).to_canonical()
}

/// What the program did, from the counter it reports.
fn action(counter: u32) -> Option<Action> {
    Some(match counter {
        c if c == Counter::DeniedDropped as u32 => Action::Denied { refused: false },
        c if c == Counter::DeniedRefused as u32 => Action::Denied { refused: true },
        c if c == Counter::LimitedDropped as u32 => Action::Limited { slipped: false },
        c if c == Counter::LimitedSlipped as u32 => Action::Limited { slipped: true },
        _ => return None,
    })
}
