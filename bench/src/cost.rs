//! The XDP program's cost per packet through `BPF_PROG_TEST_RUN`: for hits, misses and each
//! pass reason, against an empty program, and for hits in a cache of a million names; and the
//! kernel memory an entry of each tier takes.

use std::net::SocketAddr;

use anyhow::{Context as _, Result, ensure};
use dnsxdp_common::{PROG_PASS, tier::Tier};
use dnsxdp_tests::testrun::{
    frame::FrameSpec,
    program::{XdpCache, load_pass, xdp},
    query::{Edns, Query},
    response::{a, aaaa, big_response, cname, entry_from, record, response},
    run::{Action, Run, test_run},
};
use hickory_proto::rr::RecordType;
use serde::Serialize;

/// A named frame for `measure_costs`.
struct Case {
    name: &'static str,
    frame: Vec<u8>,
    /// The program answers it, so the kernel's repeat loop cannot time it.
    hit: bool,
}

/// Per-packet cost of one case, in ns.
#[derive(Clone, Debug)]
pub struct Cost {
    pub case: &'static str,
    pub ns: f64,
    pub action: Action,
    /// Timed with the kernel's repeat loop; otherwise derived from single runs.
    pub repeated: bool,
}

/// Measures the program's cost per packet for hits, misses and each pass reason.
///
/// Frames the program leaves untouched are timed by the kernel's repeat loop: the median over
/// `rounds` of the mean over `repeat` runs. `BPF_PROG_TEST_RUN` does not restore the frame
/// between repetitions, so a repeated hit would answer once and then see its own answer;
/// answered frames are therefore timed one run per syscall (see `hit_cost`).
pub fn measure_costs(repeat: u32, rounds: usize) -> Result<Vec<Cost>> {
    let mut x = XdpCache::load()?;
    let v4 = FrameSpec::v4();
    let v6 = FrameSpec::v6();
    x.serve(v4.server)?;
    x.serve(v6.server)?;

    let name = "www.example.com.";
    x.insert_response(&response(
        name,
        RecordType::A,
        vec![record(name, 300, a([198, 51, 100, 1]))?],
    )?)?;
    x.insert_response(&response(
        name,
        RecordType::AAAA,
        vec![record(name, 300, aaaa("2001:db8::1"))?],
    )?)?;
    let chain = "cdn.example.com.";
    x.insert_response(&response(
        chain,
        RecordType::A,
        vec![
            record(chain, 300, cname("edge.cdn.example.net."))?,
            record("edge.cdn.example.net.", 60, a([198, 51, 100, 7]))?,
            record("edge.cdn.example.net.", 60, a([198, 51, 100, 8]))?,
        ],
    )?)?;

    let q = |n: &str, t: u16| Query::new(n, t);
    let mut response_flag = q(name, 1);
    response_flag.flags[0] |= 0x80;
    let mut big = q("big.example.com.", 1);
    big.qtype = 1;
    let mut cases = vec![
        Case {
            name: "ipv4 A hit",
            frame: v4.query(&q("www.Example.com", 1)),
            hit: true,
        },
        Case {
            name: "ipv6 AAAA hit",
            frame: v6.query(&q("www.Example.com", 28)),
            hit: true,
        },
        Case {
            name: "ipv4 CNAME chain hit",
            frame: v4.query(&q("cdn.example.com", 1)),
            hit: true,
        },
        Case {
            name: "ipv4 A hit, EDNS",
            frame: v4.query(&q("www.example.com", 1).edns(Edns::new(1232))),
            hit: true,
        },
        Case {
            name: "miss",
            frame: v4.query(&q("nothere.example.com", 1)),
            hit: false,
        },
        Case {
            name: "not served (port 5353)",
            frame: FrameSpec::between(v4.client, SocketAddr::new(v4.server.ip(), 5353))
                .query(&q(name, 1)),
            hit: false,
        },
        Case {
            name: "pass_not_query (response)",
            frame: v4.query(&response_flag),
            hit: false,
        },
        Case {
            name: "pass_unsupported (ANY)",
            frame: v4.query(&q(name, 255)),
            hit: false,
        },
        Case {
            name: "pass_edns (client subnet option)",
            frame: v4
                .query(&q(name, 1).edns(Edns::new(1232).option(8, &[0, 1, 24, 0, 198, 18, 1]))),
            hit: false,
        },
        Case {
            name: "pass_malformed (truncated)",
            frame: {
                let mut f = v4.query(&q(name, 1));
                f.truncate(f.len() - 3);
                f
            },
            hit: false,
        },
    ];
    // Too big: a 530-byte answer to a client without EDNS.
    {
        let n = "big.example.com.";
        x.insert_response(&big_response(n)?)?;
        cases.push(Case {
            name: "pass_too_big",
            frame: v4.query(&big),
            hit: false,
        });
    }
    // Expired: the same A entry under another name, with expires_ns in the past.
    {
        let n = "old.example.com.";
        let (key, mut entry) = entry_from(
            &response(n, RecordType::A, vec![record(n, 300, a([192, 0, 2, 1]))?])?,
            u32::MAX,
        )?;
        entry.expires_ns = 1;
        x.insert(&key, &entry)?;
        cases.push(Case {
            name: "expired",
            frame: v4.query(&q(n, 1)),
            hit: false,
        });
    }

    let miss = cases
        .iter()
        .find(|c| c.name == "miss")
        .map(|c| c.frame.clone())
        .context("no miss case")?;
    let mut costs = Vec::new();
    for c in &cases {
        let action = x.run(&c.frame)?.action;
        let ns = if c.hit {
            ensure!(action == Action::Tx, "{} is not answered", c.name);
            hit_cost(&x, &c.frame, &miss, repeat, rounds)?
        } else {
            ensure!(action != Action::Tx, "{} is answered", c.name);
            median_of(rounds, || x.run_repeat(&c.frame, repeat))?
        };
        costs.push(Cost {
            case: c.name,
            ns,
            action,
            repeated: !c.hit,
        });
    }
    costs.push(Cost {
        case: "baseline: empty XDP program",
        ns: empty_program_cost(&miss, repeat, rounds)?,
        action: Action::Pass,
        repeated: true,
    });
    Ok(costs)
}

