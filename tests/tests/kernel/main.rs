//! The kernel tests, one module per feature: the XDP program through BPF_PROG_TEST_RUN, and the
//! real dnsxdp binary end to end in network namespaces. Run as root (`cargo xtask test`);
//! `cargo xtask test -- xdp_program::` runs one feature.
//!
//! They run side by side, as many at once as there are CPUs: each builds its own namespaces
//! (named for the process and a counter), pin directory, control socket and files, so that any
//! two can run at once. Only the CPUs are shared, and a few tests need them whole: see
//! `exclusive`.

mod access;
mod access_program;
mod cache_ops;
mod cache_tiers;
mod charged_once;
mod differential;
mod e2e;
mod encrypted;
mod forged_replies;
mod kernel_log;
mod lifecycle;
mod lists;
mod local_network;
mod metrics;
mod next_hop;
mod service;
mod tcp_limits;
mod upstreams;
mod vlan_offload;
mod xdp_program;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Held by the tests that keep both CPUs busy on purpose, or that count exactly what gets
/// through at a rate or within a deadline, which a busy CPU would change: no two of them run
/// at once, whichever features they test.
fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A test that failed while holding it does not fail the others.
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}
