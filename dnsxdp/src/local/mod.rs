//! Names of the local network, answered with authority before any list or upstream is asked:
//! the config's records and those of hosts files.

pub mod hosts;
pub mod record;
pub mod settings;

use std::collections::{HashMap, HashSet};

use anyhow::anyhow;
use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{DNSClass, Name, RData, Record, RecordType, rdata::PTR},
};

use self::settings::Config;
use crate::dns::answer::own_soa;

/// CNAMEs followed within local data in one answer: a loop stops here.
const MAX_CHAIN: usize = 8;

/// The local records in force.
#[derive(Debug)]
pub struct LocalData {
    /// Each name's records, by the lower-cased name.
    records: HashMap<Name, Vec<Record>>,
    /// Of negative answers.
    ttl: u32,
    bad_hosts_lines: usize,
}

/// The config's records and its hosts files', read now, so that a reload reads them again.
pub fn load(config: &Config) -> anyhow::Result<LocalData> {
    let mut records = config.records.clone();
    let mut bad = 0;
    for path in &config.hosts_files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("hosts-file: {}: {e}", path.display()))?;
        let hosts = hosts::parse(&text, config.ttl);
        records.extend(hosts.records);
        bad += hosts.bad;
    }
    Ok(LocalData::new(records, config.ttl, bad))
}

/// The names whose answers differ between `old` and `new`: those whose records differ, a name
/// in only one of them included, and those whose CNAMEs lead to one. On a reload, the caches
/// forget exactly these.
pub fn changed_names(old: &LocalData, new: &LocalData) -> HashSet<Name> {
    let all = || old.records.iter().chain(&new.records);
    let mut changed: HashSet<Name> = all()
        .filter(|(name, _)| old.records.get(*name) != new.records.get(*name))
        .map(|(name, _)| name.clone())
        .collect();
    loop {
        let leading: Vec<Name> = all()
            .filter(|(name, records)| {
                !changed.contains(*name)
                    && (records.iter()).any(|r| cname(r).is_some_and(|t| changed.contains(t)))
            })
            .map(|(name, _)| name.clone())
            .collect();
        if leading.is_empty() {
            return changed;
        }
        changed.extend(leading);
    }
}

impl LocalData {
    /// `records`, and for each address a PTR to the first name given it (as dnsmasq and
    /// CoreDNS's hosts plugin do), unless a PTR for it is given.
    fn new(records: Vec<Record>, ttl: u32, bad_hosts_lines: usize) -> LocalData {
        let mut data = LocalData {
            records: HashMap::new(),
            ttl,
            bad_hosts_lines,
        };
        let pointers: Vec<Record> = records.iter().filter_map(pointer).collect();
        for r in records {
            data.add(r);
        }
        for ptr in pointers {
            let given = (data.records.get(ptr.name()))
                .is_some_and(|set| set.iter().any(|r| r.record_type() == RecordType::PTR));
            if !given {
                data.add(ptr);
            }
        }
        data
    }

    /// `r`, unless its data is there already: an RRset is a set, and a name may be both in
    /// the config and in a hosts file.
    fn add(&mut self, r: Record) {
        let set = self.records.entry(r.name().to_lowercase()).or_default();
        if !set.iter().any(|o| o.data() == r.data()) {
            set.push(r);
        }
    }

