//! How long answers are cached: the caps both caches hold TTLs to.

const DEFAULT_MAX_TTL: u32 = 86400;
const DEFAULT_MAX_NEGATIVE_TTL: u32 = 3600;

/// How long answers are cached, in seconds (Unbound's cache-min-ttl, cache-max-ttl and
/// cache-max-negative-ttl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TtlPolicy {
    /// Positive answers with a smaller TTL are cached, and sent, with this one.
    pub min: u32,
    /// Every TTL is capped at this.
    pub max: u32,
    /// NXDOMAIN and NODATA are cached for at most this.
    pub max_negative: u32,
}

impl Default for TtlPolicy {
    fn default() -> Self {
        TtlPolicy {
            min: 0,
            max: DEFAULT_MAX_TTL,
            max_negative: DEFAULT_MAX_NEGATIVE_TTL,
        }
    }
}

impl TtlPolicy {
    /// The policy with the limits set, defaults elsewhere; a minimum over the maximum is an
    /// error naming the keys.
    pub fn new(
        min: Option<u32>,
        max: Option<u32>,
        max_negative: Option<u32>,
    ) -> anyhow::Result<TtlPolicy> {
        let default = TtlPolicy::default();
        let policy = TtlPolicy {
            min: min.unwrap_or(default.min),
            max: max.unwrap_or(default.max),
            max_negative: max_negative.unwrap_or(default.max_negative),
        };
        if policy.min > policy.max {
            anyhow::bail!(
                "min-ttl: {} is more than max-ttl ({})",
                policy.min,
                policy.max
            );
        }
        Ok(policy)
    }
}
