//! The XDP program's cost per packet through `BPF_PROG_TEST_RUN`: for hits, misses and each
//! pass reason, and against an empty program.

use std::net::SocketAddr;

use anyhow::{Context as _, Result, ensure};
use dnsxdp_common::PROG_PASS;
use dnsxdp_tests::testrun::{
    frame::FrameSpec,
    program::{XdpCache, load_pass, xdp},
    query::{Edns, Query},
    response::{a, aaaa, big_response, cname, entry_from, record, response},
    run::{Action, Run, test_run},
};
use hickory_proto::rr::RecordType;

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
            name: "pass_unsupported (MX)",
            frame: v4.query(&q(name, 15)),
            hit: false,
        },
        Case {
            name: "pass_edns (DO bit)",
            frame: v4.query(&q(name, 1).edns(Edns {
                dnssec_ok: true,
                ..Edns::new(1232)
            })),
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
    let singles = (repeat / 50).clamp(1_000, 20_000);
    let mut estimates = Vec::new();
    for _ in 0..rounds.max(1) {
        let (mut h, mut m) = (Vec::new(), Vec::new());
        for _ in 0..singles {
            h.push(x.run(hit)?.duration_ns as f64);
            m.push(x.run(miss)?.duration_ns as f64);
        }
        let miss_repeated = x.run_repeat(miss, repeat)?.duration_ns as f64;
        estimates.push(fast_half_mean(h) - fast_half_mean(m) + miss_repeated);
    }
    Ok(median(estimates))
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
