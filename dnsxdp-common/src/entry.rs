//! Building a kernel cache entry from a complete DNS response.

use crate::{
    CacheEntry, CacheKey, EXPIRY_MARGIN_NS, MAX_RECORDS_LEN, MAX_TTLS, QCLASS_IN, QTYPE_A,
    QTYPE_AAAA, QTYPE_CNAME, QTYPE_DNAME, QTYPE_MX, QTYPE_NS, QTYPE_NSEC, QTYPE_NSEC3, QTYPE_OPT,
    QTYPE_PTR, QTYPE_RRSIG, QTYPE_SOA, QTYPE_SRV, RCODE_NOERROR, RCODE_NXDOMAIN,
    checksum::{EDE_BLOCKED, sum_bytes},
    name::{QuestionKey, name_words, parse_question},
    qtype::kernel_qtype,
};

/// Why a response stays out of the kernel cache (the daemon may still cache it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotCacheable {
    /// Not a well-formed response, or a name in it is malformed.
    Malformed,
    /// Not an answer the XDP program serves: qtype/class, rcode, flags or record types.
    Unsupported,
    /// More record bytes or records than an entry holds, or the name is too long.
    TooLarge,
    /// A TTL of zero: nothing to cache.
    ZeroTtl,
}

const NS_PER_SEC: u64 = 1_000_000_000;
/// TTLs with the top bit set read as zero (RFC 2181 §8).
const MAX_TTL: u64 = 0x7fff_ffff;
/// Longest legal wire name.
const MAX_WIRE_NAME: usize = 255;
/// Compression pointers followed in one name before it is called a loop.
const MAX_POINTER_HOPS: usize = 32;

/// Builds the entry, at the largest size, for `response`, an answer to an IN query of a type
/// `kernel_qtype` allows, with its question first, as it would be sent to a client. The
/// records' lifetime is the smallest TTL in it, capped at `max_ttl` seconds, counted from
/// `now_ns` (CLOCK_MONOTONIC); the entry expires `EXPIRY_MARGIN_NS` before it, and asks for a
/// prefetch in the last tenth of it.
///
/// A positive answer is NOERROR with records of the question's type, maybe after a CNAME or
/// DNAME chain. A negative one (RFC 2308) is NXDOMAIN, or NOERROR without a record of that type
/// (NODATA), with one SOA in the authority section: its TTL, set by the daemon to the negative
/// TTL, counts down like the others.
///
/// An OPT record with the DO bit, last, makes it the answer to queries with DO: the authority
/// section may then also hold the NSEC, NSEC3 and RRSIG records that prove a denial or a
/// wildcard, and the entry keeps the AD bit. Without it the authority section holds the SOA of
/// a negative answer and nothing else. The OPT record itself is not kept: the XDP program
/// writes its own, with the Extended DNS Error "Blocked" if this one has exactly that option.
/// The AA bit is kept too.
///
/// Names in the records may only point backwards into the question or earlier records, so the
/// records stay valid after any query with the same name (in any case) as their question.
pub fn build_entry(
    response: &[u8],
    now_ns: u64,
    max_ttl: u32,
) -> Result<(QuestionKey, CacheEntry), NotCacheable> {
    let question = parse_question(response).map_err(|e| match e {
        crate::name::QuestionError::TooLong => NotCacheable::TooLarge,
        _ => NotCacheable::Malformed,
    })?;
    let mut key = question.key;
    if question.qclass != QCLASS_IN || !kernel_qtype(key.qtype) {
        return Err(NotCacheable::Unsupported);
    }
    // QR set, opcode QUERY, not truncated, NOERROR or NXDOMAIN.
    let (flags, rcode) = (response[2], response[3] & 0x0f);
    if flags & 0x80 == 0
        || flags & 0x7a != 0
        || !(rcode == RCODE_NOERROR || rcode == RCODE_NXDOMAIN)
    {
        return Err(NotCacheable::Unsupported);
    }
    let count = |at: usize| u16::from_be_bytes([response[at], response[at + 1]]);
    let (ancount, nscount, arcount) = (count(6), count(8), count(10));
    if arcount > 1 {
        return Err(NotCacheable::Unsupported);
    }
    if ancount as usize + nscount as usize > MAX_TTLS {
        return Err(NotCacheable::TooLarge);
    }

    let start = question.end;
    let mut entry = CacheEntry::new(&key);
    let mut pos = start;
    let mut min_ttl = u32::MAX;
    let mut has_target_type = false;
    // In the authority section: SOA records, and DNSSEC proofs.
    let (mut soas, mut proofs) = (0, 0);
    for i in 0..(ancount + nscount) as usize {
        let in_answer = i < ancount as usize;
        pos = skip_name(response, pos)?;
        let fixed = response.get(pos..pos + 10).ok_or(NotCacheable::Malformed)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let class = u16::from_be_bytes([fixed[2], fixed[3]]);
        let ttl = read_ttl(u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]));
        let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let rdata = pos + 10;
        if response.len() < rdata + rdlen {
            return Err(NotCacheable::Malformed);
        }
        if class != QCLASS_IN {
            return Err(NotCacheable::Unsupported);
        }
        // Any record in the answer section, as the daemon sends it.
        match (in_answer, rtype) {
            (true, _) => has_target_type |= rtype == key.qtype,
            (false, QTYPE_SOA) => soas += 1,
            (false, QTYPE_NSEC | QTYPE_NSEC3 | QTYPE_RRSIG) => proofs += 1,
            (false, _) => return Err(NotCacheable::Unsupported),
        }
        check_rdata(response, rtype, rdata, rdlen)?;
        entry.ttl_offsets[i] = (pos + 4 - start) as u16;
        min_ttl = min_ttl.min(ttl);
        pos = rdata + rdlen;
    }
    let len = pos - start;
    let (dnssec_ok, blocked) = match arcount {
        1 => opt(response, pos)?,
        _ => (false, false),
    };
    // NOERROR without a record of the type is NODATA, at the end of the chain if any.
    let negative = rcode == RCODE_NXDOMAIN || !has_target_type;
    if soas != negative as u32
        || (proofs != 0 && !dnssec_ok)
        || (rcode == RCODE_NXDOMAIN && has_target_type)
    {
        return Err(NotCacheable::Unsupported);
    }
    if len > MAX_RECORDS_LEN {
        return Err(NotCacheable::TooLarge);
    }
    let ttl = min_ttl.min(max_ttl);
    if ttl == 0 {
        return Err(NotCacheable::ZeroTtl);
    }

    let records = (ancount + nscount) as usize;
    entry.len = len as u16;
    entry.records_mut()[..len].copy_from_slice(&response[start..pos]);
    let offsets = entry.ttl_offsets;
    for &off in &offsets[..records] {
        let off = off as usize;
        entry.records_mut()[off..off + 4].fill(0);
    }
    let life = ttl as u64 * NS_PER_SEC;
    entry.expires_ns = now_ns.saturating_add(life - EXPIRY_MARGIN_NS);
    entry.prefetch_ns = now_ns.saturating_add(life - life / 10);
    entry.csum = sum_bytes(0, entry.records());
    entry.ancount = ancount;
    entry.nscount = nscount;
    entry.rcode = rcode;
    entry.ttl_count = records as u8;
    key.dnssec_ok = dnssec_ok;
    entry.key.dnssec_ok = dnssec_ok as u8;
    entry.authentic = (dnssec_ok && response[3] & 0x20 != 0) as u8;
    entry.authoritative = (flags & 0x04 != 0) as u8;
    entry.blocked = blocked as u8;
    Ok((key, entry))
}

