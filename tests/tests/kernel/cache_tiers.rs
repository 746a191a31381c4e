//! The kernel cache's tiers through BPF_PROG_TEST_RUN (needs root): answers from every tier,
//! the order the program looks them up in, and an answer that changes size moving to the tier
//! it fits, written by the daemon's own `KernelCache`.

use dnsxdp::kernel::cache::{Fill, KernelCache};
use dnsxdp_common::{
    MAX_CACHED_NAME, QTYPE_A,
    name::{QuestionKey, name_words},
    tier::Tier,
};
use dnsxdp_tests::testrun::{
    query::{Edns, Query, wire_name},
    response::{a, cname, entry_from, monotonic_ns, record, response},
};
use hickory_proto::rr::{Record, RecordType};

use crate::xdp_program::{
    Cached, Fixture, a_records_response, a_response, answers, name_of_wire_len, upstream,
};

/// Runs `frame`, which must be answered, checksums and all, with `cached`'s records. Their TTLs
/// are only checked to count down alike: what they are is tested elsewhere, and under emulation
/// the program's coarse clock may lag by more than the margin that hides it.
fn answered_with(f: &Fixture, frame: &[u8], cached: &Cached) {
    let (_, m) = f.answer(frame);
    let want = upstream(&cached.response);
    assert_eq!(answers(&m), answers(&want));
    let ttl = want.answers().iter().map(Record::ttl).min().unwrap_or(0);
    let ttls: Vec<u32> = m.answers().iter().map(Record::ttl).collect();
    assert!(ttls.iter().all(|&t| t == ttls[0] && t <= ttl), "{ttls:?}");
}

/// A CNAME from `name` to `t.example.`, then `count` A records: answers of every size.
fn chain_response(name: &str, count: usize) -> Vec<u8> {
    let mut records = vec![record(name, 100, cname("t.example.")).unwrap()];
    records.extend((0..count).map(|i| record("t.example.", 100, a([192, 0, 2, i as u8])).unwrap()));
    response(name, RecordType::A, records).unwrap()
}

#[test]
fn answers_from_every_tier_are_hits_with_their_bytes_and_checksums() {
    let mut f = Fixture::new();
    let vlan6 = f.v6.with(|s| s.vlan = Some(1));
    let opts4 = f.v4.with(|s| s.ip_options = vec![1, 1, 1, 0]);
    for (tier, count, c) in [
        (Tier::Small, 2, 's'),
        (Tier::Medium, 6, 'm'),
        (Tier::Large, 15, 'l'),
    ] {
        // Names of wire length 3 to 22 put the records, and every TTL, at both parities and
        // after names of one to three words.
        for len in 1..=20 {
            let name = format!("{}.", c.to_string().repeat(len));
            let cached = f.cache_response(chain_response(&name, count));
            assert_eq!(cached.entry.tier(), Some(tier), "{name}");
            for spec in [&f.v4, &f.v6, &vlan6, &opts4] {
                for edns in [false, true] {
                    let mut q = Query::new(&name.to_uppercase(), QTYPE_A);
                    if edns {
                        q = q.edns(Edns::new(1232));
                    }
                    answered_with(&f, &spec.query(&q), &cached);
                }
            }
        }
    }
}

#[test]
fn every_tier_answers_names_of_every_length_it_holds() {
    let mut f = Fixture::new();
    for (tier, c) in [(Tier::Small, 's'), (Tier::Medium, 'm'), (Tier::Large, 'l')] {
        let mut served = 0;
        for len in 3..=MAX_CACHED_NAME {
            // A name and an A record of 16 bytes, in this tier even where a smaller one
            // would do.
            if name_words(len) * 8 + 16 > tier.data_len() {
                continue;
            }
            let name = name_of_wire_len(len, c);
            assert_eq!(wire_name(&name).len(), len);
            let response = a_response(&name, 300, [192, 0, 2, len as u8]);
            let (key, entry) = entry_from(&response, u32::MAX).unwrap();
            let key = f.x.cache_key(&key);
            f.x.insert_in(tier, &key, &entry).unwrap();
            let cached = Cached { response, entry };
            let query = f.v4.query(&Query::new(&name.to_uppercase(), QTYPE_A));
            answered_with(&f, &query, &cached);
            served += 1;
        }
        // Names up to 88 bytes in a small entry, all of them in the others.
        let all = MAX_CACHED_NAME - 2;
        assert_eq!(
            served,
            if tier == Tier::Small { 86 } else { all },
            "{tier:?}"
        );
    }
}

