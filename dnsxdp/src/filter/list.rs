//! One block or allow list, parsed from the text Pi-hole, AdGuard Home and blocky users feed
//! those tools: hosts lines, plain domains, adblock `||domain^` rules and `@@` exceptions,
//! `*.domain` wildcards and `/regex/` lines.
//!
//! Lists run to millions of domains, so a domain is held once, packed with the others, with the
//! bits of the rules that name it; the text of a matching rule is rebuilt from those bits.

use std::{
    collections::HashSet,
    hash::{BuildHasher, RandomState},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use regex::{Regex, RegexSet, RegexSetBuilder};
use serde::Serialize;

/// What parsing a list's text found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Parsed {
    /// Rules held; a rule listed twice counts once.
    pub rules: usize,
    /// Lines, or names of a hosts line, that are no rule: a malformed domain, an invalid regex.
    pub bad: usize,
    /// Rules of a syntax or meaning a DNS list does not apply: adblock rules beyond
    /// `||domain^`, hosts lines that map a name to a real address.
    pub skipped: usize,
}

/// A rule that matched a name: whether it allows, and the rule as the list wrote it, normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub allow: bool,
    pub rule: String,
}

/// The rules of one list.
pub struct List {
    domains: Domains,
    /// In list order: the first that matches is the rule reported.
    regexes: Vec<Regex>,
    /// The same regexes, so a name no regex matches costs one search.
    regex_set: RegexSet,
    /// Whether every rule allows, regexes included.
    allow_list: bool,
    rules: usize,
}

/// The rules naming one domain, as bits: the four below, and how the subtree ones were written.
type Kinds = u8;
/// The domain and its subdomains are blocked.
const BLOCK: Kinds = 1;
/// Its subdomains are blocked: `*.domain`.
const BLOCK_BELOW: Kinds = 1 << 1;
const ALLOW: Kinds = 1 << 2;
const ALLOW_BELOW: Kinds = 1 << 3;
/// `BLOCK` was written `||domain^` (else as a plain or hosts name).
const BLOCK_ADBLOCK: Kinds = 1 << 4;
/// `ALLOW` was written `||domain^` in an allowlist.
const ALLOW_ADBLOCK: Kinds = 1 << 5;
/// `ALLOW` was written `@@||domain^`.
const ALLOW_EXCEPTION: Kinds = 1 << 6;
const RULES: Kinds = BLOCK | BLOCK_BELOW | ALLOW | ALLOW_BELOW;

/// Names hosts files map to themselves, which block nothing.
const IGNORED: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "0.0.0.0",
];

/// Characters of adblock syntax: a line holding one outside the forms parsed is skipped.
const ADBLOCK: &[char] = &['^', '$', '|', '#', '/'];

/// The regex crate's default size limit, for each regex alone.
const REGEX_SIZE_LIMIT: usize = 10 << 20;

impl List {
    /// The rules of `text`. Every rule blocks, but adblock `@@` exceptions, which allow; in an
    /// `allow_list` every rule allows.
    pub fn parse(text: &str, allow_list: bool) -> (List, Parsed) {
        let mut builder = Builder {
            domains: Domains::default(),
            patterns: Vec::new(),
            seen_patterns: HashSet::new(),
            allow_list,
            parsed: Parsed::default(),
            lower: String::new(),
        };
        for line in text.lines() {
            builder.line(line);
        }
        builder.finish()
    }

    /// The rule matching `name` (ASCII lower-case, no trailing dot, e.g. "ads.example.com"): an
    /// allowing rule if one matches, else a blocking one, else None.
    #[cfg(test)]
    pub fn find(&self, name: &str) -> Option<Found> {
        self.matching(name).map(Hit::found)
    }

    /// Rules held.
    pub fn len(&self) -> usize {
        self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules == 0
    }

