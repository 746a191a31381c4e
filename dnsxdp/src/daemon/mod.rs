//! `dnsxdp run`: start everything, serve until SIGINT, SIGTERM or `dnsxdp stop` (reloading the
//! access rules on SIGHUP), take it all down.

mod events;
pub mod reload;
mod served;

use std::sync::Arc;

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    task::JoinSet,
};
use tokio_rustls::TlsConnector;
use tracing::{info, warn};

use dnsxdp_common::XdpSettings;

use self::reload::Reloader;
use crate::{
    access::{Access, Tables, XdpPaths, kernel::KernelTables, memory::MemoryTables, security},
    config::{Config, Sources},
    filter::{Filter, source::Source},
    kernel::{
        ethtool,
        load::{self, Attached, LoadOptions},
        local_addrs::if_index,
        stacked,
    },
    local,
    ops::{
        control::{ControlSocket, State},
        metrics,
    },
    resolve::{Resolver, lists::Keeper, query_log::QueryLog},
    serve::{self, InFlight, Pipeline},
    upstream::{pool::Pool, rebind::Rebind, routes::Routes, spec::UpstreamSpec, tls::Connectors},
    values::duration,
};

/// What the XDP program is to report, from the settings.
fn xdp_settings(config: &Config) -> XdpSettings {
    let ifaces = &config.kernel.ifaces;
    // A veth or tap with rx checksum offload marks its peer's frames checked, whatever their
    // sums: the stack takes a sum left to offload from them. Unknown interfaces count as
    // wires, the stricter reading.
    let links = stacked::links().unwrap_or_default();
    let local = |iface: &String| {
        if_index(iface).is_some_and(|i| links.iter().any(|l| l.index == i && l.local))
            && ethtool::rx_checksum_offload(iface).unwrap_or(false)
    };
    XdpSettings {
        local_senders: u32::from(!ifaces.is_empty() && ifaces.iter().all(local)),
        check_next_hop: 1,
        prefetch_min_hits: config.resolve.prefetch_min_hits.map_or(u64::MAX, u64::from),
        log_sample: match config.resolve.query_log {
            Some(_) => config.resolve.query_log_sample,
            None => 0,
        },
        // More than the log writes, so that its summary line shows when a flood was cut short.
        security_per_sec: 2 * security::LINES_PER_SEC,
        debug_log: u32::from(config.ops.log_level.shows_debug()),
        groups: u32::from(!config.filter.groups.is_empty()),
    }
}

/// Loads the program and attaches it as `config` says, its access maps filled first so that
/// it never runs without its rules; with `--no-xdp`, the daemon's own tables. `ifindexes` are
/// those of the interfaces it attaches to.
fn attach(config: &Config, ifindexes: &[u32]) -> anyhow::Result<(Option<Attached>, Access)> {
    let Some(mode) = config.kernel.mode else {
        info!("XDP disabled: answering everything from userspace");
        let tables = Box::new(MemoryTables::default());
        return Ok((
            None,
            Access::new(tables, &config.access, XdpPaths::default())?,
        ));
    };
    let opts = LoadOptions {
        cache_size: config.kernel.cache_size,
        settings: xdp_settings(config),
        pin_dir: &config.kernel.pin_dir,
        fresh_cache: config.kernel.fresh_cache,
        ttl: config.resolve.ttl,
        groups: (config.filter.groups.prefixes().iter())
            .map(|(cidr, group)| {
                let (addr, len) = cidr.key();
                (addr, len, *group)
            })
            .collect(),
    };
    let mut loaded = load::load(&opts, &config.serve.listen)?;
    let tables: Box<dyn Tables> = Box::new(KernelTables::take(loaded.ebpf_mut())?);
    let links = stacked::links().context("listing interfaces")?;
    let paths = XdpPaths::of(loaded.maps(), ifindexes, &links)?;
    let access = Access::new(tables, &config.access, paths)?;
    Ok((Some(loaded.attach(&config.kernel.ifaces, mode)?), access))
}

