//! The program's own log lines (aya-log), run through BPF_PROG_TEST_RUN (needs root): why a
//! query to us was passed or dropped, written only when the loader asks for them
//! (`XdpSettings::debug_log`), and never for a hit.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
};

use aya_log::EbpfLogger;
use dnsxdp_common::{QTYPE_A, XdpSettings};
use dnsxdp_tests::testrun::{
    frame::FrameSpec,
    program::XdpCache,
    query::Query,
    response::{a, record, response},
    run::Action,
};
use hickory_proto::rr::RecordType;

const NAME: &str = "www.example.com.";

/// The records the program logged, as `level target: message`.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl log::Log for Lines {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        self.0.lock().unwrap().push(line);
    }

    fn flush(&self) {}
}

/// Runs a hit, a martian, an MX query and a miss through the program loaded with `debug_log`,
/// and returns the lines it logged.
fn lines_logged(debug_log: u32) -> Vec<String> {
    let mut x = XdpCache::load_reporting(XdpSettings {
        debug_log,
        ..XdpSettings::OFF
    })
    .unwrap();
    let v4 = FrameSpec::v4();
    x.serve(v4.server).unwrap();
    let answer = record(NAME, 300, a([198, 51, 100, 1])).unwrap();
    let cached = response(NAME, RecordType::A, vec![answer]).unwrap();
    x.insert_response(&cached).unwrap();
    let lines = Lines::default();
    let mut logger = EbpfLogger::init_with_logger(x.ebpf(), lines.clone()).unwrap();

    let loopback = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 40001);
    let runs = [
        (v4.query(&Query::new(NAME, QTYPE_A)), Action::Tx),
        (
            FrameSpec::between(loopback, v4.server).query(&Query::new(NAME, QTYPE_A)),
            Action::Pass,
        ),
        // ANY: no cached record set answers it.
        (v4.query(&Query::new(NAME, 255)), Action::Pass),
        (
            v4.query(&Query::new("nothere.example.com", QTYPE_A)),
            Action::Pass,
        ),
    ];
    for (frame, action) in &runs {
        assert_eq!(x.run(frame).unwrap().action, *action);
    }
    logger.flush();
    lines.0.lock().unwrap().clone()
}

#[test]
fn why_a_query_was_not_answered_is_logged_when_asked_for() {
    assert_eq!(
        lines_logged(1),
        [
            "DEBUG xdp: pass_martian: from ::ffff:127.0.0.1 port 40001",
            "DEBUG xdp: pass_unsupported: from ::ffff:192.0.2.10 port 40000",
            "DEBUG xdp: misses: from ::ffff:192.0.2.10 port 40000",
        ]
    );
}

#[test]
fn nothing_is_logged_unless_asked_for() {
    assert_eq!(lines_logged(0), Vec::<String>::new());
}
