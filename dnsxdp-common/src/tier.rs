//! The kernel cache's tiers: an LRU map for each size of entry, so that an answer takes the
//! kernel memory it needs rather than what the largest one would. The XDP program looks a key
//! up in each, smallest first (most answers are small); the daemon writes an entry to the
//! smallest tier it fits and removes its key from the others, so that a smaller entry left
//! behind never shadows a new one.

use bytemuck::{Pod, Zeroable};

use crate::{CacheEntry, ENTRY_HEAD, MAX_CACHED_NAME, MAX_RECORDS_LEN};

/// Bytes of name and records of a small entry: a 192-byte value, so that with its key and
/// the kernel's 48 bytes of element header it takes 256. A name of up to 88 bytes with an A
/// record fits, or one of 32 with a negative answer's SOA of up to 72 bytes.
pub const SMALL_DATA: usize = 104;
/// Bytes of name and records of a medium entry: CNAME chains, answers with a few signatures.
pub const MEDIUM_DATA: usize = 256;
/// The longest name and records: every answer the kernel cache takes fits.
pub const LARGE_DATA: usize = MAX_CACHED_NAME + MAX_RECORDS_LEN;

/// Bytes the kernel's hash table element adds to a key and value (`struct htab_elem` of an LRU
/// map on 64-bit kernels), for sizing; the kernel's own count is what the tests check.
pub const ELEMENT_OVERHEAD: usize = 48;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Small,
    Medium,
    Large,
}

impl Tier {
    /// Smallest first: the order the XDP program looks them up in.
    pub const ALL: [Tier; 3] = [Tier::Small, Tier::Medium, Tier::Large];

    /// Its place in `ALL`.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The name of its map in the eBPF object.
    pub const fn map(self) -> &'static str {
        match self {
            Tier::Small => "CACHE_SMALL",
            Tier::Medium => "CACHE_MEDIUM",
            Tier::Large => "CACHE_LARGE",
        }
    }

    /// For pins and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Tier::Small => "small",
            Tier::Medium => "medium",
            Tier::Large => "large",
        }
    }

    /// Bytes of name and records its entries hold.
    pub const fn data_len(self) -> usize {
        match self {
            Tier::Small => SMALL_DATA,
            Tier::Medium => MEDIUM_DATA,
            Tier::Large => LARGE_DATA,
        }
    }

    /// Bytes of a kernel hash table element of this tier: overhead, key and value, each
    /// rounded up to whole words.
    pub const fn element_len(self) -> usize {
        ELEMENT_OVERHEAD + size_of::<crate::CacheKey>().next_multiple_of(8) + self.value_len()
    }

    /// Bytes of its map's values.
    pub const fn value_len(self) -> usize {
        ENTRY_HEAD + self.data_len()
    }

    /// Entries of this tier in a kernel cache of `size` (`--kernel-cache-size`): `size` small
    /// ones, an eighth as many medium ones and a thirty-second as many large ones, one at
    /// least. Most answers are small, and the larger tiers cost 1.6 and 3.1 times as much
    /// memory per entry.
    pub const fn entries(self, size: u32) -> u32 {
        let share = match self {
            Tier::Small => 1,
            Tier::Medium => 8,
            Tier::Large => 32,
        };
        let n = size / share;
        if n == 0 { 1 } else { n }
    }

    /// The smallest tier whose entries hold `len` bytes of name and records.
    pub const fn for_data(len: usize) -> Option<Tier> {
        if len <= SMALL_DATA {
            Some(Tier::Small)
        } else if len <= MEDIUM_DATA {
            Some(Tier::Medium)
        } else if len <= LARGE_DATA {
            Some(Tier::Large)
        } else {
            None
        }
    }
}

impl<const N: usize> CacheEntry<N> {
    /// The smallest tier the entry fits.
    pub fn tier(&self) -> Option<Tier> {
        Tier::for_data(self.data_len())
    }

    /// The same entry with room for `M` bytes of name and records; `None` if it does not fit,
    /// or claims more than it holds.
    pub fn resized<const M: usize>(&self) -> Option<CacheEntry<M>>
    where
        Self: Pod,
        CacheEntry<M>: Pod,
    {
        let used = self.data_len();
        if used > N || used > M {
            return None;
        }
        let mut out: CacheEntry<M> = Zeroable::zeroed();
        let end = ENTRY_HEAD + used;
        bytemuck::bytes_of_mut(&mut out)[..end].copy_from_slice(&bytemuck::bytes_of(self)[..end]);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CacheKey, entry::build_entry, name::name_words};

    #[test]
    fn entries_are_sized_to_their_tier_and_a_small_one_takes_256_bytes() {
        assert_eq!(ENTRY_HEAD, 88);
        assert_eq!(size_of::<CacheKey>(), 12);
        assert_eq!(size_of::<CacheEntry<SMALL_DATA>>(), Tier::Small.value_len());
        assert_eq!(
            size_of::<CacheEntry<MEDIUM_DATA>>(),
            Tier::Medium.value_len()
        );
        assert_eq!(size_of::<CacheEntry<LARGE_DATA>>(), Tier::Large.value_len());
        assert_eq!(size_of::<CacheEntry>(), size_of::<CacheEntry<LARGE_DATA>>());
        let elements = Tier::ALL.map(Tier::element_len);
        assert_eq!(elements, [256, 408, 792]);
        // The name is read in whole words, from a word boundary.
        for tier in Tier::ALL {
            assert!(tier.value_len().is_multiple_of(8), "{tier:?}");
        }
    }

