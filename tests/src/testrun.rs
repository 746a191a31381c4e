//! Running the real XDP object through `BPF_PROG_TEST_RUN`: loading it, filling its maps,
//! building query frames, reading answers and counters, and measuring its cost per packet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, PerCpuValues, RingBuf},
    programs::{TestRun, TestRunOptions, Xdp, XdpMode},
    util::nr_cpus,
};
use dnsxdp_common::{
    COUNTER_COUNT, CacheEntry, CacheKey, Counter, Event, GLOBAL_HASH_KEY, GLOBAL_SETTINGS,
    MAP_CACHE, MAP_COUNTERS, MAP_EVENTS, MAP_SERVED, PROG_CACHE, PROG_PASS, QCLASS_IN, QTYPE_OPT,
    SERVED_ANSWER, ServedKey, XdpSettings, entry::build_entry, hash::HashKey, name::QuestionKey,
};
use hickory_proto::{
    op::{Message, MessageType, OpCode, Query as HQuery},
    rr::{Name, RData, Record, RecordType},
};

/// CACHE size the tests load with: the object's default preallocates far more than they use.
pub const TEST_CACHE_ENTRIES: u32 = 1024;
pub const ETH_HLEN: usize = 14;

/// What the program returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Aborted,
    Drop,
    Pass,
    Tx,
    Redirect,
    Other(u32),
}

impl From<u32> for Action {
    fn from(v: u32) -> Self {
        match v {
            0 => Action::Aborted,
            1 => Action::Drop,
            2 => Action::Pass,
            3 => Action::Tx,
            4 => Action::Redirect,
            v => Action::Other(v),
        }
    }
}

/// One `BPF_PROG_TEST_RUN`.
#[derive(Clone, Debug)]
pub struct Run {
    pub action: Action,
    /// The frame as the program left it.
    pub data: Vec<u8>,
    /// Kernel-measured time per repetition.
    pub duration_ns: u64,
}

/// The counters summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub [u64; COUNTER_COUNT as usize]);

impl Counters {
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }

    /// `self - before`, counter by counter.
    pub fn since(&self, before: &Counters) -> Counters {
        let mut d = [0; COUNTER_COUNT as usize];
        for (i, v) in d.iter_mut().enumerate() {
            *v = self.0[i] - before.0[i];
        }
        Counters(d)
    }

    /// The counters that are not zero, for assertion messages and comparisons.
    pub fn nonzero(&self) -> Vec<(Counter, u64)> {
        Counter::ALL
            .iter()
            .map(|&c| (c, self.get(c)))
            .filter(|&(_, v)| v != 0)
            .collect()
    }
}

/// The cache program loaded into the kernel with its maps; attached nowhere unless `attach`
/// is called.
pub struct XdpCache {
    ebpf: Ebpf,
    /// The random key of the name hash it was loaded with.
    hash_key: HashKey,
}

impl XdpCache {
    pub fn load() -> Result<Self> {
        Self::load_with(TEST_CACHE_ENTRIES)
    }

    pub fn load_with(cache_entries: u32) -> Result<Self> {
        Self::load_object(dnsxdp::EBPF_OBJECT, cache_entries)
    }

    /// Loads the program set to report what `settings` ask for.
    pub fn load_reporting(settings: XdpSettings) -> Result<Self> {
        Self::load_configured(dnsxdp::EBPF_OBJECT, TEST_CACHE_ENTRIES, settings)
    }

    /// Loads another build of the program, e.g. to compare two versions.
    pub fn load_object(object: &[u8], cache_entries: u32) -> Result<Self> {
        Self::load_configured(object, cache_entries, XdpSettings::OFF)
    }

