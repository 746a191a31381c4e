//! Daemon cache hits answered the way the XDP program answers them: the query read only as far
//! as its question and OPT record, and the reply copied from the answer's kernel-entry form
//! with the ID, flags, question and TTLs patched in. No message is parsed or encoded, and the
//! reply is byte for byte what the XDP program would send from the same entry.

use dnsxdp_common::{
    CacheEntry, DNS_HLEN, EDNS_UDP_SIZE, IGNORED_EDNS_OPTIONS, PLAIN_UDP_SIZE, QCLASS_IN,
    QTYPE_OPT,
    checksum::{EDE_BLOCKED, opt_record},
    entry::ttl_left,
    name::{QuestionKey, parse_question},
    qtype::kernel_qtype,
};

/// A query the wire path may answer, read as far as it needs.
#[derive(Debug)]
pub struct WireQuery {
    /// The name lower-cased, the type, and the DO bit.
    pub question: QuestionKey,
    /// Where the question ends in the packet.
    question_end: usize,
    /// The largest reply the client takes, with an OPT record if it sent one.
    edns: Option<usize>,
}

impl WireQuery {
    /// The question's name as the client spelled it, in wire format.
    pub fn sent_name<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        &packet[DNS_HLEN..self.question_end - 4]
    }
}

/// Reads `packet` as the XDP program does, `None` for anything it would not answer: a standard
/// query with one class IN question of a type the kernel cache holds, a name of at most
/// `MAX_CACHED_NAME` bytes, and at most an OPT record of version 0 with no options but COOKIE
/// and PADDING. The daemon's full path answers the rest.
pub fn read(packet: &[u8]) -> Option<WireQuery> {
    let h = packet.get(..DNS_HLEN)?;
    // QR, OPCODE and TC clear.
    if h[2] & 0xfa != 0 {
        return None;
    }
    let count = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    if count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
        return None;
    }
    let q = parse_question(packet).ok()?;
    if q.qclass != QCLASS_IN || !kernel_qtype(q.key.qtype) {
        return None;
    }
    let mut question = q.key;
    let edns = match count(10) {
        1 => {
            let (size, dnssec_ok) = opt(packet, q.end)?;
            question.dnssec_ok = dnssec_ok;
            Some(size)
        }
        _ if q.end == packet.len() => None,
        _ => return None,
    };
    Some(WireQuery {
        question,
        question_end: q.end,
        edns,
    })
}

/// The OPT record at `at`, which must end `packet`: the UDP size the daemon honours and the
/// DO bit, or `None` if it is not one the wire path answers.
fn opt(packet: &[u8], at: usize) -> Option<(usize, bool)> {
    let o = packet.get(at..at + 11)?;
    let (rtype, size) = (
        u16::from_be_bytes([o[1], o[2]]),
        u16::from_be_bytes([o[3], o[4]]),
    );
    let (version, flags) = (o[6], o[7]);
    let rdlen = usize::from(u16::from_be_bytes([o[9], o[10]]));
    if o[0] != 0 || rtype != QTYPE_OPT || version != 0 || at + 11 + rdlen != packet.len() {
        return None;
    }
    for option in edns_options(&packet[at + 11..]) {
        let (code, _) = option?;
        if !IGNORED_EDNS_OPTIONS.contains(&code) {
            return None;
        }
    }
    let size = size.clamp(PLAIN_UDP_SIZE, EDNS_UDP_SIZE);
    Some((usize::from(size), flags & 0x80 != 0))
}

/// The options in an OPT record's `data`, in order, each as its code and data; one cut short
/// is a `None` that ends the walk.
pub fn edns_options(mut data: &[u8]) -> impl Iterator<Item = Option<(u16, &[u8])>> {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        let option = match data {
            [c0, c1, l0, l1, rest @ ..] => {
                let len = usize::from(u16::from_be_bytes([*l0, *l1]));
                rest.get(..len).map(|body| {
                    data = &rest[len..];
                    (u16::from_be_bytes([*c0, *c1]), body)
                })
            }
            _ => None,
        };
        if option.is_none() {
            data = &[];
        }
        Some(option)
    })
}

