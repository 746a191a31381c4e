//! dnsxdp: a caching DNS forwarder whose cache hits are answered by an XDP program.

pub mod access;
pub mod acl;
pub mod answer;
pub mod bpffs;
pub mod cache;
pub mod cache_ops;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod duration;
pub mod ethtool;
pub mod events;
pub mod flight;
pub mod kernel_cache;
pub mod kernel_log;
pub mod link;
pub mod local_addrs;
pub mod metrics;
pub mod pin;
pub mod query;
pub mod querylog;
pub mod ratelimit;
pub mod reload;
pub mod reply;
pub mod resolv_conf;
pub mod resolver;
pub mod security;
pub mod server;
pub mod size;
pub mod stacked;
pub mod stats;
pub mod upstream;
pub mod xdp;

/// The compiled XDP object (built from dnsxdp-ebpf by build.rs).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dnsxdp"));
