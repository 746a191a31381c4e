//! Which questions the kernel cache holds answers for: one rule for the XDP program, the entry
//! builder and the daemon.

use crate::QTYPE_OPT;

/// Whether an answer to a class IN question of `qtype` may come from the kernel cache: any data
/// type, known or not (RFC 3597). Not type 0, OPT, which is never asked, nor the meta and
/// question-only types (RFC 6895 §3.1: 128–255, such as ANY, AXFR and TSIG), whose answers are
/// not a cached record set.
#[inline(always)]
pub const fn kernel_qtype(qtype: u16) -> bool {
    qtype != 0 && qtype != QTYPE_OPT && !(qtype >= 128 && qtype <= 255)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_types_are_held_and_meta_types_are_not() {
        // A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, DS, RRSIG, HTTPS, CAA, an unassigned one.
        for t in [1, 2, 5, 6, 12, 15, 16, 28, 33, 43, 46, 65, 257, 65_000] {
            assert!(kernel_qtype(t), "{t}");
        }
        // Reserved, OPT, the meta range: TKEY, TSIG, IXFR, AXFR, MAILB, MAILA, ANY.
        for t in [0, 41, 128, 249, 250, 251, 252, 253, 254, 255] {
            assert!(!kernel_qtype(t), "{t}");
        }
    }
}
