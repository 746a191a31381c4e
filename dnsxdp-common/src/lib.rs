//! Map layouts, constants and pure DNS logic shared by the XDP program and the daemon.
//!
//! Everything here is `no_std` and allocation free so the kernel side can use it, and it is
//! plain byte logic so the host can unit-test and fuzz it.
#![no_std]

pub mod acl;
pub mod bare_reply;
pub mod checksum;
pub mod entry;
pub mod hash;
pub mod maps;
pub mod name;
pub mod ports;
pub mod qtype;
pub mod tier;

pub use maps::*;
