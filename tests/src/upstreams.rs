//! More upstreams in the upstream namespace: extra addresses on its veth, and a scripted UDP
//! responder that counts the queries it gets and relays them to NSD, or misbehaves.

use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use anyhow::{Context as _, Result};
use hickory_proto::{
    op::{Message, MessageType, Query, ResponseCode},
    rr::{Name, RData, Record, RecordType, rdata::A},
};

use crate::netns::{Netns, Topology, UPSTREAM_V4};

/// The address forged records point at; it must never reach a client.
pub const FORGED: [u8; 4] = [198, 18, 66, 6];
/// Where a spoofing responder sends its forgeries from.
pub const SPOOF_SOURCE: &str = "198.18.2.99";
/// A name outside every question's chain that a poisoning responder adds records for.
pub const VICTIM: &str = "victim.example.test.";

/// Adds `ip` (IPv4, in 198.18.2.0/24) to the upstream namespace's veth.
pub fn add_address(topo: &Topology, ip: &str) -> Result<()> {
    topo.upstream
        .ip(&["addr", "add", &format!("{ip}/24"), "dev", "veth0"])
}

/// What a responder does with each query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// Relays it to NSD and the answer back.
    Forward,
    /// The same, after a delay.
    Slow(Duration),
    /// Answers SERVFAIL.
    ServFail,
    /// Never answers.
    Silent,
    /// Answers only with forgeries: a wrong ID, a wrong question, and the right ID and
    /// question from another address (`SPOOF_SOURCE`), each with the `FORGED` address.
    Spoof,
    /// Relays NSD's answer with records for `VICTIM` and another name added.
    Poison,
}

/// A UDP responder on `addr`; stopped when dropped.
pub struct Responder {
    pub addr: SocketAddr,
    behavior: Arc<Mutex<Behavior>>,
    /// The lower-cased question names received, in order.
    queries: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    /// Serves on `ip`:53 in `ns` (an address `add_address` added). A spoofing one also sends
    /// from `SPOOF_SOURCE`, which it adds.
    pub fn start(topo: &Topology, ip: &str, behavior: Behavior) -> Result<Self> {
        let addr: SocketAddr = format!("{ip}:53").parse()?;
        let spoof_from = if behavior == Behavior::Spoof {
            add_address(topo, SPOOF_SOURCE)?;
            Some(bind(&topo.upstream, format!("{SPOOF_SOURCE}:53").parse()?)?)
        } else {
            None
        };
        let socket = bind(&topo.upstream, addr)?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let nsd = bind(&topo.upstream, "0.0.0.0:0".parse()?)?;
        let shared = Shared {
            socket: Arc::new(socket),
            spoof_from: spoof_from.map(Arc::new),
            nsd: Arc::new(nsd),
        };
        let behavior = Arc::new(Mutex::new(behavior));
        let queries = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (behavior, queries, stop) = (behavior.clone(), queries.clone(), stop.clone());
            thread::spawn(move || serve(shared, behavior, queries, stop))
        };
        Ok(Self {
            addr,
            behavior,
            queries,
            stop,
            thread: Some(thread),
        })
    }

    pub fn set(&self, behavior: Behavior) {
        *self.behavior.lock().unwrap() = behavior;
    }

    /// Queries received for names starting with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        let queries = self.queries.lock().unwrap();
        queries.iter().filter(|q| q.starts_with(prefix)).count()
    }

    /// `udp://ADDR` for --upstream.
    pub fn url(&self) -> String {
        format!("udp://{}", self.addr)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A UDP socket bound to `addr` inside `ns`.
fn bind(ns: &Netns, addr: SocketAddr) -> Result<UdpSocket> {
    ns.enter(move || UdpSocket::bind(addr))?
        .with_context(|| format!("binding {addr} in {}", ns.name))
}

#[derive(Clone)]
struct Shared {
    socket: Arc<UdpSocket>,
    spoof_from: Option<Arc<UdpSocket>>,
    /// For relaying to NSD; one query at a time.
    nsd: Arc<UdpSocket>,
}

fn serve(
    shared: Shared,
    behavior: Arc<Mutex<Behavior>>,
    queries: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let relay = Arc::new(Mutex::new(()));
    let mut buf = [0u8; 4096];
    while !stop.load(Relaxed) {
        let Ok((len, client)) = shared.socket.recv_from(&mut buf) else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        let Some(question) = query.queries().first() else {
            continue;
        };
        queries
            .lock()
            .unwrap()
            .push(question.name().to_lowercase().to_ascii());
        let behavior = *behavior.lock().unwrap();
        let (shared, relay, wire) = (shared.clone(), relay.clone(), buf[..len].to_vec());
        // Each on its own thread, so a slow answer holds up no other.
        thread::spawn(move || {
            let _ = respond(&shared, &relay, behavior, &query, &wire, client);
        });
    }
}

fn respond(
    shared: &Shared,
    relay: &Mutex<()>,
    behavior: Behavior,
    query: &Message,
    wire: &[u8],
    client: SocketAddr,
) -> Result<()> {
    let send = |msg: &Message| -> Result<()> {
        shared.socket.send_to(&msg.to_vec()?, client)?;
        Ok(())
    };
    match behavior {
        Behavior::Silent => Ok(()),
        Behavior::ServFail => {
            let mut reply = query.clone();
            reply
                .set_message_type(MessageType::Response)
                .set_response_code(ResponseCode::ServFail);
            send(&reply)
        }
        Behavior::Forward => send(&ask_nsd(shared, relay, wire)?),
        Behavior::Slow(delay) => {
            thread::sleep(delay);
            send(&ask_nsd(shared, relay, wire)?)
        }
        Behavior::Poison => {
            let mut reply = ask_nsd(shared, relay, wire)?;
            reply.add_answer(forged_a(VICTIM));
            reply.add_additional(forged_a("ns.evil.test."));
            send(&reply)
        }
        Behavior::Spoof => {
            let forged = |id: u16, name: &Name| {
                let mut m = Message::new();
                m.set_id(id)
                    .set_message_type(MessageType::Response)
                    .set_recursion_desired(true)
                    .set_recursion_available(true);
                m.add_query(Query::query(name.clone(), RecordType::A));
                m.add_answer(forged_a(&name.to_ascii()));
                m
            };
            let name = query.queries()[0].name();
            send(&forged(query.id().wrapping_add(1), name))?;
            send(&forged(
                query.id(),
                &Name::from_ascii("evil.example.test.")?,
            ))?;
            if let Some(other) = &shared.spoof_from {
                other.send_to(&forged(query.id(), name).to_vec()?, client)?;
            }
            Ok(())
        }
    }
}

fn forged_a(name: &str) -> Record {
    Record::from_rdata(
        Name::from_ascii(name).expect("valid name"),
        300,
        RData::A(A::from(std::net::Ipv4Addr::from(FORGED))),
    )
}

/// NSD's reply to `wire`.
fn ask_nsd(shared: &Shared, relay: &Mutex<()>, wire: &[u8]) -> Result<Message> {
    let _one_at_a_time = relay.lock().unwrap();
    let nsd: SocketAddr = format!("{UPSTREAM_V4}:53").parse()?;
    let bytes = crate::client::exchange_raw(&shared.nsd, nsd, wire, Duration::from_secs(1))?;
    Ok(Message::from_vec(&bytes)?)
}