    /// The answer to `q` if its name is local, with authority: its records of the type asked,
    /// else its CNAME and what that leads to within local data, else NODATA. `None` when the
    /// name is not local, for the upstreams to answer.
    pub fn answer(&self, q: &Query) -> Option<Message> {
        if q.query_class() != DNSClass::IN {
            return None;
        }
        // Names hash and compare case-insensitively: the lower-cased key is found as asked.
        let mut records = self.records.get(q.name())?;
        let mut m = Message::new();
        m.set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_authoritative(true)
            .set_recursion_desired(true)
            .set_recursion_available(true)
            .set_response_code(ResponseCode::NoError);
        m.add_query(q.clone());
        // Records go out owned by the name as asked, or as the CNAME leading there wrote it.
        let mut owner = q.name().clone();
        let mut chain = 0;
        loop {
            let owned = |r: &Record| {
                let mut r = r.clone();
                r.set_name(owner.clone());
                r
            };
            let asked: Vec<Record> = (records.iter())
                .filter(|r| r.record_type() == q.query_type())
                .map(owned)
                .collect();
            if !asked.is_empty() {
                m.add_answers(asked);
                return Some(m);
            }
            let Some((record, target)) = records.iter().find_map(|r| Some((r, cname(r)?))) else {
                // The SOA, owned by the name, gives the caches the negative answer's TTL
                // (RFC 2308).
                m.add_name_server(Record::from_rdata(
                    owner,
                    self.ttl,
                    RData::SOA(own_soa(self.ttl)),
                ));
                return Some(m);
            };
            if chain == MAX_CHAIN {
                return Some(m);
            }
            chain += 1;
            m.add_answer(owned(record));
            owner = target.clone();
            records = match self.records.get(target) {
                Some(records) => records,
                // The rest of the chain is for the client's resolver to follow.
                None => return Some(m),
            };
        }
    }

    /// The names that have records, lower-cased.
    pub fn names(&self) -> impl Iterator<Item = &Name> {
        self.records.keys()
    }