    fn load_configured(object: &[u8], cache_entries: u32, settings: XdpSettings) -> Result<Self> {
        let hash_key = random_hash_key()?;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_CACHE, cache_entries)
            .override_global(GLOBAL_HASH_KEY, &hash_key, true)
            .override_global(GLOBAL_SETTINGS, &settings, true)
            .load(object)
            .context("loading the eBPF object")?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROG_CACHE)
            .ok_or_else(|| anyhow!("no program {PROG_CACHE}"))?
            .try_into()?;
        prog.load()
            .with_context(|| format!("loading program {PROG_CACHE}"))?;
        Ok(Self { ebpf, hash_key })
    }

    /// Attaches the program to `iface` in the calling thread's network namespace, for as long
    /// as `self` lives.
    pub fn attach(&mut self, iface: &str) -> Result<()> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(PROG_CACHE)
            .ok_or_else(|| anyhow!("no program {PROG_CACHE}"))?
            .try_into()?;
        prog.attach(iface, attach_mode())
            .with_context(|| format!("attaching {PROG_CACHE} to {iface}"))?;
        Ok(())
    }

    /// Instructions the verifier processed to accept the program (its budget is 1,000,000).
    pub fn verified_insns(&self) -> Result<u32> {
        let prog: &Xdp = self
            .ebpf
            .program(PROG_CACHE)
            .ok_or_else(|| anyhow!("no program {PROG_CACHE}"))?
            .try_into()?;
        prog.info()?
            .verified_instruction_count()
            .context("kernel does not report verified instructions")
    }

    pub fn ebpf(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    fn served(&mut self) -> Result<HashMap<&mut MapData, ServedKey, u8>> {
        let map = self.ebpf.map_mut(MAP_SERVED).context("no SERVED map")?;
        Ok(HashMap::try_from(map)?)
    }

    fn cache(&mut self) -> Result<HashMap<&mut MapData, CacheKey, CacheEntry>> {
        let map = self.ebpf.map_mut(MAP_CACHE).context("no CACHE map")?;
        Ok(HashMap::try_from(map)?)
    }

    /// The key of the name hash it was loaded with.
    pub fn hash_key(&self) -> HashKey {
        self.hash_key
    }

    /// A handle of its own on the cache map, for another thread to write while this one runs
    /// the program.
    pub fn cache_handle(&mut self) -> Result<HashMap<MapData, CacheKey, CacheEntry>> {
        use std::os::fd::AsFd as _;
        let map = self.ebpf.map(MAP_CACHE).context("no CACHE map")?;
        let aya::maps::Map::LruHashMap(data) = map else {
            bail!("CACHE is not an LRU hash map");
        };
        let fd = data.fd().as_fd().try_clone_to_owned()?;
        let data = MapData::from_fd(fd)?;
        Ok(HashMap::try_from(aya::maps::Map::LruHashMap(data))?)
    }

    /// Answers queries to `addr`.
    pub fn serve(&mut self, addr: SocketAddr) -> Result<()> {
        self.serve_with(addr, SERVED_ANSWER)
    }

    /// Puts `addr` in SERVED with these `SERVED_*` bits.
    pub fn serve_with(&mut self, addr: SocketAddr, bits: u8) -> Result<()> {
        self.served()?.insert(served_key(addr), bits, 0)?;
        Ok(())
    }

    /// Stops answering queries to `addr`, as soon as each CPU's memo of SERVED lets go of it.
    pub fn unserve(&mut self, addr: SocketAddr) -> Result<()> {
        self.served()?.remove(&served_key(addr))?;
        Ok(())
    }

    /// The `CACHE` key of `key` under this load's hash key.
    pub fn cache_key(&self, key: &QuestionKey) -> CacheKey {
        key.cache_key(&self.hash_key)
    }

    pub fn insert(&mut self, key: &QuestionKey, entry: &CacheEntry) -> Result<()> {
        self.insert_at(&self.cache_key(key), entry)
    }

    /// Inserts `entry` under any key, whether or not it is its name's.
    pub fn insert_at(&mut self, key: &CacheKey, entry: &CacheEntry) -> Result<()> {
        // As the daemon does: the entry carries the key it is stored under.
        let entry = CacheEntry {
            key: *key,
            ..*entry
        };
        self.cache()?.insert(key, entry, 0)?;
        Ok(())
    }

    /// Makes an entry of `response` as the daemon does, stamped now, and inserts it.
    pub fn insert_response(&mut self, response: &[u8]) -> Result<(QuestionKey, CacheEntry)> {
        let (key, entry) = entry_from(response, u32::MAX)?;
        self.insert(&key, &entry)?;
        Ok((key, entry))
    }

    pub fn entry(&mut self, key: &QuestionKey) -> Result<Option<CacheEntry>> {
        let key = self.cache_key(key);
        match self.cache()?.get(&key, 0) {
            Ok(e) => Ok(Some(e)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The events the program reported since the last call.
    pub fn events(&mut self) -> Result<Vec<Event>> {
        let map = self.ebpf.map_mut(MAP_EVENTS).context("no EVENTS map")?;
        let mut ring = RingBuf::try_from(map)?;
        let mut events = Vec::new();
        while let Some(item) = ring.next() {
            ensure!(
                item.len() == size_of::<Event>(),
                "event of {} bytes",
                item.len()
            );
            events.push(bytemuck::pod_read_unaligned(&item));
        }
        Ok(events)
    }

    pub fn counters(&self) -> Result<Counters> {
        let map = self.ebpf.map(MAP_COUNTERS).context("no COUNTERS map")?;
        let array: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map)?;
        let mut c = Counters::default();
        for (i, v) in c.0.iter_mut().enumerate() {
            *v = array.get(&(i as u32), 0)?.iter().sum();
        }
        Ok(c)
    }

    pub fn reset_counters(&mut self) -> Result<()> {
        let cpus = nr_cpus().map_err(|(what, e)| anyhow!("{what}: {e}"))?;
        let map = self.ebpf.map_mut(MAP_COUNTERS).context("no COUNTERS map")?;
        let mut array: PerCpuArray<&mut MapData, u64> = PerCpuArray::try_from(map)?;
        for i in 0..COUNTER_COUNT {
            array.set(i, PerCpuValues::try_from(vec![0u64; cpus])?, 0)?;
        }
        Ok(())
    }

    pub fn run(&self, frame: &[u8]) -> Result<Run> {
        self.run_repeat(frame, 1)
    }

    /// Runs `frame` through the program `repeat` times. The kernel does not restore the frame
    /// between repetitions, so a repeated hit answers once and then sees its own answer.
    pub fn run_repeat(&self, frame: &[u8], repeat: u32) -> Result<Run> {
        ensure!(
            frame.len() >= ETH_HLEN,
            "BPF_PROG_TEST_RUN needs at least an Ethernet header"
        );
        let prog: &Xdp = self
            .ebpf
            .program(PROG_CACHE)
            .ok_or_else(|| anyhow!("no program {PROG_CACHE}"))?
            .try_into()?;
        let mut out = vec![0u8; 4096];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat,
                ..TestRunOptions::default()
            })
            .context("BPF_PROG_TEST_RUN")?;
        out.truncate(r.data_size_out as usize);
        Ok(Run {
            action: r.return_value.into(),
            data: out,
            duration_ns: r.duration.as_nanos() as u64,
        })
    }
}

