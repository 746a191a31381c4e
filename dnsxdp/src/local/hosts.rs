//! Hosts files, /etc/hosts' format: `ADDRESS NAME [ALIAS...]`, read as dnsmasq and CoreDNS's
//! hosts plugin read them.

use std::net::IpAddr;

use hickory_proto::rr::{
    RData, Record,
    rdata::{A, AAAA},
};

use super::record;

/// What a hosts file holds.
#[derive(Debug, Default)]
pub struct Hosts {
    /// An A or AAAA record for each name, in the file's order.
    pub records: Vec<Record>,
    /// Lines that are no mapping: a bad address, no name, or a bad name. A line with a bad name
    /// is dropped whole, so that a typo does not leave half its names.
    pub bad: usize,
}

/// The records of `text`, living `ttl` seconds.
pub fn parse(text: &str, ttl: u32) -> Hosts {
    let mut hosts = Hosts::default();
    for line in text.lines() {
        let line = line.split_once('#').map_or(line, |(before, _)| before);
        let mut fields = line.split_whitespace();
        let Some(address) = fields.next() else {
            continue;
        };
        match mapping(address, fields, ttl) {
            Some(records) => hosts.records.extend(records),
            None => hosts.bad += 1,
        }
    }
    hosts
}

/// The records of one line, if it is good.
fn mapping<'a>(
    address: &str,
    names: impl Iterator<Item = &'a str>,
    ttl: u32,
) -> Option<Vec<Record>> {
    // A `%zone` address is bad here: std parses no zone.
    let data = match address.parse().ok()? {
        IpAddr::V4(a) => RData::A(A(a)),
        IpAddr::V6(a) => RData::AAAA(AAAA(a)),
    };
    let records = names
        .map(|n| Some(Record::from_rdata(record::name(n).ok()?, ttl, data.clone())))
        .collect::<Option<Vec<_>>>()?;
    (!records.is_empty()).then_some(records)
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::Name;

    use super::*;

    fn record(name: &str, address: &str) -> Record {
        let data = match address.parse().unwrap() {
            IpAddr::V4(a) => RData::A(A(a)),
            IpAddr::V6(a) => RData::AAAA(AAAA(a)),
        };
        Record::from_rdata(Name::from_ascii(name).unwrap(), 60, data)
    }

    #[test]
    fn names_and_aliases_of_both_families() {
        let text = "# The local network\n\
                    \n\
                    127.0.0.1\tlocalhost\n\
                    192.168.1.10  NAS nas.lan   # the file server\n\
                    fd00::10 nas.lan\n\
                    \t  # indented comment\n";
        let hosts = parse(text, 60);
        assert_eq!(hosts.bad, 0);
        assert_eq!(
            hosts.records,
            [
                record("localhost.", "127.0.0.1"),
                record("nas.", "192.168.1.10"),
                record("nas.lan.", "192.168.1.10"),
                record("nas.lan.", "fd00::10"),
            ]
        );
    }

    #[test]
    fn bad_lines_are_counted_and_skipped() {
        let text = "300.1.1.1 big\n\
                    fe80::1%eth0 zoned\n\
                    10.0.0.1\n\
                    10.0.0.2 good bad..name\n\
                    10.0.0.3 *.wild\n\
                    not-an-address name\n\
                    10.0.0.4 fine # 10.0.0.5 commented\n";
        let hosts = parse(text, 60);
        assert_eq!(hosts.bad, 6);
        assert_eq!(hosts.records, [record("fine.", "10.0.0.4")]);
    }
}