/// An answer in the form a kernel entry holds it, with only the bytes it uses.
#[derive(Debug)]
pub struct WireAnswer {
    /// The answer and authority sections, every TTL field zero.
    records: Box<[u8]>,
    /// Where in `records` each TTL field is.
    ttl_offsets: Box<[u16]>,
    ancount: u16,
    nscount: u16,
    rcode: u8,
    authentic: bool,
    authoritative: bool,
    blocked: bool,
    expires_ns: u64,
}

impl WireAnswer {
    pub fn of(e: &CacheEntry) -> WireAnswer {
        WireAnswer {
            records: e.records().into(),
            ttl_offsets: e.ttl_offsets[..usize::from(e.ttl_count)].into(),
            ancount: e.ancount,
            nscount: e.nscount,
            rcode: e.rcode,
            authentic: e.authentic != 0,
            authoritative: e.authoritative != 0,
            blocked: e.blocked != 0,
            expires_ns: e.expires_ns,
        }
    }

    /// Bytes it takes in memory, near enough.
    pub fn memory(&self) -> usize {
        size_of::<WireAnswer>() + self.records.len() + 2 * self.ttl_offsets.len()
    }

    /// The reply to `q`, read from `packet`, at `now_ns`; `None` once expired or when it would
    /// not fit the client, for the full path to answer (a truncated reply).
    pub fn reply(&self, packet: &[u8], q: &WireQuery, now_ns: u64) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.reply_into(packet, q, now_ns, &mut out).then_some(out)
    }

    /// `reply` written over `out`, whose memory it reuses: whether there is one.
    pub fn reply_into(&self, packet: &[u8], q: &WireQuery, now_ns: u64, out: &mut Vec<u8>) -> bool {
        let Some(ttl) = ttl_left(self.expires_ns, now_ns) else {
            return false;
        };
        let opt = q
            .edns
            .map(|_| opt_record(q.question.dnssec_ok, self.blocked));
        let ede: &[u8] = match opt.is_some() && self.blocked {
            true => &EDE_BLOCKED,
            false => &[],
        };
        let len = q.question_end + self.records.len() + opt.map_or(0, |o| o.len()) + ede.len();
        if len > q.edns.unwrap_or(usize::from(PLAIN_UDP_SIZE)) {
            return false;
        }
        out.clear();
        out.reserve(len);
        out.extend_from_slice(&packet[..q.question_end]);
        let ad = self.authentic && q.question.dnssec_ok;
        // QR, AA and RD; RA, AD (RFC 6840 §5.8), CD and the RCODE.
        out[2] = 0x80 | (u8::from(self.authoritative) << 2) | (packet[2] & 0x01);
        out[3] = 0x80 | (u8::from(ad) << 5) | (packet[3] & 0x10) | (self.rcode & 0x0f);
        out[6..8].copy_from_slice(&self.ancount.to_be_bytes());
        out[8..10].copy_from_slice(&self.nscount.to_be_bytes());
        out[10..12].copy_from_slice(&u16::from(opt.is_some()).to_be_bytes());
        let records = out.len();
        out.extend_from_slice(&self.records);
        for &off in &self.ttl_offsets {
            let at = records + usize::from(off);
            out[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
        }
        if let Some(opt) = opt {
            out.extend_from_slice(&opt);
            out.extend_from_slice(ede);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use dnsxdp_common::entry::build_entry;
    use hickory_proto::{
        op::{Edns, Message, MessageType, Query},
        rr::{Name, RData, Record, RecordType, rdata::TXT, rdata::opt::EdnsOption},
    };

    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn edns_options_are_walked_until_one_is_cut_short() {
        let data = [0, 10, 0, 2, 7, 8, 0, 12, 0, 0, 0, 11, 0, 5, 1];
        let options: Vec<_> = edns_options(&data).collect();
        assert_eq!(
            options,
            [Some((10, &[7, 8][..])), Some((12, &[][..])), None]
        );
        assert_eq!(edns_options(&[]).count(), 0);
        assert_eq!(edns_options(&[0, 10, 0]).collect::<Vec<_>>(), [None]);
    }

    fn query(name: &str, edns: Option<(u16, bool)>, options: &[(u16, usize)]) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(0xbeef).set_recursion_desired(true);
        m.add_query(Query::query(
            Name::from_ascii(name).unwrap(),
            RecordType::TXT,
        ));
        if let Some((size, dnssec_ok)) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size).set_dnssec_ok(dnssec_ok);
            for &(code, len) in options {
                e.options_mut()
                    .insert(EdnsOption::Unknown(code, vec![0; len]));
            }
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    /// The entry for `name` TXT with `n` records of `len` bytes, built at 0 for 300 s.
    fn entry(name: &str, n: usize, len: usize) -> WireAnswer {
        let name = Name::from_ascii(name).unwrap();
        let mut m = Message::new();
        m.set_message_type(MessageType::Response)
            .set_recursion_desired(true)
            .set_recursion_available(true)
            .add_query(Query::query(name.clone(), RecordType::TXT));
        for i in 0..n {
            let text = format!("{i:0len$}");
            m.add_answer(Record::from_rdata(
                name.clone(),
                300,
                RData::TXT(TXT::new(vec![text])),
            ));
        }
        let (_, e) = build_entry(&m.to_vec().unwrap(), 0, 86400).unwrap();
        WireAnswer::of(&e)
    }

    #[test]
    fn replies_echo_the_query_and_count_ttls_down() {
        let packet = query("WwW.t.", Some((4096, false)), &[(10, 8)]);
        let q = read(&packet).unwrap();
        assert_eq!(q.question.wire_name(), b"\x03www\x01t\x00");
        assert_eq!(q.sent_name(&packet), b"\x03WwW\x01t\x00");
        let reply = entry("www.t.", 2, 8).reply(&packet, &q, 100 * S).unwrap();
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(m.id(), 0xbeef);
        assert_eq!(m.queries()[0].name().to_ascii(), "WwW.t.");
        assert!(m.recursion_desired() && m.recursion_available() && !m.authentic_data());
        assert_eq!(m.answers().len(), 2);
        // 300 s less the margin, 100 s on.
        assert!(m.answers().iter().all(|r| r.ttl() == 199), "{m}");
        let e = m.extensions().as_ref().unwrap();
        assert_eq!((e.max_payload(), e.flags().dnssec_ok), (1232, false));
        let expired = entry("www.t.", 1, 8).reply(&packet, &q, 300 * S);
        assert!(expired.is_none());
    }

    #[test]
    fn what_the_xdp_program_passes_is_left_to_the_full_path() {
        let plain = query("www.t.", None, &[]);
        assert!(read(&plain).is_some());
        // An option other than COOKIE and PADDING, a version above 0, trailing bytes.
        assert!(read(&query("www.t.", Some((1232, false)), &[(8, 4)])).is_none());
        let mut v1 = query("www.t.", Some((1232, false)), &[]);
        let at = v1.len() - 5;
        v1[at] = 1;
        assert!(read(&v1).is_none());
        assert!(read(&[plain.clone(), vec![0]].concat()).is_none());
        // A response, TC, two questions, an ANY question.
        for (at, bit) in [(2, 0x80), (2, 0x02), (5, 0x02)] {
            let mut p = plain.clone();
            p[at] |= bit;
            assert!(read(&p).is_none(), "byte {at} bit {bit:#x}");
        }
        let mut any = plain.clone();
        let qtype = any.len() - 4;
        any[qtype..qtype + 2].copy_from_slice(&255u16.to_be_bytes());
        assert!(read(&any).is_none());
        // About 600 bytes: too big without EDNS, or for a client that takes only 512.
        let long = format!("{}.t.", "l".repeat(60));
        let big = entry(&long, 7, 60);
        for (edns, fits) in [
            (None, false),
            (Some((512, false)), false),
            (Some((1232, false)), true),
        ] {
            let packet = query(&long, edns, &[]);
            let reply = big.reply(&packet, &read(&packet).unwrap(), 0);
            assert_eq!(reply.is_some(), fits, "{edns:?}");
        }
    }
}
