//! Where and how the XDP program is attached, and its cache. Flags of `dnsxdp run` and keys of
//! its config file alike.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Deserialize;

use super::pin;
use crate::values::file;

#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[group(skip)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    /// Interface to attach the XDP program to (repeatable).
    #[arg(long, value_name = "IFACE")]
    #[serde(default, deserialize_with = "file::strings")]
    pub iface: Option<Vec<String>>,
    /// XDP attach mode; auto tries native and falls back to skb [default: auto].
    #[arg(long, value_enum)]
    #[serde(default, deserialize_with = "file::choice")]
    pub xdp_mode: Option<XdpMode>,
    /// Serve everything from userspace; load no eBPF.
    #[arg(long, num_args = 0, default_missing_value = "true")]
    #[serde(default, deserialize_with = "file::flag")]
    pub no_xdp: Option<bool>,
    /// Answers in the kernel (XDP) cache: N small ones (a name and records of up to 104
    /// bytes, 256 bytes of kernel memory each), and room for N/8 medium and N/32 large ones
    /// besides [default: --cache-size].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    #[serde(default, deserialize_with = "file::positive")]
    pub kernel_cache_size: Option<u32>,
    /// Start with an empty kernel cache instead of the one the last run left pinned.
    #[arg(long, num_args = 0, default_missing_value = "true")]
    #[serde(default, deserialize_with = "file::flag")]
    pub fresh_cache: Option<bool>,
    /// bpffs directory the kernel cache is pinned in between runs
    /// [default: /sys/fs/bpf/dnsxdp/IFACE].
    #[arg(long, value_name = "DIR")]
    #[serde(default, deserialize_with = "file::path")]
    pub pin_dir: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode, falling back to skb mode.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic mode, run by the kernel's network stack.
    Skb,
}

/// The program's attachment as it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub ifaces: Vec<String>,
    /// `None` with --no-xdp.
    pub mode: Option<XdpMode>,
    /// Small entries in the XDP program's cache, which the other tiers' sizes follow
    /// (`Tier::entries`).
    pub cache_size: u32,
    /// Start with an empty kernel cache instead of the one pinned by the last run.
    pub fresh_cache: bool,
    /// Where the kernel cache is pinned between runs.
    pub pin_dir: PathBuf,
}

impl Settings {
    /// Validated, with defaults where not set; `cache_size` where the kernel's is not.
    pub fn config(&self, cache_size: u32) -> anyhow::Result<Config> {
        let no_xdp = self.no_xdp.unwrap_or(false);
        let ifaces = self.iface.clone().unwrap_or_default();
        if !no_xdp && ifaces.is_empty() {
            anyhow::bail!("no --iface given: name the interface(s) to attach to, or pass --no-xdp");
        }
        Ok(Config {
            pin_dir: pin::dir(self.pin_dir.clone(), &ifaces),
            ifaces,
            mode: (!no_xdp).then(|| self.xdp_mode.unwrap_or_default()),
            cache_size: self.kernel_cache_size.unwrap_or(cache_size),
            fresh_cache: self.fresh_cache.unwrap_or(false),
        })
    }
}
