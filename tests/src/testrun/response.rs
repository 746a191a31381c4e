//! Upstream responses as tests write them, and the cache entries the daemon makes of them.

use std::net::Ipv4Addr;

use anyhow::{Result, anyhow};
use dnsxdp_common::{CacheEntry, entry::build_entry, name::QuestionKey};
use hickory_proto::{
    op::{Message, MessageType, OpCode, Query},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA, CNAME},
    },
};

/// CLOCK_MONOTONIC in ns, the clock of `CacheEntry::expires_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The daemon's entry for `response`, stamped now.
pub fn entry_from(response: &[u8], max_ttl: u32) -> Result<(QuestionKey, CacheEntry)> {
    build_entry(response, monotonic_ns(), max_ttl).map_err(|e| anyhow!("build_entry: {e:?}"))
}

/// A NOERROR response to `name`/`qtype` with `answers`, as an upstream would send it.
pub fn response(name: &str, qtype: RecordType, answers: Vec<Record>) -> Result<Vec<u8>> {
    let mut m = Message::new();
    m.set_id(0x4242)
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .set_recursion_available(true)
        .add_query(Query::query(Name::from_ascii(name)?, qtype))
        .add_answers(answers);
    Ok(m.to_vec()?)
}

/// A response to `name`/A whose records (497 bytes: six CNAMEs with 63-byte labels, then an A
/// record) fit an entry, but which is over 512 bytes for any name of 4 bytes or more.
pub fn big_response(name: &str) -> Result<Vec<u8>> {
    let target = |i: usize| {
        format!(
            "{}.x.example.net.",
            char::from(b'a' + i as u8).to_string().repeat(63)
        )
    };
    let mut records = Vec::new();
    let mut owner = name.to_string();
    for i in 0..6 {
        let t = target(i);
        records.push(record(&owner, 300, cname(&t))?);
        owner = t;
    }
    records.push(record(&owner, 300, a([198, 51, 100, 99]))?);
    response(name, RecordType::A, records)
}

/// A record for `response`.
pub fn record(owner: &str, ttl: u32, rdata: RData) -> Result<Record> {
    Ok(Record::from_rdata(Name::from_ascii(owner)?, ttl, rdata))
}

/// The data of an A record.
pub fn a(ip: [u8; 4]) -> RData {
    RData::A(A(Ipv4Addr::from(ip)))
}

/// The data of an AAAA record; panics on a malformed address.
pub fn aaaa(ip: &str) -> RData {
    RData::AAAA(AAAA(ip.parse().expect("an IPv6 address")))
}

/// The data of a CNAME record; panics on a malformed name.
pub fn cname(target: &str) -> RData {
    RData::CNAME(CNAME(Name::from_ascii(target).expect("a domain name")))
}
