use std::num::NonZeroU32;
use std::time::Duration;

use crate::error::ConfigError;

/// The longest refill time governor can hold safely: 2^63 ns, 292 years.
const MAX_SPAN_NANOS: u128 = 1 << 63;

/// How many calls a key may make per period, and how many at once.
///
/// `per_period` calls are allowed per `period`, spread evenly (one every
/// `period / per_period`, the GCRA emission interval); a key that has been
/// quiet may make up to `burst` calls at once (default: `per_period`).
///
/// ```
/// use std::time::Duration;
/// use steadfast::rate_limit::Quota;
///
/// let free = Quota::per_minute(60).burst(10);
/// assert_eq!(free.per_period(), 60);
/// assert_eq!(free.period(), Duration::from_secs(60));
/// assert_eq!(free.burst_size(), 10);
/// assert_eq!(Quota::new(5, Duration::from_secs(2)).burst_size(), 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    per_period: u32,
    period: Duration,
    burst: Option<u32>,
}

impl Quota {
    /// `per_period` calls per `period`.
    pub const fn new(per_period: u32, period: Duration) -> Self {
        Self {
            per_period,
            period,
            burst: None,
        }
    }

    /// `n` calls per second.
    pub const fn per_second(n: u32) -> Self {
        Self::new(n, Duration::from_secs(1))
    }

    /// `n` calls per minute.
    pub const fn per_minute(n: u32) -> Self {
        Self::new(n, Duration::from_secs(60))
    }

    /// `n` calls per hour.
    pub const fn per_hour(n: u32) -> Self {
        Self::new(n, Duration::from_secs(3600))
    }

    /// Up to `burst` calls at once after a quiet spell (default:
    /// `per_period`).
    #[must_use]
    pub const fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Calls allowed per period.
    pub const fn per_period(&self) -> u32 {
        self.per_period
    }

    /// The period.
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// Calls allowed at once after a quiet spell.
    pub const fn burst_size(&self) -> u32 {
        match self.burst {
            Some(burst) => burst,
            None => self.per_period,
        }
    }

    /// Checks the quota of tier `tier` and converts it for governor.
    pub(crate) fn to_governor(self, tier: &str) -> Result<governor::Quota, ConfigError> {
        let rule = |what: &str| format!("{what} (tier `{tier}`)");
        let Some(per_period) = NonZeroU32::new(self.per_period) else {
            return Err(ConfigError::new(
                "rate_limit.quota.per_period",
                self.per_period,
                rule("must be at least 1"),
            ));
        };
        if self.period.is_zero() {
            return Err(ConfigError::new(
                "rate_limit.quota.period",
                self.period,
                rule("must be greater than zero"),
            ));
        }
        let Some(burst) = NonZeroU32::new(self.burst_size()) else {
            return Err(ConfigError::new(
                "rate_limit.quota.burst",
                self.burst_size(),
                rule("must be at least 1"),
            ));
        };
        let interval = self.period / per_period.get();
        // Governor counts in u64 nanoseconds from the limiter's start and
        // adds one emission interval per call to a time up to `burst`
        // intervals ahead: keep that span within half the range, so that
        // it cannot overflow in the life of a process (292 years).
        let within = |span: u128| span <= MAX_SPAN_NANOS;
        if !within(interval.as_nanos()) {
            return Err(ConfigError::new(
                "rate_limit.quota.period",
                self.period,
                rule("one call's share of the period must be at most 292 years"),
            ));
        }
        if !within(interval.as_nanos() * u128::from(burst.get())) {
            return Err(ConfigError::new(
                "rate_limit.quota.burst",
                burst.get(),
                rule("a burst must refill within 292 years (burst × period / per_period)"),
            ));
        }
        governor::Quota::with_period(interval)
            .map(|quota| quota.allow_burst(burst))
            .ok_or_else(|| {
                ConfigError::new(
                    "rate_limit.quota.per_period",
                    self.per_period,
                    rule("allows more than one call per nanosecond"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

    #[test]
    fn quotas_governor_cannot_hold_are_refused() {
        let cases = [
            (Quota::new(1, Duration::MAX), "rate_limit.quota.period"),
            (Quota::new(1, YEAR * 600), "rate_limit.quota.period"),
            (Quota::per_hour(1).burst(u32::MAX), "rate_limit.quota.burst"),
            (
                Quota::per_minute(1).burst(1_000_000_000),
                "rate_limit.quota.burst",
            ),
            (
                Quota::new(1, Duration::from_nanos(1 << 63)).burst(2),
                "rate_limit.quota.burst",
            ),
            (
                Quota::new(u32::MAX, Duration::MAX),
                "rate_limit.quota.burst",
            ),
        ];
        for (quota, field) in cases {
            let err = quota.to_governor("t").unwrap_err();
            assert_eq!(err.field(), field, "{quota:?}");
            assert!(err.rule().contains("years"), "{err}");
        }
    }

    #[test]
    fn long_but_representable_quotas_are_kept() {
        for quota in [
            Quota::new(1, YEAR * 100),
            Quota::per_hour(1).burst(10_000),
            Quota::per_second(1_000_000_000).burst(u32::MAX),
        ] {
            assert!(quota.to_governor("t").is_ok(), "{quota:?}");
        }
    }
}