    /// As `find`, with the rule borrowed, so that only the rule finally reported is written out.
    fn matching(&self, name: &str) -> Option<Hit<'_>> {
        let mut block = None;
        // The name itself, then each suffix after a dot, most specific first.
        let (mut suffix, mut apex) = (name, true);
        loop {
            if let Some((domain, kinds)) = self.domains.get(suffix) {
                let below = if apex { 0 } else { BLOCK_BELOW | ALLOW_BELOW };
                let kinds_here = kinds & (BLOCK | ALLOW | below);
                if let Some(written) = Written::of(kinds, kinds_here & (ALLOW | ALLOW_BELOW)) {
                    return Some(Hit::domain(true, domain, written));
                }
                if block.is_none() {
                    block = Written::of(kinds, kinds_here & (BLOCK | BLOCK_BELOW))
                        .map(|written| Hit::domain(false, domain, written));
                }
            }
            match suffix.split_once('.') {
                Some((_, rest)) => (suffix, apex) = (rest, false),
                None => break,
            }
        }
        if self.allow_list {
            return self.regex(name).map(|r| Hit::regex(true, r));
        }
        block.or_else(|| self.regex(name).map(|r| Hit::regex(false, r)))
    }

    fn regex(&self, name: &str) -> Option<&Regex> {
        if !self.regex_set.is_match(name) {
            return None;
        }
        self.regexes.iter().find(|r| r.is_match(name))
    }
}

/// What `lists` together say of `name`, and the place of the list that says it: an allowing
/// rule of any list beats every blocking rule (an allowlist beats a blocklist); otherwise the
/// first blocking match in list order.
pub fn decide<'a>(lists: impl IntoIterator<Item = &'a List>, name: &str) -> Option<(usize, Found)> {
    let mut block = None;
    for (i, list) in lists.into_iter().enumerate() {
        match list.matching(name) {
            Some(hit) if hit.allow => return Some((i, hit.found())),
            Some(hit) if block.is_none() => block = Some((i, hit)),
            _ => {}
        }
    }
    block.map(|(i, hit)| (i, hit.found()))
}

/// How a rule naming a domain is written back.
#[derive(Clone, Copy)]
enum Written {
    Plain,
    Adblock,
    Exception,
    Wildcard,
}

impl Written {
    /// How the rule of `kind`, one bit of `kinds` or none, was written; the subtree rule if both.
    fn of(kinds: Kinds, kind: Kinds) -> Option<Written> {
        Some(if kind & BLOCK != 0 {
            if kinds & BLOCK_ADBLOCK != 0 {
                Written::Adblock
            } else {
                Written::Plain
            }
        } else if kind & ALLOW != 0 {
            if kinds & ALLOW_EXCEPTION != 0 {
                Written::Exception
            } else if kinds & ALLOW_ADBLOCK != 0 {
                Written::Adblock
            } else {
                Written::Plain
            }
        } else if kind & (BLOCK_BELOW | ALLOW_BELOW) != 0 {
            Written::Wildcard
        } else {
            return None;
        })
    }
}

/// A matching rule, borrowed from its list.
struct Hit<'a> {
    allow: bool,
    rule: Rule<'a>,
}

