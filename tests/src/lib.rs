//! Harness for dnsxdp's kernel tests: network namespaces, a real authoritative upstream, the
//! dnsxdp binary, and BPF_PROG_TEST_RUN of the XDP program.

pub mod client;
pub mod daemon;
pub mod http;
pub mod netns;
pub mod raw;
pub mod testrun;
pub mod tls;
pub mod unbound;
pub mod upstream;
pub mod upstreams;
