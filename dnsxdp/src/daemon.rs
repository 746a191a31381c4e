//! `dnsxdp run`: start everything, serve until SIGINT, SIGTERM or `dnsxdp stop` (reloading the
//! access rules on SIGHUP), take it all down.

use std::{num::NonZeroUsize, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    task::JoinSet,
};
use tracing::{info, warn};

use dnsxdp_common::XdpSettings;

use crate::{
    access::{Access, Tables, XdpPaths, memory::MemoryTables},
    cli::RunArgs,
    config::Config,
    control::{ControlSocket, State},
    duration, ethtool, events, kernel_log,
    local_addrs::if_index,
    metrics,
    querylog::QueryLog,
    reload::Reloader,
    resolver::{Resolver, ResolverSettings},
    security,
    server::{self, InFlight},
    stacked,
    stats::Stats,
    upstream::pool::Pool,
    xdp,
};

/// How often SERVED is brought in line with the host's addresses.
const SERVED_REFRESH: Duration = Duration::from_secs(5);

/// What the XDP program is to report, from the settings.
fn xdp_settings(config: &Config) -> XdpSettings {
    // A veth or tap with rx checksum offload marks its peer's frames checked, whatever their
    // sums: the stack takes a sum left to offload from them. Unknown interfaces count as
    // wires, the stricter reading.
    let links = stacked::links().unwrap_or_default();
    let local = |iface: &String| {
        if_index(iface).is_some_and(|i| links.iter().any(|l| l.index == i && l.local))
            && ethtool::rx_checksum_offload(iface).unwrap_or(false)
    };
    XdpSettings {
        local_senders: u32::from(!config.ifaces.is_empty() && config.ifaces.iter().all(local)),
        check_next_hop: 1,
        prefetch_min_hits: config.prefetch_min_hits.map_or(u64::MAX, u64::from),
        log_sample: match config.query_log {
            Some(_) => config.query_log_sample,
            None => 0,
        },
        // More than the log writes, so that its summary line shows when a flood was cut short.
        security_per_sec: 2 * security::LINES_PER_SEC,
        debug_log: u32::from(kernel_log::wanted(config.log_level)),
        ..XdpSettings::OFF
    }
}

