//! Client groups: which group a client is in, by the longest of the groups' prefixes that
//! covers its address. Group 0 holds the clients of no group; the others are numbered from 1
//! in the config's order. The XDP program finds the same group in its `GROUPS` trie.

use std::net::IpAddr;

use dnsxdp_common::{MAX_GROUP_PREFIXES, MAX_GROUPS};

use crate::access::acl::Cidr;

/// The name of group 0.
pub const DEFAULT_GROUP: &str = "default";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Groups {
    /// Group 1's name first.
    names: Vec<String>,
    /// Every group's prefixes, longest first.
    prefixes: Vec<(Cidr, u8)>,
}

impl Groups {
    /// Reads `NAME=CIDR[,CIDR...]` definitions. The errors are for the `client-group` key.
    pub fn parse(given: &[String]) -> Result<Groups, String> {
        let mut groups = Groups::default();
        for s in given {
            let (name, cidrs) = s
                .split_once('=')
                .ok_or_else(|| format!("'{s}' is not NAME=CIDR[,CIDR...]"))?;
            let valid = !name.is_empty()
                && (name.chars()).all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid || name == DEFAULT_GROUP {
                return Err(format!(
                    "'{name}' is not a group name: letters, digits, - and _, and not '{DEFAULT_GROUP}'"
                ));
            }
            if groups.id(name).is_some() {
                return Err(format!("group '{name}' is given twice"));
            }
            if groups.names.len() + 1 >= MAX_GROUPS as usize {
                return Err(format!("more than {} groups", MAX_GROUPS - 1));
            }
            groups.names.push(name.to_string());
            let id = groups.names.len() as u8;
            for cidr in cidrs.split(',').map(str::trim) {
                let cidr: Cidr = cidr.parse()?;
                if let Some((_, other)) = groups.prefixes.iter().find(|(c, _)| *c == cidr) {
                    return Err(format!(
                        "{cidr} is in group '{}' already",
                        groups.name(*other)
                    ));
                }
                groups.prefixes.push((cidr, id));
            }
        }
        if groups.prefixes.len() > MAX_GROUP_PREFIXES as usize {
            return Err(format!("more than {MAX_GROUP_PREFIXES} prefixes"));
        }
        groups
            .prefixes
            .sort_by_key(|(c, _)| std::cmp::Reverse(c.key().1));
        Ok(groups)
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The group of the client at `ip`.
    pub fn of(&self, ip: IpAddr) -> u8 {
        if self.prefixes.is_empty() {
            return 0;
        }
        (self.prefixes.iter())
            .find(|(c, _)| c.covers(ip))
            .map_or(0, |&(_, id)| id)
    }

    /// The group called `name`.
    pub fn id(&self, name: &str) -> Option<u8> {
        let at = self.names.iter().position(|n| n == name)?;
        Some(at as u8 + 1)
    }

    /// The name of group `id`.
    pub fn name(&self, id: u8) -> &str {
        match id {
            0 => DEFAULT_GROUP,
            id => self
                .names
                .get(usize::from(id) - 1)
                .map_or("", String::as_str),
        }
    }

    /// Every group's id, the default's included.
    pub fn ids(&self) -> impl Iterator<Item = u8> {
        0..=self.names.len() as u8
    }

    /// The prefixes and their groups, for the kernel's trie.
    pub fn prefixes(&self) -> &[(Cidr, u8)] {
        &self.prefixes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(given: &[&str]) -> Result<Groups, String> {
        Groups::parse(&given.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_longest_prefix_decides() {
        let g = parse(&["kids=198.18.3.0/24,fd00:3::/64", "guest=198.18.0.0/16"]).unwrap();
        let of = |s: &str| g.name(g.of(s.parse().unwrap())).to_string();
        assert_eq!(of("198.18.3.7"), "kids");
        assert_eq!(of("::ffff:198.18.3.7"), "kids");
        assert_eq!(of("fd00:3::9"), "kids");
        assert_eq!(of("198.18.4.1"), "guest");
        assert_eq!(of("198.19.0.1"), "default");
        assert_eq!(of("fd00:4::1"), "default");
        assert_eq!((g.id("guest"), g.ids().count()), (Some(2), 3));
    }

    #[test]
    fn bad_definitions_say_what_is_wrong() {
        for (given, error) in [
            (&["kids"][..], "'kids' is not NAME=CIDR[,CIDR...]"),
            (&["k ids=198.18.0.0/24"], "'k ids' is not a group name"),
            (&["default=198.18.0.0/24"], "'default' is not a group name"),
            (
                &["a=198.18.0.0/24", "a=198.19.0.0/24"],
                "group 'a' is given twice",
            ),
            (
                &["a=198.18.0.0/24", "b=198.18.0.0/24"],
                "198.18.0.0/24 is in group 'a' already",
            ),
            (&["a=198.18.0.1/24"], "bits set past /24"),
        ] {
            let e = parse(given).unwrap_err();
            assert!(e.contains(error), "{given:?}: {e}");
        }
        assert!(parse(&[]).unwrap().is_empty());
    }
}
