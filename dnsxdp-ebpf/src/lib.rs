#![no_std]
// The library target lets dnsxdp name this crate as a build dependency; the program is main.rs.
