//! The real XDP object in the kernel, run through `BPF_PROG_TEST_RUN`, and the frames it is
//! given and gives back.

pub mod checksum;
pub mod counters;
pub mod frame;
pub mod maps;
pub mod parse;
pub mod program;
pub mod query;
pub mod response;
pub mod run;
