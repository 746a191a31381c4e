//! Reloading the ACL, the rate limits and the local records without a restart (SIGHUP,
//! `dnsxdp reload`).
//!
//! The config file is read again, with the command line's flags still over it, and validated
//! as at startup, and the hosts files are read again; only then are its access settings and
//! local records put in force. The cache and the attached program are kept, less the answers
//! of names whose local records changed; other settings take effect on a restart.

use std::sync::{Arc, Mutex};

use tracing::warn;

use crate::{
    access::Access,
    config::{Config, Sources},
    kernel::local_addrs::local_addrs,
    local,
    resolve::Resolver,
};

pub struct Reloader {
    sources: Sources,
    /// The settings in force.
    running: Mutex<Config>,
    access: Arc<Access>,
    resolver: Arc<Resolver>,
}

impl Reloader {
    /// For a daemon started from `sources`, which resolved to `config`.
    pub fn new(
        sources: Sources,
        config: Config,
        access: Arc<Access>,
        resolver: Arc<Resolver>,
    ) -> Reloader {
        Reloader {
            sources,
            running: Mutex::new(config),
            access,
            resolver,
        }
    }

    /// Puts the access settings and local records of the config file in force and describes
    /// them. On an error, which is one line naming the setting, nothing has changed.
    pub fn reload(&self) -> anyhow::Result<String> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let addrs = local_addrs()?;
        let new = Config::resolve(self.sources.settings()?, &addrs, || {
            std::fs::read_to_string("/etc/resolv.conf")
        })?;
        let records = local::load(&new.local)?;
        self.access.apply(&new.access)?;
        let described = describe(&records);
        let (daemon, kernel) = self.resolver.set_local(records)?;
        let others_changed = Config {
            access: new.access.clone(),
            local: new.local.clone(),
            ..running.clone()
        } != new;
        if others_changed {
            warn!(
                "reload: settings other than the ACL, the rate limit and local records take effect on restart"
            );
        }
        running.access = new.access;
        running.local = new.local;
        Ok(format!(
            "{}; {described} (forgot {daemon} answers in the daemon cache and {kernel} in the kernel's)",
            running.access.summary()
        ))
    }
}

/// Local records as the log and `dnsxdp reload` describe them.
pub fn describe(records: &local::LocalData) -> String {
    match records.bad_hosts_lines() {
        0 => format!("{} local records", records.len()),
        bad => format!(
            "{} local records ({bad} bad lines in hosts files)",
            records.len()
        ),
    }
}
