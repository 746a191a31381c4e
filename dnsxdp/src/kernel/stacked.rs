//! Interfaces stacked on others: VLANs, macvlans and ipvlans on their lower device, bridges,
//! bonds and teams on their ports. A datagram a socket reports as received on such an interface
//! came in through its lower ones first, so the XDP program saw it if it saw all of those.
//!
//! Read from rtnetlink rather than /sys/class/net, which shows the interfaces of whichever
//! network namespace mounted /sys, not necessarily the daemon's.

use std::{io, mem::size_of};

/// One interface and what it is stacked on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    /// The lower device of a VLAN, macvlan or ipvlan.
    pub lower: Option<u32>,
    /// The bridge, bond or team this is a port of.
    pub master: Option<u32>,
    /// An 802.1Q or 802.1ad VLAN.
    pub vlan: bool,
    /// A veth or tun/tap: its frames come from senders on this host.
    pub local: bool,
}

/// Kinds whose IFLA_LINK is the device they take their frames from. For others it means
/// something else (a veth's peer, a tunnel's underlay), or nothing.
const STACKED_KINDS: [&[u8]; 5] = [b"vlan", b"macvlan", b"macvtap", b"ipvlan", b"ipvtap"];

/// The interfaces `link` is stacked on directly: its lower device or its ports.
fn lowers(links: &[Link], link: &Link) -> Vec<u32> {
    links
        .iter()
        .filter(|port| port.master == Some(link.index))
        .map(|port| port.index)
        .chain(link.lower)
        .collect()
}

/// Whether interface `index` is a VLAN or stacked, directly or not, on one: frames for its
/// addresses arrive tagged.
pub fn behind_vlan(links: &[Link], index: u32) -> bool {
    let mut seen = vec![index];
    let mut next = 0;
    while let Some(&i) = seen.get(next) {
        next += 1;
        let Some(link) = links.iter().find(|l| l.index == i) else {
            continue;
        };
        if link.vlan {
            return true;
        }
        for lower in lowers(links, link) {
            if !seen.contains(&lower) {
                seen.push(lower);
            }
        }
    }
    false
}

/// `attached` and every interface stacked, directly or not, only on interfaces among them.
pub fn covered(links: &[Link], attached: &[u32]) -> Vec<u32> {
    let mut covered = attached.to_vec();
    // Each round covers at least one more interface, or ends.
    for _ in 0..links.len() {
        let lowers = |l: &Link| lowers(links, l);
        let more: Vec<u32> = links
            .iter()
            .filter(|l| !covered.contains(&l.index))
            .filter(|l| {
                let lowers = lowers(l);
                !lowers.is_empty() && lowers.iter().all(|i| covered.contains(i))
            })
            .map(|l| l.index)
            .collect();
        if more.is_empty() {
            break;
        }
        covered.extend(more);
    }
    covered
}

