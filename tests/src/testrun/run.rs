//! `BPF_PROG_TEST_RUN`: a frame through a loaded program, and what came back.

use anyhow::{Context as _, Result, ensure};
use aya::programs::{TestRun, TestRunOptions, Xdp};

use super::{frame::ETH_HLEN, program::XdpCache};

/// What the program returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Aborted,
    Drop,
    Pass,
    Tx,
    Redirect,
    Other(u32),
}

impl From<u32> for Action {
    fn from(v: u32) -> Self {
        match v {
            0 => Action::Aborted,
            1 => Action::Drop,
            2 => Action::Pass,
            3 => Action::Tx,
            4 => Action::Redirect,
            v => Action::Other(v),
        }
    }
}

/// One `BPF_PROG_TEST_RUN`.
#[derive(Clone, Debug)]
pub struct Run {
    pub action: Action,
    /// The frame as the program left it.
    pub data: Vec<u8>,
    /// Kernel-measured time per repetition.
    pub duration_ns: u64,
}

impl XdpCache {
    pub fn run(&self, frame: &[u8]) -> Result<Run> {
        self.run_repeat(frame, 1)
    }

    /// Runs `frame` through the program `repeat` times. The kernel does not restore the frame
    /// between repetitions, so a repeated hit answers once and then sees its own answer.
    pub fn run_repeat(&self, frame: &[u8], repeat: u32) -> Result<Run> {
        test_run(self.program()?, frame, repeat)
    }
}

/// Runs `frame` through `prog` `repeat` times.
pub fn test_run(prog: &Xdp, frame: &[u8], repeat: u32) -> Result<Run> {
    ensure!(
        frame.len() >= ETH_HLEN,
        "BPF_PROG_TEST_RUN needs at least an Ethernet header"
    );
    let mut out = vec![0u8; 4096];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    out.truncate(r.data_size_out as usize);
    Ok(Run {
        action: r.return_value.into(),
        data: out,
        duration_ns: r.duration.as_nanos() as u64,
    })
}
