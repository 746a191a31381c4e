//! What every listener does with a client's message, UDP and TCP alike: screen it by the ACL
//! and rate limit, then answer it within the budget of queries in flight.

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
    /// Screens `packet` from `peer`, which came `via` a listener. One let through is answered
    /// by the returned future, its bytes held in the budget until then: waiting here for
    /// room is what slows reading when the budget is spent.
    pub async fn admit(
        &self,
        packet: Vec<u8>,
        peer: SocketAddr,
        via: Via,
        transport: Transport,
    ) -> Result<impl Future<Output = Option<Vec<u8>>> + Send + 'static, Dropped> {
        let screened = match self.access.screen(&packet, peer.ip(), via) {
            Screened::Serve => None,
            Screened::Answer(reply) => Some(reply),
            Screened::Drop { denied } => return Err(Dropped { denied }),
        };
        let room = self.in_flight.take(packet.len()).await;
        let resolver = self.resolver.clone();
        Ok(async move {
            let reply = match screened {
                Some(reply) => Some(reply),
                None => resolver.handle(&packet, peer, transport).await,
            };
            drop(room);
            reply
        })
    }
}
