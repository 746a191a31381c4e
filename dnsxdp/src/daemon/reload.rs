//! Reloading the ACL and rate limits without a restart (SIGHUP, `dnsxdp reload`).
//!
//! The config file is read again, with the command line's flags still over it, and validated
//! as at startup; only then are its access settings put in force. The cache and the attached
//! program are kept; other settings take effect on a restart.

use std::sync::{Arc, Mutex};

use tracing::warn;

use crate::{
    access::Access,
    config::{Config, Sources},
    kernel::local_addrs::local_addrs,
};

pub struct Reloader {
    sources: Sources,
    /// The settings in force.
    running: Mutex<Config>,
    access: Arc<Access>,
}

impl Reloader {
    /// For a daemon started from `sources`, which resolved to `config`.
    pub fn new(sources: Sources, config: Config, access: Arc<Access>) -> Reloader {
        Reloader {
            sources,
            running: Mutex::new(config),
            access,
        }
    }

    /// Puts the access settings of the config file in force and describes them. On an error,
    /// which is one line naming the setting, nothing has changed.
    pub fn reload(&self) -> anyhow::Result<String> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let local = local_addrs()?;
        let new = Config::resolve(self.sources.settings()?, &local, || {
            std::fs::read_to_string("/etc/resolv.conf")
        })?;
        self.access.apply(&new.access)?;
        let others_changed = Config {
            access: new.access.clone(),
            ..running.clone()
        } != new;
        if others_changed {
            warn!("reload: settings other than the ACL and rate limit take effect on restart");
        }
        running.access = new.access;
        Ok(running.access.summary())
    }
}
