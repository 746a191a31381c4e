//! Prints the XDP program's cost per packet for each kind of query (needs root).
//!
//! `cargo run --release -p dnsxdp-bench --example xdp_cost [REPEAT] [ROUNDS]`

use anyhow::Context as _;
use dnsxdp_bench::cost::{cost_table, measure_costs};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let repeat = args
        .next()
        .map_or(Ok(1_000_000), |a| a.parse())
        .context("REPEAT")?;
    let rounds = args.next().map_or(Ok(5), |a| a.parse()).context("ROUNDS")?;
    let costs = measure_costs(repeat, rounds)?;
    print!("{}", cost_table(&costs));
    Ok(())
}
