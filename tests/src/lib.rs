//! Harness for dnsxdp's kernel tests: network namespaces, a real authoritative upstream, the
//! dnsxdp binary, and BPF_PROG_TEST_RUN of the XDP program.

pub mod bench;
pub mod client;
pub mod daemon;
pub mod demo;
pub mod flood;
pub mod netns;
pub mod raw;
pub mod soak;
pub mod testrun;
pub mod unbound;
pub mod upstream;
pub mod upstreams;
