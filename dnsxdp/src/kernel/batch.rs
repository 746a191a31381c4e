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

/// Every key and value of a hash map whose keys are `K` and values `V`, read a chunk at a
/// time. Entries written or deleted during the walk may be seen or not.
pub struct Entries<'fd, K, V> {
    fd: BorrowedFd<'fd>,
    keys: Vec<K>,
    values: Vec<V>,
    /// The next of the `count` entries read to hand out.
    next: usize,
    count: usize,
    /// Where the last call stopped (a bucket index for hash maps); `None` before the first.
    token: Option<u64>,
    /// The kernel said the last call read the last entries.
    ended: bool,
}

pub fn entries<K: Pod, V: Pod>(fd: BorrowedFd<'_>) -> Entries<'_, K, V> {
    Entries {
        fd,
        keys: vec![K::zeroed(); CHUNK],
        values: vec![V::zeroed(); CHUNK],
        next: 0,
        count: 0,
        token: None,
        ended: false,
    }
}

impl<K: Pod, V: Pod> Entries<'_, K, V> {
    /// Reads the next chunk.
    fn read(&mut self) -> io::Result<()> {
        let mut token = self.token.unwrap_or(0);
        let mut attr = BatchAttr {
            in_batch: self.token.map_or(0, |_| &raw const token as u64),
            out_batch: &raw mut token as u64,
            keys: self.keys.as_mut_ptr() as u64,
            values: self.values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: self.fd.as_raw_fd() as u32,
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
        // ENOENT: the walk is over, with the last entries in this chunk.
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                self.ended = true;
                return Err(e);
            }
            self.ended = true;
        }
        self.token = Some(token);
        self.next = 0;
        self.count = (attr.count as usize).min(CHUNK);
        Ok(())
    }
}

impl<K: Pod, V: Pod> Iterator for Entries<'_, K, V> {
    type Item = io::Result<(K, V)>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.next == self.count {
            if self.ended {
                return None;
            }
            if let Err(e) = self.read() {
                return Some(Err(e));
            }
        }
        let i = self.next;
        self.next += 1;
        Some(Ok((self.keys[i], self.values[i])))
    }
}
