//! Keeping SERVED, and what the daemon knows the program charges, in line with the host's
//! addresses and interfaces as they change.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use tracing::warn;

use crate::{
    access::{Access, XdpPaths},
    kernel::{maps::XdpMaps, stacked},
};

/// How often SERVED is brought in line with the host's addresses.
const REFRESH: Duration = Duration::from_secs(5);

/// Refreshes SERVED for `listen`, and `access`'s view of the program on `attached`, for as
/// long as the daemon runs.
pub async fn refresh(
    maps: Arc<XdpMaps>,
    listen: Vec<SocketAddr>,
    attached: Vec<u32>,
    access: Arc<Access>,
) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.tick().await;
    // The same failure every few seconds is reported once.
    let mut last_error = None;
    loop {
        tick.tick().await;
        // SERVED may be refreshed and still not hold everything: the paths are read from it
        // either way.
        let refreshed = stacked::links()
            .context("listing interfaces")
            .and_then(|links| {
                let refreshed = maps.refresh_served(&listen, &links);
                let paths = XdpPaths::of(&maps, &attached, &links);
                refreshed.and(paths.map(|p| access.set_xdp_paths(p)))
            });
        let error = refreshed.err().map(|e| format!("{e:#}"));
        if error.is_some() && error != last_error {
            warn!(
                "refreshing the XDP addresses: {}",
                error.as_deref().unwrap_or_default()
            );
        }
        last_error = error;
    }
}
