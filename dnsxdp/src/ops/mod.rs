//! What operators use on a running daemon: the control socket, the Prometheus endpoint, the
//! counters report and the cache commands.

pub mod cache_ops;
pub mod control;
pub mod metrics;
pub mod settings;
pub mod stats;