/// What the kernel's repeat loop costs around any program: `dnsxdp_pass` from the same object.
fn empty_program_cost(frame: &[u8], repeat: u32, rounds: usize) -> Result<f64> {
    let ebpf = load_pass()?;
    let prog = xdp(&ebpf, PROG_PASS)?;
    median_of(rounds, || test_run(prog, frame, repeat))
}

/// The median over `rounds` of the time per repetition of `run`.
fn median_of(rounds: usize, mut run: impl FnMut() -> Result<Run>) -> Result<f64> {
    let runs = (0..rounds.max(1))
        .map(|_| run().map(|r| r.duration_ns as f64))
        .collect::<Result<_>>()?;
    Ok(median(runs))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Mean of the faster half of `v`: single runs carry interrupt and cache noise upwards only.
fn fast_half_mean(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let half = &v[..v.len().div_ceil(2)];
    half.iter().sum::<f64>() / half.len() as f64
}

/// Cost of a frame the program answers, median over `rounds`. Each round times single runs of
/// `hit` and of `miss` alternately, and the miss with the kernel's repeat loop; the difference
/// between the two miss timings is the overhead of a one-run syscall, taken off the hit.
pub fn hit_cost(x: &XdpCache, hit: &[u8], miss: &[u8], repeat: u32, rounds: usize) -> Result<f64> {
    hits_cost(x, || hit.to_vec(), miss, repeat, rounds)
}

/// `hit_cost` of a frame `hit()` gives for each single run.
fn hits_cost(
    x: &XdpCache,
    mut hit: impl FnMut() -> Vec<u8>,
    miss: &[u8],
    repeat: u32,
    rounds: usize,
) -> Result<f64> {
    let singles = (repeat / 50).clamp(1_000, 20_000) as usize;
    let mut estimates = Vec::new();
    for _ in 0..rounds.max(1) {
        // Built before the timing starts.
        let frames: Vec<Vec<u8>> = (0..singles).map(|_| hit()).collect();
        let (mut h, mut m) = (Vec::new(), Vec::new());
        for frame in &frames {
            let run = x.run(frame)?;
            ensure!(run.action == Action::Tx, "a hit not answered");
            h.push(run.duration_ns as f64);
            m.push(x.run(miss)?.duration_ns as f64);
        }
        let miss_repeated = x.run_repeat(miss, repeat)?.duration_ns as f64;
        estimates.push(fast_half_mean(h) - fast_half_mean(m) + miss_repeated);
    }
    Ok(median(estimates))
}

/// Names the cache holds while `measure_fill_costs` times hits on them, and the case each is.
const FILLS: [(u32, &str); 3] = [
    (10_000, "ipv4 A hit, 10k names cached"),
    (100_000, "ipv4 A hit, 100k names cached"),
    (1_000_000, "ipv4 A hit, 1M names cached"),
];

/// `--kernel-cache-size` of the cache they are put in: room to spare, since an LRU map may
/// evict before it is full (the free elements another CPU took for its own).
const FILLED_CACHE_SIZE: u32 = 1 << 20;

/// The IPv4 A hit of `measure_costs` in a cache of each of `FILLS` one-record names, asked at
/// random among them, so that the cost of the entries' cache misses in the CPU shows as the
/// cache grows beyond the CPU's.
pub fn measure_fill_costs(repeat: u32, rounds: usize) -> Result<Vec<Cost>> {
    let mut x = XdpCache::load_with(FILLED_CACHE_SIZE)?;
    let v4 = FrameSpec::v4();
    x.serve(v4.server)?;
    let name = |i: u32| format!("h{i:07}.example.com.");
    // One entry, its name rewritten for each: the records point back at the question.
    let (question, entry) = entry_from(
        &response(
            &name(0),
            RecordType::A,
            vec![record(&name(0), 86_400, a([198, 51, 100, 1]))?],
        )?,
        u32::MAX,
    )?;
    let miss = v4.query(&Query::new("nothere.example.com", 1));
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let (mut filled, mut costs) = (0, Vec::new());
    for (n, case) in FILLS {
        for i in filled..n {
            let label = &name(i).into_bytes()[..8];
            let (mut question, mut entry) = (question, entry);
            question.name[1..9].copy_from_slice(label);
            entry.data[1..9].copy_from_slice(label);
            let key = x.cache_key(&question);
            x.insert_in(Tier::Small, &key, &entry)?;
        }
        filled = n;
        let random_hit = || {
            // xorshift64*: the same names on every run.
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            let i = (rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32 % n;
            v4.query(&Query::new(&name(i), 1))
        };
        costs.push(Cost {
            case,
            ns: hits_cost(&x, random_hit, &miss, repeat, rounds)?,
            action: Action::Tx,
            repeated: false,
        });
    }
    Ok(costs)
}

/// The kernel memory of a tier's entries, as the kernel counts it (`memlock`).
#[derive(Clone, Debug, Serialize)]
pub struct TierMemory {
    pub tier: &'static str,
    /// Bytes of name and records an entry holds.
    pub data: usize,
    /// Bytes of a map value.
    pub value: usize,
    /// Bytes per entry: the difference between two map sizes with the same number of hash
    /// buckets, over the difference in entries.
    pub per_entry: f64,
    /// Bytes of a map of `entries`, its hash buckets and its own included.
    pub bytes: u64,
    pub entries: u32,
}

impl TierMemory {
    /// Bytes per entry with its share of the hash buckets.
    pub fn with_buckets(&self) -> f64 {
        self.bytes as f64 / f64::from(self.entries)
    }

    pub fn megabytes(&self) -> f64 {
        self.bytes as f64 / 1e6
    }
}

/// `TierMemory` of each tier, in the kernel cache `measure_fill_costs` fills.
pub fn measure_memory() -> Result<Vec<TierMemory>> {
    let size = FILLED_CACHE_SIZE;
    // Rounded up to the same power of two, every tier's map has as many buckets.
    let smaller = size / 4 * 3;
    let (big, small) = (XdpCache::load_with(size)?, XdpCache::load_with(smaller)?);
    Tier::ALL
        .into_iter()
        .map(|tier| {
            let (bytes, entries) = big.memory(tier)?;
            let (fewer_bytes, fewer) = small.memory(tier)?;
            Ok(TierMemory {
                tier: tier.name(),
                data: tier.data_len(),
                value: tier.value_len(),
                per_entry: (bytes - fewer_bytes) as f64 / f64::from(entries - fewer),
                bytes,
                entries,
            })
        })
        .collect()
}

/// `measure_memory` as a table.
pub fn memory_table(tiers: &[TierMemory]) -> String {
    let mut s = format!(
        "{:<8} {:>6} {:>6} {:>10} {:>14} {:>10} {:>9}\n",
        "tier", "data", "value", "per entry", "with buckets", "entries", "MB"
    );
    for t in tiers {
        s += &format!(
            "{:<8} {:>6} {:>6} {:>10.1} {:>14.1} {:>10} {:>9.1}\n",
            t.tier,
            t.data,
            t.value,
            t.per_entry,
            t.with_buckets(),
            t.entries,
            t.megabytes()
        );
    }
    s
}

/// The command line's `[REPEAT] [ROUNDS]`: runs per timing and timings per case, 1,000,000 and
/// 5 if not given.
pub fn repeat_and_rounds() -> Result<(u32, usize)> {
    let mut args = std::env::args().skip(1);
    let repeat = args
        .next()
        .map_or(Ok(1_000_000), |a| a.parse())
        .context("REPEAT")?;
    let rounds = args.next().map_or(Ok(5), |a| a.parse()).context("ROUNDS")?;
    Ok((repeat, rounds))
}

/// `measure_costs` as a table.
pub fn cost_table(costs: &[Cost]) -> String {
    let mut s = format!(
        "{:<32} {:>10}  {:<6}  {}\n",
        "case", "ns/packet", "action", "timing"
    );
    for c in costs {
        let how = if c.repeated { "repeat" } else { "single runs" };
        s += &format!(
            "{:<32} {:>10.1}  {:<6}  {how}\n",
            c.case,
            c.ns,
            format!("{:?}", c.action)
        );
    }
    s
}