/// Builds the entry of a static answer (a local record): as `build_entry`, but it never expires
/// or asks for a prefetch, and its records keep the TTLs `response` gives them, which the XDP
/// program sends as they are.
pub fn build_static_entry(response: &[u8]) -> Result<(QuestionKey, CacheEntry), NotCacheable> {
    let (key, mut entry) = build_entry(response, 0, u32::MAX)?;
    // The records follow the question, which `build_entry` read.
    let start = parse_question(response).map_or(0, |q| q.end);
    let offsets = entry.ttl_offsets;
    for &off in &offsets[..entry.ttl_count as usize] {
        let off = off as usize;
        entry.records_mut()[off..off + 4].copy_from_slice(&response[start + off..start + off + 4]);
    }
    entry.ttl_count = 0;
    entry.expires_ns = u64::MAX;
    entry.prefetch_ns = u64::MAX;
    entry.csum = sum_bytes(0, entry.records());
    Ok((key, entry))
}

/// Whether the OPT record at `pos`, which must end the message, has the DO bit, and whether its
/// only option is `EDE_BLOCKED`.
fn opt(msg: &[u8], pos: usize) -> Result<(bool, bool), NotCacheable> {
    // Root owner, TYPE, CLASS (the UDP size), extended RCODE, version, flags, RDLENGTH.
    let opt = msg.get(pos..pos + 11).ok_or(NotCacheable::Malformed)?;
    let rdlen = u16::from_be_bytes([opt[9], opt[10]]) as usize;
    if opt[0] != 0 || u16::from_be_bytes([opt[1], opt[2]]) != QTYPE_OPT {
        return Err(NotCacheable::Unsupported);
    }
    if pos + 11 + rdlen != msg.len() {
        return Err(NotCacheable::Malformed);
    }
    Ok((opt[7] & 0x80 != 0, msg[pos + 11..] == EDE_BLOCKED))
}