/// A random key for the name hash, as the daemon picks one at each load.
pub fn random_hash_key() -> Result<HashKey> {
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

/// Attaches `dnsxdp_pass` to `iface` in the current network namespace. It stays attached until
/// the returned object is dropped.
/// The mode `cargo xtask test --xdp-mode` asks for, else the kernel's choice (native on veth).
fn attach_mode() -> XdpMode {
    match std::env::var(crate::daemon::XDP_MODE_ENV).as_deref() {
        Ok("skb") => XdpMode::Skb,
        Ok("native") => XdpMode::Driver,
        _ => XdpMode::default(),
    }
}

pub fn attach_pass(iface: &str) -> Result<Ebpf> {
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(MAP_CACHE, 1)
        .load(dnsxdp::EBPF_OBJECT)
        .context("loading the eBPF object")?;
    let prog: &mut Xdp = ebpf
        .program_mut(PROG_PASS)
        .ok_or_else(|| anyhow!("no program {PROG_PASS}"))?
        .try_into()?;
    prog.load()
        .with_context(|| format!("loading program {PROG_PASS}"))?;
    prog.attach(iface, XdpMode::default())
        .with_context(|| format!("attaching {PROG_PASS} to {iface}"))?;
    Ok(ebpf)
}

pub fn served_key(addr: SocketAddr) -> ServedKey {
    match addr.ip() {
        IpAddr::V4(a) => ServedKey::v4(a.octets(), addr.port()),
        IpAddr::V6(a) => ServedKey::new(a.octets(), addr.port()),
    }
}

/// CLOCK_MONOTONIC in ns, the clock of `CacheEntry::expires_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The daemon's entry for `response`, stamped now.
pub fn entry_from(response: &[u8], max_ttl: u32) -> Result<(QuestionKey, CacheEntry)> {
    build_entry(response, monotonic_ns(), max_ttl).map_err(|e| anyhow!("build_entry: {e:?}"))
}

/// A NOERROR response to `name`/`qtype` with `answers`, as an upstream would send it.
pub fn response(name: &str, qtype: RecordType, answers: Vec<Record>) -> Result<Vec<u8>> {
    let mut m = Message::new();
    m.set_id(0x4242)
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .set_recursion_available(true)
        .add_query(HQuery::query(Name::from_ascii(name)?, qtype))
        .add_answers(answers);
    Ok(m.to_vec()?)
}

/// A response to `name`/A whose records (497 bytes: six CNAMEs with 63-byte labels, then an A
/// record) fit an entry, but which is over 512 bytes for any name of 4 bytes or more.
pub fn big_response(name: &str) -> Result<Vec<u8>> {
    let target = |i: usize| {
        format!(
            "{}.x.example.net.",
            char::from(b'a' + i as u8).to_string().repeat(63)
        )
    };
    let mut records = Vec::new();
    let mut owner = name.to_string();
    for i in 0..6 {
        let t = target(i);
        records.push(record(
            &owner,
            300,
            RData::CNAME(hickory_proto::rr::rdata::CNAME(Name::from_ascii(&t)?)),
        )?);
        owner = t;
    }
    records.push(record(
        &owner,
        300,
        RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(198, 51, 100, 99))),
    )?);
    response(name, RecordType::A, records)
}

