//! Who may ask and how often: the access settings validated into the rules a reload
//! replaces, and the form the XDP program reads them in.

use dnsxdp_common::acl::{AccessConfig, DENY_DROP, DENY_REFUSE, MAX_ACL_RULES};

use super::{
    acl::{Acl, Cidr, DenyAction, compile, parse_list},
    ratelimit::RateLimit,
    settings::Settings,
};

/// Who may ask and how often: the settings a reload replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessPolicy {
    pub acl: Acl,
    pub deny: DenyAction,
    /// `None`: no rate limit.
    pub limit: Option<RateLimit>,
    /// Prefixes the rate limit does not apply to.
    pub exempt: Vec<Cidr>,
}

impl AccessPolicy {
    /// The settings as the XDP program reads them.
    pub fn config(&self) -> AccessConfig {
        let mut c = self
            .limit
            .map_or_else(AccessConfig::default, |l| l.config());
        c.deny = match self.deny {
            DenyAction::Drop => DENY_DROP,
            DenyAction::Refuse => DENY_REFUSE,
        };
        c
    }

    /// The `ACL` trie entries.
    pub fn entries(&self) -> Vec<(Cidr, u8)> {
        compile(&self.acl, &self.exempt)
    }

    /// Fails if the entries do not fit the trie.
    pub fn check(&self) -> Result<(), String> {
        let n = self.entries().len();
        if n > MAX_ACL_RULES as usize {
            return Err(format!(
                "{n} allow, deny and exempt prefixes: at most {MAX_ACL_RULES} fit"
            ));
        }
        Ok(())
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        let allow = self.acl.rules().filter(|&(_, allowed)| allowed).count();
        let deny = self.acl.rules().count() - allow;
        let denied = match self.deny {
            DenyAction::Drop => "dropped",
            DenyAction::Refuse => "refused",
        };
        let limit = match &self.limit {
            Some(l) => format!("{l}, {} prefixes exempt", self.exempt.len()),
            None => "no rate limit".into(),
        };
        format!("{allow} allowed and {deny} denied prefixes (denied queries {denied}); {limit}")
    }
}

impl AccessPolicy {
    /// The policy the settings describe, validated; errors name the setting.
    pub fn from_settings(s: &Settings) -> Result<AccessPolicy, String> {
        let list = |key: &str, list: &Option<Vec<String>>| {
            list.as_deref().map(|l| parse_list(key, l)).transpose()
        };
        let allow = list("allow", &s.allow)?;
        let deny = list("deny", &s.deny)?.unwrap_or_default();
        let exempt = list("ratelimit-exempt", &s.ratelimit_exempt)?.unwrap_or_default();
        let limit = match s.ratelimit_qps {
            Some(qps) => Some(RateLimit::new(
                qps,
                s.ratelimit_burst,
                s.ratelimit_v4_prefix,
                s.ratelimit_v6_prefix,
                s.ratelimit_action.unwrap_or_default(),
            )?),
            None => {
                let given = [
                    ("ratelimit-burst", s.ratelimit_burst.is_some()),
                    ("ratelimit-v4-prefix", s.ratelimit_v4_prefix.is_some()),
                    ("ratelimit-v6-prefix", s.ratelimit_v6_prefix.is_some()),
                    ("ratelimit-action", s.ratelimit_action.is_some()),
                    ("ratelimit-exempt", !exempt.is_empty()),
                ];
                if let Some((key, _)) = given.iter().find(|(_, given)| *given) {
                    return Err(format!(
                        "{key}: there is no rate limit; set ratelimit-qps to have one"
                    ));
                }
                None
            }
        };
        let policy = AccessPolicy {
            acl: Acl::new(allow, deny)?,
            deny: s.acl_action.unwrap_or_default(),
            limit,
            exempt,
        };
        policy.check()?;
        Ok(policy)
    }
}
