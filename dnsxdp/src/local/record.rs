//! One record as a zone file or Unbound's local-data writes it: `NAME [TTL] [IN] TYPE DATA`,
//! so that lines can be copied from either.

use std::str::FromStr;

use anyhow::{anyhow, bail};
use hickory_proto::rr::{
    Name, RData, Record,
    rdata::{A, AAAA, CNAME, MX, PTR, SRV, TXT},
};

const FORM: &str = "a record is NAME [TTL] [IN] TYPE DATA";

/// The record `s` writes, living `ttl` seconds unless it gives its own TTL.
pub fn parse(s: &str, ttl: u32) -> anyhow::Result<Record> {
    let fields = fields(s)?;
    let mut fields = fields.iter().map(String::as_str);
    let owner = name(fields.next().ok_or_else(|| anyhow!(FORM))?)?;
    let mut word = fields.next();
    let mut ttl = ttl;
    if let Some(given) = word.filter(|w| w.bytes().all(|b| b.is_ascii_digit())) {
        ttl = (given.parse().ok().filter(|&t| t > 0))
            .ok_or_else(|| anyhow!("TTL '{given}' is not from 1 to 4294967295"))?;
        word = fields.next();
    }
    if word.is_some_and(|w| w.eq_ignore_ascii_case("IN")) {
        word = fields.next();
    }
    let kind = word.ok_or_else(|| anyhow!(FORM))?.to_ascii_uppercase();
    let wants = match kind.as_str() {
        "A" => "an IPv4 address",
        "AAAA" => "an IPv6 address",
        "CNAME" => "a target name",
        "PTR" => "a name",
        "MX" => "a preference and a mail server's name",
        "SRV" => "a priority, a weight, a port and a target name",
        "TXT" => "one or more strings",
        _ => bail!("unknown type '{kind}': local data has A, AAAA, CNAME, TXT, MX, SRV and PTR"),
    };
    let data: Vec<&str> = fields.collect();
    let data = match (kind.as_str(), data.as_slice()) {
        ("A", [a]) => RData::A(A(address(a, wants)?)),
        ("AAAA", [a]) => RData::AAAA(AAAA(address(a, wants)?)),
        ("CNAME", [target]) => RData::CNAME(CNAME(name(target)?)),
        ("PTR", [target]) => RData::PTR(PTR(name(target)?)),
        ("MX", [preference, exchange]) => RData::MX(MX::new(number(preference)?, name(exchange)?)),
        ("SRV", [priority, weight, port, target]) => RData::SRV(SRV::new(
            number(priority)?,
            number(weight)?,
            number(port)?,
            name(target)?,
        )),
        ("TXT", [_, ..]) => RData::TXT(TXT::new(strings(&data)?)),
        _ => bail!("{kind} needs {wants}"),
    };
    Ok(Record::from_rdata(owner, ttl, data))
}

