//! An upstream's answer as the daemon keeps it: its sections with TTLs that count down, and
//! how long it may be cached.

use std::sync::{
    OnceLock,
    atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{Name, RData, Record, rdata::SOA},
    serialize::binary::BinEncodable as _,
};

use dnsxdp_common::entry::{aged_secs, read_ttl};

use crate::dns::{clock, ttl::TtlPolicy, wire_hit::WireAnswer};

/// The TTL of records in a stale answer (RFC 8767 §4).
pub const STALE_TTL: u32 = 30;

/// The SOA of a negative answer the daemon makes itself (a blocked name, a local one without
/// the type asked): its minimum, `ttl`, is how long caches keep the answer (RFC 2308).
pub fn own_soa(ttl: u32) -> SOA {
    let name = |s: &str| Name::from_ascii(s).unwrap_or_else(|_| Name::root());
    SOA::new(
        name("localhost."),
        name("nobody.invalid."),
        1,
        3600,
        600,
        86400,
        ttl,
    )
}

#[derive(Debug)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub authentic_data: bool,
    /// Served after it expired because no upstream answered.
    pub stale: bool,
    answers: Vec<Record>,
    authority: Vec<Record>,
    additional: Vec<Record>,
    /// When the TTLs in the sections were current (CLOCK_MONOTONIC ns).
    fetched_ns: u64,
    /// Seconds it may be cached for; `None` when it must not be.
    ttl: Option<u32>,
    /// Daemon cache hits, and whether a prefetch was started: what decides a prefetch.
    pub usage: Use,
    /// For a blocked name: the blocklist's place among the config's, and the rule.
    pub blocked_by: Option<(usize, Box<str>)>,
    /// From local records: sent with AA, its TTLs as configured, and its kernel entry lives
    /// until the records change.
    pub local: bool,
    /// Bytes it takes in memory, near enough: the structs and the records' wire size, which
    /// is what their names and data take on the heap, twice, for the wire form too.
    memory: usize,
    /// The form hits are answered from without an encoding (`wire_hit`), made on the first
    /// hit; `None` inside if the answer has none.
    wire: OnceLock<Option<WireAnswer>>,
}

/// How much a cached answer is used, and whether it is already being refreshed.
#[derive(Debug, Default)]
pub struct Use {
    hits: AtomicU64,
    prefetching: AtomicBool,
}

impl Use {
    /// Counts a hit; returns the hits so far, this one included.
    pub fn hit(&self) -> u64 {
        self.hits.fetch_add(1, Relaxed) + 1
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Relaxed)
    }

    /// True exactly once: for the caller that gets to start the prefetch.
    pub fn start_prefetch(&self) -> bool {
        !self.prefetching.swap(true, Relaxed)
    }
}

