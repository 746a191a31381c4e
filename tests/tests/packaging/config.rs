//! packaging/dnsxdp.toml, the default /etc/dnsxdp/dnsxdp.toml: as shipped it lacks only the
//! site's settings, every line it shows commented out is valid, those it calls defaults are
//! the defaults, and it shows every key.

use std::io;

use clap::CommandFactory as _;
use dnsxdp::{
    cli::Cli,
    config::{Config, Settings},
};

use super::read;

/// The settings of `text` resolved as `dnsxdp run --config` does, on a host without addresses
/// or /etc/resolv.conf.
fn resolve(text: &str) -> Result<Config, String> {
    let settings = Settings::from_toml(text)?;
    let no_resolv_conf = || Err(io::Error::other("no /etc/resolv.conf in this test"));
    Config::resolve(settings, &[], no_resolv_conf).map_err(|e| e.to_string())
}

/// The commented-out `#key = value` lines under each `## ` heading, uncommented.
fn sections(text: &str) -> Vec<(&str, Vec<&str>)> {
    let mut sections: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            sections.push((heading, Vec::new()));
        } else if let Some(setting) = line.strip_prefix('#')
            && setting.starts_with(|c: char| c.is_ascii_lowercase())
        {
            let (_, settings) = sections.last_mut().expect("settings under a heading");
            settings.push(setting);
        }
    }
    sections
}

fn section<'a>(sections: &[(&str, Vec<&'a str>)], heading: &str) -> Vec<&'a str> {
    sections
        .iter()
        .find(|(h, _)| h.starts_with(heading))
        .unwrap_or_else(|| panic!("no `## {heading}` in packaging/dnsxdp.toml"))
        .1
        .clone()
}

#[test]
fn as_shipped_it_lacks_only_the_interface() {
    let e = resolve(&read("packaging/dnsxdp.toml")).unwrap_err();
    assert!(e.starts_with("no --iface given"), "{e}");
}

#[test]
fn its_examples_are_valid_and_its_defaults_are_the_defaults() {
    let text = read("packaging/dnsxdp.toml");
    let sections = sections(&text);
    let site = section(&sections, "Site settings").join("\n");
    let optional = section(&sections, "Off unless set").join("\n");
    let defaults = section(&sections, "Defaults");
    assert!(!defaults.is_empty());
    resolve(&site).unwrap();
    let base = format!("{site}\n{optional}");
    let config = resolve(&base).unwrap();
    for line in defaults {
        assert_eq!(
            resolve(&format!("{base}\n{line}")).unwrap(),
            config,
            "`{line}` is not the default"
        );
    }
}

#[test]
fn it_shows_every_key() {
    let text = read("packaging/dnsxdp.toml");
    let shown: Vec<&str> = sections(&text)
        .into_iter()
        .flat_map(|(_, settings)| settings)
        .map(|s| s.split(" = ").next().unwrap())
        .collect();
    let cli = Cli::command();
    let run = cli.find_subcommand("run").expect("dnsxdp run");
    for arg in run.get_arguments() {
        // The file's keys are the long flag names, but for the file itself and the one negated
        // flag, whose key is the positive.
        let key = match arg.get_long() {
            None | Some("config") => continue,
            Some("no-prefetch") => "prefetch",
            Some(long) => long,
        };
        assert!(
            shown.contains(&key),
            "packaging/dnsxdp.toml does not show `{key}`"
        );
    }
}