/// TLS for lists downloaded over https, trusting what upstreams trust; without it (no
/// certificate store), only those lists fail to download.
fn list_tls(config: &Config) -> Option<TlsConnector> {
    let f = &config.filter;
    if !(f.block.iter().chain(&f.allow)).any(|s| matches!(s.source, Source::Url(_))) {
        return None;
    }
    match Connectors::new(config.upstream.tls_ca.as_deref()) {
        Ok(c) => Some(c.dot),
        Err(e) => {
            warn!("lists over https cannot be downloaded: {e:#}");
            None
        }
    }
}

/// Runs the daemon as `config` says; `sources` are kept for reloads.
pub async fn run(config: Config, sources: Sources) -> anyhow::Result<()> {
    // Installed first so a signal during the seconds the verifier may take still shuts down
    // cleanly (or, SIGHUP, reloads instead of killing) once startup is done.
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let ifaces = &config.kernel.ifaces;
    if config.kernel.mode.is_some() {
        load::check_ifaces(ifaces)?;
        load::check_privileges()?;
    } else if !ifaces.is_empty() {
        warn!("--no-xdp given: not attaching to {}", ifaces.join(", "));
    }
    let upstream = &config.upstream;
    let pool = |specs: &[UpstreamSpec]| {
        Pool::new(specs.to_vec(), upstream.pool, upstream.tls_ca.as_deref()).map(Arc::new)
    };
    let zones = (upstream.zones.iter())
        .map(|(zone, specs)| Ok((zone.clone(), pool(specs)?)))
        .collect::<anyhow::Result<_>>()?;
    let rebind = upstream.rebind.clone().map(Rebind::new);
    let routes = Arc::new(Routes::new(pool(&upstream.upstreams)?, zones, rebind));
    let bound = serve::bind(&config.serve.listen, config.serve.workers)?;
    let encrypted = (config.serve.encrypted.as_ref())
        .map(|e| serve::bind_encrypted(e, config.serve.tcp))
        .transpose()?;
    let control = ControlSocket::bind(&config.ops.control)?;
    let metrics = config
        .ops
        .metrics
        .map(metrics::Endpoint::bind)
        .transpose()?;
    let query_log = (config.resolve.query_log.as_ref())
        .map(QueryLog::open)
        .transpose()?
        .map(Arc::new);
    let xdp_ifaces: Vec<u32> = ifaces.iter().filter_map(|i| if_index(i)).collect();
    let (mut attached, access) = attach(&config, &xdp_ifaces)?;
    let access = Arc::new(access);
    info!("access: {}", config.access.summary());
    let kernel = attached.as_ref().map(|a| a.maps.clone());
    let lists = &config.filter;
    let filter = (!lists.block.is_empty() || !lists.groups.is_empty())
        .then(|| Arc::new(Filter::new(lists.clone())));
    let resolver = Arc::new(Resolver::new(
        routes.clone(),
        &config.resolve,
        query_log.clone(),
        kernel.clone(),
        filter.clone(),
    ));
    // Before the first query; answers the last run's kernel cache kept for these names go.
    let records = local::load(&config.local)?;
    if !records.is_empty() {
        info!("{}", reload::describe(&records));
    }
    resolver.set_local(records)?;
    let mut tasks = JoinSet::new();
    let keeper = match filter {
        Some(filter) => {
            let tls = list_tls(&config);
            let (keeper, refresh) = Keeper::start(filter, resolver.clone(), tls).await;
            tasks.spawn(refresh);
            Some(keeper)
        }
        None => None,
    };
    if let Some(ring) = attached.as_mut().and_then(|a| a.events.take()) {
        let sinks = events::Sinks {
            resolver: resolver.clone(),
            query_log: query_log.clone(),
            access: access.clone(),
        };
        tasks.spawn(events::read(ring, sinks));
    }
    for pool in routes.pools() {
        tasks.spawn(pool.clone().probe_down());
    }
    let pipeline = Pipeline {
        resolver: resolver.clone(),
        access: access.clone(),
        in_flight: InFlight::new(config.serve.in_flight_memory),
        proxies: Arc::new(config.serve.trusted_proxies.clone()),
    };
    for b in bound {
        let addr = b.addr();
        (b.serve(&pipeline, config.serve.tcp, &mut tasks))
            .with_context(|| format!("serving {addr}"))?;
        info!("listening on {addr} (UDP and TCP)");
    }
    let certs = match encrypted {
        Some((certs, listeners)) => {
            for l in listeners {
                let what = l.describe();
                (l.serve(&pipeline, config.serve.tcp, &mut tasks))
                    .with_context(|| format!("serving {what}"))?;
                info!("listening on {what}");
            }
            tasks.spawn(certs.clone().watch());
            Some(certs)
        }
        None => None,
    };
    let upstreams: Vec<&str> = routes
        .pools()
        .next()
        .into_iter()
        .flat_map(|p| p.names())
        .collect();
    for (zone, specs) in &upstream.zones {
        let to: Vec<String> = specs.iter().map(ToString::to_string).collect();
        info!("forwarding {zone} to {}", to.join(", "));
    }
    info!(
        "forwarding to {} ({}; {} per upstream, {} per query; serving stale for {})",
        upstreams.join(", "),
        upstream.pool.strategy.name(),
        duration::display(upstream.pool.attempt_timeout),
        duration::display(config.resolve.query_timeout),
        duration::display(config.resolve.serve_stale),
    );
    if let Some(maps) = kernel.clone() {
        tasks.spawn(served::refresh(
            maps,
            config.serve.listen.clone(),
            xdp_ifaces,
            access.clone(),
        ));
    }
    let reloader = Arc::new(Reloader::new(
        sources,
        config.clone(),
        access.clone(),
        resolver.clone(),
    ));
    let on_sighup = reloader.clone();
    let reopened = query_log.clone();
    let relisted = keeper.clone();
    tasks.spawn(async move {
        while sighup.recv().await.is_some() {
            match on_sighup.reload() {
                Ok(rules) => info!("SIGHUP: reloaded: {rules}"),
                Err(e) => warn!("SIGHUP: reload failed, the rules in force are kept: {e:#}"),
            }
            if let Some(log) = &reopened {
                log.reopen();
            }
            // Lists edited on disk are read again; downloads are fetched anew.
            if let Some(keeper) = &relisted {
                drop(keeper.refresh());
            }
            if let Some(certs) = &certs {
                certs.reload_and_log("SIGHUP");
            }
        }
    });
    let stop = Arc::new(tokio::sync::Notify::new());
    let state = Arc::new(State {
        query_log,
        xdp: kernel,
        upstreams: routes,
        access,
        reload: Box::new(move || reloader.reload()),
        resolver,
        lists: keeper,
        stop: stop.clone(),
    });
    if let Some(metrics) = metrics {
        info!("metrics at http://{}/metrics", metrics.addr());
        tasks.spawn(metrics.serve(state.clone()));
    }
    info!("control socket at {}", config.ops.control.display());
    // SIGTERM is what service managers send on a restart or an upgrade, so it leaves the
    // kernel answering until the next daemon takes over; the explicit stops detach.
    let detach = tokio::select! {
        _ = control.serve(state) => true,
        _ = stop.notified() => {
            info!("dnsxdp stop: detaching XDP and shutting down");
            true
        }
        _ = sigint.recv() => {
            info!("SIGINT: detaching XDP and shutting down");
            true
        }
        _ = sigterm.recv() => {
            if attached.is_some() {
                info!("SIGTERM: shutting down; XDP stays attached and answers from the kernel cache until dnsxdp runs again (dnsxdp stop detaches it)");
            } else {
                info!("SIGTERM: shutting down");
            }
            false
        }
    };
    tasks.shutdown().await;
    if let Some(attached) = attached.filter(|_| detach) {
        attached.stop();
    }
    drop(control);
    Ok(())
}
