//! Default upstreams from /etc/resolv.conf.

use std::net::{IpAddr, SocketAddr, SocketAddrV6};

use crate::kernel::local_addrs::{if_index, is_this_host};

/// The `nameserver` entries of a resolv.conf, on port 53, that are not this host: a stub
/// resolver on loopback or on a local address may well be this daemon.
pub fn upstreams(text: &str, local: &[IpAddr]) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then(|| words.next())?
        })
        .filter_map(parse_nameserver)
        .filter(|addr| !is_this_host(addr.ip(), local))
        .collect()
}

/// An address as resolv.conf writes it: IPv4, or IPv6 with an optional `%scope`.
fn parse_nameserver(word: &str) -> Option<SocketAddr> {
    match word.split_once('%') {
        None => Some(SocketAddr::new(word.parse().ok()?, 53)),
        Some((ip, scope)) => {
            let scope = scope.parse().ok().or_else(|| if_index(scope))?;
            Some(SocketAddrV6::new(ip.parse().ok()?, 53, 0, scope).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_remote_servers_and_drops_this_host() {
        let text = "# generated\nsearch example.com\nnameserver 127.0.0.53\n\
                    nameserver 198.18.0.2\nnameserver   fd00::53  \nnameserver ::1\n\
                    nameserver 198.18.5.5\noptions edns0\nnameserver bogus\n";
        let local = ["198.18.5.5".parse().unwrap()];
        assert_eq!(
            upstreams(text, &local),
            vec![
                "198.18.0.2:53".parse::<SocketAddr>().unwrap(),
                "[fd00::53]:53".parse().unwrap(),
            ]
        );
    }

    #[test]
    fn scoped_link_local() {
        let got = upstreams("nameserver fe80::1%1\n", &[]);
        assert_eq!(
            got,
            vec![SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0, 1).into()]
        );
    }

    #[test]
    fn only_local_servers_leaves_nothing() {
        assert!(upstreams("nameserver 127.0.0.1\nnameserver 0.0.0.0\n", &[]).is_empty());
        assert!(upstreams("", &[]).is_empty());
    }
}
