//! DNS over TLS and over HTTPS: dnsxdp and Unbound serving the same cache hits to dnsperf
//! (`-m dot`, `-m doh`), for queries per second and the server's CPU per answer.

use std::{fmt::Write as _, path::Path, time::Instant};

use anyhow::Result;
use dnsxdp_tests::{netns::SERVER_V4, unbound::TestCa};
use serde::Serialize;

use crate::{
    compare::{
        WARM_RATE,
        contender::{Kind, Server},
        cpu::Tasks,
        load::{Dnsperf, Mode, Outcome},
    },
    proc,
    sandbox::Sandbox,
};

/// The servers compared, by their contender name.
pub const SERVERS: [Kind; 2] = [Kind::DnsxdpXdp, Kind::Unbound];

#[derive(Clone, Debug, Serialize)]
pub struct EncryptedRun {
    pub server: String,
    /// `dot` or `doh`.
    pub transport: String,
    pub outcome: Outcome,
    /// Server CPU (its threads, and the softirq work of its veth) per answer.
    pub ns_per_answer: Option<f64>,
}

/// The table of runs.
pub fn markdown(runs: &[EncryptedRun]) -> String {
    let mut s = String::from(
        "| server | transport | answered qps | lost | server CPU per answer (µs) |\n\
         |---|---|--:|--:|--:|\n",
    );
    for r in runs {
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {} | {} |",
            r.server,
            r.transport,
            r.outcome.qps,
            r.outcome.lost,
            r.ns_per_answer
                .map_or("-".into(), |ns| format!("{:.1}", ns / 1000.0))
        );
    }
    s
}

/// Each of `SERVERS` with DoT on 853 and DoH on 443, its cache warmed over UDP with `hits`,
/// then asked those hits over each for `seconds`.
pub fn measure(
    sandbox: &Sandbox,
    dir: &Path,
    hits: &Path,
    seconds: u32,
    client_napi: u32,
) -> Result<Vec<EncryptedRun>> {
    let ca = TestCa::new(
        &format!("bench-{}", std::process::id()),
        &["dns.test"],
        &[SERVER_V4],
    )?;
    let mut runs = Vec::new();
    for kind in SERVERS {
        let server = Server::start_encrypted(kind, sandbox, &dir.join(format!("{kind:?}")), &ca)?;
        let dnsperf = |mode, rate, once| Dnsperf {
            server: SERVER_V4.parse().expect("valid address"),
            file: hits,
            seconds,
            rate,
            once,
            per_query: false,
            binary: false,
            mode,
        };
        dnsperf(Mode::Udp, Some(WARM_RATE), true).run(sandbox)?;
        let tasks = Tasks {
            server: server.pid(),
            napi: sandbox.server_napi()?,
            client_napi,
        };
        for mode in [Mode::Dot, Mode::Doh] {
            eprintln!("bench:   {} over {}", kind.name(), mode.name());
            let before = tasks.sample()?;
            let start = Instant::now();
            let outcome = dnsperf(mode, None, false).run(sandbox)?;
            let d = tasks.sample()?.since(&before);
            let answered = outcome.answered;
            let ns = d.server_ns + d.napi_ns;
            eprintln!(
                "bench:   {:.0} qps in {:.1} s",
                outcome.qps,
                start.elapsed().as_secs_f64()
            );
            runs.push(EncryptedRun {
                server: kind.name().into(),
                transport: mode.name().into(),
                outcome,
                ns_per_answer: (answered > 0).then(|| ns as f64 / answered as f64),
            });
            proc::sleep(std::time::Duration::from_millis(500))?;
        }
    }
    Ok(runs)
}
