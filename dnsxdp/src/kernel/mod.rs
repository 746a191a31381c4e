//! The XDP program as the daemon sees it: loading and attaching it, its cache, the addresses
//! it answers on, the pins that keep it across restarts, and the interfaces under it.

mod batch;
pub mod bpffs;
pub mod cache;
pub mod ethtool;
pub mod link;
pub mod load;
pub mod local_addrs;
mod log;
pub mod maps;
pub mod pin;
pub mod settings;
pub mod stacked;
pub mod tier_map;
