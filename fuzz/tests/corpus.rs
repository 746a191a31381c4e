//! Every input the fuzzers kept (`corpus/`) and every one that once found a defect
//! (`regressions/`), run through its target's checks as a plain test. The `xdp` target loads
//! the XDP program, so this runs as root (`cargo xtask test`).

use std::{fs, path::Path};

use dnsxdp_fuzz::TARGETS;

#[test]
fn kept_inputs_and_reproducers_pass_their_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut ran = 0;
    for (target, check) in TARGETS {
        for kind in ["corpus", "regressions"] {
            let Ok(dir) = fs::read_dir(root.join(kind).join(target)) else {
                continue;
            };
            for file in dir {
                let path = file.unwrap().path();
                let data = fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| check(&data));
                assert!(outcome.is_ok(), "{} fails its checks", path.display());
                ran += 1;
            }
        }
    }
    // Seeds at least: an empty corpus would make this test pass unseen.
    assert!(ran >= TARGETS.len(), "only {ran} inputs");
}
