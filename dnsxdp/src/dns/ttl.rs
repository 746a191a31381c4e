//! How long answers are cached: the caps both caches hold TTLs to.

const DEFAULT_MAX_TTL: u32 = 86400;
const DEFAULT_MAX_NEGATIVE_TTL: u32 = 3600;

/// How long answers are cached, in seconds (Unbound's cache-min-ttl, cache-max-ttl and
/// cache-max-negative-ttl), and the fraction of each TTL they keep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TtlPolicy {
    /// Positive answers with a smaller TTL are cached, and sent, with this one.
    pub min: u32,
    /// Every TTL is capped at this.
    pub max: u32,
    /// NXDOMAIN and NODATA are cached for at most this.
    pub max_negative: u32,
    /// Every TTL is first scaled by this, from above 0 to 1.
    pub factor: f64,
}

impl Default for TtlPolicy {
    fn default() -> Self {
        TtlPolicy {
            min: 0,
            max: DEFAULT_MAX_TTL,
            max_negative: DEFAULT_MAX_NEGATIVE_TTL,
            factor: 1.0,
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
        factor: Option<f64>,
    ) -> anyhow::Result<TtlPolicy> {
        let default = TtlPolicy::default();
        let policy = TtlPolicy {
            min: min.unwrap_or(default.min),
            max: max.unwrap_or(default.max),
            max_negative: max_negative.unwrap_or(default.max_negative),
            factor: factor.unwrap_or(default.factor),
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

impl TtlPolicy {
    /// `ttl` scaled by the factor and rounded down, but not to 0 from a TTL that was not: the
    /// factor shortens an answer's life, it does not make it uncacheable.
    pub fn scaled(&self, ttl: u32) -> u32 {
        match ttl {
            0 => 0,
            ttl => ((f64::from(ttl) * self.factor) as u32).max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_rounds_down_but_keeps_a_ttl_alive() {
        let p = TtlPolicy::new(None, None, None, Some(0.8)).unwrap();
        assert_eq!([600, 5, 1, 0].map(|t| p.scaled(t)), [480, 4, 1, 0]);
        assert_eq!(TtlPolicy::default().scaled(u32::MAX), u32::MAX);
    }
}
