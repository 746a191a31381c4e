//! Reading a whole BPF hash map a batch at a time (BPF_MAP_LOOKUP_BATCH, Linux 5.6): a
//! system call per thousand entries, where aya's iterator makes two per entry. A walk of a full
//! million-entry cache, for `dnsxdp stats` or a metrics scrape, is then a thousand calls.

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use bytemuck::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries asked for per call.
const CHUNK: usize = 1024;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Calls `f` with every key and value of the hash map `fd`, whose keys are `K` and values `V`.
/// Entries written or deleted during the walk may be seen or not.
pub fn for_each<K: Pod, V: Pod>(fd: BorrowedFd<'_>, mut f: impl FnMut(&K, &V)) -> io::Result<()> {
    let mut keys = vec![K::zeroed(); CHUNK];
    let mut values = vec![V::zeroed(); CHUNK];
    // Where the last call stopped: a bucket index for hash maps.
    let mut token = 0u64;
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &raw const token as u64 },
            out_batch: &raw mut token as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: the attribute points at buffers of `CHUNK` keys and values and at `token`,
        // all alive and writable for the whole call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &raw mut attr,
                size_of::<BatchAttr>(),
            )
        };
        // ENOENT: the walk is over, with the last entries in this batch.
        let last = r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT);
        if r < 0 && !last {
            return Err(io::Error::last_os_error());
        }
        let count = (attr.count as usize).min(CHUNK);
        for (key, value) in keys.iter().zip(&values).take(count) {
            f(key, value);
        }
        if last {
            return Ok(());
        }
        first = false;
    }
}
