//! Keeping the kernel cache across restarts: the map is pinned in bpffs, and the next run
//! moves its live entries into the map of the program it loads (whose name hash has a new
//! key), then pins that map in its place.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use aya::maps::{Map, MapData};
use dnsxdp_common::{CACHE_LAYOUT, CacheEntry, name::QuestionKey, tier::Tier};
use tracing::{info, warn};

use super::tier_map;

/// Where each run's kernel cache is pinned, under a directory named for its interfaces.
pub const PIN_ROOT: &str = "/sys/fs/bpf/dnsxdp";

/// The pin dir: as set, else one under PIN_ROOT named for the interfaces.
pub fn dir(set: Option<PathBuf>, ifaces: &[String]) -> PathBuf {
    set.unwrap_or_else(|| Path::new(PIN_ROOT).join(ifaces.join("+")))
}

/// Where the map of `tier` of this entry layout is pinned under `dir`: a daemon with another
/// layout never reads it.
pub fn cache_path(dir: &Path, tier: Tier) -> PathBuf {
    dir.join(format!("cache-v{CACHE_LAYOUT}-{}", tier.name()))
}

/// The entries of the cache pinned under `dir`, every tier's, that are live at `now_ns`, with
/// hit counts kept and prefetch requests cleared; the pins are removed. With `fresh`, nothing
/// is read.
pub fn take(dir: &Path, fresh: bool, now_ns: u64) -> Vec<(QuestionKey, CacheEntry)> {
    remove_other_layouts(dir);
    let pinned: Vec<(Tier, PathBuf)> = Tier::ALL
        .into_iter()
        .map(|tier| (tier, cache_path(dir, tier)))
        .filter(|(_, path)| path.exists())
        .collect();
    if fresh && !pinned.is_empty() {
        info!("--fresh-cache: starting with an empty kernel cache");
    }
    let mut entries = Vec::new();
    for (tier, path) in pinned {
        if !fresh {
            match read(tier, &path, now_ns) {
                Ok(live) => entries.extend(live),
                Err(e) => warn!(
                    "the kernel cache pinned at {} is not used: {e:#}",
                    path.display()
                ),
            }
        }
        if let Err(e) = std::fs::remove_file(&path) {
            warn!("removing the old pin {}: {e}", path.display());
        }
    }
    entries
}

/// Removes the caches a daemon of another entry layout pinned: none reads them again, and each
/// holds its kernel memory until it is removed.
fn remove_other_layouts(dir: &Path) {
    let ours = Tier::ALL.map(|tier| cache_path(dir, tier));
    let Ok(pins) = std::fs::read_dir(dir) else {
        return;
    };
    for path in pins.flatten().map(|pin| pin.path()) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !name.starts_with("cache-v") || ours.contains(&path) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => info!(
                "removed {}, a kernel cache of another layout",
                path.display()
            ),
            Err(e) => warn!("removing the old pin {}: {e}", path.display()),
        }
    }
}

fn read(tier: Tier, path: &Path, now_ns: u64) -> anyhow::Result<Vec<(QuestionKey, CacheEntry)>> {
    let data = MapData::from_pin(path).context("opening the pin")?;
    let map = tier_map::open(tier, Map::LruHashMap(data)).context("not a cache of this version")?;
    let mut live = Vec::new();
    for item in map.entries() {
        let (key, mut entry) = item.context("reading it")?;
        if entry.expires_ns > now_ns {
            entry.prefetch_sent = 0;
            live.push((QuestionKey::of_entry(&key, &entry), entry));
        }
    }
    Ok(live)
}

/// Pins `map` at `path` for the next run.
pub fn pin(map: &Map, path: &Path) -> anyhow::Result<()> {
    let pinned = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .map_err(anyhow::Error::from)
        .and_then(|()| Ok(map.pin(path)?));
    // `ip netns exec` mounts a /sys of its own, without the bpffs at /sys/fs/bpf.
    pinned.with_context(|| {
        format!(
            "pinning the kernel cache at {} (is a bpf filesystem mounted there? see --pin-dir)",
            path.display()
        )
    })
}

/// Removes `dir` with every pin in it: the links, whose programs are detached once nothing
/// else holds them, and the cache. The directory of dnsxdp's default pin dirs goes too once
/// it is empty.
pub fn remove_all(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => info!("removed the pins in {}", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!("removing the pins in {}: {e}", dir.display()),
    }
    if let Some(parent) = dir.parent().filter(|p| *p == Path::new(PIN_ROOT)) {
        let _ = std::fs::remove_dir(parent);
    }
}
