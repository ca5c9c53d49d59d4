use std::num::NonZeroU32;
use std::time::Duration;

use crate::error::ConfigError;

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
