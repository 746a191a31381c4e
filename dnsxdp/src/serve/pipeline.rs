//! What every listener does with a client's message, UDP and TCP alike: screen it by the ACL
//! and rate limit, then answer it within the budget of queries in flight. UDP answers a cache
//! hit at once, without a task.

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc};

use super::{in_flight::InFlight, proxied::TrustedProxies};
use crate::{
    access::{Access, Screened, Via},
    dns::reply::Transport,
    resolve::Resolver,
};

/// The screen and the resolver every listener shares.
#[derive(Clone)]
pub struct Pipeline {
    pub resolver: Arc<Resolver>,
    pub access: Arc<Access>,
    pub in_flight: InFlight,
    /// Whose word on the client behind them is taken.
    pub proxies: Arc<TrustedProxies>,
}

/// A stream listener's message let through: its reply, or the future that makes it.
pub enum Admitted {
    Now(Vec<u8>),
    Later(Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send>>),
}

/// A message the screen stopped; `denied` if by the ACL.
pub struct Dropped {
    pub denied: bool,
}

impl Pipeline {
    /// Screens `packet` from `peer`, which came `via` a listener over `transport`, and answers
    /// it over `out` as far as that takes no waiting: `Ok(true)` for the screen's own answer (a
    /// REFUSED, say) or a cache hit, `Ok(false)` for a query for `answer_later`.
    pub fn answer_now(
        &self,
        packet: &[u8],
        peer: SocketAddr,
        via: Via,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Result<bool, Dropped> {
        match self.screen(packet, peer, via)? {
            Some(reply) => {
                *out = reply;
                Ok(true)
            }
            None => Ok(self.resolver.answer_now(packet, peer, transport, out)),
        }
    }

    /// What the ACL and rate limit say of `packet`: `Ok(None)` to serve it, `Ok(Some(reply))`
    /// their own answer.
    fn screen(
        &self,
        packet: &[u8],
        peer: SocketAddr,
        via: Via,
    ) -> Result<Option<Vec<u8>>, Dropped> {
        match self.access.screen(packet, peer.ip(), via) {
            Screened::Serve => Ok(None),
            Screened::Answer(reply) => Ok(Some(reply)),
            Screened::Drop { denied } => Err(Dropped { denied }),
        }
    }

    /// The future answering a screened `packet` from `peer`, its bytes held in the budget of
    /// queries in flight until then: waiting here for room is what slows reading when the
    /// budget is spent.
    pub async fn answer_later(
        &self,
        packet: Vec<u8>,
        peer: SocketAddr,
        transport: Transport,
    ) -> impl Future<Output = Option<Vec<u8>>> + Send + 'static {
        let room = self.in_flight.take(packet.len()).await;
        let resolver = self.resolver.clone();
        async move {
            let reply = resolver.handle(&packet, peer, transport).await;
            drop(room);
            reply
        }
    }

    /// Screens `packet` from `peer`, which came `via` a stream listener over `transport`,
    /// and answers it at once if `answer_now` can; else the returned future does, held in the
    /// budget like `answer_later`'s.
    pub async fn admit(
        &self,
        packet: Vec<u8>,
        peer: SocketAddr,
        via: Via,
        transport: Transport,
    ) -> Result<Admitted, Dropped> {
        let mut out = Vec::new();
        if self.answer_now(&packet, peer, via, transport, &mut out)? {
            return Ok(Admitted::Now(out));
        }
        // Boxed: the resolver's future is large, and the futures of listeners that hold it
        // would be as large for every query, hits included, and copied whole at each spawn.
        let later = self.answer_later(packet, peer, transport).await;
        Ok(Admitted::Later(Box::pin(later)))
    }
}
