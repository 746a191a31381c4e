//! Prints the XDP program's cost per packet for each kind of query (needs root).
//!
//! `cargo run --release -p dnsxdp-bench --example xdp_cost [REPEAT] [ROUNDS]`

use dnsxdp_bench::cost::{cost_table, measure_costs, repeat_and_rounds};

fn main() -> anyhow::Result<()> {
    let (repeat, rounds) = repeat_and_rounds()?;
    let costs = measure_costs(repeat, rounds)?;
    print!("{}", cost_table(&costs));
    Ok(())
}