enum Rule<'a> {
    Domain(&'a str, Written),
    Regex(&'a Regex),
}

impl<'a> Hit<'a> {
    fn domain(allow: bool, domain: &'a str, written: Written) -> Hit<'a> {
        Hit {
            allow,
            rule: Rule::Domain(domain, written),
        }
    }

    fn regex(allow: bool, regex: &'a Regex) -> Hit<'a> {
        Hit {
            allow,
            rule: Rule::Regex(regex),
        }
    }

    fn found(self) -> Found {
        // `concat` sizes the string once, where `format!` would grow it.
        let rule = match self.rule {
            Rule::Domain(domain, Written::Plain) => domain.to_owned(),
            Rule::Domain(domain, Written::Adblock) => ["||", domain, "^"].concat(),
            Rule::Domain(domain, Written::Exception) => ["@@||", domain, "^"].concat(),
            Rule::Domain(domain, Written::Wildcard) => ["*.", domain].concat(),
            Rule::Regex(regex) => ["/", regex.as_str(), "/"].concat(),
        };
        Found {
            allow: self.allow,
            rule,
        }
    }
}

/// A list being parsed.
struct Builder<'t> {
    domains: Domains,
    patterns: Vec<Regex>,
    seen_patterns: HashSet<&'t str>,
    allow_list: bool,
    parsed: Parsed,
    /// The domain being added, lower-cased; reused so a domain already held costs no allocation.
    lower: String,
}

impl<'t> Builder<'t> {
    fn line(&mut self, line: &'t str) {
        let line = line.trim();
        if line.is_empty()
            || line.starts_with(['#', '!'])
            || (line.starts_with('[') && line.ends_with(']'))
        {
            return;
        }
        let pattern = line.strip_prefix('/').and_then(|l| l.strip_suffix('/'));
        if let Some(pattern) = pattern.filter(|p| !p.is_empty()) {
            return self.regex(pattern);
        }
        if line.starts_with(['@', '|']) {
            return self.adblock(line);
        }
        // A comment starts at a `#` after whitespace; a `#` within a word is adblock syntax.
        let mut words = line.split_whitespace().take_while(|w| !w.starts_with('#'));
        if words.clone().any(|w| w.contains(ADBLOCK)) {
            self.parsed.skipped += 1;
            return;
        }
        let (subtree, below) = match self.allow_list {
            true => (ALLOW, ALLOW_BELOW),
            false => (BLOCK, BLOCK_BELOW),
        };
        let Some(first) = words.next() else { return };
        let Some(second) = words.next() else {
            return match first.strip_prefix("*.") {
                Some(domain) if !domain.contains('*') => self.domain(domain, below),
                _ if first.contains('*') => self.parsed.skipped += 1,
                _ => self.domain(first, subtree),
            };
        };
        // A hosts line. A scoped address such as `fe80::1%lo0` is read without its zone: the
        // line maps a name like any other.
        let Ok(address) = first
            .split_once('%')
            .map_or(first, |(a, _)| a)
            .parse::<IpAddr>()
        else {
            self.parsed.bad += 1;
            return;
        };
        let blocks = address.is_unspecified()
            || address == IpAddr::V4(Ipv4Addr::LOCALHOST)
            || address == IpAddr::V6(Ipv6Addr::LOCALHOST);
        let mut names = std::iter::once(second).chain(words);
        if !blocks {
            // `255.255.255.255 broadcasthost` and the like are no rule, skipped or not.
            if names.any(|n| !IGNORED.iter().any(|i| i.eq_ignore_ascii_case(n))) {
                self.parsed.skipped += 1;
            }
            return;
        }
        for name in names {
            self.domain(name, subtree);
        }
    }

    /// `||domain^`, `@@||domain^`, either with `$important`; other adblock rules are skipped.
    fn adblock(&mut self, line: &str) {
        let (exception, rule) = match line.strip_prefix("@@") {
            Some(rule) => (true, rule),
            None => (false, line),
        };
        let rule = match rule.split_once('$') {
            None => Some(rule),
            Some((rule, "important")) => Some(rule),
            Some(_) => None,
        };
        let domain = rule.and_then(|r| r.strip_prefix("||")?.strip_suffix('^'));
        let Some(domain) = domain.filter(|d| !d.contains(['*', ':', '^', '|', '/'])) else {
            self.parsed.skipped += 1;
            return;
        };
        let kind = if exception {
            ALLOW | ALLOW_EXCEPTION
        } else if self.allow_list {
            ALLOW | ALLOW_ADBLOCK
        } else {
            BLOCK | BLOCK_ADBLOCK
        };
        self.domain(domain, kind);
    }

    /// Adds the rule of `kind`, one of `RULES` with how it was written, for `raw`.
    fn domain(&mut self, raw: &str, kind: Kinds) {
        if !normalize(raw, &mut self.lower) {
            self.parsed.bad += 1;
            return;
        }
        let name = self.lower.as_str();
        if IGNORED.contains(&name) {
            return;
        }
        let Some(held) = self.domains.kinds_mut(name) else {
            self.parsed.bad += 1;
            return;
        };
        // A rule already held keeps the way it was first written.
        if *held & kind & RULES == 0 {
            *held |= kind;
            self.parsed.rules += 1;
        }
    }

    fn regex(&mut self, pattern: &'t str) {
        if !self.seen_patterns.insert(pattern) {
            return;
        }
        match Regex::new(pattern) {
            Ok(regex) => {
                self.patterns.push(regex);
                self.parsed.rules += 1;
            }
            Err(_) => self.parsed.bad += 1,
        }
    }

    fn finish(self) -> (List, Parsed) {
        let Builder {
            mut domains,
            mut patterns,
            allow_list,
            mut parsed,
            ..
        } = self;
        // Each regex compiled within the default limit; together they get as much room.
        let limit = REGEX_SIZE_LIMIT.saturating_mul(patterns.len());
        let regex_set = RegexSetBuilder::new(patterns.iter().map(Regex::as_str))
            .size_limit(limit)
            .build()
            .unwrap_or_else(|_| {
                parsed.rules -= patterns.len();
                parsed.bad += patterns.len();
                patterns.clear();
                RegexSet::empty()
            });
        domains.shrink_to_fit();
        let list = List {
            domains,
            regexes: patterns,
            regex_set,
            allow_list,
            rules: parsed.rules,
        };
        (list, parsed)
    }
}

/// Each domain once, with the bits of the rules naming it: the names end to end in one string,
/// found through an open-addressing table of indices. For a million domains this holds 40 MiB
/// where a `HashMap<Box<str>, Kinds>` held 94.
#[derive(Default)]
struct Domains {
    names: String,
    entries: Vec<Entry>,
    /// An index into `entries` plus one, or 0 where empty; a power of two long, at most half
    /// full, so that a probe meets an empty slot soon.
    slots: Vec<u32>,
    hasher: RandomState,
}

/// A name's place in `names`, and the bits of its rules.
#[derive(Clone, Copy)]
struct Entry {
    start: u32,
    len: u8,
    kinds: Kinds,
}

impl Domains {
    /// The domain `name` as held, and the bits of its rules.
    fn get(&self, name: &str) -> Option<(&str, Kinds)> {
        let index = self.slot(name).ok()?;
        let entry = self.entries[index];
        Some((self.name(entry), entry.kinds))
    }

    /// The bits of `name`'s rules, none for a name not held before; None once the names fill
    /// 4 GiB.
    fn kinds_mut(&mut self, name: &str) -> Option<&mut Kinds> {
        if self.entries.len() >= self.slots.len() / 2 {
            self.grow();
        }
        let index = match self.slot(name) {
            Ok(index) => index,
            Err(slot) => {
                let end = u32::try_from(self.names.len() + name.len()).ok()?;
                let len = u8::try_from(name.len()).ok()?;
                self.names.push_str(name);
                self.entries.push(Entry {
                    start: end - u32::from(len),
                    len,
                    kinds: 0,
                });
                // No more entries than bytes of names, so the count fits in u32.
                self.slots[slot] = self.entries.len() as u32;
                self.entries.len() - 1
            }
        };
        Some(&mut self.entries[index].kinds)
    }

    /// The index in `entries` of `name`, or the empty slot where it would go.
    fn slot(&self, name: &str) -> Result<usize, usize> {
        if self.slots.is_empty() {
            return Err(0);
        }
        let mask = self.slots.len() - 1;
        let mut slot = self.hasher.hash_one(name) as usize & mask;
        loop {
            let Some(index) = (self.slots[slot] as usize).checked_sub(1) else {
                return Err(slot);
            };
            if self.name(self.entries[index]) == name {
                return Ok(index);
            }
            slot = (slot + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let len = (self.slots.len() * 2).max(16);
        self.slots = vec![0; len];
        for (index, &entry) in self.entries.iter().enumerate() {
            let mut slot = self.hasher.hash_one(self.name(entry)) as usize & (len - 1);
            while self.slots[slot] != 0 {
                slot = (slot + 1) & (len - 1);
            }
            self.slots[slot] = (index + 1) as u32;
        }
    }

    fn name(&self, entry: Entry) -> &str {
        let start = entry.start as usize;
        &self.names[start..start + usize::from(entry.len)]
    }

    fn shrink_to_fit(&mut self) {
        self.names.shrink_to_fit();
        self.entries.shrink_to_fit();
    }
}

/// Writes `raw` into `out` lower-cased, without one trailing dot, if it is a domain name: LDH
/// labels (and `_`, which real lists hold), each of 1 to 63 bytes, 253 in all.
fn normalize(raw: &str, out: &mut String) -> bool {
    let name = raw.strip_suffix('.').unwrap_or(raw);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        out.clear();
        out.push_str(name);
        out.make_ascii_lowercase();
    }
    valid
}

#[cfg(test)]
mod tests {
    use std::{fmt::Write, time::Instant};

    use super::*;

    /// What `decide` found, without the list's place.
    fn decided<'a>(lists: impl IntoIterator<Item = &'a List>, name: &str) -> Option<Found> {
        decide(lists, name).map(|(_, found)| found)
    }

    fn blocklist(text: &str) -> List {
        List::parse(text, false).0
    }

    fn allowlist(text: &str) -> List {
        List::parse(text, true).0
    }

    fn blocked(rule: &str) -> Option<Found> {
        Some(Found {
            allow: false,
            rule: rule.into(),
        })
    }

    fn allowed(rule: &str) -> Option<Found> {
        Some(Found {
            allow: true,
            rule: rule.into(),
        })
    }

    fn parsed(rules: usize, bad: usize, skipped: usize) -> Parsed {
        Parsed {
            rules,
            bad,
            skipped,
        }
    }

    #[test]
    fn each_name_of_a_blocking_hosts_line_is_a_rule_and_localhost_entries_are_ignored() {
        let text = "127.0.0.1 localhost\n\
                    ::1 localhost ip6-localhost ip6-loopback\n\
                    0.0.0.0 0.0.0.0\n\
                    127.0.0.1 localhost.localdomain local broadcasthost\n\
                    0.0.0.0 ads.example.com tracker.example.net # trackers\n\
                    127.0.0.1\tone.test\n\
                    :: two.test\n\
                    ::0 three.test\n";
        let (list, found) = List::parse(text, false);
        assert_eq!(found, parsed(5, 0, 0));
        assert_eq!(list.len(), 5);
        assert_eq!(
            list.find("tracker.example.net"),
            blocked("tracker.example.net")
        );
        assert_eq!(list.find("two.test"), blocked("two.test"));
        assert_eq!(list.find("three.test"), blocked("three.test"));
        assert_eq!(list.find("localhost"), None);
        assert_eq!(list.find("example.com"), None);
    }

    #[test]
    fn hosts_lines_mapping_a_real_address_are_skipped() {
        let text = "192.168.1.1 nas\nff02::1 ip6-allnodes\n255.255.255.255 broadcasthost\n\
                    fe80::1%lo0 localhost\n";
        let (list, found) = List::parse(text, false);
        assert_eq!(found, parsed(0, 0, 2));
        assert_eq!(list.find("nas"), None);
        assert!(list.is_empty());
    }

    #[test]
    fn a_plain_domain_blocks_itself_and_its_subdomains_only() {
        let (list, found) = List::parse("Example.COM.\ncom\n", false);
        assert_eq!(found, parsed(2, 0, 0));
        assert_eq!(list.find("example.com"), blocked("example.com"));
        assert_eq!(list.find("a.b.example.com"), blocked("example.com"));
        assert_eq!(list.find("com"), blocked("com"));
        let list = blocklist("example.com");
        assert_eq!(list.find("notexample.com"), None);
        assert_eq!(list.find("example.org"), None);
    }

    #[test]
    fn an_adblock_rule_blocks_the_domain_and_its_subdomains() {
        let (list, found) = List::parse("||ads.example.com^\n||tracker.test^$important\n", false);
        assert_eq!(found, parsed(2, 0, 0));
        assert_eq!(list.find("ads.example.com"), blocked("||ads.example.com^"));
        assert_eq!(
            list.find("x.ads.example.com"),
            blocked("||ads.example.com^")
        );
        assert_eq!(list.find("a.tracker.test"), blocked("||tracker.test^"));
        assert_eq!(list.find("example.com"), None);
    }

    #[test]
    fn the_most_specific_rule_is_the_one_found() {
        let list = blocklist("||example.com^\n||ads.example.com^\n");
        assert_eq!(
            list.find("x.ads.example.com"),
            blocked("||ads.example.com^")
        );
        assert_eq!(list.find("www.example.com"), blocked("||example.com^"));
    }

    #[test]
    fn a_wildcard_covers_subdomains_but_not_the_domain() {
        let (list, found) = List::parse("*.example.com\n", false);
        assert_eq!(found, parsed(1, 0, 0));
        assert_eq!(list.find("ads.example.com"), blocked("*.example.com"));
        assert_eq!(list.find("a.b.example.com"), blocked("*.example.com"));
        assert_eq!(list.find("example.com"), None);
    }

    #[test]
    fn an_exception_beats_a_block_in_the_same_list() {
        let (list, found) = List::parse(
            "||example.com^\n@@||good.example.com^\nads.test\n@@||ads.test^\n",
            false,
        );
        assert_eq!(found, parsed(4, 0, 0));
        assert_eq!(
            list.find("good.example.com"),
            allowed("@@||good.example.com^")
        );
        assert_eq!(
            list.find("x.good.example.com"),
            allowed("@@||good.example.com^")
        );
        assert_eq!(list.find("bad.example.com"), blocked("||example.com^"));
        assert_eq!(list.find("ads.test"), allowed("@@||ads.test^"));
    }

    #[test]
    fn every_rule_of_an_allowlist_allows() {
        let text = "plain.test\n0.0.0.0 hosts.test\n||adblock.test^\n@@||exception.test^\n\
                    *.wild.test\n/^re[0-9]\\./\n";
        let (list, found) = List::parse(text, true);
        assert_eq!(found, parsed(6, 0, 0));
        assert_eq!(list.find("a.plain.test"), allowed("plain.test"));
        assert_eq!(list.find("hosts.test"), allowed("hosts.test"));
        assert_eq!(list.find("adblock.test"), allowed("||adblock.test^"));
        assert_eq!(list.find("exception.test"), allowed("@@||exception.test^"));
        assert_eq!(list.find("a.wild.test"), allowed("*.wild.test"));
        assert_eq!(list.find("wild.test"), None);
        assert_eq!(list.find("re1.example"), allowed("/^re[0-9]\\./"));
    }

    #[test]
    fn a_regex_blocks_the_names_it_matches_anywhere() {
        let (list, found) = List::parse("/^ads?[0-9]*\\./\n/tracker/\n||ads.test^\n", false);
        assert_eq!(found, parsed(3, 0, 0));
        assert_eq!(list.find("ad1.example.com"), blocked("/^ads?[0-9]*\\./"));
        assert_eq!(list.find("bads.example.com"), None);
        assert_eq!(list.find("a.tracker.example"), blocked("/tracker/"));
        // A domain rule is found before a regex.
        assert_eq!(list.find("ads.test"), blocked("||ads.test^"));
    }

    #[test]
    fn decide_lets_an_allowlist_beat_every_blocklist() {
        let first = blocklist("||example.com^\n");
        let second = blocklist("/example/\n");
        let allow = allowlist("www.example.com\n");
        let lists = [&first, &second, &allow];
        assert_eq!(
            decided(lists, "www.example.com"),
            allowed("www.example.com")
        );
        assert_eq!(decided(lists, "ads.example.com"), blocked("||example.com^"));
        assert_eq!(decided(lists, "other.org"), None);
    }

    #[test]
    fn decide_reports_the_rule_of_the_first_blocking_list() {
        let first = blocklist("0.0.0.0 ads.example.com\n");
        let second = blocklist("||example.com^\n");
        assert_eq!(
            decided([&first, &second], "ads.example.com"),
            blocked("ads.example.com")
        );
        assert_eq!(
            decided([&second, &first], "ads.example.com"),
            blocked("||example.com^")
        );
        assert_eq!(
            decided([&first, &second], "www.example.com"),
            blocked("||example.com^")
        );
    }

    #[test]
    fn decide_lets_an_exception_in_a_later_blocklist_beat_an_earlier_block() {
        let first = blocklist("||example.com^\n");
        let second = blocklist("@@||cdn.example.com^\n");
        assert_eq!(
            decided([&first, &second], "cdn.example.com"),
            allowed("@@||cdn.example.com^")
        );
    }

    #[test]
    fn comments_and_headers_are_ignored_and_not_counted() {
        let text = "[Adblock Plus 2.0]\n! Title: list\n# a comment\n\n   \n\t# indented\n\
                    example.com # trailing\n0.0.0.0 ads.test #trailing\n";
        let (list, found) = List::parse(text, false);
        assert_eq!(found, parsed(2, 0, 0));
        assert_eq!(list.find("example.com"), blocked("example.com"));
        assert_eq!(list.find("ads.test"), blocked("ads.test"));
    }

    #[test]
    fn adblock_syntax_beyond_domain_rules_is_skipped() {
        let text = "||example.com^$third-party\nexample.com^$third-party\nexample.com^\n\
                    /ads/banner.js\nexample.com##.ad\n|http://example.com\n||ads.*.example.com^\n\
                    @@||example.com^$document\n||example.com/path^\n||example.com:8080^\n\
                    ads*.example.com\n*.ads.*.example.com\n@@example.com\n||example.com\n";
        let (list, found) = List::parse(text, false);
        assert_eq!(found, parsed(0, 0, 14));
        assert_eq!(list.find("example.com"), None);
    }

    #[test]
    fn malformed_domains_are_bad() {
        let long_label = format!("{}.test", "a".repeat(64));
        let long_name = format!("{}.test", vec!["a".repeat(62); 4].join("."));
        let text = format!(
            "exa mple.com\nbad..example.com\nünicode.example\n.\n{long_label}\n{long_name}\n\
             ||bad..example^\n*.bad..example\n0.0.0.0 ok.test bad!.test\n"
        );
        let (list, found) = List::parse(&text, false);
        assert_eq!(found, parsed(1, 9, 0));
        assert_eq!(list.find("ok.test"), blocked("ok.test"));
    }

    #[test]
    fn the_longest_names_are_good() {
        let label = "a".repeat(63);
        let name = format!("{label}.{label}.{label}.{}", "a".repeat(61));
        assert_eq!(name.len(), 253);
        let (list, found) = List::parse(&format!("{name}\n_dmarc.example.com\n"), false);
        assert_eq!(found, parsed(2, 0, 0));
        assert_eq!(list.find(&name), blocked(&name));
    }

    #[test]
    fn an_invalid_or_too_large_regex_is_bad() {
        let (list, found) = List::parse("/(unclosed/\n/(\\w{100}){100}/\n/ok/\n", false);
        assert_eq!(found, parsed(1, 2, 0));
        assert_eq!(list.find("ok.test"), blocked("/ok/"));
    }

    #[test]
    fn crlf_line_endings_are_tolerated() {
        let (list, found) = List::parse("# hosts\r\n0.0.0.0 ads.test\r\nexample.com\r\n", false);
        assert_eq!(found, parsed(2, 0, 0));
        assert_eq!(list.find("ads.test"), blocked("ads.test"));
        assert_eq!(list.find("example.com"), blocked("example.com"));
    }

    #[test]
    fn a_rule_listed_twice_counts_once_and_keeps_its_first_spelling() {
        let text = "example.com\n0.0.0.0 example.com\n||example.com^\nEXAMPLE.com.\n\
                    *.example.com\n*.example.com\n/ads/\n/ads/\n";
        let (list, found) = List::parse(text, false);
        assert_eq!(found, parsed(3, 0, 0));
        assert_eq!(list.len(), 3);
        assert_eq!(list.find("www.example.com"), blocked("example.com"));
    }

    #[test]
    fn finding_a_rule_allocates_only_the_rule_returned() {
        let list = blocklist("||example.com^\n/^ads/\n");
        // A thread's first searches set up the regexes' caches.
        let _ = (list.find("ads.warm"), list.find("warm"));
        use crate::allocations::during;
        assert_eq!(
            during(|| list.find("a.example.com")),
            (blocked("||example.com^"), 1)
        );
        assert_eq!(during(|| list.find("ads.test")), (blocked("/^ads/"), 1));
        assert_eq!(during(|| list.find("other.test")), (None, 0));
        let lists = [&list, &list];
        assert_eq!(
            during(|| decided(lists, "a.example.com")),
            (blocked("||example.com^"), 1)
        );
    }

    /// `count` distinct names as a list mixing hosts, plain and adblock lines.
    fn generated(count: usize) -> String {
        let mut text = String::with_capacity(count * 40);
        for i in 0..count {
            let name = format!("{i:x}-ads.site{}.example", i % 1000);
            let _ = match i % 3 {
                0 => writeln!(text, "0.0.0.0 {name}"),
                1 => writeln!(text, "{name}"),
                _ => writeln!(text, "||{name}^"),
            };
        }
        text
    }

    #[test]
    fn a_long_generated_list_holds_each_name_once() {
        let text = generated(200_000);
        let (list, found) = List::parse(&format!("{text}{text}"), false);
        assert_eq!(found, parsed(200_000, 0, 0));
        assert_eq!(list.len(), 200_000);
        assert_eq!(
            list.find("a.30d3f-ads.site999.example"),
            blocked("30d3f-ads.site999.example")
        );
    }

    /// Resident memory of this process, in KiB.
    fn resident_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap_or_default();
        line.split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    #[test]
    #[ignore = "times a million domains: run with --release --ignored"]
    fn a_million_domains_parse_quickly() {
        let text = generated(1_000_000);
        let before = resident_kib();
        let start = Instant::now();
        let (list, found) = List::parse(&text, false);
        let took = start.elapsed();
        let held = resident_kib().saturating_sub(before);
        println!(
            "1 M domains parsed in {took:?}, holding {} MiB",
            held / 1024
        );
        assert_eq!(found, parsed(1_000_000, 0, 0));
        assert_eq!(list.len(), 1_000_000);
        assert!(took.as_secs_f64() < 5.0, "{took:?}");
    }
}