/// A record for `response`.
pub fn record(owner: &str, ttl: u32, rdata: RData) -> Result<Record> {
    Ok(Record::from_rdata(Name::from_ascii(owner)?, ttl, rdata))
}

/// Wire format of a dotted name, case kept; a trailing dot is optional.
pub fn wire_name(dotted: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in dotted
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// EDNS part of a query.
#[derive(Clone, Debug)]
pub struct Edns {
    pub udp_size: u16,
    pub version: u8,
    pub dnssec_ok: bool,
    pub options: Vec<(u16, Vec<u8>)>,
}

impl Edns {
    pub fn new(udp_size: u16) -> Self {
        Self {
            udp_size,
            version: 0,
            dnssec_ok: false,
            options: Vec::new(),
        }
    }

    pub fn option(mut self, code: u16, data: &[u8]) -> Self {
        self.options.push((code, data.to_vec()));
        self
    }
}

/// A DNS query message, built by hand so tests control every byte.
#[derive(Clone, Debug)]
pub struct Query {
    pub id: u16,
    /// Header bytes 2 and 3.
    pub flags: [u8; 2],
    pub name: Vec<u8>,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
}

pub const FLAG_RD: u8 = 0x01;
pub const FLAG_CD: u8 = 0x10;

impl Query {
    /// A recursive query (RD set) for `name` in class IN.
    pub fn new(name: &str, qtype: u16) -> Self {
        Self {
            id: 0xbeef,
            flags: [FLAG_RD, 0],
            name: wire_name(name),
            qtype,
            qclass: QCLASS_IN,
            edns: None,
        }
    }

    pub fn edns(mut self, edns: Edns) -> Self {
        self.edns = Some(edns);
        self
    }

    pub fn to_wire(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(64);
        m.extend_from_slice(&self.id.to_be_bytes());
        m.extend_from_slice(&self.flags);
        let arcount = self.edns.is_some() as u16;
        for count in [1u16, 0, 0, arcount] {
            m.extend_from_slice(&count.to_be_bytes());
        }
        m.extend_from_slice(&self.name);
        m.extend_from_slice(&self.qtype.to_be_bytes());
        m.extend_from_slice(&self.qclass.to_be_bytes());
        if let Some(e) = &self.edns {
            let rdata: Vec<u8> = e
                .options
                .iter()
                .flat_map(|(code, data)| {
                    let mut o = code.to_be_bytes().to_vec();
                    o.extend_from_slice(&(data.len() as u16).to_be_bytes());
                    o.extend_from_slice(data);
                    o
                })
                .collect();
            m.push(0);
            m.extend_from_slice(&QTYPE_OPT.to_be_bytes());
            m.extend_from_slice(&e.udp_size.to_be_bytes());
            m.extend_from_slice(&[0, e.version, if e.dnssec_ok { 0x80 } else { 0 }, 0]);
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(&rdata);
        }
        m
    }
}

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Link, network and transport headers of a query frame, client to server.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub client_mac: [u8; 6],
    pub server_mac: [u8; 6],
    /// 802.1Q tag control information.
    pub vlan: Option<u16>,
    /// An 802.1ad tag before the 802.1Q one (QinQ).
    pub outer_vlan: Option<u16>,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// IPv4 options, a multiple of 4 bytes.
    pub ip_options: Vec<u8>,
    pub ttl: u8,
    /// IPv4 flags and fragment offset field.
    pub frag: u16,
    /// IPv6 extension headers between the fixed header and UDP: each one's protocol number
    /// and bytes, whose first (its next header) is filled in.
    pub ipv6_extensions: Vec<(u8, Vec<u8>)>,
}