/// `s` as a name: absolute whether or not it ends in a dot, lower-cased.
pub fn name(s: &str) -> anyhow::Result<Name> {
    // `""` would be the root, which is written `.`.
    let mut name = (Name::from_str_relaxed(s).ok())
        .filter(|_| !s.is_empty())
        .ok_or_else(|| anyhow!("'{s}' is not a domain name"))?;
    // Names are matched exactly: a `*` would never match what it seems to.
    if name.is_wildcard() {
        bail!("'{s}' is a wildcard, which local data does not have");
    }
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// An IPv4 or IPv6 address, as `wants` says.
fn address<T: FromStr>(s: &str, wants: &str) -> anyhow::Result<T> {
    s.parse().map_err(|_| anyhow!("'{s}' is not {wants}"))
}

fn number(s: &str) -> anyhow::Result<u16> {
    s.parse()
        .map_err(|_| anyhow!("'{s}' is not a number from 0 to 65535"))
}

/// TXT's character strings, of at most 255 bytes each on the wire.
fn strings(data: &[&str]) -> anyhow::Result<Vec<String>> {
    data.iter()
        .map(|s| match s.len() {
            0..=255 => Ok(s.to_string()),
            n => bail!("a TXT string is at most 255 bytes, not {n}"),
        })
        .collect()
}

/// The fields of `s`: words, and "quoted strings" (with `\"` and `\\`) for spaces in TXT.
fn fields(s: &str) -> anyhow::Result<Vec<String>> {
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(first) = chars.next() else {
            return Ok(fields);
        };
        let mut field = String::new();
        if first == '"' {
            loop {
                match chars.next() {
                    None => bail!("a quote is not closed"),
                    Some('"') => break,
                    Some('\\') => field.extend(chars.next()),
                    Some(c) => field.push(c),
                }
            }
        } else {
            field.push(first);
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                field.push(c);
            }
        }
        fields.push(field);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use hickory_proto::rr::RecordType;

    use super::*;

    fn data(s: &str) -> RData {
        parse(s, 3600).unwrap().data().clone()
    }

    fn error(s: &str) -> String {
        parse(s, 3600).unwrap_err().to_string()
    }

    fn fqdn(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn every_type() {
        let a = parse("NAS.lan A 192.168.1.10", 3600).unwrap();
        assert_eq!(a.name().to_ascii(), "nas.lan.");
        assert!(a.name().is_fqdn());
        assert_eq!(a.ttl(), 3600);
        assert_eq!(a.data(), &RData::A(A::new(192, 168, 1, 10)));
        let aaaa = parse("nas.lan. 600 IN aaaa fd00::10", 3600).unwrap();
        assert_eq!(aaaa.ttl(), 600);
        let v6: Ipv6Addr = "fd00::10".parse().unwrap();
        assert_eq!(aaaa.data(), &RData::AAAA(AAAA(v6)));
        assert_eq!(
            data("www.lan in CNAME nas.lan"),
            RData::CNAME(CNAME(fqdn("nas.lan.")))
        );
        assert_eq!(
            data("lan MX 10 mail.lan"),
            RData::MX(MX::new(10, fqdn("mail.lan.")))
        );
        assert_eq!(
            data("_ldap._tcp.lan SRV 0 5 389 nas.lan"),
            RData::SRV(SRV::new(0, 5, 389, fqdn("nas.lan.")))
        );
        assert_eq!(
            data(r#"nas.lan TXT "some text" "a \"quote\"" bare"#),
            RData::TXT(TXT::new(vec![
                "some text".into(),
                r#"a "quote""#.into(),
                "bare".into()
            ]))
        );
        let ptr = parse("10.1.168.192.in-addr.arpa PTR nas.lan", 3600).unwrap();
        assert_eq!(ptr.record_type(), RecordType::PTR);
        assert_eq!(ptr.data(), &RData::PTR(PTR(fqdn("nas.lan."))));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let cases = [
            ("nas.lan A 300.1.1.1", "'300.1.1.1' is not an IPv4 address"),
            ("nas.lan AAAA 192.168.1.10", "is not an IPv6 address"),
            ("nas.lan A", "A needs an IPv4 address"),
            ("nas.lan A 10.0.0.1 10.0.0.2", "A needs an IPv4 address"),
            ("nas.lan HINFO a b", "unknown type 'HINFO'"),
            ("nas.lan 10.0.0.1", "unknown type '10.0.0.1'"),
            ("nas.lan", "a record is NAME"),
            ("", "a record is NAME"),
            ("nas.lan 0 A 10.0.0.1", "TTL '0' is not from 1"),
            ("nas.lan 4294967296 A 10.0.0.1", "TTL '4294967296'"),
            ("nas..lan A 10.0.0.1", "'nas..lan' is not a domain name"),
            ("*.lan A 10.0.0.1", "is a wildcard"),
            ("www.lan CNAME", "CNAME needs a target name"),
            (r#"www.lan CNAME """#, "'' is not a domain name"),
            ("lan MX mail.lan", "MX needs a preference"),
            ("lan MX 70000 mail.lan", "'70000' is not a number"),
            ("_x._tcp.lan SRV 0 5 nas.lan", "SRV needs a priority"),
            ("nas.lan TXT", "TXT needs one or more strings"),
            (r#"nas.lan TXT "open"#, "a quote is not closed"),
        ];
        for (s, want) in cases {
            let e = error(s);
            assert!(e.contains(want), "{s}: {e}");
        }
        let long = format!("nas.lan TXT {}", "x".repeat(256));
        assert!(error(&long).contains("at most 255 bytes"));
    }
}
