//! dnsxdp: a caching DNS forwarder whose cache hits are answered by an XDP program.
//!
//! The folders follow a query's path; ARCHITECTURE.md draws it.

pub mod access;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dns;
pub mod kernel;
pub mod ops;
pub mod resolve;
pub mod serve;
pub mod upstream;
pub mod values;

/// The compiled XDP object (built from dnsxdp-ebpf by build.rs).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dnsxdp"));
