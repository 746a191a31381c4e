//! Source ports that are never answered, by the XDP program or the daemon.

/// Whether a datagram from `port` goes unanswered. Echo, daytime, quote of the day, chargen and
/// time answer any datagram, and TFTP and NTP answer errors with errors: a spoofed query "from"
/// one of them would start a loop between it and us that never ends (the CVE-2024-2169 class).
/// No client sends from port 0.
pub const fn reflective_port(port: u16) -> bool {
    matches!(port, 0 | 7 | 13 | 17 | 19 | 37 | 69 | 123)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_prone_services_and_port_zero_are_never_answered() {
        for port in [0, 7, 13, 17, 19, 37, 69, 123] {
            assert!(reflective_port(port), "{port}");
        }
        for port in [53, 1024, 5353, 33000, 65535] {
            assert!(!reflective_port(port), "{port}");
        }
    }
}
