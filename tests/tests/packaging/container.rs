//! packaging/Containerfile, read as a builder would (no container engine here): its final
//! stage copies files `cargo xtask package` stages, to where the package installs them, and
//! runs that binary with that config.

use std::process::Command;

use super::{package, read, run, version};

/// The instructions of the final stage, as (INSTRUCTION, arguments), continuations joined.
fn final_stage() -> Vec<(String, String)> {
    let text = read("packaging/Containerfile").replace("\\\n", " ");
    let mut stage = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (instruction, args) = line.split_once(' ').unwrap_or((line, ""));
        let instruction = instruction.to_uppercase();
        if instruction == "FROM" {
            stage.clear();
        }
        stage.push((instruction, args.trim().to_owned()));
    }
    stage
}

/// The last `instruction` of the final stage, in the exec form (a JSON list).
fn exec_form(stage: &[(String, String)], instruction: &str) -> Vec<String> {
    let (_, args) = stage
        .iter()
        .rfind(|(i, _)| i == instruction)
        .unwrap_or_else(|| panic!("no {instruction}"));
    serde_json::from_str(args).unwrap_or_else(|e| panic!("{instruction} {args}: {e}"))
}

/// The image's program: one path, no arguments.
pub(super) fn entrypoint() -> String {
    let entrypoint = exec_form(&final_stage(), "ENTRYPOINT");
    let [binary] = &entrypoint[..] else {
        panic!("ENTRYPOINT {entrypoint:?}")
    };
    binary.clone()
}

#[test]
fn the_image_holds_what_the_package_installs_and_runs_the_binary() {
    let stage = final_stage();
    let context = &package().stage;
    let mut copied = Vec::new();
    for (instruction, args) in &stage {
        // ADD would fetch or unpack; only plain copies from the build context are expected.
        assert_ne!(instruction, "ADD");
        if instruction != "COPY" {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        assert!(!words.iter().any(|w| w.starts_with("--")), "COPY {args}");
        let [source, dest] = words[..] else {
            panic!("COPY {args}: one file at a time")
        };
        assert!(
            context.join(source).is_file(),
            "COPY {source}: `cargo xtask package` stages no such file in {}",
            context.display()
        );
        assert_eq!(
            dest,
            format!("/{source}"),
            "not where the package installs it"
        );
        copied.push(dest.to_owned());
    }

    let binary = entrypoint();
    assert!(
        copied.contains(&binary),
        "ENTRYPOINT {binary} is not copied in"
    );
    let staged = context.join(binary.trim_start_matches('/'));
    let said = run(Command::new(&staged).arg("--version")).unwrap();
    assert_eq!(said.trim(), format!("dnsxdp {}", version()));

    // Its default command runs the config it copies in.
    let cmd = exec_form(&stage, "CMD");
    let [run_, flag, config] = &cmd[..] else {
        panic!("CMD {cmd:?}")
    };
    assert_eq!((run_.as_str(), flag.as_str()), ("run", "--config"));
    assert!(copied.contains(config), "CMD's {config} is not copied in");
}
