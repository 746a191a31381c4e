//! What every listener does with a client's message, UDP and TCP alike: screen it by the ACL
//! and rate limit, then answer it within the budget of queries in flight. UDP answers a cache
//! hit at once, without a task.

use std::{future::Future, net::SocketAddr, sync::Arc};

use super::in_flight::InFlight;
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
}

/// A message the screen stopped; `denied` if by the ACL.
pub struct Dropped {
    pub denied: bool,
}

impl Pipeline {
    /// Screens `packet` from `peer`, which came `via` a listener, and answers it over `out` as
    /// far as that takes no waiting: `Ok(true)` for the screen's own answer (a REFUSED, say) or
    /// a cache hit, `Ok(false)` for a query for `answer_later`.
    pub fn answer_now(
        &self,
        packet: &[u8],
        peer: SocketAddr,
        via: Via,
        out: &mut Vec<u8>,
    ) -> Result<bool, Dropped> {
        match self.screen(packet, peer, via)? {
            Some(reply) => {
                *out = reply;
                Ok(true)
            }
            None => Ok(self.resolver.answer_now(packet, peer, out)),
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

    /// Screens `packet` from `peer`, which came `via` a listener. One let through is answered
    /// by the returned future, held in the budget like `answer_later`'s.
    pub async fn admit(
        &self,
        packet: Vec<u8>,
        peer: SocketAddr,
        via: Via,
        transport: Transport,
    ) -> Result<impl Future<Output = Option<Vec<u8>>> + Send + 'static, Dropped> {
        let own = self.screen(&packet, peer, via)?;
        let later = match own {
            Some(_) => None,
            None => Some(self.answer_later(packet, peer, transport).await),
        };
        Ok(async move {
            match later {
                Some(later) => later.await,
                None => own,
            }
        })
    }
}