/// The three record sections with TTLs as of some moment.
pub struct Sections {
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

impl Answer {
    /// Takes the sections of `msg`, received at `now_ns`, with TTLs as `policy` has them.
    ///
    /// Every TTL is first scaled by `policy.factor`. NOERROR with records caches for the
    /// smallest TTL of the answer and authority sections, each TTL raised to `policy.min` and
    /// capped at `policy.max`; NXDOMAIN and NODATA for the
    /// SOA's negative TTL, min(SOA TTL, MINIMUM) (RFC 2308 §5) capped at `policy.max_negative`,
    /// which the SOA is also sent with, and not at all without a SOA. Anything else, such as
    /// SERVFAIL or REFUSED, is not cached.
    pub fn from_upstream(msg: Message, now_ns: u64, policy: &TtlPolicy) -> Answer {
        let rcode = msg.response_code();
        let authentic_data = msg.authentic_data();
        let mut parts = msg.into_parts();
        let negative = rcode == ResponseCode::NXDomain
            || (rcode == ResponseCode::NoError && parts.answers.is_empty());
        for r in parts
            .answers
            .iter_mut()
            .chain(&mut parts.name_servers)
            .chain(&mut parts.additionals)
        {
            let ttl = policy.scaled(read_ttl(r.ttl()));
            let ttl = match negative {
                true => ttl.min(policy.max),
                false => ttl.clamp(policy.min, policy.max),
            };
            r.set_ttl(ttl);
        }
        let mut soa_ttl = None;
        for r in &mut parts.name_servers {
            if let RData::SOA(soa) = r.data() {
                let ttl = r
                    .ttl()
                    .min(policy.scaled(read_ttl(soa.minimum())))
                    .min(policy.max_negative);
                r.set_ttl(ttl);
                soa_ttl = Some(soa_ttl.unwrap_or(u32::MAX).min(ttl));
            }
        }
        let ttl = match rcode {
            ResponseCode::NoError | ResponseCode::NXDomain if negative => soa_ttl,
            ResponseCode::NoError => parts
                .answers
                .iter()
                .chain(&parts.name_servers)
                .map(Record::ttl)
                .min(),
            _ => None,
        };
        let memory = size_of::<Answer>()
            + size_of::<WireAnswer>()
            + [&parts.answers, &parts.name_servers, &parts.additionals]
                .into_iter()
                .flatten()
                .map(|r| size_of::<Record>() + 2 * r.to_bytes().map_or(0, |wire| wire.len()))
                .sum::<usize>();
        Answer {
            rcode,
            authentic_data,
            stale: false,
            answers: parts.answers,
            authority: parts.name_servers,
            additional: parts.additionals,
            fetched_ns: now_ns,
            ttl: ttl.filter(|&t| t > 0),
            usage: Use::default(),
            blocked_by: None,
            local: false,
            memory,
            wire: OnceLock::new(),
        }
    }

    /// The same, as the answer blocklist `list` gives with `rule`.
    pub fn blocked(self, list: usize, rule: &str) -> Answer {
        Answer {
            blocked_by: Some((list, rule.into())),
            ..self
        }
    }

    /// The answer local records give in `msg`, made at `now_ns`, with their TTLs as they are.
    pub fn local(msg: Message, now_ns: u64) -> Answer {
        let policy = TtlPolicy {
            min: 0,
            max: u32::MAX,
            max_negative: u32::MAX,
            factor: 1.0,
        };
        Answer {
            local: true,
            ..Answer::from_upstream(msg, now_ns, &policy)
        }
    }

    /// Its wire form, which `make` makes the first time it is asked for.
    pub fn wire(&self, make: impl FnOnce() -> Option<WireAnswer>) -> Option<&WireAnswer> {
        self.wire.get_or_init(make).as_ref()
    }

    /// Bytes it takes in memory, near enough.
    pub fn memory(&self) -> usize {
        self.memory
    }

    /// An answer with no records, such as the SERVFAIL sent when no upstream answers.
    pub fn error(rcode: ResponseCode) -> Answer {
        Answer {
            rcode,
            authentic_data: false,
            stale: false,
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
            fetched_ns: 0,
            ttl: None,
            usage: Use::default(),
            blocked_by: None,
            local: false,
            memory: size_of::<Answer>(),
            wire: OnceLock::new(),
        }
    }

    /// Whether the daemon may cache it.
    pub fn cacheable(&self) -> bool {
        self.ttl.is_some()
    }

    /// Whether a cached copy must no longer be served at `now_ns`.
    pub fn expired(&self, now_ns: u64) -> bool {
        self.ttl
            .is_none_or(|ttl| now_ns >= self.fetched_ns.saturating_add(clock::ns(ttl)))
    }

    /// Whether it expired less than `window_ns` ago, so it may still be served stale.
    pub fn stale_servable(&self, now_ns: u64, window_ns: u64) -> bool {
        self.ttl.is_some_and(|ttl| {
            now_ns
                < self
                    .fetched_ns
                    .saturating_add(clock::ns(ttl))
                    .saturating_add(window_ns)
        })
    }