const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const RTA_HDRLEN: usize = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_INFO_KIND: u16 = 1;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Every interface of this network namespace (an RTM_GETLINK dump).
pub fn links() -> io::Result<Vec<Link>> {
    // SAFETY: plain socket call; the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let mut request = [0u8; NLMSG_HDRLEN + IFINFOMSG_LEN];
    let len = request.len() as u32;
    request[0..4].copy_from_slice(&len.to_ne_bytes());
    request[4..6].copy_from_slice(&libc::RTM_GETLINK.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    request[6..8].copy_from_slice(&flags.to_ne_bytes());
    request[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // SAFETY: the buffer is valid for its length; the kernel is the default destination.
    if unsafe { libc::send(raw, request.as_ptr().cast(), request.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut links = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::recv(raw, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if parse_dump(&buf[..n as usize], &mut links)? {
            return Ok(links);
        }
    }
}

/// Adds the links in one datagram of a dump to `links`; true once the dump is done.
fn parse_dump(mut data: &[u8], links: &mut Vec<Link>) -> io::Result<bool> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed rtnetlink message");
    while data.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(data[4..6].try_into().unwrap());
        if len < NLMSG_HDRLEN || len > data.len() {
            return Err(bad());
        }
        let body = &data[NLMSG_HDRLEN..len];
        match kind as i32 {
            libc::NLMSG_DONE => return Ok(true),
            libc::NLMSG_ERROR => {
                let errno = body
                    .get(0..4)
                    .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                    .ok_or_else(bad)?;
                return Err(io::Error::from_raw_os_error(-errno));
            }
            k if k == i32::from(libc::RTM_NEWLINK) => {
                links.push(parse_link(body).ok_or_else(bad)?);
            }
            _ => {}
        }
        data = &data[align(len).min(data.len())..];
    }
    Ok(false)
}

/// An RTM_NEWLINK body: `ifinfomsg`, then attributes.
fn parse_link(body: &[u8]) -> Option<Link> {
    let index = u32::from_ne_bytes(body.get(4..8)?.try_into().ok()?);
    let (mut link, mut master, mut kind, mut other_netns) = (None, None, None, false);
    for (t, value) in attributes(body.get(IFINFOMSG_LEN..)?) {
        let word = || Some(u32::from_ne_bytes(value.get(0..4)?.try_into().ok()?));
        match t {
            IFLA_LINK => link = word(),
            IFLA_MASTER => master = word(),
            IFLA_LINK_NETNSID => other_netns = true,
            IFLA_LINKINFO => {
                kind = attributes(value)
                    .find(|&(t, _)| t == IFLA_INFO_KIND)
                    .map(|(_, k)| k.split(|&b| b == 0).next().unwrap_or_default());
            }
            _ => {}
        }
    }
    let stacked = kind.is_some_and(|k| STACKED_KINDS.contains(&k));
    Some(Link {
        index,
        lower: link.filter(|&l| stacked && !other_netns && l != index && l != 0),
        master: master.filter(|&m| m != 0),
        vlan: kind == Some(b"vlan"),
        local: kind.is_some_and(|k| k == b"veth" || k == b"tun"),
    })
}

/// The (type, value) pairs of a run of netlink attributes; stops at the first malformed one.
fn attributes(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16::from_ne_bytes(data.get(0..2)?.try_into().ok()?) as usize;
        let t = u16::from_ne_bytes(data.get(2..4)?.try_into().ok()?);
        let value = data.get(RTA_HDRLEN..len)?;
        data = &data[align(len).min(data.len())..];
        Some((t & NLA_TYPE_MASK, value))
    })
}

/// Netlink lengths round up to 4 bytes.
fn align(len: usize) -> usize {
    len.div_ceil(4) * 4
}

const _: () = assert!(size_of::<libc::nlmsghdr>() == NLMSG_HDRLEN);

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, lower: Option<u32>, master: Option<u32>) -> Link {
        Link {
            index,
            lower,
            master,
            vlan: false,
            local: false,
        }
    }

    #[test]
    fn stacks_are_covered_only_when_every_lower_device_is() {
        // 2 has XDP; 3 is a VLAN on it and 4 one on 3 (QinQ); 5 a bridge of ports 2 and 6,
        // and 7 a bond of 2 alone; 8 a VLAN on 6, which has no XDP.
        let links = [
            link(1, None, None),
            link(2, None, Some(7)),
            link(3, Some(2), None),
            link(4, Some(3), None),
            link(5, None, None),
            link(6, None, Some(5)),
            link(7, None, None),
            link(8, Some(6), None),
        ];
        let mut got = covered(&links, &[2]);
        got.sort();
        assert_eq!(got, [2, 3, 4, 7]);
        let mut got = covered(&links, &[2, 6]);
        got.sort();
        assert_eq!(got, [2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(covered(&links, &[]), Vec::<u32>::new());
    }

    #[test]
    fn a_vlan_anywhere_below_puts_an_interface_behind_it() {
        // 3 is a VLAN on 2; 4 a macvlan on 3; 5 a bridge of 4 and 6; 6 and 7 plain.
        let vlan = |index, lower| Link {
            vlan: true,
            ..link(index, Some(lower), None)
        };
        let links = [
            link(2, None, None),
            vlan(3, 2),
            link(4, Some(3), Some(5)),
            link(5, None, None),
            link(6, None, Some(5)),
            link(7, None, None),
        ];
        let behind: Vec<u32> = (2..=7).filter(|&i| behind_vlan(&links, i)).collect();
        assert_eq!(behind, [3, 4, 5]);
    }

    #[test]
    fn this_namespace_has_a_loopback_stacked_on_nothing() {
        let links = links().unwrap();
        let lo = links.iter().find(|l| l.index == 1).unwrap();
        assert_eq!((lo.lower, lo.master), (None, None));
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let mut links = Vec::new();
        assert!(parse_dump(&[0xff; 16], &mut links).is_err());
        assert!(parse_dump(&[0; 8], &mut links).is_ok_and(|done| !done));
        assert!(parse_link(&[0; 3]).is_none());
        // An attribute claiming more bytes than there are ends the list.
        let mut body = vec![0u8; IFINFOMSG_LEN];
        body[4] = 9;
        body.extend_from_slice(&[0xff, 0, 5, 0, 1, 0, 0, 0]);
        assert_eq!(parse_link(&body), Some(link(9, None, None)));
    }
}
