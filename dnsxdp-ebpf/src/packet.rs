//! Bounds-checked access to the packet.
//!
//! Every offset handed to these helpers must have a bound the verifier can see (a constant, a
//! mask or a comparison), or it refuses the access even when the check below passes.

use core::ptr;

use aya_ebpf::programs::XdpContext;

use crate::bounds::opaque;

/// Beyond any frame XDP sees without fragments (they fit in a page), and far enough below the
/// verifier's 64 KiB packet range limit that an access's own size cannot cross it.
const MAX_OFFSET: usize = 0x3fff;

/// The packet's data pointers, read from the context.
#[derive(Clone, Copy)]
pub struct Packet {
    start: usize,
    end: usize,
}

impl Packet {
    /// Reads the data pointers; call again after any helper that resizes the packet.
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        Self {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }

    /// Bytes in the packet.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// A pointer to `N` bytes at `off`, if they are all inside the packet.
    #[inline(always)]
    pub fn bytes<const N: usize>(&self, off: usize) -> Option<*mut u8> {
        self.at(off, N)
    }

    /// A pointer to the header `T` (network-types' `EthHdr`, `Ipv4Hdr`, ...) at `off`, if all
    /// of it is inside the packet. Headers may sit at any alignment: read their fields through
    /// the pointer, never through a reference to an `EthHdr` or `VlanHdr`, which are 2-byte
    /// aligned. The others are byte arrays, for which a reference is fine.
    #[inline(always)]
    pub fn header<T>(&self, off: usize) -> Option<*mut T> {
        self.at(off, size_of::<T>()).map(|p| p.cast())
    }

    #[inline(always)]
    fn at(&self, off: usize, len: usize) -> Option<*mut u8> {
        // A constant bound on the very register added to the pointer: verifiers before 6.8
        // learn nothing from comparing two unknowns (`off` against a length read from the
        // packet), and refuse packet pointer math with an offset they cannot bound.
        let off = opaque(off);
        if off > MAX_OFFSET {
            return None;
        }
        let p = self.start + off;
        // Kept as `p + len > end`: LLVM would rewrite a one-byte check into `p >= end`, from
        // which the verifier learns nothing when `p` has no constant offset.
        if opaque(p + len) > self.end {
            return None;
        }
        Some(p as *mut u8)
    }
}

/// Integers the packet is read and written in. Arrays are left out on purpose: LLVM turns
/// copies of them into byte-by-byte memcpy.
pub trait Scalar: Copy {}
impl Scalar for u8 {}
impl Scalar for u16 {}
impl Scalar for u32 {}
impl Scalar for u64 {}

// Loads and stores at any alignment: packet headers are only 2-byte aligned, and XDP allows
// unaligned packet access.

#[inline(always)]
pub unsafe fn load<T: Scalar>(p: *const u8, off: usize) -> T {
    unsafe { ptr::read_unaligned(p.add(off).cast::<T>()) }
}

#[inline(always)]
pub unsafe fn store<T: Scalar>(p: *mut u8, off: usize, v: T) {
    unsafe { ptr::write_unaligned(p.add(off).cast::<T>(), v) }
}

/// A big-endian 16-bit field.
#[inline(always)]
pub unsafe fn be16(p: *const u8, off: usize) -> u16 {
    bounded(u16::from_be(unsafe { load::<u16>(p, off) }))
}

/// A 16-bit value read from the packet, as one a length can be: masked after the byte swap,
/// which LLVM cannot drop through `opaque`. The 6.1 verifier loses all bounds of a byte swap's
/// result, and a length read without this could not be added to a packet pointer.
#[inline(always)]
pub fn bounded(v: u16) -> u16 {
    (opaque(v as usize) & 0xffff) as u16
}

#[inline(always)]
pub unsafe fn set_be16(p: *mut u8, off: usize, v: u16) {
    unsafe { store::<u16>(p, off, v.to_be()) }
}

/// A big-endian 32-bit field.
#[inline(always)]
pub unsafe fn be32(p: *const u8, off: usize) -> u32 {
    u32::from_be(unsafe { load::<u32>(p, off) })
}

/// Swaps the header fields at `a` and `b`, such as a frame's addresses or ports: whole words,
/// then what is left in halves and bytes. Every step is known at compile time, so none of it
/// is a loop in the program.
#[inline(always)]
pub unsafe fn swap<T>(a: *mut T, b: *mut T) {
    let (a, b, n) = (a.cast::<u8>(), b.cast::<u8>(), size_of::<T>());
    unsafe {
        for i in 0..n / 8 {
            swap_at::<u64>(a, b, i * 8);
        }
        let mut at = n & !7;
        if n & 4 != 0 {
            swap_at::<u32>(a, b, at);
            at += 4;
        }
        if n & 2 != 0 {
            swap_at::<u16>(a, b, at);
            at += 2;
        }
        if n & 1 != 0 {
            swap_at::<u8>(a, b, at);
        }
    }
}

#[inline(always)]
unsafe fn swap_at<T: Scalar>(a: *mut u8, b: *mut u8, off: usize) {
    unsafe {
        let (x, y) = (load::<T>(a, off), load::<T>(b, off));
        store(a, off, y);
        store(b, off, x);
    }
}
