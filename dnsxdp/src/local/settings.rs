//! Local data's settings: flags of `dnsxdp run` and keys of its config file alike.

use std::path::PathBuf;

use anyhow::{anyhow, bail};
use clap::Args;
use hickory_proto::rr::{Record, RecordType};
use serde::{Deserialize, Deserializer};

use super::record;
use crate::values::{file, nonzero};

/// As CoreDNS's hosts plugin and Unbound.
const DEFAULT_TTL: u32 = 3600;

#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[group(skip)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    /// A record answered with authority, written as in a zone file: `NAME [TTL] [IN] TYPE DATA`,
    /// of type A, AAAA, CNAME, TXT, MX, SRV or PTR (repeatable).
    #[arg(long, value_name = "RECORD")]
    #[serde(default, deserialize_with = "file::strings")]
    pub local_record: Option<Vec<String>>,
    /// A file in /etc/hosts' format whose names are answered with authority, read again on
    /// reload (repeatable).
    #[arg(long, value_name = "FILE")]
    #[serde(default, deserialize_with = "paths")]
    pub hosts_file: Option<Vec<PathBuf>>,
    /// TTL of local records that give none, and of hosts files' records, in seconds
    /// [default: 3600].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..))]
    #[serde(default, deserialize_with = "file::positive")]
    pub local_ttl: Option<u32>,
}

/// Local data as it runs; hosts files are read when it is loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Each with its TTL: its own, or `ttl`.
    pub records: Vec<Record>,
    pub hosts_files: Vec<PathBuf>,
    pub ttl: u32,
}

impl Settings {
    /// Validated, with defaults where not set.
    pub fn config(&self) -> anyhow::Result<Config> {
        let ttl = nonzero("local-ttl", self.local_ttl, DEFAULT_TTL)?;
        let cname = |r: &Record| r.record_type() == RecordType::CNAME;
        let mut records: Vec<Record> = Vec::new();
        for s in self.local_record.iter().flatten() {
            let r = record::parse(s, ttl).map_err(|e| anyhow!("local-record: '{s}': {e}"))?;
            // A name with a CNAME has no other record (RFC 1034 §3.6.2): which would be
            // answered is anyone's guess.
            if records
                .iter()
                .any(|o| o.name() == r.name() && (cname(o) || cname(&r)))
            {
                bail!(
                    "local-record: '{s}': {} has a CNAME and other records",
                    r.name()
                );
            }
            records.push(r);
        }
        Ok(Config {
            records,
            hosts_files: self.hosts_file.clone().unwrap_or_default(),
            ttl,
        })
    }
}

/// A path, or a list of them.
fn paths<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<PathBuf>>, D::Error> {
    Ok(file::strings(d)?.map(|paths| paths.into_iter().map(PathBuf::from).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(lines: &[&str]) -> Settings {
        Settings {
            local_record: Some(lines.iter().map(|s| s.to_string()).collect()),
            ..Settings::default()
        }
    }

    #[test]
    fn defaults_and_ttls() {
        let config = Settings::default().config().unwrap();
        assert_eq!((config.records.len(), config.ttl), (0, 3600));
        assert!(config.hosts_files.is_empty());
        let config = Settings {
            local_ttl: Some(300),
            ..records(&["nas.lan A 192.168.1.10", "nas.lan 600 AAAA fd00::10"])
        }
        .config()
        .unwrap();
        let ttls: Vec<u32> = config.records.iter().map(Record::ttl).collect();
        assert_eq!(ttls, [300, 600]);
    }

    #[test]
    fn errors_name_the_key() {
        let e = records(&["nas.lan A 10.0.0.1", "nas.lan A 300.1.1.1"])
            .config()
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "local-record: 'nas.lan A 300.1.1.1': '300.1.1.1' is not an IPv4 address"
        );
        let e = Settings {
            local_ttl: Some(0),
            ..Settings::default()
        };
        assert_eq!(
            e.config().unwrap_err().to_string(),
            "local-ttl: must be more than 0"
        );
        let e = records(&["www.lan CNAME nas.lan", "WWW.lan A 10.0.0.1"])
            .config()
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "local-record: 'WWW.lan A 10.0.0.1': www.lan. has a CNAME and other records"
        );
        assert!(
            records(&["a.lan CNAME b.lan", "a.lan CNAME c.lan"])
                .config()
                .is_err()
        );
        assert!(
            records(&["a.lan A 10.0.0.1", "a.lan A 10.0.0.2"])
                .config()
                .is_ok()
        );
    }

    #[test]
    fn the_config_file_takes_a_string_or_a_list() {
        let one: Settings = toml::from_str(
            "local-record = 'nas.lan A 10.0.0.1'\nhosts-file = '/etc/hosts'\nlocal-ttl = 60",
        )
        .unwrap();
        assert_eq!(one.local_record.unwrap(), ["nas.lan A 10.0.0.1"]);
        assert_eq!(one.hosts_file.unwrap(), [PathBuf::from("/etc/hosts")]);
        assert_eq!(one.local_ttl, Some(60));
        let many: Settings = toml::from_str("hosts-file = ['/a', '/b']").unwrap();
        assert_eq!(many.hosts_file.unwrap().len(), 2);
        assert!(toml::from_str::<Settings>("hosts-file = 1").is_err());
        assert!(toml::from_str::<Settings>("local-ttl = 0").is_err());
    }
}
