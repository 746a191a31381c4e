//! The keyed hash of query names that the kernel cache is keyed by.
//!
//! NH, the hash of UMAC (RFC 4418), over the lower-cased wire name taken as little-endian 64-bit
//! words, zero padded to a whole word: each word adds its key word to its two 32-bit halves
//! modulo 2^32 and multiplies them, and the products add up modulo 2^64. For a uniformly random
//! key, two different names of the same length collide with probability at most 2^-32, whatever
//! the names (Black et al., "UMAC: Fast and Secure Message Authentication", 1999); names of
//! different lengths have different cache keys anyway. The key is random per load of the
//! program and never leaves the host, so nobody can pick names that collide. A collision costs
//! only a miss, since the XDP program compares the name kept in the entry.
//!
//! One multiplication per word: a fraction of what SipHash costs in BPF, which has no rotate
//! instruction.

use crate::MAX_CACHED_NAME;

/// One key word per word of the longest name.
pub type HashKey = [u64; MAX_CACHED_NAME / 8];

/// What word `i` of a name, `word`, adds to its hash.
#[inline(always)]
pub const fn word_hash(key: &HashKey, i: usize, word: u64) -> u64 {
    let k = key[i];
    let lo = (word as u32).wrapping_add(k as u32) as u64;
    let hi = ((word >> 32) as u32).wrapping_add((k >> 32) as u32) as u64;
    lo * hi
}

/// The hash of a name given as its words.
pub fn name_hash(key: &HashKey, words: impl IntoIterator<Item = u64>) -> u64 {
    words
        .into_iter()
        .enumerate()
        .fold(0, |h, (i, w)| h.wrapping_add(word_hash(key, i, w)))
}

/// The hash a name's `hash` takes in client group `group`: 0 leaves it as it is, and each
/// group moves it by a different amount (an odd multiplier is a bijection modulo 2^64), so
/// one name's keys in two groups always differ. Two names' may meet, which costs a miss as a
/// collision does.
#[inline(always)]
pub const fn group_hash(hash: u64, group: u8) -> u64 {
    hash ^ (group as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::collections::HashSet;

    use super::*;

    /// xorshift64*, for keys.
    fn key(mut seed: u64) -> HashKey {
        core::array::from_fn(|_| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
        })
    }

    #[test]
    fn is_nh() {
        // NH as RFC 4418 defines it on 32-bit pieces: sum of (m[2i] + k[2i]) * (m[2i+1] +
        // k[2i+1]), each sum modulo 2^32, the total modulo 2^64.
        let k = key(7);
        let words = [0x0102_0304_0506_0708, u64::MAX, 0, 0xdead_beef_0bad_f00d];
        let piece = |v: u64, half: u32| (v >> (32 * half)) as u32;
        let mut want = 0u64;
        for (i, &w) in words.iter().enumerate() {
            let a = piece(w, 0).wrapping_add(piece(k[i], 0)) as u64;
            let b = piece(w, 1).wrapping_add(piece(k[i], 1)) as u64;
            want = want.wrapping_add(a * b);
        }
        assert_eq!(name_hash(&k, words), want);
    }

    #[test]
    fn similar_names_do_not_collide() {
        // Names that differ in a counter in one word or another: no collisions among 200,000.
        let k = key(0x9e37_79b9_7f4a_7c15);
        let mut seen = HashSet::new();
        for n in 0..100_000u64 {
            let digits = u64::from_le_bytes(*b"\x07host000") + (n % 1000) * (1 << 48);
            for words in [[digits, n / 1000, 0], [0x6d6f_6303_656c_706d, digits, n]] {
                assert!(seen.insert(name_hash(&k, words)), "{words:x?}");
            }
        }
    }

    #[test]
    fn depends_on_the_key_and_every_word() {
        let base = name_hash(&key(1), [3, 4]);
        assert_ne!(base, name_hash(&key(2), [3, 4]));
        assert_ne!(base, name_hash(&key(1), [3, 5]));
        assert_ne!(base, name_hash(&key(1), [3 << 40, 4]));
        assert_ne!(base, name_hash(&key(1), [4, 3]));
    }

    #[test]
    fn a_names_hash_differs_in_every_group() {
        let hash = name_hash(&key(3), [5, 6]);
        assert_eq!(group_hash(hash, 0), hash);
        let all: HashSet<u64> = (0..=u8::MAX).map(|g| group_hash(hash, g)).collect();
        assert_eq!(all.len(), 256);
    }
}