impl FrameSpec {
    pub fn v4() -> Self {
        Self::between(
            SocketAddr::new(Ipv4Addr::new(192, 0, 2, 10).into(), 40000),
            SocketAddr::new(Ipv4Addr::new(192, 0, 2, 53).into(), 53),
        )
    }

    pub fn v6() -> Self {
        Self::between(
            SocketAddr::new(
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10).into(),
                40000,
            ),
            SocketAddr::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x53).into(), 53),
        )
    }

    pub fn between(client: SocketAddr, server: SocketAddr) -> Self {
        Self {
            client_mac: CLIENT_MAC,
            server_mac: SERVER_MAC,
            vlan: None,
            outer_vlan: None,
            client,
            server,
            ip_options: Vec::new(),
            ttl: 61,
            frag: 0x4000,
            ipv6_extensions: Vec::new(),
        }
    }

    /// The frame carrying `payload` over UDP, with correct lengths and checksums.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(128 + payload.len());
        f.extend_from_slice(&self.server_mac);
        f.extend_from_slice(&self.client_mac);
        if let Some(tci) = self.outer_vlan {
            f.extend_from_slice(&0x88a8u16.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        if let Some(tci) = self.vlan {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        let udp_len = (8 + payload.len()) as u16;
        let mut udp = Vec::with_capacity(udp_len as usize);
        udp.extend_from_slice(&self.client.port().to_be_bytes());
        udp.extend_from_slice(&self.server.port().to_be_bytes());
        udp.extend_from_slice(&udp_len.to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(payload);
        match (self.client.ip(), self.server.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let hlen = 20 + self.ip_options.len();
                assert!(
                    hlen.is_multiple_of(4) && hlen <= 60,
                    "bad IPv4 options length"
                );
                let mut ip = vec![0x40 | (hlen / 4) as u8, 0];
                ip.extend_from_slice(&((hlen + udp.len()) as u16).to_be_bytes());
                ip.extend_from_slice(&0x1234u16.to_be_bytes());
                ip.extend_from_slice(&self.frag.to_be_bytes());
                ip.extend_from_slice(&[self.ttl, 17, 0, 0]);
                ip.extend_from_slice(&src.octets());
                ip.extend_from_slice(&dst.octets());
                ip.extend_from_slice(&self.ip_options);
                let c = internet_checksum(&[&ip]);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                let pseudo = pseudo_header(src.into(), dst.into(), udp.len());
                let c = udp_checksum(&pseudo, &udp);
                udp[6..8].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&ip);
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let mut chain = Vec::new();
                let mut next = 17;
                for (proto, header) in self.ipv6_extensions.iter().rev() {
                    let mut h = header.clone();
                    h[0] = next;
                    chain.splice(0..0, h);
                    next = *proto;
                }
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&(chain.len() as u16 + udp_len).to_be_bytes());
                f.extend_from_slice(&[next, self.ttl]);
                f.extend_from_slice(&src.octets());
                f.extend_from_slice(&dst.octets());
                f.extend_from_slice(&chain);
                let pseudo = pseudo_header(src.into(), dst.into(), udp.len());
                let c = udp_checksum(&pseudo, &udp);
                udp[6..8].copy_from_slice(&c.to_be_bytes());
            }
            _ => panic!("client and server of different address families"),
        }
        f.extend_from_slice(&udp);
        f
    }

    /// The frame of `query`.
    pub fn query(&self, query: &Query) -> Vec<u8> {
        self.build(&query.to_wire())
    }
}

/// An IPv6 Hop-by-Hop or Destination Options header (`proto`) of 8 bytes: PadN only.
pub fn padding_header(proto: u8) -> (u8, Vec<u8>) {
    (proto, vec![0, 0, 1, 4, 0, 0, 0, 0])
}

