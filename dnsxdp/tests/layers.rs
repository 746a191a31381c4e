//! The folders of `src` are layers: a module may use the ones below its own and nothing above,
//! so no circle of modules can form. ARCHITECTURE.md draws the same order.

use std::{fs, path::Path};

/// Top to bottom; folders on one line do not use each other.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["daemon"],
    &["config"],
    &["ops", "serve"],
    &["resolve"],
    &["filter", "local"],
    &["access"],
    &["upstream", "kernel"],
    &["dns"],
    &["values"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level modules `text` names through `crate::`, in paths and in `use` groups.
fn uses(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        let s = s.trim_start();
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            names.push(ident(rest));
            continue;
        };
        // The first name of each item at the group's top level.
        let (mut depth, mut item_start) = (0, true);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = true,
                c if item_start && !c.is_whitespace() => {
                    names.push(ident(&group[i..]));
                    item_start = false;
                }
                _ => {}
            }
        }
    }
    names
}

fn visit(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            visit(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn modules_use_only_the_layers_below_their_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let Some(folder) = relative.parent().and_then(|p| p.iter().next()) else {
            continue; // lib.rs and main.rs stand above every layer.
        };
        let folder = folder.to_str().unwrap();
        let Some(own) = layer(folder) else {
            wrong.push(format!("{folder}/ is in no layer of LAYERS"));
            continue;
        };
        for used in uses(&fs::read_to_string(file).unwrap()) {
            // Items of the crate root, such as EBPF_OBJECT and the tests' allocation count,
            // are not layers.
            if used == folder
                || used == "allocations"
                || used.starts_with(|c: char| c.is_ascii_uppercase())
            {
                continue;
            }
            match layer(&used) {
                Some(theirs) if theirs > own => {}
                _ => wrong.push(format!("{} uses {used}", relative.display())),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn uses_are_found_in_paths_and_groups() {
    let text = "use crate::{\n    dns::{clock, ttl},\n    kernel::load::X, // crate::ops\n};\nlet a = crate::values::file::path;";
    assert_eq!(uses(text), ["dns", "kernel", "values"]);
}
