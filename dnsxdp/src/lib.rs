//! dnsxdp: a caching DNS forwarder whose cache hits are answered by an XDP program.
//!
//! The folders follow a query's path; ARCHITECTURE.md draws it.

pub mod access;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dns;
pub mod filter;
pub mod kernel;
pub mod local;
pub mod ops;
pub mod resolve;
pub mod serve;
pub mod upstream;
pub mod values;

/// The compiled XDP object (built from dnsxdp-ebpf by build.rs).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dnsxdp"));

/// Each thread's allocations counted, for tests that show a path allocates nothing.
#[cfg(test)]
pub mod allocations {
    use std::{
        alloc::{GlobalAlloc, Layout, System},
        cell::Cell,
    };

    thread_local! {
        static COUNT: Cell<u64> = const { Cell::new(0) };
    }

    struct Counting;

    fn count() {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }

    // SAFETY: every call goes to the system allocator unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count();
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count();
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    /// What `f` returns, and how many allocations this thread made in it.
    pub fn during<T>(f: impl FnOnce() -> T) -> (T, u64) {
        let before = COUNT.with(Cell::get);
        let out = f();
        (out, COUNT.with(Cell::get) - before)
    }
}