    #[test]
    fn the_smallest_tier_that_holds_the_data_is_chosen() {
        let cases = [
            (0, Some(Tier::Small)),
            (SMALL_DATA, Some(Tier::Small)),
            (SMALL_DATA + 1, Some(Tier::Medium)),
            (MEDIUM_DATA, Some(Tier::Medium)),
            (MEDIUM_DATA + 1, Some(Tier::Large)),
            (LARGE_DATA, Some(Tier::Large)),
            (LARGE_DATA + 1, None),
        ];
        for (len, tier) in cases {
            assert_eq!(Tier::for_data(len), tier, "{len} bytes");
        }
        for (i, tier) in Tier::ALL.into_iter().enumerate() {
            assert_eq!(Tier::for_data(tier.data_len()), Some(tier));
            assert_eq!(tier.index(), i);
        }
    }

    #[test]
    fn a_cache_size_is_the_small_tiers_and_the_others_take_shares_of_it() {
        let sizes = |n: u32| Tier::ALL.map(|t| t.entries(n));
        assert_eq!(sizes(65536), [65536, 8192, 2048]);
        assert_eq!(sizes(1_000_000), [1_000_000, 125_000, 31_250]);
        assert_eq!(sizes(64), [64, 8, 2]);
        assert_eq!(sizes(1), [1, 1, 1]);
    }

    /// A response to `name`/A (`name` as dotted labels) with `records` A records, compressed
    /// against the question.
    fn a_response(labels: &[&[u8]], records: usize) -> ([u8; 700], usize) {
        let mut m = [0u8; 700];
        m[..12].copy_from_slice(&[0, 0, 0x81, 0x80, 0, 1, 0, records as u8, 0, 0, 0, 0]);
        let mut p = 12;
        for label in labels {
            m[p] = label.len() as u8;
            m[p + 1..p + 1 + label.len()].copy_from_slice(label);
            p += 1 + label.len();
        }
        m[p..p + 5].copy_from_slice(&[0, 0, 1, 0, 1]);
        p += 5;
        for i in 0..records {
            m[p..p + 16]
                .copy_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 0, 0, 4, 192, 0, 2, i as u8]);
            p += 16;
        }
        (m, p)
    }

    #[test]
    fn a_one_record_a_answer_is_small_up_to_an_88_byte_name() {
        let label = [b'x'; 63];
        // Wire lengths 17, 88 and 89.
        let cases: [(&[&[u8]], Tier); 3] = [
            (&[b"www", b"example", b"com"], Tier::Small),
            (&[&label, &label[..22]], Tier::Small),
            (&[&label, &label[..23]], Tier::Medium),
        ];
        for (labels, tier) in cases {
            let (m, end) = a_response(labels, 1);
            let (key, e) = build_entry(&m[..end], 0, 60).unwrap();
            assert_eq!(e.tier(), Some(tier), "name of {} bytes", key.name_len);
        }
        // Sixteen A records: the most an entry takes, past a medium entry after the name.
        let (m, end) = a_response(&[b"www", b"example", b"com"], 16);
        let (_, e) = build_entry(&m[..end], 0, 60).unwrap();
        assert_eq!((e.data_len(), e.tier()), (24 + 256, Some(Tier::Large)));
    }

    #[test]
    fn the_name_comes_first_padded_to_whole_words_then_the_records() {
        let (m, end) = a_response(&[b"www", b"example", b"com"], 2);
        let (key, e) = build_entry(&m[..end], 0, 60).unwrap();
        assert_eq!(e.records_at(), name_words(17) * 8);
        assert_eq!(e.records_at(), 24);
        assert_eq!(&e.data[..17], key.wire_name());
        assert_eq!(&e.data[17..24], &[0; 7]);
        assert_eq!(e.records(), &{
            let mut r = [0u8; 32];
            r.copy_from_slice(&m[end - 32..end]);
            r[6..10].fill(0);
            r[22..26].fill(0);
            r
        });
        assert_eq!(e.data_len(), 24 + 32);
        assert_eq!((e.key.name_len, e.key.qtype), (17, 1));
    }

    #[test]
    fn resizing_keeps_the_entry_and_refuses_what_does_not_fit() {
        let (m, end) = a_response(&[b"www", b"example", b"com"], 2);
        let (_, e) = build_entry(&m[..end], 5, 60).unwrap();
        let small = e.resized::<SMALL_DATA>().unwrap();
        assert_eq!(bytemuck::bytes_of(&small), &bytemuck::bytes_of(&e)[..192]);
        let back = small.resized::<LARGE_DATA>().unwrap();
        assert_eq!(bytemuck::bytes_of(&back), bytemuck::bytes_of(&e));

        let (m, end) = a_response(&[b"www", b"example", b"com"], 6);
        let (_, e) = build_entry(&m[..end], 5, 60).unwrap();
        assert_eq!(e.tier(), Some(Tier::Medium));
        assert!(e.resized::<SMALL_DATA>().is_none());
        // An entry claiming more records than its data holds is not read.
        let mut medium = e.resized::<MEDIUM_DATA>().unwrap();
        medium.len = MEDIUM_DATA as u16;
        assert!(medium.resized::<LARGE_DATA>().is_none());
    }
}
