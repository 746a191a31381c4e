//! Loading the cache program with its maps, and attaching it or `dnsxdp_pass` to interfaces.

use anyhow::{Context as _, Result, anyhow, ensure};
use aya::{
    Ebpf, EbpfLoader,
    programs::{Xdp, XdpMode},
};
use dnsxdp::kernel::tier_map::TierMap;
use dnsxdp_common::{
    GLOBAL_HASH_KEY, GLOBAL_SETTINGS, PROG_CACHE, PROG_PASS, XdpSettings, hash::HashKey, tier::Tier,
};

/// Kernel cache size the tests load with (`--kernel-cache-size`): the object's default
/// preallocates far more than they use.
const TEST_CACHE_ENTRIES: u32 = 1024;

/// The cache program loaded into the kernel with its maps; attached nowhere unless `attach`
/// is called.
pub struct XdpCache {
    pub(super) ebpf: Ebpf,
    /// The random key of the name hash it was loaded with.
    pub(super) hash_key: HashKey,
    /// Handles on the cache's maps, in `Tier::ALL` order.
    pub(super) tiers: Vec<Box<dyn TierMap>>,
}

impl XdpCache {
    pub fn load() -> Result<Self> {
        Self::load_with(TEST_CACHE_ENTRIES)
    }

    /// With a kernel cache of `cache_entries`, its tiers sized as the daemon sizes them.
    pub fn load_with(cache_entries: u32) -> Result<Self> {
        Self::load_tiers(Tier::ALL.map(|t| t.entries(cache_entries)))
    }

    /// With tiers of these sizes, in `Tier::ALL` order.
    pub fn load_tiers(entries: [u32; 3]) -> Result<Self> {
        Self::load_configured(dnsxdp::EBPF_OBJECT, entries, XdpSettings::OFF)
    }

    /// Loads the program set to report what `settings` ask for.
    pub fn load_reporting(settings: XdpSettings) -> Result<Self> {
        let entries = Tier::ALL.map(|t| t.entries(TEST_CACHE_ENTRIES));
        Self::load_configured(dnsxdp::EBPF_OBJECT, entries, settings)
    }

    fn load_configured(object: &[u8], entries: [u32; 3], settings: XdpSettings) -> Result<Self> {
        let hash_key = random_hash_key()?;
        let mut loader = EbpfLoader::new();
        for (tier, n) in Tier::ALL.into_iter().zip(entries) {
            loader.map_max_entries(tier.map(), n);
        }
        let mut ebpf = loader
            .override_global(GLOBAL_HASH_KEY, &hash_key, true)
            .override_global(GLOBAL_SETTINGS, &settings, true)
            .load(object)
            .context("loading the eBPF object")?;
        xdp_mut(&mut ebpf, PROG_CACHE)?
            .load()
            .with_context(|| format!("loading program {PROG_CACHE}"))?;
        let tiers = super::maps::open_tiers(&ebpf)?;
        Ok(Self {
            ebpf,
            hash_key,
            tiers,
        })
    }

    /// Attaches the program to `iface` in the calling thread's network namespace, for as long
    /// as `self` lives.
    pub fn attach(&mut self, iface: &str) -> Result<()> {
        xdp_mut(&mut self.ebpf, PROG_CACHE)?
            .attach(iface, attach_mode())
            .with_context(|| format!("attaching {PROG_CACHE} to {iface}"))?;
        Ok(())
    }

    /// Instructions the verifier processed to accept the program (its budget is 1,000,000).
    pub fn verified_insns(&self) -> Result<u32> {
        self.program()?
            .info()?
            .verified_instruction_count()
            .context("kernel does not report verified instructions")
    }

    pub fn ebpf(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// The key of the name hash it was loaded with.
    pub fn hash_key(&self) -> HashKey {
        self.hash_key
    }

    pub(super) fn program(&self) -> Result<&Xdp> {
        xdp(&self.ebpf, PROG_CACHE)
    }
}

/// The XDP program `name` of `ebpf`.
pub fn xdp<'a>(ebpf: &'a Ebpf, name: &str) -> Result<&'a Xdp> {
    let prog = ebpf
        .program(name)
        .ok_or_else(|| anyhow!("no program {name}"))?;
    Ok(prog.try_into()?)
}

fn xdp_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("no program {name}"))?;
    Ok(prog.try_into()?)
}

/// `dnsxdp_pass` from the same object, loaded: a program that passes every frame.
pub fn load_pass() -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    for tier in Tier::ALL {
        loader.map_max_entries(tier.map(), 1);
    }
    let mut ebpf = loader
        .load(dnsxdp::EBPF_OBJECT)
        .context("loading the eBPF object")?;
    xdp_mut(&mut ebpf, PROG_PASS)?
        .load()
        .with_context(|| format!("loading program {PROG_PASS}"))?;
    Ok(ebpf)
}

/// Attaches `dnsxdp_pass` to `iface` in the current network namespace. It stays attached until
/// the returned object is dropped.
pub fn attach_pass(iface: &str) -> Result<Ebpf> {
    let mut ebpf = load_pass()?;
    xdp_mut(&mut ebpf, PROG_PASS)?
        .attach(iface, XdpMode::default())
        .with_context(|| format!("attaching {PROG_PASS} to {iface}"))?;
    Ok(ebpf)
}

/// The mode `cargo xtask test --xdp-mode` asks for, else the kernel's choice (native on veth).
fn attach_mode() -> XdpMode {
    match std::env::var(crate::daemon::XDP_MODE_ENV).as_deref() {
        Ok("skb") => XdpMode::Skb,
        Ok("native") => XdpMode::Driver,
        _ => XdpMode::default(),
    }
}

/// A random key for the name hash, as the daemon picks one at each load.
fn random_hash_key() -> Result<HashKey> {
    let mut key: HashKey = Default::default();
    let len = std::mem::size_of::<HashKey>();
    // SAFETY: writes at most the `len` bytes of `key`.
    let n = unsafe { libc::getrandom(key.as_mut_ptr().cast(), len, 0) };
    ensure!(
        n == len as isize,
        "getrandom: {}",
        std::io::Error::last_os_error()
    );
    Ok(key)
}
