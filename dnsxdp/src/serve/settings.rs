//! The listeners' settings: flags of `dnsxdp run` and keys of its config file alike.

use std::{net::SocketAddr, time::Duration};

use clap::Args;
use serde::Deserialize;

use super::TcpLimits;
use crate::values::{duration, file, nonzero, size};

/// Bytes the queries being answered may take.
const DEFAULT_IN_FLIGHT_MEMORY: u64 = 64 << 20;

/// More threads than this would only contend for the same sockets and cores.
const MAX_WORKERS: u32 = 256;

#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[group(skip)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    /// Address to serve DNS on, UDP and TCP (repeatable) [default: 0.0.0.0:53, [::]:53].
    #[arg(long, value_name = "ADDR:PORT")]
    #[serde(default, deserialize_with = "file::strings")]
    pub listen: Option<Vec<String>>,
    /// TCP connections open at once; past it, a new one replaces the quietest [default: 512].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    #[serde(default, deserialize_with = "file::positive")]
    pub tcp_connections: Option<u32>,
    /// TCP connections one client (an IPv4 address or IPv6 /64) may hold; past it, a new one
    /// replaces the client's quietest [default: 64].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    #[serde(default, deserialize_with = "file::positive")]
    pub tcp_connections_per_client: Option<u32>,
    /// A TCP connection without a query arriving, or with a reply the client does not read,
    /// for this long is closed [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(default, deserialize_with = "file::duration")]
    pub tcp_idle_timeout: Option<Duration>,
    /// Bytes the queries being answered may take, UDP and TCP together; past it reading waits
    /// [default: 64M].
    #[arg(long, value_name = "SIZE", value_parser = size::parse)]
    #[serde(default, deserialize_with = "file::size")]
    pub in_flight_memory: Option<u64>,
    /// Threads answering queries, each reading its own UDP socket of every listen address
    /// (SO_REUSEPORT) [default: one per CPU].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_WORKERS as i64))]
    #[serde(default, deserialize_with = "file::positive")]
    pub workers: Option<u32>,
}

/// The listeners as they run.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub tcp: TcpLimits,
    /// Bytes the queries being answered may take.
    pub in_flight_memory: u64,
    /// Runtime worker threads, and UDP sockets per listen address.
    pub workers: usize,
}

impl Settings {
    /// Validated, with defaults where not set.
    pub fn config(&self) -> anyhow::Result<Config> {
        let listen = match &self.listen {
            None => vec!["0.0.0.0:53".parse()?, "[::]:53".parse()?],
            Some(l) => l
                .iter()
                .map(|a| parse_listen(a))
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?,
        };
        let default = TcpLimits::default();
        let tcp = TcpLimits {
            connections: self
                .tcp_connections
                .map_or(default.connections, |n| n as usize),
            per_client: self
                .tcp_connections_per_client
                .map_or(default.per_client, |n| n as usize),
            idle_timeout: nonzero(
                "tcp-idle-timeout",
                self.tcp_idle_timeout,
                default.idle_timeout,
            )?,
        };
        let workers = match self.workers {
            Some(n) if n > MAX_WORKERS => {
                anyhow::bail!("workers: at most {MAX_WORKERS}")
            }
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(Config {
            listen,
            tcp,
            workers,
            in_flight_memory: nonzero(
                "in-flight-memory",
                self.in_flight_memory,
                DEFAULT_IN_FLIGHT_MEMORY,
            )?,
        })
    }
}

/// `ADDR:PORT` to serve on.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!("invalid listen address '{s}': expected ADDR:PORT, e.g. 0.0.0.0:53 or [::]:53")
    })
}
