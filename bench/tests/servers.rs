//! The servers the bench compares, started and stopped as the bench does (needs root): one
//! server's XDP program must not stay attached and answer while the next one is measured.

use anyhow::{Result, ensure};
use dnsxdp_bench::{
    compare::contender::{Kind, Server},
    sandbox::Sandbox,
    zone,
};

#[test]
fn a_stopped_dnsxdp_leaves_no_xdp_program_for_the_next_server() -> Result<()> {
    let sandbox = Sandbox::new(&zone::zone_text())?;
    let dir = std::env::temp_dir().join(format!("dnsxdp-bench-servers-{}", std::process::id()));
    let server = Server::start(Kind::DnsxdpXdp, &sandbox, &dir.join("xdp"))?;
    ensure!(sandbox.xdp_attached()?, "dnsxdp attached no XDP program");
    drop(server);
    ensure!(
        !sandbox.xdp_attached()?,
        "XDP still attached after dnsxdp stopped: it would answer for the next server"
    );
    // The next server starts on a clean interface and is the one answering.
    let next = Server::start(Kind::DnsxdpNoXdp, &sandbox, &dir.join("no-xdp"))?;
    ensure!(!sandbox.xdp_attached()?);
    drop(next);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