impl CacheEntry {
    /// An empty entry for `key`'s name, at the largest size.
    pub fn new(key: &QuestionKey) -> Self {
        let mut entry: Self = bytemuck::Zeroable::zeroed();
        entry.key = CacheKey::new(0, key.qtype, key.name_len, key.dnssec_ok);
        entry.group = key.group;
        let name = key.wire_name();
        entry.data[..name.len()].copy_from_slice(name);
        entry
    }
}

impl<const N: usize> CacheEntry<N> {
    /// Where the records start in `data`: after the name, padded to whole words.
    pub fn records_at(&self) -> usize {
        name_words(self.key.name_len as usize) * 8
    }

    /// Bytes of name and records: what a tier's entries must hold for this one.
    pub fn data_len(&self) -> usize {
        self.records_at() + self.len as usize
    }

    /// The wire name, lower-cased, as far as the entry holds it.
    pub fn name(&self) -> &[u8] {
        &self.data[..(self.key.name_len as usize).min(N)]
    }

    /// The answer and authority records, as far as the entry holds them.
    pub fn records(&self) -> &[u8] {
        let at = self.records_at().min(N);
        &self.data[at..(at + self.len as usize).min(N)]
    }

    /// The room for records.
    pub fn records_mut(&mut self) -> &mut [u8] {
        let at = self.records_at().min(N);
        &mut self.data[at..]
    }

    /// Shortens the entry's life to at most `max_secs` from `now_ns`, as `build_entry` would
    /// have made it: for entries kept from a run whose TTL caps were higher.
    pub fn cap_life(&mut self, now_ns: u64, max_secs: u32) {
        let life = u64::from(max_secs) * NS_PER_SEC;
        let expires = now_ns.saturating_add(life.saturating_sub(EXPIRY_MARGIN_NS));
        if self.expires_ns <= expires {
            return;
        }
        self.expires_ns = expires;
        if self.prefetch_ns != u64::MAX {
            self.prefetch_ns = self
                .prefetch_ns
                .min(now_ns.saturating_add(life - life / 10));
        }
    }

    /// The TTL the XDP program answers with when its clock (CLOCK_MONOTONIC_COARSE) reads
    /// `now_ns`: whole seconds left until `expires_ns`, or `None` once expired.
    #[inline(always)]
    pub fn ttl_at(&self, now_ns: u64) -> Option<u32> {
        ttl_left(self.expires_ns, now_ns)
    }

    /// Whole seconds of the records' TTL left at `now_ns` (CLOCK_MONOTONIC), or `None` once the
    /// XDP program no longer serves the entry. Its answers carry this TTL, or one less when the
    /// remaining time is within `EXPIRY_MARGIN_NS` above a whole second.
    pub fn remaining_secs(&self, now_ns: u64) -> Option<u64> {
        (now_ns < self.expires_ns)
            .then(|| (self.expires_ns - now_ns).saturating_add(EXPIRY_MARGIN_NS) / NS_PER_SEC)
    }
}

/// Checks the data of a record of `rtype` at `rdata`: the size of addresses, and the names of
/// the types whose names may be compressed (RFC 3597 §4) or commonly are (SRV), which must
/// point back into the message as `skip_name` checks. Other types' data are opaque bytes,
/// copied as they are.
fn check_rdata(msg: &[u8], rtype: u16, rdata: usize, rdlen: usize) -> Result<(), NotCacheable> {
    let end = rdata + rdlen;
    let ends_in_name = |fixed: usize| -> Result<bool, NotCacheable> {
        Ok(rdlen > fixed && skip_name(msg, rdata + fixed)? == end)
    };
    let fits = match rtype {
        QTYPE_A => rdlen == 4,
        QTYPE_AAAA => rdlen == 16,
        QTYPE_CNAME | QTYPE_NS | QTYPE_PTR | QTYPE_DNAME => ends_in_name(0)?,
        QTYPE_MX => ends_in_name(2)?,
        QTYPE_SRV => ends_in_name(6)?,
        // MNAME, RNAME, then five 32-bit fields.
        QTYPE_SOA => {
            let rname = skip_name(msg, rdata)?;
            skip_name(msg, rname)? + 20 == end
        }
        _ => true,
    };
    if fits {
        Ok(())
    } else {
        Err(NotCacheable::Malformed)
    }
}

/// The TTL of an answer that stops being served at `expires_ns`, at `now_ns`: whole seconds
/// left, or `None` once expired.
#[inline(always)]
pub const fn ttl_left(expires_ns: u64, now_ns: u64) -> Option<u32> {
    if now_ns >= expires_ns {
        return None;
    }
    let secs = (expires_ns - now_ns) / NS_PER_SEC;
    Some(if secs > MAX_TTL { MAX_TTL } else { secs } as u32)
}

