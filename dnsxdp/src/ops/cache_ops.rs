//! `dnsxdp cache`: listing and flushing the answers the kernel and the daemon cache hold.

use std::{
    fmt::{self, Write as _},
    str::FromStr as _,
};

use anyhow::{anyhow, bail};
use dnsxdp_common::{MAX_CACHED_NAME, MAX_GROUPS, name::QuestionKey};
use hickory_proto::{
    op::ResponseCode,
    rr::{Name, RecordType},
    serialize::binary::{BinDecodable as _, BinEncodable as _},
};
use serde::{Deserialize, Serialize};

use crate::{dns::clock, kernel::cache::KernelCache, resolve::Resolver};

/// Which cached answers a request is about, as the control socket takes it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "match", rename_all = "snake_case")]
pub enum Selection {
    /// One name (presentation format), of one type (its number) or of every type.
    Name {
        name: String,
        qtype: Option<u16>,
    },
    /// A zone and every name under it.
    Suffix {
        zone: String,
    },
    All,
}

impl Selection {
    /// One name and maybe a type, as typed on the command line.
    pub fn name(name: &str, qtype: Option<&str>) -> anyhow::Result<Selection> {
        Ok(Selection::Name {
            name: parse_name(name)?.to_string(),
            qtype: qtype.map(parse_type).transpose()?.map(u16::from),
        })
    }

    /// A zone as typed on the command line.
    pub fn suffix(zone: &str) -> anyhow::Result<Selection> {
        Ok(Selection::Suffix {
            zone: parse_name(zone)?.to_string(),
        })
    }
}

/// For the log: `www.example.com. A`, `zone example.com.`, `everything`.
impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selection::Name { name, qtype: None } => write!(f, "{name}"),
            Selection::Name {
                name,
                qtype: Some(t),
            } => write!(f, "{name} {}", type_name(RecordType::from(*t))),
            Selection::Suffix { zone } => write!(f, "zone {zone}"),
            Selection::All => f.write_str("everything"),
        }
    }
}

/// Where an answer is cached.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Kernel,
    Daemon,
}

/// One cached answer, as `dnsxdp cache list` shows it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CachedAnswer {
    /// Lower-cased, in presentation format.
    pub name: String,
    #[serde(rename = "type")]
    pub qtype: String,
    pub cache: Layer,
    /// Whole seconds left until it expires.
    pub ttl: u64,
    /// Queries answered from it: by the XDP program for a kernel entry, by the daemon for a
    /// daemon one.
    pub hits: u64,
    pub rcode: String,
    /// An answer for queries with the DO bit (daemon only): it holds DNSSEC records.
    pub dnssec_ok: bool,
}

/// The reply to `cache_list`: the first answers in name order, and how many there are in all.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub total: usize,
    pub answers: Vec<CachedAnswer>,
}

/// The reply to `cache_flush`: entries removed from each layer; `kernel` is null without XDP.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    pub kernel: Option<u64>,
    pub daemon: u64,
}

impl Flushed {
    /// What went, in words.
    pub fn describe(&self) -> String {
        let kernel = match self.kernel {
            Some(n) => format!("{n} from the kernel cache"),
            None => "nothing from the kernel cache (XDP is off)".into(),
        };
        format!("{kernel}, {} from the daemon cache", self.daemon)
    }
}

/// A `Selection` with its names parsed.
enum Target {
    Name(Name, Option<RecordType>),
    Zone(Name),
    All,
}

impl Target {
    fn parse(selection: &Selection) -> anyhow::Result<Target> {
        Ok(match selection {
            Selection::Name { name, qtype } => {
                Target::Name(parse_name(name)?, qtype.map(RecordType::from))
            }
            Selection::Suffix { zone } => Target::Zone(parse_name(zone)?),
            Selection::All => Target::All,
        })
    }

