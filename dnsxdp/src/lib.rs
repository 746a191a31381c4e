//! dnsxdp: a caching DNS forwarder whose cache hits are answered by an XDP program.

/// The compiled XDP object (built from dnsxdp-ebpf by build.rs).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dnsxdp"));