    /// This answer served stale at `now_ns`: every TTL `STALE_TTL`, and not to be cached.
    pub fn as_stale(&self, now_ns: u64) -> Answer {
        let refreshed = |records: &[Record]| {
            records
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.set_ttl(STALE_TTL);
                    r
                })
                .collect()
        };
        Answer {
            stale: true,
            answers: refreshed(&self.answers),
            authority: refreshed(&self.authority),
            additional: refreshed(&self.additional),
            fetched_ns: now_ns,
            ttl: None,
            usage: Use::default(),
            blocked_by: self.blocked_by.clone(),
            wire: OnceLock::new(),
            ..*self
        }
    }

    /// Whether `now_ns` falls in the last tenth of its cached life, when a hit on a popular
    /// answer refreshes it.
    pub fn in_prefetch_window(&self, now_ns: u64) -> bool {
        now_ns >= self.prefetch_ns()
    }

    /// When the last tenth of its cached life starts; `u64::MAX` if it is not cached.
    pub fn prefetch_ns(&self) -> u64 {
        self.ttl.map_or(u64::MAX, |ttl| {
            let life = clock::ns(ttl);
            self.fetched_ns.saturating_add(life - life / 10)
        })
    }

    /// Seconds the answer stays cached after `now_ns`, if cached.
    pub fn remaining_secs(&self, now_ns: u64) -> Option<u64> {
        let end = self.fetched_ns.saturating_add(clock::ns(self.ttl?));
        (now_ns < end).then(|| clock::secs(end - now_ns))
    }

    /// Whole seconds the TTLs of `sections_at(now_ns)` are reduced by (`aged_secs`).
    fn aged(&self, now_ns: u64) -> u32 {
        // A stale copy is made for each answer, with exactly `STALE_TTL`; local records
        // keep theirs, as their kernel entries send them.
        if self.stale || self.local {
            return 0;
        }
        u32::try_from(aged_secs(now_ns.saturating_sub(self.fetched_ns))).unwrap_or(u32::MAX)
    }

    /// The moment at which the TTLs of `sections_at(now_ns)` are exact for the XDP program,
    /// which takes `EXPIRY_MARGIN_NS` off: the fetch plus the seconds they were reduced by.
    pub fn aged_at(&self, now_ns: u64) -> u64 {
        self.fetched_ns + clock::ns(self.aged(now_ns))
    }

    /// The sections with each TTL reduced by the seconds aged since the fetch (`aged_secs`):
    /// as the XDP program would give them, so that TTLs never rise between the layers.
    pub fn sections_at(&self, now_ns: u64) -> Sections {
        let elapsed = self.aged(now_ns);
        let aged = |records: &[Record]| {
            records
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.set_ttl(r.ttl().saturating_sub(elapsed));
                    r
                })
                .collect()
        };
        Sections {
            answers: aged(&self.answers),
            authority: aged(&self.authority),
            additional: aged(&self.additional),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::{
        op::Query,
        rr::{
            Name, RecordType,
            rdata::{A, SOA},
        },
    };

    use super::*;

    pub fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    pub fn a(owner: &str, ttl: u32, last: u8) -> Record {
        Record::from_rdata(
            name(owner),
            ttl,
            RData::A(A(Ipv4Addr::new(198, 18, 0, last))),
        )
    }

    pub fn soa(ttl: u32, minimum: u32) -> Record {
        let soa = SOA::new(name("ns.t."), name("h.t."), 1, 3600, 600, 86400, minimum);
        Record::from_rdata(name("t."), ttl, RData::SOA(soa))
    }

    pub fn response(rcode: ResponseCode, answers: Vec<Record>, authority: Vec<Record>) -> Message {
        let mut m = Message::new();
        m.add_query(Query::query(name("www.t."), RecordType::A));
        m.set_response_code(rcode);
        m.insert_answers(answers);
        m.insert_name_servers(authority);
        m
    }

    const S: u64 = 1_000_000_000;

    fn max(max: u32) -> TtlPolicy {
        TtlPolicy {
            max,
            ..TtlPolicy::default()
        }
    }

    #[test]
    fn positive_ttl_is_the_smallest_and_counts_down() {
        let msg = response(
            ResponseCode::NoError,
            vec![a("www.t.", 300, 1), a("www.t.", 100, 2)],
            vec![],
        );
        let ans = Answer::from_upstream(msg, 10 * S, &TtlPolicy::default());
        assert_eq!(ans.ttl, Some(100));
        // Aged 30.5 s, and the margin: rounded down, 31 s.
        let later = ans.sections_at(10 * S + 30 * S + S / 2);
        let ttls: Vec<u32> = later.answers.iter().map(Record::ttl).collect();
        assert_eq!(ttls, vec![269, 69]);
        assert!(!ans.expired(10 * S + 99 * S));
        assert!(ans.expired(10 * S + 100 * S));
    }

    #[test]
    fn ttls_are_capped() {
        let msg = response(
            ResponseCode::NoError,
            vec![a("www.t.", 7 * 86400, 1)],
            vec![],
        );
        let ans = Answer::from_upstream(msg, 0, &max(60));
        assert_eq!(ans.ttl, Some(60));
        assert_eq!(ans.answers[0].ttl(), 60);
    }

    #[test]
    fn ttls_with_the_top_bit_set_are_zero() {
        let msg = response(
            ResponseCode::NoError,
            vec![a("www.t.", 0x8000_0000, 1)],
            vec![],
        );
        let ans = Answer::from_upstream(msg, 0, &TtlPolicy::default());
        assert_eq!(ans.ttl, None, "cached");
        assert_eq!(ans.answers[0].ttl(), 0);
    }

    #[test]
    fn ttls_never_rise_from_one_layer_to_the_other() {
        use dnsxdp_common::entry::build_entry;

        let fetched = 7 * S + 123_456;
        let msg = response(
            ResponseCode::NoError,
            vec![a("www.t.", 3, 1), a("www.t.", 5, 2)],
            vec![],
        );
        let ans = Answer::from_upstream(msg, fetched, &TtlPolicy::default());
        // The daemon fills the kernel cache when it answers, as the resolver does.
        for fill in [fetched, fetched + S / 3, fetched + S - S / 100] {
            let mut m = response(ResponseCode::NoError, vec![], vec![]);
            m.set_message_type(hickory_proto::op::MessageType::Response);
            m.insert_answers(ans.sections_at(fill).answers);
            let (_, entry) = build_entry(&m.to_vec().unwrap(), ans.aged_at(fill), 86400).unwrap();
            let daemon = |t: u64| ans.sections_at(t).answers.iter().map(Record::ttl).min();
            // The program's clock lags by up to a few ticks.
            let xdp = |t: u64, lag: u64| entry.ttl_at(t - lag);
            let ms = S / 1000;
            for t1 in (fill..fetched + 3 * S).step_by(ms as usize) {
                for (gap, lag) in [
                    (0, 0),
                    (ms, 0),
                    (0, 4 * ms),
                    (5 * ms, 4 * ms),
                    (31 * ms, 30 * ms),
                ] {
                    let t2 = t1 + gap;
                    let (d1, d2) = (daemon(t1), daemon(t2));
                    let (x1, x2) = (xdp(t1, lag), xdp(t2, lag));
                    assert!(d2 <= d1, "daemon {d1:?} then {d2:?}");
                    if let Some(x1) = x1 {
                        assert!(d2 <= Some(x1), "XDP {x1} then daemon {d2:?} at {t1}+{gap}");
                    }
                    // Once the program's clock has passed the daemon's answer.
                    if gap >= lag
                        && let Some(x2) = x2
                    {
                        assert!(Some(x2) <= d1, "daemon {d1:?} then XDP {x2} at {t1}+{gap}");
                    }
                }
            }
        }
    }

    #[test]
    fn small_positive_ttls_are_raised_but_negative_ones_are_not() {
        let policy = TtlPolicy {
            min: 60,
            max: 600,
            max_negative: 30,
            factor: 1.0,
        };
        let msg = response(
            ResponseCode::NoError,
            vec![a("www.t.", 5, 1), a("www.t.", 7200, 2)],
            vec![],
        );
        let ans = Answer::from_upstream(msg, 0, &policy);
        let ttls: Vec<u32> = ans.answers.iter().map(Record::ttl).collect();
        assert_eq!((ttls, ans.ttl), (vec![60, 600], Some(60)));
        let nx = response(ResponseCode::NXDomain, vec![], vec![soa(3600, 300)]);
        let ans = Answer::from_upstream(nx, 0, &policy);
        assert_eq!(ans.ttl, Some(30));
        assert_eq!(ans.authority[0].ttl(), 30);
        let nx = response(ResponseCode::NXDomain, vec![], vec![soa(10, 300)]);
        assert_eq!(Answer::from_upstream(nx, 0, &policy).ttl, Some(10));
    }

    #[test]
    fn the_factor_scales_every_ttl_before_the_limits() {
        let policy = TtlPolicy::new(Some(60), Some(600), Some(3600), Some(0.5)).unwrap();
        let msg = response(
            ResponseCode::NoError,
            vec![
                a("www.t.", 100, 1),
                a("www.t.", 300, 2),
                a("www.t.", 7200, 3),
            ],
            vec![],
        );
        let ans = Answer::from_upstream(msg, 0, &policy);
        let ttls: Vec<u32> = ans.answers.iter().map(Record::ttl).collect();
        assert_eq!((ttls, ans.ttl), (vec![60, 150, 600], Some(60)));
        // The negative TTL, min(SOA TTL, MINIMUM), is scaled too.
        let nx = response(ResponseCode::NXDomain, vec![], vec![soa(3600, 300)]);
        let ans = Answer::from_upstream(nx, 0, &policy);
        assert_eq!((ans.ttl, ans.authority[0].ttl()), (Some(150), 150));
    }

    #[test]
    fn the_prefetch_window_is_the_last_tenth() {
        let msg = response(ResponseCode::NoError, vec![a("www.t.", 100, 1)], vec![]);
        let ans = Answer::from_upstream(msg, 0, &TtlPolicy::default());
        assert!(!ans.in_prefetch_window(89 * S));
        assert!(ans.in_prefetch_window(90 * S));
        assert_eq!(ans.remaining_secs(90 * S), Some(10));
        assert_eq!(ans.remaining_secs(100 * S), None);
        assert_eq!(ans.usage.hit(), 1);
        assert!(ans.usage.start_prefetch());
        assert!(!ans.usage.start_prefetch());
    }

    #[test]
    fn negative_answers_use_the_soa() {
        let msg = response(ResponseCode::NXDomain, vec![], vec![soa(3600, 300)]);
        let ans = Answer::from_upstream(msg, 0, &TtlPolicy::default());
        assert_eq!(ans.ttl, Some(300));
        assert_eq!(ans.authority[0].ttl(), 300);
        let nodata = response(ResponseCode::NoError, vec![], vec![soa(60, 300)]);
        assert_eq!(
            Answer::from_upstream(nodata, 0, &TtlPolicy::default()).ttl,
            Some(60)
        );
        let bare = response(ResponseCode::NXDomain, vec![], vec![]);
        assert!(!Answer::from_upstream(bare, 0, &TtlPolicy::default()).cacheable());
    }

    #[test]
    fn stale_copies_carry_ttl_30_for_the_window_after_expiry() {
        let msg = response(
            ResponseCode::NoError,
            vec![a("www.t.", 10, 1)],
            vec![soa(3600, 300)],
        );
        let ans = Answer::from_upstream(msg, 0, &TtlPolicy::default());
        let window = 60 * S;
        assert!(ans.stale_servable(10 * S, window));
        assert!(ans.stale_servable(69 * S, window));
        assert!(!ans.stale_servable(70 * S, window));
        assert!(!ans.stale_servable(10 * S, 0));
        let stale = ans.as_stale(50 * S);
        assert!(stale.stale && !stale.cacheable());
        let s = stale.sections_at(50 * S);
        assert_eq!(s.answers[0].ttl(), STALE_TTL);
        assert_eq!(s.authority[0].ttl(), STALE_TTL);
    }

    #[test]
    fn errors_and_zero_ttls_are_not_cached() {
        for rcode in [ResponseCode::ServFail, ResponseCode::Refused] {
            let msg = response(rcode, vec![a("www.t.", 300, 1)], vec![]);
            assert!(!Answer::from_upstream(msg, 0, &TtlPolicy::default()).cacheable());
        }
        let msg = response(ResponseCode::NoError, vec![a("www.t.", 0, 1)], vec![]);
        let ans = Answer::from_upstream(msg, 0, &TtlPolicy::default());
        assert!(!ans.cacheable());
        assert!(ans.expired(0));
    }
}
