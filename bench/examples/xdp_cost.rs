//! Prints the XDP program's cost per packet for each kind of query, and with a cache of up to
//! a million names, and the kernel memory an entry of each tier takes (needs root).
//!
//! `cargo run --release -p dnsxdp-bench --example xdp_cost [REPEAT] [ROUNDS]`

use dnsxdp_bench::cost::{
    cost_table, measure_costs, measure_fill_costs, measure_memory, memory_table, repeat_and_rounds,
};

fn main() -> anyhow::Result<()> {
    let (repeat, rounds) = repeat_and_rounds()?;
    let mut costs = measure_costs(repeat, rounds)?;
    costs.extend(measure_fill_costs(repeat, rounds)?);
    print!("{}", cost_table(&costs));
    println!("\nkernel cache memory, bytes (MB: the tier's map in a cache of 2^20)");
    print!("{}", memory_table(&measure_memory()?));
    Ok(())
}
