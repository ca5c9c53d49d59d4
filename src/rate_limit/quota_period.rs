//! Quotas per calendar period: calls per UTC day or per UTC month, counted
//! beside a tier's rate by a shared store.

use std::fmt;

use crate::error::ConfigError;

/// The calendar period of a [`PeriodQuota`], in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Period {
    /// From midnight to midnight, UTC.
    Day,
    /// From the first of the month at midnight to the first of the next,
    /// UTC.
    Month,
}

impl Period {
    /// `day` or `month`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }

    /// The code the store's script reads.
    pub(crate) const fn code(self) -> u8 {
        match self {
            Period::Day => 1,
            Period::Month => 2,
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// At most `limit` calls per calendar [`Period`], for each key of a tier.
///
/// A call is refused once either the tier's rate or this quota is spent; the
/// refusal's retry-after is the time left until the period ends.
///
/// ```
/// use steadfast::rate_limit::{Period, PeriodQuota};
///
/// let free = PeriodQuota::per_month(10_000);
/// assert_eq!(free.limit(), 10_000);
/// assert_eq!(free.period(), Period::Month);
/// assert_eq!(PeriodQuota::per_day(500).period(), Period::Day);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeriodQuota {
    limit: u64,
    period: Period,
}

impl PeriodQuota {
    /// `limit` calls per UTC day.
    pub const fn per_day(limit: u64) -> Self {
        Self {
            limit,
            period: Period::Day,
        }
    }

    /// `limit` calls per UTC calendar month.
    pub const fn per_month(limit: u64) -> Self {
        Self {
            limit,
            period: Period::Month,
        }
    }

    /// Calls allowed per period.
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// The period.
    pub const fn period(&self) -> Period {
        self.period
    }

    /// The store counts in exact doubles: limits must stay below 2^53.
    pub(crate) fn check(&self, tier: &str) -> Result<(), ConfigError> {
        const MAX: u64 = 1 << 53;
        if self.limit == 0 || self.limit >= MAX {
            return Err(ConfigError::new(
                "rate_limit.store.quota.limit",
                self.limit,
                format!("must be between 1 and 2^53 - 1 (tier `{tier}`)"),
            ));
        }
        Ok(())
    }
}
