//! `cargo xtask demo`: dnsxdp with XDP on in the bench's sandbox, to watch it answer a repeat
//! from the kernel without touching the host's network. Stays up until Ctrl-C.

use std::process::Command;

use anyhow::{Result, bail};

use dnsxdp_tests::{
    daemon::{self, Daemon},
    netns::{SERVER_IFACE, SERVER_V4, SERVER_V6},
};

use crate::{proc, sandbox::Sandbox, zone};

pub fn run() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo creates network namespaces and attaches XDP programs: run as root");
    }
    println!("demo: creating namespaces and starting NSD with a zone of test names");
    let sandbox = Sandbox::new(&zone::zone_text())?;
    let daemon = Daemon::start(&sandbox.topo, &[])?;
    let client = &sandbox.topo.client.name;
    let server = &sandbox.topo.server.name;
    println!(
        "demo: dnsxdp serves {SERVER_V4} and {SERVER_V6} with XDP on {server}/{SERVER_IFACE}\n"
    );

    let dig_args = [
        &format!("@{SERVER_V4}"),
        "www.example.test",
        "+noall",
        "+answer",
    ];
    for attempt in ["first query", "repeat"] {
        proc::check()?;
        let before = daemon.xdp("hits")?;
        let mut dig = sandbox.topo.client.command("dig");
        dig.args(dig_args);
        let answer = proc::output(dig)?;
        let by_xdp = daemon.xdp("hits")? > before;
        println!(
            "$ ip netns exec {client} dig {}\n{}",
            dig_args.join(" "),
            answer.trim_end()
        );
        println!(
            "  {attempt}: {}\n",
            if by_xdp {
                "answered by the XDP program from the kernel map (xdp hits went up by one)"
            } else {
                "answered by the daemon, which asked NSD and filled the kernel map"
            }
        );
    }
    let bin = daemon::binary()?;
    let control = daemon.control.display();
    let mut stats = Command::new(&bin);
    stats.args(["stats", "--control"]).arg(&daemon.control);
    println!(
        "$ {} stats --control {control}\n{}",
        bin.display(),
        proc::output(stats)?
    );
    println!(
        "Explore (in another terminal):
  ip netns exec {client} dig @{SERVER_V4} www.example.test
  ip netns exec {client} dig @{SERVER_V6} h42.example.test AAAA
  ip netns exec {client} dig @{SERVER_V4} alias7.example.test
  {} stats --control {control}
  {} cache list --control {control}
  ip -n {server} link show {SERVER_IFACE}     # the attached XDP program

Press Ctrl-C to stop dnsxdp and NSD and delete the namespaces.",
        bin.display(),
        bin.display()
    );
    proc::wait_for_interrupt();
    drop(daemon);
    drop(sandbox);
    println!("\ndemo: stopped and cleaned up");
    Ok(())
}
