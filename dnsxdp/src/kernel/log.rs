//! The XDP program's own log lines, which say why a query to us was passed or dropped. The
//! program writes them (aya-log) only when the daemon logs at debug level or finer; here they
//! are read into the `log` crate, whose records the tracing subscriber takes in (tracing-log).

use aya::Ebpf;
use aya_log::EbpfLogger;
use tokio::io::{Interest, unix::AsyncFd};
use tracing::warn;

/// Passes the lines of the program in `ebpf`, loaded with `debug_log` set, on to the daemon's
/// log for as long as the runtime runs. Without them the daemon still serves: a failure is
/// only logged.
pub fn forward(ebpf: &mut Ebpf) {
    let failed =
        |e: &dyn std::fmt::Display| warn!("the XDP program's log lines will not be shown: {e}");
    let logger = match EbpfLogger::init(ebpf) {
        Ok(logger) => logger,
        Err(e) => return failed(&e),
    };
    // SAFETY: the logger owns its ring buffer's descriptor and keeps it open, unchanged, until
    // it is dropped with the AsyncFd.
    let mut reader = match unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) } {
        Ok(reader) => reader,
        Err(e) => return failed(&e),
    };
    tokio::spawn(async move {
        while let Ok(mut ready) = reader.readable_mut().await {
            ready.get_inner_mut().flush();
            ready.clear_ready();
        }
    });
}
