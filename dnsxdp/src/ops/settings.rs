//! How operators reach the daemon: its control socket, metrics endpoint and log level. Flags
//! of `dnsxdp run` and keys of its config file alike.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::values::file;

/// Where `run` listens for control commands and the other commands find the daemon.
pub const DEFAULT_CONTROL: &str = "/run/dnsxdp/control.sock";

#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[group(skip)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    /// Serve Prometheus metrics over HTTP at ADDR:PORT (e.g. 127.0.0.1:9153); off unless given.
    #[arg(long, value_name = "ADDR:PORT")]
    #[serde(default, deserialize_with = "file::addr")]
    pub metrics: Option<String>,
    /// Log verbosity [default: info].
    #[arg(long, value_enum)]
    #[serde(default, deserialize_with = "file::choice")]
    pub log_level: Option<LogLevel>,
    /// Control socket path [default: /run/dnsxdp/control.sock].
    #[arg(long, value_name = "PATH")]
    #[serde(default, deserialize_with = "file::path")]
    pub control: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// Whether the XDP program is to log (`XdpSettings::debug_log`): its lines are at debug
    /// level.
    pub fn shows_debug(self) -> bool {
        matches!(self, LogLevel::Debug | LogLevel::Trace)
    }

    pub fn as_tracing(self) -> tracing::Level {
        match self {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        }
    }
}

/// The operator's interfaces as they run.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where the Prometheus endpoint listens, if anywhere.
    pub metrics: Option<SocketAddr>,
    pub log_level: LogLevel,
    pub control: PathBuf,
}

impl Settings {
    /// Validated, with defaults where not set.
    pub fn config(&self) -> anyhow::Result<Config> {
        let metrics = self.metrics.as_ref().map(|m| {
            m.parse().map_err(|_| {
                anyhow::anyhow!(
                    "metrics: invalid address '{m}': expected ADDR:PORT, e.g. 127.0.0.1:9153"
                )
            })
        });
        Ok(Config {
            metrics: metrics.transpose()?,
            log_level: self.log_level.unwrap_or_default(),
            control: self
                .control
                .clone()
                .unwrap_or_else(|| DEFAULT_CONTROL.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_logs_at_debug_level_and_finer() {
        assert!(LogLevel::Debug.shows_debug() && LogLevel::Trace.shows_debug());
        let quiet = [LogLevel::Info, LogLevel::Warn, LogLevel::Error];
        assert!(!quiet.iter().any(|l| l.shows_debug()));
    }
}
