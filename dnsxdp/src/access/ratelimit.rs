//! Per-client rate limit settings: a token bucket per client prefix.

use std::{fmt, str::FromStr};

use dnsxdp_common::acl::AccessConfig;

pub const DEFAULT_V4_PREFIX: u8 = 32;
pub const DEFAULT_V6_PREFIX: u8 = 64;

/// What a query over the limit gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LimitAction {
    /// Nothing.
    #[default]
    Drop,
    /// Every Nth limited query gets an empty answer with TC=1, so that a real client whose
    /// address is being flooded from can still get through over TCP (as BIND and Knot RRL do);
    /// the others are dropped.
    Slip(u32),
}

impl FromStr for LimitAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let n = match s {
            "drop" => return Ok(LimitAction::Drop),
            _ => s.strip_prefix("slip:").and_then(|n| n.parse::<u32>().ok()),
        };
        match n {
            Some(n) if n > 0 => Ok(LimitAction::Slip(n)),
            _ => Err(format!(
                "invalid rate limit action '{s}': expected drop or slip:N with N at least 1"
            )),
        }
    }
}

impl fmt::Display for LimitAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitAction::Drop => f.write_str("drop"),
            LimitAction::Slip(n) => write!(f, "slip:{n}"),
        }
    }
}

/// A rate limit per client prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub qps: u32,
    /// Queries a client may send at once after being idle.
    pub burst: u32,
    pub v4_prefix: u8,
    pub v6_prefix: u8,
    pub action: LimitAction,
}

impl RateLimit {
    /// Validates the settings; `burst` defaults to one second's worth.
    pub fn new(
        qps: u32,
        burst: Option<u32>,
        v4_prefix: Option<u8>,
        v6_prefix: Option<u8>,
        action: LimitAction,
    ) -> Result<RateLimit, String> {
        let v4_prefix = v4_prefix.unwrap_or(DEFAULT_V4_PREFIX);
        let v6_prefix = v6_prefix.unwrap_or(DEFAULT_V6_PREFIX);
        if qps == 0 {
            return Err("ratelimit-qps: must be more than 0".into());
        }
        if burst == Some(0) {
            return Err("ratelimit-burst: must be more than 0".into());
        }
        if v4_prefix > 32 {
            return Err(format!("ratelimit-v4-prefix: {v4_prefix} is not in 0..=32"));
        }
        if v6_prefix > 128 {
            return Err(format!(
                "ratelimit-v6-prefix: {v6_prefix} is not in 0..=128"
            ));
        }
        Ok(RateLimit {
            qps,
            burst: burst.unwrap_or(qps),
            v4_prefix,
            v6_prefix,
            action,
        })
    }

    /// The kernel's form, without the deny action.
    pub fn config(&self) -> AccessConfig {
        let mut c = AccessConfig::with_limit(
            self.qps,
            self.burst,
            self.v4_prefix as u32,
            self.v6_prefix as u32,
        );
        c.slip = match self.action {
            LimitAction::Drop => 0,
            LimitAction::Slip(n) => n,
        };
        c
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} queries/s, bursts of {}, per /{} (IPv4) and /{} (IPv6), then {}",
            self.qps, self.burst, self.v4_prefix, self.v6_prefix, self.action
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions() {
        assert_eq!("drop".parse(), Ok(LimitAction::Drop));
        assert_eq!("slip:2".parse(), Ok(LimitAction::Slip(2)));
        for bad in ["slip", "slip:0", "slip:x", "tc", ""] {
            let e = bad.parse::<LimitAction>().unwrap_err();
            assert!(e.contains("expected drop or slip:N"), "{e}");
        }
        assert_eq!(LimitAction::Slip(3).to_string(), "slip:3");
    }

    #[test]
    fn settings_are_checked_and_burst_defaults_to_a_second() {
        let r = RateLimit::new(50, None, None, None, LimitAction::Drop).unwrap();
        assert_eq!((r.burst, r.v4_prefix, r.v6_prefix), (50, 32, 64));
        let c = r.config();
        assert_eq!(c.interval_ns, 20_000_000);
        assert_eq!(c.tolerance_ns, 49 * 20_000_000);
        assert_eq!((c.v4_prefix_len, c.v6_prefix_len, c.slip), (128, 64, 0));
        let c = RateLimit::new(1, Some(1), Some(24), Some(48), LimitAction::Slip(2))
            .unwrap()
            .config();
        assert_eq!((c.v4_prefix_len, c.v6_prefix_len, c.slip), (120, 48, 2));
        assert!(RateLimit::new(0, None, None, None, LimitAction::Drop).is_err());
        assert!(RateLimit::new(1, Some(0), None, None, LimitAction::Drop).is_err());
        assert!(RateLimit::new(1, None, Some(33), None, LimitAction::Drop).is_err());
        assert!(RateLimit::new(1, None, None, Some(129), LimitAction::Drop).is_err());
    }
}