#[test]
fn the_smallest_tier_is_looked_up_first() {
    let mut f = Fixture::new();
    let name = "both.example.com.";
    let small = a_records_response(name, 1, 1);
    let large = a_records_response(name, 16, 2);
    let (key, small_entry) = entry_from(&small, u32::MAX).unwrap();
    let (_, large_entry) = entry_from(&large, u32::MAX).unwrap();
    let cache_key = f.x.cache_key(&key);
    f.x.insert_in(Tier::Large, &cache_key, &large_entry)
        .unwrap();
    f.x.insert_in(Tier::Small, &cache_key, &small_entry)
        .unwrap();
    let query = f.v4.query(&Query::new(name, QTYPE_A));
    let cached = Cached {
        response: small,
        entry: small_entry,
    };
    // Hence the daemon's care to keep a key in one tier only.
    answered_with(&f, &query, &cached);
    assert_eq!(f.x.tiers_holding(&key).unwrap(), [Tier::Small, Tier::Large]);
}

#[test]
fn an_answer_that_changes_size_is_served_from_its_new_tier_only() {
    let f = Fixture::new();
    let kernel = KernelCache::new(f.x.cache_maps().unwrap(), f.x.hash_key()).unwrap();
    let name = "changing.example.com.";
    let query = f.v4.query(&Query::new(name, QTYPE_A).edns(Edns::new(1232)));
    let fill = |count: usize, how: Fill| -> (QuestionKey, Cached) {
        let response = a_records_response(name, count, count as u8);
        let (key, entry) = entry_from(&response, u32::MAX).unwrap();
        kernel.insert(key, entry, how, || true);
        (key, Cached { response, entry })
    };
    // Grows from small to large, shrinks to medium, then to small again.
    for (count, tier) in [
        (1, Tier::Small),
        (16, Tier::Large),
        (6, Tier::Medium),
        (2, Tier::Small),
    ] {
        let (key, cached) = fill(count, Fill::Replace);
        assert_eq!(cached.entry.tier(), Some(tier));
        assert_eq!(f.x.tiers_holding(&key).unwrap(), [tier], "{count} records");
        answered_with(&f, &query, &cached);
    }

    // A fill that keeps what is there keeps it whatever its tier, hits included.
    let (key, medium) = fill(6, Fill::Replace);
    answered_with(&f, &query, &medium);
    let (_, small) = fill(1, Fill::IfAbsent);
    assert_eq!(small.entry.tier(), Some(Tier::Small));
    assert_eq!(f.x.tiers_holding(&key).unwrap(), [Tier::Medium]);
    let now = monotonic_ns();
    assert_eq!(kernel.get(&key, now).unwrap().map(|e| e.hits), Some(1));
    answered_with(&f, &query, &medium);

    // Moving between tiers is neither an eviction nor a loss; the sizes add up over tiers.
    let size = kernel.size(now).unwrap();
    assert_eq!((size.occupancy, size.evictions), (1, 0), "{size:?}");
    assert_eq!(size.capacity, 1024 + 128 + 32);
    assert!(kernel.remove(&key).unwrap());
    assert!(f.x.tiers_holding(&key).unwrap().is_empty());
    assert_eq!(kernel.size(now).unwrap().occupancy, 0);
}

/// The daemon remembers which keys may be outside the small tier, so that a write to it deletes
/// from the others only what may be there. When that list outgrows the tiers it is read again
/// from them: an answer in the medium tier from before still leaves it when it shrinks.
#[test]
fn keys_in_the_bigger_tiers_are_remembered_across_a_reread() {
    let f = Fixture::new();
    let kernel = KernelCache::new(f.x.cache_maps().unwrap(), f.x.hash_key()).unwrap();
    let fill = |name: &str, count: usize| -> (QuestionKey, Cached) {
        let response = a_records_response(name, count, count as u8);
        let (key, entry) = entry_from(&response, u32::MAX).unwrap();
        kernel.insert(key, entry, Fill::Replace, || true);
        (key, Cached { response, entry })
    };
    let name = "kept.example.com.";
    let (key, _) = fill(name, 6);
    assert_eq!(f.x.tiers_holding(&key).unwrap(), [Tier::Medium]);
    // Three times what the medium and large tiers hold (128 + 32) through the large one.
    for i in 0..480 {
        fill(&format!("l{i}.example.com."), 16);
    }
    assert_eq!(f.x.tiers_holding(&key).unwrap(), [Tier::Medium]);
    let (key, small) = fill(name, 1);
    assert_eq!(f.x.tiers_holding(&key).unwrap(), [Tier::Small]);
    answered_with(&f, &f.v4.query(&Query::new(name, QTYPE_A)), &small);
}