    /// Records held, automatic PTRs included.
    pub fn len(&self) -> usize {
        self.records.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Lines of the hosts files that are no mapping.
    pub fn bad_hosts_lines(&self) -> usize {
        self.bad_hosts_lines
    }
}

/// The PTR an A or AAAA record implies.
fn pointer(r: &Record) -> Option<Record> {
    let reverse = match r.data() {
        RData::A(a) => Name::from(a.0),
        RData::AAAA(a) => Name::from(a.0),
        _ => return None,
    };
    let data = RData::PTR(PTR(r.name().clone()));
    Some(Record::from_rdata(reverse, r.ttl(), data))
}

/// The target of a CNAME record.
fn cname(r: &Record) -> Option<&Name> {
    match r.data() {
        RData::CNAME(target) => Some(&target.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use hickory_proto::rr::rdata::{A, CNAME};

    use super::{settings::Settings, *};

    fn config(lines: &[&str]) -> Config {
        let settings = Settings {
            local_record: Some(lines.iter().map(|s| s.to_string()).collect()),
            local_ttl: Some(300),
            ..Settings::default()
        };
        settings.config().unwrap()
    }

    fn local(lines: &[&str]) -> LocalData {
        load(&config(lines)).unwrap()
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn ask(data: &LocalData, qname: &str, qtype: RecordType) -> Message {
        let q = Query::query(name(qname), qtype);
        data.answer(&q).unwrap()
    }

    /// Each answer record as `owner TYPE data`.
    fn answers(m: &Message) -> Vec<String> {
        (m.answers().iter())
            .map(|r| format!("{} {} {}", r.name(), r.record_type(), r.data()))
            .collect()
    }

    #[test]
    fn an_rrset_with_authority() {
        let data = local(&["nas.lan A 192.168.1.10", "nas.lan 60 A 192.168.1.11"]);
        let m = ask(&data, "nas.lan.", RecordType::A);
        assert_eq!(m.message_type(), MessageType::Response);
        assert_eq!(m.op_code(), OpCode::Query);
        assert!(m.authoritative() && m.recursion_desired() && m.recursion_available());
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert_eq!(m.queries(), [Query::query(name("nas.lan."), RecordType::A)]);
        assert_eq!(
            answers(&m),
            ["nas.lan. A 192.168.1.10", "nas.lan. A 192.168.1.11"]
        );
        let ttls: Vec<u32> = m.answers().iter().map(Record::ttl).collect();
        assert_eq!(ttls, [300, 60]);
        assert!(m.name_servers().is_empty());
    }

    #[test]
    fn other_names_and_classes_go_upstream() {
        let data = local(&["nas.lan A 192.168.1.10"]);
        assert!(
            data.answer(&Query::query(name("lan."), RecordType::A))
                .is_none()
        );
        let sub = Query::query(name("x.nas.lan."), RecordType::A);
        assert!(data.answer(&sub).is_none());
        let mut chaos = Query::query(name("nas.lan."), RecordType::A);
        chaos.set_query_class(DNSClass::CH);
        assert!(data.answer(&chaos).is_none());
    }

    #[test]
    fn nodata_carries_a_soa_owned_by_the_name() {
        let data = local(&["nas.lan A 192.168.1.10"]);
        let m = ask(&data, "nas.lan.", RecordType::AAAA);
        assert!(m.authoritative());
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
        let [soa] = m.name_servers() else {
            panic!("{m:?}")
        };
        assert_eq!(soa.name(), &name("nas.lan."));
        assert_eq!(soa.ttl(), 300);
        let RData::SOA(soa) = soa.data() else {
            panic!("{soa:?}")
        };
        assert_eq!(soa.minimum(), 300);
        let cname = ask(&data, "nas.lan.", RecordType::CNAME);
        assert_eq!(cname.name_servers().len(), 1);
    }

    #[test]
    fn the_case_asked_is_kept() {
        let data = local(&["Nas.Lan A 192.168.1.10"]);
        let names: Vec<String> = data.names().map(Name::to_string).collect();
        assert!(names.contains(&"nas.lan.".to_string()), "{names:?}");
        let m = ask(&data, "nAS.lAN.", RecordType::A);
        assert!(m.queries()[0].name().eq_case(&name("nAS.lAN.")));
        assert!(m.answers()[0].name().eq_case(&name("nAS.lAN.")));
        let nodata = ask(&data, "NAS.LAN.", RecordType::TXT);
        assert!(nodata.name_servers()[0].name().eq_case(&name("NAS.LAN.")));
    }

    #[test]
    fn a_cname_chain_within_local_data() {
        let data = local(&[
            "www.lan CNAME web.lan",
            "web.lan CNAME nas.lan",
            "nas.lan 60 A 192.168.1.10",
        ]);
        let m = ask(&data, "www.lan.", RecordType::A);
        assert_eq!(
            answers(&m),
            [
                "www.lan. CNAME web.lan.",
                "web.lan. CNAME nas.lan.",
                "nas.lan. A 192.168.1.10"
            ]
        );
        assert!(m.name_servers().is_empty());
        // Nothing of the type at the end: NODATA there, after the chain.
        let m = ask(&data, "www.lan.", RecordType::AAAA);
        assert_eq!(answers(&m).len(), 2);
        assert_eq!(m.name_servers()[0].name(), &name("nas.lan."));
        assert_eq!(m.response_code(), ResponseCode::NoError);
        // A CNAME asked for is the answer itself.
        let m = ask(&data, "www.lan.", RecordType::CNAME);
        assert_eq!(answers(&m), ["www.lan. CNAME web.lan."]);
    }

    #[test]
    fn a_chain_leaving_local_data_ends_there() {
        let data = local(&["ext.lan CNAME www.example.com"]);
        let m = ask(&data, "ext.lan.", RecordType::A);
        assert_eq!(answers(&m), ["ext.lan. CNAME www.example.com."]);
        assert!(m.name_servers().is_empty());
        assert_eq!(m.response_code(), ResponseCode::NoError);
    }

    #[test]
    fn chains_stop_after_eight() {
        let data = local(&["a.lan CNAME b.lan", "b.lan CNAME a.lan"]);
        let m = ask(&data, "a.lan.", RecordType::A);
        assert_eq!(m.answers().len(), MAX_CHAIN);
        assert!(m.name_servers().is_empty());
        let mut lines: Vec<String> = (0..8)
            .map(|i| format!("c{i}.lan CNAME c{}.lan", i + 1))
            .collect();
        lines.push("c8.lan A 10.0.0.8".into());
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let m = ask(&local(&lines), "c0.lan.", RecordType::A);
        assert_eq!(answers(&m).last().unwrap(), "c8.lan. A 10.0.0.8");
    }

    #[test]
    fn addresses_get_pointers_unless_given() {
        let data = local(&[
            "nas.lan A 192.168.1.10",
            "files.lan A 192.168.1.10",
            "nas.lan AAAA fd00::10",
            "printer.lan A 192.168.1.20",
            "20.1.168.192.in-addr.arpa PTR office-printer.lan",
        ]);
        let ptr = |qname| answers(&ask(&data, qname, RecordType::PTR));
        assert_eq!(
            ptr("10.1.168.192.in-addr.arpa."),
            ["10.1.168.192.in-addr.arpa. PTR nas.lan."]
        );
        let v6 = "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
        assert_eq!(ptr(v6), [format!("{v6} PTR nas.lan.")]);
        assert_eq!(
            ptr("20.1.168.192.in-addr.arpa."),
            ["20.1.168.192.in-addr.arpa. PTR office-printer.lan."]
        );
        assert_eq!(data.len(), 7, "five given, two PTRs made");
    }

    #[test]
    fn hosts_names_get_pointers_to_the_first() {
        let hosts = hosts::parse("10.0.0.1 first second\n10.0.0.1 third\nbad\n", 300);
        let data = LocalData::new(hosts.records, 300, hosts.bad);
        let m = ask(&data, "1.0.0.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(answers(&m), ["1.0.0.10.in-addr.arpa. PTR first."]);
        assert_eq!(
            answers(&ask(&data, "third.", RecordType::A)),
            ["third. A 10.0.0.1"]
        );
        assert_eq!(data.bad_hosts_lines(), 1);
    }

    #[test]
    fn the_same_record_twice_is_held_once() {
        let mut records = config(&["nas.lan A 10.0.0.1"]).records;
        records.extend(hosts::parse("10.0.0.1 NAS.lan", 60).records);
        let data = LocalData::new(records, 300, 0);
        assert_eq!(data.len(), 2, "the address and its PTR");
        assert_eq!(
            ask(&data, "nas.lan.", RecordType::A).answers()[0].ttl(),
            300
        );
        assert!(!data.is_empty());
        assert!(local(&[]).is_empty());
    }

    #[test]
    fn changed_names_are_those_whose_answers_differ() {
        let old = local(&[
            "same.lan A 10.0.0.1",
            "nas.lan A 10.0.0.2",
            "www.lan CNAME nas.lan",
            "gone.lan TXT bye",
        ]);
        let new = local(&[
            "same.lan A 10.0.0.1",
            "nas.lan A 10.0.0.3",
            "www.lan CNAME nas.lan",
            "added.lan TXT hi",
        ]);
        let mut changed: Vec<String> = (changed_names(&old, &new).iter())
            .map(Name::to_ascii)
            .collect();
        changed.sort();
        assert_eq!(
            changed,
            [
                "2.0.0.10.in-addr.arpa.",
                "3.0.0.10.in-addr.arpa.",
                "added.lan.",
                "gone.lan.",
                "nas.lan.",
                "www.lan."
            ]
        );
        assert!(changed_names(&old, &local(&[])).contains(&name("same.lan.")));
        let again = local(&[
            "gone.lan TXT bye",
            "www.lan CNAME nas.lan",
            "nas.lan A 10.0.0.2",
            "same.lan A 10.0.0.1",
        ]);
        assert!(changed_names(&old, &again).is_empty());
    }

    /// A directory removed when dropped, even by a failing test.
    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn load_reads_the_hosts_files() {
        let dir = Dir(std::env::temp_dir().join(format!("dnsxdp-local-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join("hosts");
        std::fs::write(&path, "192.168.1.10 nas nas.lan\n192.168.1.11\n").unwrap();
        let mut config = config(&["www.lan CNAME nas.lan"]);
        config.hosts_files = vec![path];
        let data = load(&config).unwrap();
        assert_eq!(data.bad_hosts_lines(), 1);
        let m = ask(&data, "www.lan.", RecordType::A);
        assert_eq!(
            answers(&m),
            ["www.lan. CNAME nas.lan.", "nas.lan. A 192.168.1.10"]
        );
        assert_eq!(m.answers()[1].ttl(), 300);
        assert_eq!(
            m.answers()[0].data(),
            &RData::CNAME(CNAME(name("nas.lan.")))
        );
        let nas = ask(&data, "nas.", RecordType::A);
        assert_eq!(nas.answers()[0].data(), &RData::A(A::new(192, 168, 1, 10)));
        config.hosts_files = vec![dir.0.join("missing")];
        let e = load(&config).unwrap_err().to_string();
        let want = format!("hosts-file: {}: ", dir.0.join("missing").display());
        assert!(e.starts_with(&want), "{e}");
    }
}