/// A TTL as received: one with the top bit set reads as zero (RFC 2181 §8).
pub const fn read_ttl(ttl: u32) -> u32 {
    if ttl as u64 > MAX_TTL { 0 } else { ttl }
}

/// Whole seconds an answer fetched `elapsed_ns` ago has aged by, in the one rule both layers
/// give TTLs by, so that they never rise from one answer to the next: a record's TTL is the
/// whole seconds left until `EXPIRY_MARGIN_NS` before it expires, rounded down. The XDP
/// program's `ttl_at` is the same for an entry built at `fetched + aged_secs(..)` seconds,
/// on a clock that lags by less than the margin.
pub const fn aged_secs(elapsed_ns: u64) -> u64 {
    (elapsed_ns + EXPIRY_MARGIN_NS).div_ceil(NS_PER_SEC)
}

/// Returns the offset after the name at `pos`, checking that every compression pointer points
/// backwards to a valid name that lies after the header.
pub fn skip_name(msg: &[u8], pos: usize) -> Result<usize, NotCacheable> {
    let mut cursor = pos;
    let mut after = None;
    let mut wire_len = 0;
    let mut hops = 0;
    loop {
        let len = *msg.get(cursor).ok_or(NotCacheable::Malformed)? as usize;
        match len & 0xc0 {
            0x00 if len == 0 => return Ok(after.unwrap_or(cursor + 1)),
            0x00 => {
                wire_len += len + 1;
                if wire_len + 1 > MAX_WIRE_NAME {
                    return Err(NotCacheable::Malformed);
                }
                cursor += len + 1;
            }
            0xc0 => {
                let low = *msg.get(cursor + 1).ok_or(NotCacheable::Malformed)? as usize;
                let target = ((len & 0x3f) << 8) | low;
                hops += 1;
                if target < 12 || target >= cursor || hops > MAX_POINTER_HOPS {
                    return Err(NotCacheable::Malformed);
                }
                after.get_or_insert(cursor + 2);
                cursor = target;
            }
            _ => return Err(NotCacheable::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::fold;

    const QNAME: &[u8] = b"\x03www\x07example\x03com\x00";

    /// Header + question for `qname`/`qtype`, flags of a NOERROR response, `ancount` answers.
    fn header(qtype: u16, ancount: u16, out: &mut [u8; 600]) -> usize {
        out[..12].copy_from_slice(&[0x12, 0x34, 0x81, 0x80, 0, 1, 0, ancount as u8, 0, 0, 0, 0]);
        out[12..12 + QNAME.len()].copy_from_slice(QNAME);
        let p = 12 + QNAME.len();
        out[p..p + 2].copy_from_slice(&qtype.to_be_bytes());
        out[p + 2..p + 4].copy_from_slice(&[0, 1]);
        p + 4
    }

    fn record(
        out: &mut [u8; 600],
        pos: usize,
        owner: &[u8],
        rtype: u16,
        ttl: u32,
        rdata: &[u8],
    ) -> usize {
        let mut p = pos;
        out[p..p + owner.len()].copy_from_slice(owner);
        p += owner.len();
        out[p..p + 2].copy_from_slice(&rtype.to_be_bytes());
        out[p + 2..p + 4].copy_from_slice(&[0, 1]);
        out[p + 4..p + 8].copy_from_slice(&ttl.to_be_bytes());
        out[p + 8..p + 10].copy_from_slice(&(rdata.len() as u16).to_be_bytes());
        p += 10;
        out[p..p + rdata.len()].copy_from_slice(rdata);
        p + rdata.len()
    }

    #[test]
    fn a_answer_becomes_an_entry_with_zeroed_ttls() {
        let mut m = [0u8; 600];
        let q_end = header(QTYPE_A, 2, &mut m);
        let p = record(&mut m, q_end, &[0xc0, 12], QTYPE_A, 300, &[198, 18, 0, 1]);
        let end = record(&mut m, p, &[0xc0, 12], QTYPE_A, 200, &[198, 18, 0, 2]);
        let (key, e) = build_entry(&m[..end], 1_000, 86400).unwrap();
        assert_eq!(key.wire_name(), QNAME);
        assert_eq!(key.qtype, QTYPE_A);
        assert_eq!(e.len as usize, end - q_end);
        assert_eq!(e.ancount, 2);
        assert_eq!(e.ttl_count, 2);
        assert_eq!(&e.ttl_offsets[..2], &[6, (p - q_end + 6) as u16]);
        assert_eq!(e.name(), QNAME);
        assert_eq!(e.expires_ns, 1_000 + 200 * NS_PER_SEC - EXPIRY_MARGIN_NS);
        assert_eq!(e.remaining_secs(1_000), Some(200));
        assert_eq!(&e.records()[6..10], &[0, 0, 0, 0]);
        assert_eq!(&e.records()[12..16], &[198, 18, 0, 1]);
        assert_eq!(fold(e.csum), fold(sum_bytes(0, e.records())));
    }

    #[test]
    fn a_kept_entry_is_capped_like_a_new_one() {
        let mut m = [0u8; 600];
        let q_end = header(QTYPE_A, 1, &mut m);
        let end = record(&mut m, q_end, &[0xc0, 12], QTYPE_A, 300, &[1, 2, 3, 4]);
        let (_, mut e) = build_entry(&m[..end], 0, 86400).unwrap();
        let (_, capped) = build_entry(&m[..end], 5 * NS_PER_SEC, 10).unwrap();
        e.cap_life(5 * NS_PER_SEC, 10);
        assert_eq!(
            (e.expires_ns, e.prefetch_ns),
            (capped.expires_ns, capped.prefetch_ns)
        );
        // A shorter life is left as it is, and so is an entry that never asks for a prefetch.
        e.prefetch_ns = u64::MAX;
        e.cap_life(5 * NS_PER_SEC, 60);
        assert_eq!((e.expires_ns, e.prefetch_ns), (capped.expires_ns, u64::MAX));
    }

    #[test]
    fn ttl_is_capped() {
        let mut m = [0u8; 600];
        let q_end = header(QTYPE_A, 1, &mut m);
        let end = record(
            &mut m,
            q_end,
            &[0xc0, 12],
            QTYPE_A,
            86400 * 7,
            &[1, 2, 3, 4],
        );
        let (_, e) = build_entry(&m[..end], 0, 60).unwrap();
        assert_eq!(e.remaining_secs(0), Some(60));
    }

    #[test]
    fn coarse_clock_never_serves_expired_records_or_overstates_ttls() {
        let mut m = [0u8; 600];
        let q_end = header(QTYPE_A, 1, &mut m);
        let end = record(&mut m, q_end, &[0xc0, 12], QTYPE_A, 3, &[1, 2, 3, 4]);
        let t0 = 5 * NS_PER_SEC + 123;
        let (_, e) = build_entry(&m[..end], t0, 86400).unwrap();
        let dies = t0 + 3 * NS_PER_SEC;
        // Around each whole second of lifetime left and around the end, in 1 ms steps, with
        // the program's clock lagging by up to the margin.
        for second in 0..=3 {
            let boundary = dies - second * NS_PER_SEC;
            for step in 0..200 {
                let now = boundary - 100_000_000 + step * 1_000_000;
                let left = dies.saturating_sub(now) / NS_PER_SEC;
                for lag in [0, 1_000_000, 30_000_000, EXPIRY_MARGIN_NS - 1] {
                    match e.ttl_at(now - lag) {
                        None => assert_eq!(left, 0, "not served with {left} s left"),
                        Some(ttl) => {
                            assert!(now < dies, "served {} ns after expiry", now - dies);
                            assert!(ttl as u64 <= left, "TTL {ttl} with {left} s left");
                            assert!(ttl as u64 + 1 >= left, "TTL {ttl} with {left} s left");
                        }
                    }
                }
            }
        }
        assert_eq!(e.remaining_secs(t0), Some(3));
        assert_eq!(e.ttl_at(t0), Some(2));
        assert_eq!(e.remaining_secs(dies - EXPIRY_MARGIN_NS), None);
    }

    #[test]
    fn cname_chain_to_aaaa() {
        let mut m = [0u8; 600];
        let q_end = header(QTYPE_AAAA, 2, &mut m);
        let target_at = q_end + 12;
        let p = record(
            &mut m,
            q_end,
            &[0xc0, 12],
            QTYPE_CNAME,
            300,
            b"\x03web\xc0\x10",
        );
        let end = record(
            &mut m,
            p,
            &[0xc0, target_at as u8],
            QTYPE_AAAA,
            300,
            &[0xfd; 16],
        );
        let (_, e) = build_entry(&m[..end], 0, 86400).unwrap();
        assert_eq!(e.ancount, 2);
    }

    #[test]
    fn answers_of_any_data_type_are_cached_and_meta_types_are_not() {
        const HTTPS: u16 = 65;
        // MX to mail.example.com, compressed against the question; HTTPS, TXT and an unknown
        // type as opaque data.
        let cases: [(u16, &[u8]); 4] = [
            (QTYPE_MX, b"\0\x0a\x04mail\xc0\x10"),
            (HTTPS, b"\0\x01\0\0\x01\0\x03\x02h2"),
            (16, b"\x05hello"),
            (65_000, b"\xc0\xff\x00"),
        ];
        for (qtype, rdata) in cases {
            let mut m = [0u8; 600];
            let q_end = header(qtype, 1, &mut m);
            let end = record(&mut m, q_end, &[0xc0, 12], qtype, 300, rdata);
            let (key, e) = build_entry(&m[..end], 0, 86400).unwrap();
            assert_eq!((key.qtype, e.ancount, e.nscount), (qtype, 1, 0));
            assert_eq!(&e.records()[12..], rdata, "type {qtype}");
        }
        for qtype in [255, 252, 41] {
            let mut m = [0u8; 600];
            let q_end = header(qtype, 1, &mut m);
            let end = record(&mut m, q_end, &[0xc0, 12], QTYPE_A, 300, &[1, 2, 3, 4]);
            let why = build_entry(&m[..end], 0, 86400).unwrap_err();
            assert_eq!(why, NotCacheable::Unsupported, "type {qtype}");
        }
    }

    #[test]
    fn names_in_record_data_are_checked() {
        let cases: [(u16, &[u8]); 5] = [
            // A pointer forward, one into the header, data shorter than its fixed part.
            (QTYPE_MX, b"\0\x0a\xc0\x60"),
            (QTYPE_PTR, b"\xc0\x02"),
            (QTYPE_SRV, b"\0\0\0"),
            // Bytes left over after the name.
            (QTYPE_NS, b"\x02ns\xc0\x10\0"),
            (QTYPE_AAAA, &[0; 4]),
        ];
        for (qtype, rdata) in cases {
            let mut m = [0u8; 600];
            let q_end = header(qtype, 1, &mut m);
            let end = record(&mut m, q_end, &[0xc0, 12], qtype, 300, rdata);
            let why = build_entry(&m[..end], 0, 86400).unwrap_err();
            assert_eq!(why, NotCacheable::Malformed, "type {qtype}");
        }
    }

    #[test]
    fn dangling_cname_is_not_cached() {
        let mut m = [0u8; 600];
        let q_end = header(QTYPE_A, 1, &mut m);
        let end = record(&mut m, q_end, &[0xc0, 12], QTYPE_CNAME, 300, b"\x01x\x00");
        assert_eq!(
            build_entry(&m[..end], 0, 86400).unwrap_err(),
            NotCacheable::Unsupported
        );
    }

    #[test]
    fn forward_and_header_pointers_are_rejected() {
        let mut m = [0u8; 600];
        let q_end = header(QTYPE_A, 1, &mut m);
        let end = record(&mut m, q_end, &[0xc0, 2], QTYPE_A, 300, &[1, 2, 3, 4]);
        assert_eq!(
            build_entry(&m[..end], 0, 86400).unwrap_err(),
            NotCacheable::Malformed
        );
        let end = record(&mut m, q_end, &[0xc0, 200], QTYPE_A, 300, &[1, 2, 3, 4]);
        assert_eq!(
            build_entry(&m[..end], 0, 86400).unwrap_err(),
            NotCacheable::Malformed
        );
    }

    #[test]
    fn zero_ttl_truncated_and_error_responses_are_refused() {
        let mut m = [0u8; 600];
        let q_end = header(QTYPE_A, 1, &mut m);
        // Zero, and a TTL with the top bit set, which reads as zero (RFC 2181 §8).
        for ttl in [0, 0x8000_0000, u32::MAX] {
            let end = record(&mut m, q_end, &[0xc0, 12], QTYPE_A, ttl, &[1, 2, 3, 4]);
            assert_eq!(
                build_entry(&m[..end], 0, 86400).unwrap_err(),
                NotCacheable::ZeroTtl,
                "TTL {ttl:#x}"
            );
        }
        let end = record(&mut m, q_end, &[0xc0, 12], QTYPE_A, 10, &[1, 2, 3, 4]);
        assert_eq!(
            build_entry(&m[..end - 1], 0, 86400).unwrap_err(),
            NotCacheable::Malformed
        );
        m[2] |= 0x02; // TC
        assert_eq!(
            build_entry(&m[..end], 0, 86400).unwrap_err(),
            NotCacheable::Unsupported
        );
        m[2] &= !0x02;
        m[3] = 0x83; // NXDOMAIN
        assert_eq!(
            build_entry(&m[..end], 0, 86400).unwrap_err(),
            NotCacheable::Unsupported
        );
    }

    /// A SOA for `example.com` (a pointer into the question) at `pos`.
    fn soa(out: &mut [u8; 600], pos: usize, ttl: u32) -> usize {
        let mut rdata = [0u8; 30];
        rdata[..5].copy_from_slice(b"\x02ns\xc0\x10");
        rdata[5..10].copy_from_slice(b"\x02hm\xc0\x10");
        rdata[10..14].copy_from_slice(&7u32.to_be_bytes());
        record(out, pos, &[0xc0, 0x10], QTYPE_SOA, ttl, &rdata)
    }

    /// An OPT record at `pos` with the DO bit if `dnssec_ok`.
    fn opt(out: &mut [u8; 600], pos: usize, dnssec_ok: bool) -> usize {
        out[11] = 1; // ARCOUNT
        let flags = if dnssec_ok { 0x80 } else { 0 };
        out[pos..pos + 11].copy_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, flags, 0, 0, 0]);
        pos + 11
    }

    /// RRSIG data covering `covered`: algorithm 13, the root as signer (the zero byte after
    /// the fixed 18), and a five-byte signature.
    fn rrsig(covered: u16) -> [u8; 24] {
        let mut r = [7u8; 24];
        r[..2].copy_from_slice(&covered.to_be_bytes());
        r[2..4].copy_from_slice(&[13, 3]);
        r[18] = 0;
        r
    }

    #[test]
    fn an_opt_record_with_do_makes_an_entry_for_do_with_its_proofs_and_ad() {
        // A signed answer, validated upstream.
        let mut m = [0u8; 600];
        let q_end = header(QTYPE_A, 2, &mut m);
        m[3] |= 0x20; // AD
        let p = record(&mut m, q_end, &[0xc0, 12], QTYPE_A, 300, &[1, 2, 3, 4]);
        let p = record(&mut m, p, &[0xc0, 12], QTYPE_RRSIG, 300, &rrsig(QTYPE_A));
        let records = p - q_end;
        let end = opt(&mut m, p, true);
        let (key, e) = build_entry(&m[..end], 0, 86400).unwrap();
        assert!(key.dnssec_ok);
        assert_eq!((e.ancount, e.len as usize, e.authentic), (2, records, 1));
        // The same without DO: no entry for DO, and AD is not kept.
        opt(&mut m, p, false);
        let (key, e) = build_entry(&m[..end], 0, 86400).unwrap();
        assert_eq!((key.dnssec_ok, e.authentic), (false, 0));
        // The OPT record must end the message.
        opt(&mut m, p, true);
        assert_eq!(
            build_entry(&m[..end - 1], 0, 86400).unwrap_err(),
            NotCacheable::Malformed
        );

        // NODATA with its proof: the SOA, an NSEC and their signatures.
        let mut m = [0u8; 600];
        let q_end = header(QTYPE_AAAA, 0, &mut m);
        m[9] = 4;
        let p = soa(&mut m, q_end, 60);
        let p = record(&mut m, p, &[0xc0, 0x10], QTYPE_RRSIG, 60, &rrsig(QTYPE_SOA));
        let p = record(
            &mut m,
            p,
            &[0xc0, 12],
            QTYPE_NSEC,
            60,
            b"\x01z\xc0\x10\0\x01\x40",
        );
        let p = record(&mut m, p, &[0xc0, 12], QTYPE_RRSIG, 60, &rrsig(QTYPE_NSEC));
        let end = opt(&mut m, p, true);
        let (key, e) = build_entry(&m[..end], 0, 86400).unwrap();
        assert_eq!((key.dnssec_ok, e.nscount, e.ttl_count), (true, 4, 4));
        // Proofs are for DO queries only, and a SOA is still needed.
        opt(&mut m, p, false);
        let why = build_entry(&m[..end], 0, 86400).unwrap_err();
        assert_eq!(why, NotCacheable::Unsupported);
        opt(&mut m, p, true);
        let soa_len = soa(&mut [0u8; 600], q_end, 60) - q_end;
        m.copy_within(q_end + soa_len..end, q_end);
        m[9] = 3;
        let why = build_entry(&m[..end - soa_len], 0, 86400).unwrap_err();
        assert_eq!(why, NotCacheable::Unsupported);
    }

    #[test]
    fn the_aa_bit_and_a_blocked_answers_extended_error_are_kept() {
        let mut m = [0u8; 600];
        let q_end = header(QTYPE_A, 1, &mut m);
        m[2] |= 0x04; // AA
        let p = record(&mut m, q_end, &[0xc0, 12], QTYPE_A, 60, &[0, 0, 0, 0]);
        let end = opt(&mut m, p, false);
        m[end - 1] = 6; // RDLENGTH
        m[end..end + 6].copy_from_slice(&EDE_BLOCKED);
        let (key, e) = build_entry(&m[..end + 6], 0, 86400).unwrap();
        assert_eq!((key.dnssec_ok, e.authoritative, e.blocked), (false, 1, 1));
        // Another Extended DNS Error is not "Blocked".
        m[end + 5] = 16;
        let (_, e) = build_entry(&m[..end + 6], 0, 86400).unwrap();
        assert_eq!(e.blocked, 0);
        // Without AA or an OPT record.
        m[2] &= !0x04;
        m[11] = 0;
        let (_, e) = build_entry(&m[..p], 0, 86400).unwrap();
        assert_eq!((e.authoritative, e.blocked), (0, 0));
    }

    #[test]
    fn static_entries_keep_their_ttls_and_never_expire() {
        let mut m = [0u8; 600];
        let q_end = header(QTYPE_A, 2, &mut m);
        let p = record(&mut m, q_end, &[0xc0, 12], QTYPE_A, 3600, &[10, 0, 0, 1]);
        let end = record(&mut m, p, &[0xc0, 12], QTYPE_A, 600, &[10, 0, 0, 2]);
        let (_, e) = build_static_entry(&m[..end]).unwrap();
        assert_eq!(e.records(), &m[q_end..end]);
        assert_eq!(e.csum, sum_bytes(0, &m[q_end..end]));
        assert_eq!(
            (e.ttl_count, e.expires_ns, e.prefetch_ns),
            (0, u64::MAX, u64::MAX)
        );
        assert!(e.ttl_at(u64::MAX - 1).is_some());
    }

    #[test]
    fn nxdomain_and_nodata_keep_their_soa_with_a_ttl_to_count_down() {
        let mut m = [0u8; 600];
        let q_end = header(QTYPE_A, 0, &mut m);
        m[9] = 1; // NSCOUNT
        m[3] = 0x83; // NXDOMAIN
        let end = soa(&mut m, q_end, 300);
        let (key, e) = build_entry(&m[..end], 0, 86400).unwrap();
        assert_eq!(key.qtype, QTYPE_A);
        assert_eq!((e.rcode, e.ancount, e.nscount, e.ttl_count), (3, 0, 1, 1));
        assert_eq!(e.ttl_offsets[0], 6);
        assert_eq!(&e.records()[6..10], &[0, 0, 0, 0]);
        assert_eq!(e.remaining_secs(0), Some(300));
        assert_eq!(e.prefetch_ns, 270 * NS_PER_SEC);
        // NODATA: NOERROR, no answer.
        m[3] = 0x80;
        let (_, e) = build_entry(&m[..end], 0, 60).unwrap();
        assert_eq!((e.rcode, e.nscount, e.remaining_secs(0)), (0, 1, Some(60)));
        // NODATA at the end of a CNAME chain.
        let mut m = [0u8; 600];
        let q_end = header(QTYPE_AAAA, 1, &mut m);
        m[9] = 1;
        let p = record(
            &mut m,
            q_end,
            &[0xc0, 12],
            QTYPE_CNAME,
            300,
            b"\x01x\xc0\x10",
        );
        let end = soa(&mut m, p, 100);
        let (_, e) = build_entry(&m[..end], 0, 86400).unwrap();
        assert_eq!((e.ancount, e.nscount, e.ttl_count), (1, 1, 2));
        assert_eq!(e.remaining_secs(0), Some(100));
    }

    #[test]
    fn negative_answers_without_exactly_a_soa_are_refused() {
        let why = |msg: &[u8]| build_entry(msg, 0, 86400).unwrap_err();
        let mut m = [0u8; 600];
        let q_end = header(QTYPE_A, 0, &mut m);
        m[3] = 0x83;
        assert_eq!(why(&m[..q_end]), NotCacheable::Unsupported);
        // An NS record in the authority section.
        m[9] = 1;
        let end = record(&mut m, q_end, &[0xc0, 0x10], 2, 300, b"\x02ns\xc0\x10");
        assert_eq!(why(&m[..end]), NotCacheable::Unsupported);
        // A positive answer with a SOA after it.
        let mut m = [0u8; 600];
        let q_end = header(QTYPE_A, 1, &mut m);
        m[9] = 1;
        let p = record(&mut m, q_end, &[0xc0, 12], QTYPE_A, 300, &[1, 2, 3, 4]);
        let end = soa(&mut m, p, 300);
        assert_eq!(why(&m[..end]), NotCacheable::Unsupported);
        // A SOA whose RDATA is cut short.
        let mut m = [0u8; 600];
        let q_end = header(QTYPE_A, 0, &mut m);
        m[3] = 0x83;
        m[9] = 1;
        let end = record(
            &mut m,
            q_end,
            &[0xc0, 0x10],
            QTYPE_SOA,
            300,
            b"\x02ns\xc0\x10\0\0",
        );
        assert_eq!(why(&m[..end]), NotCacheable::Malformed);
    }

    #[test]
    fn too_many_records_stay_in_userspace() {
        let mut m = [0u8; 600];
        let mut p = header(QTYPE_A, 20, &mut m);
        for i in 0..20u8 {
            p = record(&mut m, p, &[0xc0, 12], QTYPE_A, 60, &[10, 0, 0, i]);
        }
        assert_eq!(
            build_entry(&m[..p], 0, 86400).unwrap_err(),
            NotCacheable::TooLarge
        );
    }
}