/// An IPv6 Fragment header with this offset and M flag field; `0` makes an atomic fragment.
pub fn fragment_header(offset_flags: u16) -> (u8, Vec<u8>) {
    let [hi, lo] = offset_flags.to_be_bytes();
    (44, vec![0, 0, hi, lo, 0, 0, 0x12, 0x34])
}

/// RFC 1071 checksum over the concatenation of `parts` (each of even length but the last).
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u64;
    for part in parts {
        for pair in part.chunks(2) {
            sum += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn udp_checksum(pseudo: &[u8], udp: &[u8]) -> u16 {
    match internet_checksum(&[pseudo, udp]) {
        0 => 0xffff,
        c => c,
    }
}

/// The UDP pseudo-header for either family.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, udp_len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, 17]);
            p.extend_from_slice(&(udp_len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(udp_len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 17]);
        }
        _ => panic!("mixed address families"),
    }
    p
}

/// A frame taken apart, trusting nothing but the frame length.
#[derive(Clone, Debug)]
pub struct ParsedFrame {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub vlan: Option<u16>,
    /// The 802.1ad tag before it.
    pub outer_vlan: Option<u16>,
    /// Offset of the IP header.
    pub l3: usize,
    /// IP header length (IPv4 options included).
    pub ip_hlen: usize,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// TTL or hop limit.
    pub ttl: u8,
    /// Offset of the UDP header.
    pub udp: usize,
    /// UDP length field.
    pub udp_len: usize,
    /// The UDP payload, as long as the UDP length says.
    pub payload: Vec<u8>,
}

pub fn parse_frame(f: &[u8]) -> Result<ParsedFrame> {
    ensure!(f.len() >= ETH_HLEN, "shorter than an Ethernet header");
    let be16 = |o: usize| -> Result<u16> {
        f.get(o..o + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| anyhow!("frame ends at {} before offset {o}", f.len()))
    };
    let (mut ethertype, mut l3, mut vlan, mut outer_vlan) = (be16(12)?, ETH_HLEN, None, None);
    if ethertype == 0x88a8 {
        outer_vlan = Some(be16(14)?);
        ethertype = be16(16)?;
        l3 += 4;
    }
    if ethertype == 0x8100 {
        vlan = Some(be16(l3)?);
        ethertype = be16(l3 + 2)?;
        l3 += 4;
    }
    let (src, dst, ttl, ip_hlen) = match ethertype {
        0x0800 => {
            let ip = f.get(l3..l3 + 20).context("short IPv4 header")?;
            ensure!(ip[0] >> 4 == 4 && ip[9] == 17, "not IPv4/UDP");
            let hlen = (ip[0] & 0xf) as usize * 4;
            let total = be16(l3 + 2)? as usize;
            ensure!(l3 + total <= f.len(), "IPv4 total length past the frame");
            let a = |o: usize| IpAddr::from(<[u8; 4]>::try_from(&ip[o..o + 4]).unwrap());
            (a(12), a(16), ip[8], hlen)
        }
        0x86dd => {
            let ip = f.get(l3..l3 + 40).context("short IPv6 header")?;
            ensure!(ip[0] >> 4 == 6 && ip[6] == 17, "not IPv6/UDP");
            let plen = be16(l3 + 4)? as usize;
            ensure!(
                l3 + 40 + plen <= f.len(),
                "IPv6 payload length past the frame"
            );
            let a = |o: usize| IpAddr::from(<[u8; 16]>::try_from(&ip[o..o + 16]).unwrap());
            (a(8), a(24), ip[7], 40)
        }
        t => bail!("ethertype {t:#06x}"),
    };
    let udp = l3 + ip_hlen;
    let udp_len = be16(udp + 4)? as usize;
    ensure!(udp_len >= 8, "UDP length {udp_len}");
    let payload = f
        .get(udp + 8..udp + udp_len)
        .context("UDP length past the frame")?
        .to_vec();
    Ok(ParsedFrame {
        dst_mac: f[0..6].try_into().unwrap(),
        src_mac: f[6..12].try_into().unwrap(),
        vlan,
        outer_vlan,
        l3,
        ip_hlen,
        src: SocketAddr::new(src, be16(udp)?),
        dst: SocketAddr::new(dst, be16(udp + 2)?),
        ttl,
        udp,
        udp_len,
        payload,
    })
}