    /// Whether the answer to `name` (a fully qualified name) and `qtype` is selected. Zones
    /// match whole labels: `example.test` covers `a.example.test` but not `badexample.test`.
    fn selects(&self, name: &Name, qtype: RecordType) -> bool {
        match self {
            Target::Name(n, t) => n == name && t.is_none_or(|t| t == qtype),
            Target::Zone(zone) => zone.zone_of(name),
            Target::All => true,
        }
    }
}

/// A name as typed (`www.example.test` or `www.example.test.`), lower-cased and fully qualified.
pub fn parse_name(s: &str) -> anyhow::Result<Name> {
    if s.is_empty() {
        bail!("a name is needed ('.' for the root)");
    }
    let mut name = Name::from_ascii(s).map_err(|e| {
        let why = e.to_string();
        anyhow!("invalid name '{s}': {}", why.trim_end_matches([':', ' ']))
    })?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// A record type by its mnemonic (any case) or as `TYPE<number>` (RFC 3597).
pub fn parse_type(s: &str) -> anyhow::Result<RecordType> {
    let upper = s.to_ascii_uppercase();
    if let Ok(t) = RecordType::from_str(&upper) {
        return Ok(t);
    }
    upper
        .strip_prefix("TYPE")
        .and_then(|n| n.parse::<u16>().ok())
        .map(RecordType::from)
        .ok_or_else(|| anyhow!("unknown record type '{s}'"))
}

/// The mnemonic of `t`, or `TYPE<number>` for one without.
pub fn type_name(t: RecordType) -> String {
    match t {
        RecordType::Unknown(n) => format!("TYPE{n}"),
        t => t.to_string(),
    }
}

fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

/// The kernel cache's questions for `name` and `qtype`, without and with DO, in every client
/// group; none if the name is too long for it.
fn question_keys(name: &Name, qtype: RecordType) -> Vec<QuestionKey> {
    let Ok(wire) = name.to_lowercase().to_bytes() else {
        return Vec::new();
    };
    let mut key = QuestionKey {
        qtype: qtype.into(),
        name_len: wire.len() as u16,
        name: [0; MAX_CACHED_NAME],
        dnssec_ok: false,
        group: 0,
    };
    let Some(to) = key.name.get_mut(..wire.len()) else {
        return Vec::new();
    };
    to.copy_from_slice(&wire);
    let mut keys = Vec::new();
    for group in 0..MAX_GROUPS as u8 {
        for dnssec_ok in [false, true] {
            key.group = group;
            key.dnssec_ok = dnssec_ok;
            keys.push(key);
        }
    }
    keys
}

/// A cached answer as either layer has it, before it is sorted and rendered.
struct Cached {
    name: Name,
    qtype: RecordType,
    cache: Layer,
    ttl: u64,
    hits: u64,
    rcode: ResponseCode,
    dnssec_ok: bool,
}

impl Cached {
    fn sort_key(&self) -> (&Name, u16, Layer, bool) {
        (&self.name, self.qtype.into(), self.cache, self.dnssec_ok)
    }

    fn render(self) -> CachedAnswer {
        CachedAnswer {
            name: self.name.to_string(),
            qtype: type_name(self.qtype),
            cache: self.cache,
            ttl: self.ttl,
            hits: self.hits,
            rcode: rcode_name(self.rcode),
            dnssec_ok: self.dnssec_ok,
        }
    }
}

/// The unexpired answers `selection` picks from both layers, sorted by name (DNSSEC canonical
/// order, so a zone's names are together), type and layer; at most `limit` of them.
pub fn list(
    resolver: &Resolver,
    kernel: Option<&KernelCache>,
    selection: &Selection,
    limit: Option<usize>,
) -> anyhow::Result<Listing> {
    let target = Target::parse(selection)?;
    let now = clock::now_ns();
    let mut found = match kernel {
        Some(kernel) => in_kernel(kernel, &target, now)?,
        None => Vec::new(),
    };
    found.extend(in_daemon(resolver, &target, now));
    found.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let total = found.len();
    found.truncate(limit.unwrap_or(usize::MAX));
    Ok(Listing {
        total,
        answers: found.into_iter().map(Cached::render).collect(),
    })
}

fn in_kernel(kernel: &KernelCache, target: &Target, now: u64) -> anyhow::Result<Vec<Cached>> {
    let entries = match target {
        // One lookup; a name of any type needs the whole map, as a zone does.
        Target::Name(name, Some(qtype)) => question_keys(name, *qtype)
            .iter()
            .filter_map(|q| kernel.get(q, now).transpose())
            .collect::<anyhow::Result<Vec<_>>>()?,
        Target::Name(_, None) | Target::Zone(_) | Target::All => kernel.entries(now)?,
    };
    Ok(entries
        .into_iter()
        .filter_map(|e| {
            let name = Name::from_bytes(e.question.wire_name()).ok()?;
            let qtype = RecordType::from(e.question.qtype);
            target.selects(&name, qtype).then(|| Cached {
                name,
                qtype,
                cache: Layer::Kernel,
                ttl: e.remaining_secs,
                hits: e.hits,
                rcode: ResponseCode::from(0, e.rcode),
                dnssec_ok: e.question.dnssec_ok,
            })
        })
        .collect())
}

fn in_daemon(resolver: &Resolver, target: &Target, now: u64) -> Vec<Cached> {
    let cache = resolver.lock_cache();
    cache
        .fresh(now)
        .filter(|(key, _, _)| target.selects(key.name(), key.qtype()))
        .map(|(key, answer, ttl)| Cached {
            name: key.name().clone(),
            qtype: key.qtype(),
            cache: Layer::Daemon,
            ttl,
            hits: answer.usage.hits(),
            rcode: answer.rcode,
            dnssec_ok: key.dnssec_ok(),
        })
        .collect()
}

/// Removes what `selection` picks from both layers, expired entries included; the kernel's
/// removal takes effect for the very next packet.
pub fn flush(
    resolver: &Resolver,
    kernel: Option<&KernelCache>,
    selection: &Selection,
) -> anyhow::Result<Flushed> {
    let target = Target::parse(selection)?;
    // The daemon's first: no answer taken from it before is put back into the kernel after.
    let daemon = resolver.flush_cache(|key| target.selects(key.name(), key.qtype()));
    let kernel = kernel.map(|k| flush_kernel(k, &target)).transpose()?;
    Ok(Flushed { kernel, daemon })
}

fn flush_kernel(kernel: &KernelCache, target: &Target) -> anyhow::Result<u64> {
    match target {
        Target::Name(name, Some(qtype)) => {
            let mut removed = 0;
            for q in &question_keys(name, *qtype) {
                removed += u64::from(kernel.remove(q)?);
            }
            Ok(removed)
        }
        Target::Name(_, None) | Target::Zone(_) => kernel.remove_where(|q| {
            Name::from_bytes(q.wire_name())
                .is_ok_and(|name| target.selects(&name, RecordType::from(q.qtype)))
        }),
        Target::All => kernel.clear(),
    }
}

/// Aligned columns, a row per answer, then how many are shown of how many.
pub fn table(listing: &Listing) -> String {
    let header = ["name", "type", "cache", "ttl", "hits", "rcode"].map(String::from);
    let mut rows = vec![header];
    for a in &listing.answers {
        let cache = match (a.cache, a.dnssec_ok) {
            (Layer::Kernel, false) => "kernel",
            (Layer::Kernel, true) => "kernel (DO)",
            (Layer::Daemon, false) => "daemon",
            (Layer::Daemon, true) => "daemon (DO)",
        };
        rows.push([
            a.name.clone(),
            a.qtype.clone(),
            cache.into(),
            a.ttl.to_string(),
            a.hits.to_string(),
            a.rcode.clone(),
        ]);
    }
    let width = |c: usize| rows.iter().map(|r| r[c].len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..6).map(width).collect();
    let mut out = String::new();
    for r in &rows {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
        );
    }
    let (shown, total) = (listing.answers.len(), listing.total);
    let _ = match (shown < total, total) {
        (true, _) => writeln!(out, "{shown} of {total} cached answers shown (--limit)"),
        (false, 1) => writeln!(out, "1 cached answer"),
        (false, _) => writeln!(out, "{total} cached answers"),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_match_whole_labels() {
        let zone = Target::Zone(parse_name("Example.TEST").unwrap());
        let selects = |name: &str| zone.selects(&parse_name(name).unwrap(), RecordType::A);
        assert!(selects("example.test."));
        assert!(selects("a.example.test"));
        assert!(selects("A.B.EXAMPLE.test."));
        assert!(!selects("badexample.test"));
        assert!(!selects("test"));
        assert!(!selects("example.test.org"));
        let root = Target::Zone(parse_name(".").unwrap());
        assert!(root.selects(&parse_name("anything.at.all").unwrap(), RecordType::MX));
    }

    #[test]
    fn a_name_selects_its_types() {
        let www = parse_name("www.example.test").unwrap();
        let any = Target::Name(www.clone(), None);
        let aaaa = Target::Name(www.clone(), Some(RecordType::AAAA));
        assert!(any.selects(&www, RecordType::MX) && aaaa.selects(&www, RecordType::AAAA));
        assert!(!aaaa.selects(&www, RecordType::A));
        let other = parse_name("a.www.example.test").unwrap();
        assert!(!any.selects(&other, RecordType::A));
    }

    #[test]
    fn kernel_questions_are_lower_cased_wire_names() {
        let qs = question_keys(&parse_name("WWW.Example.test").unwrap(), RecordType::A);
        // Without and with DO, in every client group.
        assert_eq!(qs.len(), 2 * MAX_GROUPS as usize);
        let [q, signed, ..] = qs.as_slice() else {
            panic!("{} keys", qs.len())
        };
        assert_eq!((q.dnssec_ok, signed.dnssec_ok), (false, true));
        assert_eq!((q.group, qs[qs.len() - 1].group), (0, MAX_GROUPS as u8 - 1));
        assert_eq!(q.wire_name(), signed.wire_name());
        assert_eq!(q.wire_name(), b"\x03www\x07example\x04test\x00");
        assert_eq!(
            Name::from_bytes(q.wire_name()).unwrap().to_string(),
            "www.example.test."
        );
        let long = format!("{}.{}.", "a".repeat(63), "b".repeat(63));
        assert!(question_keys(&parse_name(&long).unwrap(), RecordType::A).is_empty());
    }

    #[test]
    fn types_and_names_parse_or_say_why_not() {
        assert_eq!(parse_type("aaaa").unwrap(), RecordType::AAAA);
        assert_eq!(parse_type("TYPE28").unwrap(), RecordType::AAAA);
        assert_eq!(type_name(parse_type("type4000").unwrap()), "TYPE4000");
        assert_eq!(
            parse_type("FOO").unwrap_err().to_string(),
            "unknown record type 'FOO'"
        );
        assert_eq!(
            parse_name("WWW.Example.test").unwrap().to_string(),
            "www.example.test."
        );
        assert!(parse_name("").is_err());
        let err = parse_name("a..b").unwrap_err().to_string();
        assert!(err.starts_with("invalid name 'a..b'"), "{err}");
    }

    #[test]
    fn the_table_says_how_many_it_left_out() {
        let answer = |name: &str, cache, dnssec_ok| CachedAnswer {
            name: name.into(),
            qtype: "A".into(),
            cache,
            ttl: 300,
            hits: 12,
            rcode: "NOERROR".into(),
            dnssec_ok,
        };
        let listing = Listing {
            total: 3,
            answers: vec![
                answer("www.example.test.", Layer::Kernel, false),
                answer("www.example.test.", Layer::Daemon, true),
            ],
        };
        let table = table(&listing);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "name               type  cache        ttl  hits  rcode"
        );
        assert_eq!(
            lines[1],
            "www.example.test.  A     kernel       300    12  NOERROR"
        );
        assert_eq!(
            lines[2],
            "www.example.test.  A     daemon (DO)  300    12  NOERROR"
        );
        assert_eq!(lines[3], "2 of 3 cached answers shown (--limit)");
    }
}
