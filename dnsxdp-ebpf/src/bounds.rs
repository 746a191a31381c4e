//! Controlling what LLVM and the verifier know about offsets.
//!
//! The verifier walks every path through the program and tracks exact values where it can. An
//! offset that is a different constant on each path (one per name length, per IPv4 header
//! length, per VLAN tag) keeps otherwise identical paths apart, and their product exceeds the
//! verifier's budget. Passing such offsets through `forget` turns them into bounded unknowns,
//! so the paths merge.

use core::{
    arch::asm,
    ptr::{read_volatile, write_volatile},
};

use crate::maps::SCRATCH;

/// Returns `bytes` unchanged, as far as the verifier can tell only known to be in 0..=255:
/// it does not track what map memory holds. The store and load stay next to each other on one
/// CPU with no helper call in between, so nothing else can touch the word.
#[inline(always)]
pub fn forget<const N: usize>(bytes: [u8; N]) -> Option<[u8; N]> {
    let slot = SCRATCH.get_ptr_mut(0)?;
    let mut word = 0u64;
    for (i, b) in bytes.iter().enumerate() {
        word |= (*b as u64) << (8 * i);
    }
    let word = unsafe {
        write_volatile(slot, word);
        read_volatile(slot)
    };
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = (word >> (8 * i)) as u8;
    }
    Some(out)
}

/// Returns `v` unchanged, but hides from LLVM how it was computed. An offset checked after
/// passing through here is the very register later added to the packet pointer, instead of
/// being recomputed from unchecked parts the verifier cannot bound.
#[inline(always)]
pub fn opaque(mut v: usize) -> usize {
    // A real move rather than an empty template: an instruction-less asm leaves two line-info
    // records on one instruction, which the kernel rejects.
    unsafe { asm!("{0} = {0}", inout(reg) v, options(pure, nomem, nostack, preserves_flags)) };
    v
}

/// `len / N`, as a value the verifier does not link to `len`. A loop over the words of `len`
/// that stops on this leaves `len` as it was, instead of narrowing it to a different range for
/// each number of words, which would split the verifier's paths after the loop that many ways.
/// (`opaque` alone is a register move, after which the verifier narrows both copies.)
#[inline(always)]
pub fn whole_words<const N: usize>(len: usize) -> usize {
    opaque(len) / N
}
