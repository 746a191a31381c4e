//! Measuring and showing dnsxdp rather than testing it: the bench against other caching
//! forwarders, the XDP program's cost per packet, the demo sandbox, the flood of hostile frames
//! and the soak. Built on the kernel tests' harness (dnsxdp-tests).

pub mod clients;
pub mod compare;
pub mod cost;
pub mod demo;
pub mod encrypted;
pub mod flood;
pub mod lists;
pub mod proc;
pub mod sandbox;
pub mod soak;
pub mod zone;
