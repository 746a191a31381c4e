//! `cargo xtask soak`: dnsxdp under mixed traffic for a long while, its first upstream made to
//! fail in turn (silent, SERVFAIL, slow) and recover, sampling the daemon's resident memory,
//! open descriptors and answers every few seconds. It passes if the daemon never stops, its
//! memory stays within 10 % and its descriptors within a few of where they were once the
//! cache was full, and clients keep getting answers.

use std::{
    fs,
    io::Write as _,
    net::{SocketAddr, TcpStream, UdpSocket},
    path::Path,
    sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use hickory_proto::rr::RecordType;
use plotters::prelude::*;

use dnsxdp_tests::{
    client::{exchange_tcp, exchange_udp, query, query_edns},
    daemon::Daemon,
    netns::{Topology, UPSTREAM_V4, UPSTREAM_V6},
    upstream::Nsd,
    upstreams::{Behavior, Responder, add_address},
};

const FAULTY: &str = "198.18.2.20";
/// How often the memory and descriptors are sampled, and the first upstream changes.
const SAMPLE: Duration = Duration::from_secs(10);
/// The first upstream's turns, one per sample.
const TURNS: [Behavior; 6] = [
    Behavior::Forward,
    Behavior::Silent,
    Behavior::Forward,
    Behavior::ServFail,
    Behavior::Forward,
    Behavior::Slow(Duration::from_millis(700)),
];

pub struct Options {
    pub minutes: u64,
    pub out: std::path::PathBuf,
}

/// One sample.
struct Sample {
    secs: f64,
    rss_kib: u64,
    fds: u64,
    answered: u64,
    unanswered: u64,
}

pub fn run(opts: &Options) -> Result<()> {
    let topo = Topology::new()?;
    let _nsd = Nsd::start(&topo.upstream, &[UPSTREAM_V4, UPSTREAM_V6])?;
    add_address(&topo, FAULTY)?;
    let faulty = Responder::start(&topo, FAULTY, Behavior::Forward)?;
    let nsd_url = format!("udp://{UPSTREAM_V4}:53");
    let daemon = Daemon::start_with_upstreams(
        &topo,
        &[&faulty.url(), &nsd_url],
        // A cache that fills in the first minute, so that memory levels off early.
        &["--daemon-cache-size", "20000"],
    )?;
    let pid = daemon.pid();
    let (answered, unanswered, stop) =
        (AtomicU64::new(0), AtomicU64::new(0), AtomicBool::new(false));
    let end = Instant::now() + Duration::from_secs(opts.minutes * 60);
    let start = Instant::now();
    let samples = thread::scope(|s| -> Result<Vec<Sample>> {
        for worker in 0..2 {
            let (topo, daemon) = (&topo, &daemon);
            let (answered, unanswered, stop) = (&answered, &unanswered, &stop);
            s.spawn(move || traffic(topo, daemon.v4, worker, answered, unanswered, stop));
        }
        let mut samples = Vec::new();
        let mut turn = 0;
        while Instant::now() < end {
            thread::sleep(SAMPLE);
            if !Path::new(&format!("/proc/{pid}")).exists() {
                stop.store(true, Relaxed);
                bail!("the daemon stopped:\n{}", daemon.log());
            }
            samples.push(Sample {
                secs: start.elapsed().as_secs_f64(),
                rss_kib: rss_kib(pid)?,
                fds: fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64,
                answered: answered.load(Relaxed),
                unanswered: unanswered.load(Relaxed),
            });
            turn += 1;
            faulty.set(TURNS[turn % TURNS.len()]);
        }
        stop.store(true, Relaxed);
        Ok(samples)
    })?;
    fs::create_dir_all(&opts.out)?;
    write_csv(&opts.out.join("soak.csv"), &samples)?;
    chart(&opts.out.join("soak.svg"), &samples)?;
    verdict(&samples)
}

/// Reads VmRSS of `pid`.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

/// Mixed queries until `stop`: cached names (XDP), new names (upstream), TXT and DO (the
/// daemon), TCP, and garbage.
fn traffic(
    topo: &Topology,
    server: SocketAddr,
    worker: u64,
    answered: &AtomicU64,
    unanswered: &AtomicU64,
    stop: &AtomicBool,
) {
    let Ok(Ok(sock)) = topo.client.enter(|| UdpSocket::bind("0.0.0.0:0")) else {
        return;
    };
    let mut i = worker * 1_000_000_000;
    while !stop.load(Relaxed) {
        i += 1;
        let wait = Duration::from_millis(500);
        let ok = match i % 10 {
            0..=3 => exchange_udp(
                &sock,
                server,
                &query("www.example.test.", RecordType::A),
                wait,
            )
            .is_ok(),
            4..=6 => {
                let name = format!("n{i}.many.example.test.");
                exchange_udp(&sock, server, &query(&name, RecordType::A), wait).is_ok()
            }
            7 => exchange_udp(
                &sock,
                server,
                &query_edns("txt.example.test.", RecordType::TXT, 1232, true),
                wait,
            )
            .is_ok(),
            8 => {
                let tcp = topo
                    .client
                    .enter(move || TcpStream::connect_timeout(&server, wait));
                let q = query("alias.example.test.", RecordType::A);
                match tcp {
                    Ok(Ok(mut c)) => exchange_tcp(&mut c, &q, wait).is_ok(),
                    _ => false,
                }
            }
            _ => {
                let _ = sock.send_to(&[0xff; 30], server);
                continue;
            }
        };
        let counter = if ok { answered } else { unanswered };
        counter.fetch_add(1, Relaxed);
        thread::sleep(Duration::from_millis(2));
    }
}

fn write_csv(path: &Path, samples: &[Sample]) -> Result<()> {
    let mut f = fs::File::create(path)?;
    writeln!(f, "seconds,rss_kib,fds,answered,unanswered")?;
    for s in samples {
        writeln!(
            f,
            "{:.0},{},{},{},{}",
            s.secs, s.rss_kib, s.fds, s.answered, s.unanswered
        )?;
    }
    Ok(())
}

/// Resident memory (MiB) and descriptors over time.
fn chart(path: &Path, samples: &[Sample]) -> Result<()> {
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let max_t = samples.last().map_or(1.0, |s| s.secs / 60.0);
    let max_rss = samples.iter().map(|s| s.rss_kib).max().unwrap_or(1) as f64 / 1024.0 * 1.2;
    let max_fds = samples.iter().map(|s| s.fds).max().unwrap_or(1) as f64 * 1.5;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "dnsxdp soak: resident memory and open descriptors",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .right_y_label_area_size(52)
        .build_cartesian_2d(0.0..max_t, 0.0..max_rss)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .set_secondary_coord(0.0..max_t, 0.0..max_fds);
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("RSS (MiB)")
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_secondary_axes()
        .y_desc("open descriptors")
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let blue = RGBColor(0x1f, 0x77, 0xb4);
    let orange = RGBColor(0xff, 0x7f, 0x0e);
    chart
        .draw_series(LineSeries::new(
            samples
                .iter()
                .map(|s| (s.secs / 60.0, s.rss_kib as f64 / 1024.0)),
            blue.stroke_width(2),
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .label("RSS")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], blue.stroke_width(2)));
    chart
        .draw_secondary_series(LineSeries::new(
            samples.iter().map(|s| (s.secs / 60.0, s.fds as f64)),
            orange.stroke_width(2),
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .label("descriptors")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], orange.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Memory within 10 % and descriptors within 5 of the first sample after a quarter of the
/// run; answers going on to the end.
fn verdict(samples: &[Sample]) -> Result<()> {
    let (Some(first), Some(last)) = (samples.get(samples.len() / 4), samples.last()) else {
        bail!("too few samples");
    };
    let settled = &samples[samples.len() / 4..];
    let rss_max = settled.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let fds = settled.iter().map(|s| s.fds);
    let (fd_min, fd_max) = (fds.clone().min().unwrap_or(0), fds.max().unwrap_or(0));
    let answered = last.answered - first.answered;
    let unanswered = last.unanswered - first.unanswered;
    println!(
        "soak: {:.0} min; RSS {} KiB after a quarter, at most {} KiB since (+{:.1} %); \
         descriptors {fd_min}..{fd_max}; {answered} answered and {unanswered} unanswered since",
        last.secs / 60.0,
        first.rss_kib,
        rss_max,
        (rss_max as f64 / first.rss_kib as f64 - 1.0) * 100.0,
    );
    if rss_max as f64 > first.rss_kib as f64 * 1.1 {
        bail!("memory grew more than 10 %");
    }
    if fd_max - fd_min > 5 {
        bail!("descriptors went from {fd_min} to {fd_max}");
    }
    if answered == 0 {
        bail!("nothing answered");
    }
    Ok(())
}