/// Runs the daemon `args` configured as `config`; `args` are kept for reloads.
pub async fn run(config: Config, args: RunArgs) -> anyhow::Result<()> {
    // Installed first so a signal during the seconds the verifier may take still shuts down
    // cleanly (or, SIGHUP, reloads instead of killing) once startup is done.
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    if config.xdp_mode.is_some() {
        xdp::check_ifaces(&config.ifaces)?;
        xdp::check_privileges()?;
    } else if !config.ifaces.is_empty() {
        warn!(
            "--no-xdp given: not attaching to {}",
            config.ifaces.join(", ")
        );
    }
    let pool = Arc::new(Pool::new(
        config.upstreams.clone(),
        config.pool,
        config.tls_ca.as_deref(),
    )?);
    let bound = server::bind(&config.listen)?;
    let control = ControlSocket::bind(&config.control)?;
    let metrics = config.metrics.map(metrics::Endpoint::bind).transpose()?;
    let stats = Arc::new(Stats::default());
    let query_log = config
        .query_log
        .as_ref()
        .map(|target| QueryLog::open(target, stats.clone()))
        .transpose()?
        .map(Arc::new);
    let (mut attached, tables, xdp_ifaces): (_, Box<dyn Tables>, _) = match config.xdp_mode {
        Some(mode) => {
            let opts = xdp::LoadOptions {
                mode,
                cache_size: config.kernel_cache_size,
                settings: xdp_settings(&config),
                pin_dir: &config.pin_dir,
                fresh_cache: config.fresh_cache,
                ttl: config.ttl,
            };
            let (attached, tables) =
                xdp::attach(&config.ifaces, &opts, &config.listen, &config.access)?;
            let ifaces: Vec<u32> = config.ifaces.iter().filter_map(|i| if_index(i)).collect();
            (Some(attached), Box::new(tables), ifaces)
        }
        None => {
            info!("XDP disabled: answering everything from userspace");
            (None, Box::new(MemoryTables::default()), Vec::new())
        }
    };
    let kernel = attached.as_ref().map(|a| a.maps.clone());
    let xdp_paths = match &kernel {
        Some(maps) => maps.paths(
            &xdp_ifaces,
            &stacked::links().context("listing interfaces")?,
        )?,
        None => XdpPaths::default(),
    };

    let access = Arc::new(Access::new(
        tables,
        &config.access,
        xdp_paths,
        stats.clone(),
    )?);
    info!("access: {}", config.access.summary());
    let cache_size =
        NonZeroUsize::new(config.daemon_cache_size as usize).context("cache size is 0")?;
    let settings = ResolverSettings {
        cache_size,
        cache_memory: usize::try_from(config.daemon_cache_memory).unwrap_or(usize::MAX),
        ttl: config.ttl,
        query_timeout: config.query_timeout,
        serve_stale: config.serve_stale,
        prefetch_min_hits: config.prefetch_min_hits,
        query_log: query_log.clone(),
    };
    let resolver = Arc::new(Resolver::new(
        pool.clone(),
        settings,
        stats.clone(),
        kernel.clone(),
    ));
    let mut tasks = JoinSet::new();
    if let Some(ring) = attached.as_mut().and_then(|a| a.events.take()) {
        let sinks = events::Sinks {
            resolver: resolver.clone(),
            query_log: query_log.clone(),
            access: access.clone(),
        };
        tasks.spawn(events::read(ring, sinks));
    }
    tasks.spawn(pool.clone().probe_down());
    let in_flight = InFlight::new(config.in_flight_memory);
    for b in bound {
        let addr = b.addr();
        b.serve(
            resolver.clone(),
            access.clone(),
            in_flight.clone(),
            config.tcp,
            &mut tasks,
        )
        .with_context(|| format!("serving {addr}"))?;
        info!("listening on {addr} (UDP and TCP)");
    }
    let upstreams: Vec<&str> = pool.names().collect();
    info!(
        "forwarding to {} ({}; {} per upstream, {} per query; serving stale for {})",
        upstreams.join(", "),
        config.pool.strategy.name(),
        duration::display(config.pool.attempt_timeout),
        duration::display(config.query_timeout),
        duration::display(config.serve_stale),
    );
    if let Some(maps) = kernel.clone() {
        let listen = config.listen.clone();
        let access = access.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(SERVED_REFRESH);
            tick.tick().await;
            // The same failure every few seconds is reported once.
            let mut last_error = None;
            loop {
                tick.tick().await;
                // SERVED may be refreshed and still not hold everything: the paths are read
                // from it either way.
                let refreshed = stacked::links()
                    .context("listing interfaces")
                    .and_then(|links| {
                        let refreshed = maps.refresh_served(&listen, &links);
                        let paths = maps.paths(&xdp_ifaces, &links);
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
        });
    }
    let reloader = Arc::new(Reloader::new(args, config.clone(), access.clone()));
    let on_sighup = reloader.clone();
    tasks.spawn(async move {
        while sighup.recv().await.is_some() {
            match on_sighup.reload() {
                Ok(rules) => info!("SIGHUP: reloaded: {rules}"),
                Err(e) => warn!("SIGHUP: reload failed, the rules in force are kept: {e:#}"),
            }
            if let Some(log) = &query_log {
                log.reopen();
            }
        }
    });
    let stop = Arc::new(tokio::sync::Notify::new());
    let state = Arc::new(State {
        stats,
        xdp: kernel,
        upstreams: pool,
        access,
        reloader,
        resolver,
        stop: stop.clone(),
    });
    if let Some(metrics) = metrics {
        info!("metrics at http://{}/metrics", metrics.addr());
        tasks.spawn(metrics.serve(state.clone()));
    }
    info!("control socket at {}", config.control.display());
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
