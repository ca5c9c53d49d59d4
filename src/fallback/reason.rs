//! Why a fallback fires: the reasons, the set of them it fires on, and the
//! failed outcome a computed answer reads.

use std::fmt;
use std::ops::BitOr;

use crate::classify::Verdict;
use crate::error::BoxError;
pub use crate::event::FallbackReason as Reason;

/// The set of [`Reason`]s a fallback fires on; combine with `|`.
///
/// The default, [`Trigger::ALL`], fires on every failure verdict and every
/// rejection; functional errors (a 404) and successes never fire it.
///
/// ```
/// use steadfast::fallback::{Reason, Trigger};
///
/// let on = Trigger::CIRCUIT_OPEN | Trigger::BULKHEAD_FULL;
/// assert!(on.contains(Reason::CircuitOpen));
/// assert!(!on.contains(Reason::Transient));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Trigger(u8);

impl Trigger {
    /// Transient failures: reset connections, timeouts, 503s.
    pub const TRANSIENT: Trigger = Trigger(Reason::Transient.bit());
    /// Failures that won't pass by retrying.
    pub const FAILURE: Trigger = Trigger(Reason::Failure.bit());
    /// Calls refused by an open circuit.
    pub const CIRCUIT_OPEN: Trigger = Trigger(Reason::CircuitOpen.bit());
    /// Calls refused by a full bulkhead.
    pub const BULKHEAD_FULL: Trigger = Trigger(Reason::BulkheadFull.bit());
    /// Calls refused by a rate limiter.
    pub const RATE_LIMITED: Trigger = Trigger(Reason::RateLimited.bit());
    /// Calls whose total deadline passed.
    pub const DEADLINE_EXCEEDED: Trigger = Trigger(Reason::DeadlineExceeded.bit());
    /// Outcomes a classifier judged rejected without a known marker.
    pub const OTHER_REJECTION: Trigger = Trigger(Reason::OtherRejection.bit());
    /// Both failure verdicts.
    pub const FAILURES: Trigger = Trigger(Self::TRANSIENT.0 | Self::FAILURE.0);
    /// Every rejection.
    pub const REJECTIONS: Trigger = Trigger(
        Self::CIRCUIT_OPEN.0
            | Self::BULKHEAD_FULL.0
            | Self::RATE_LIMITED.0
            | Self::DEADLINE_EXCEEDED.0
            | Self::OTHER_REJECTION.0,
    );
    /// Every failure and every rejection: the default.
    pub const ALL: Trigger = Trigger(Self::FAILURES.0 | Self::REJECTIONS.0);
    /// Nothing; refused by `build`.
    pub const NONE: Trigger = Trigger(0);

    /// Whether the set fires on `reason`.
    #[inline]
    pub const fn contains(self, reason: Reason) -> bool {
        self.0 & reason.bit() != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger::ALL
    }
}

impl BitOr for Trigger {
    type Output = Trigger;

    fn bitor(self, rhs: Trigger) -> Trigger {
        Trigger(self.0 | rhs.0)
    }
}

impl fmt::Debug for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ALL: [Reason; 7] = [
            Reason::Transient,
            Reason::Failure,
            Reason::CircuitOpen,
            Reason::BulkheadFull,
            Reason::RateLimited,
            Reason::DeadlineExceeded,
            Reason::OtherRejection,
        ];
        f.debug_set()
            .entries(
                ALL.iter()
                    .filter(|r| self.contains(**r))
                    .map(Reason::as_str),
            )
            .finish()
    }
}

/// The failed primary outcome a computed fallback answers.
#[derive(Debug)]
pub struct Cause<'a, Res> {
    pub(crate) verdict: Verdict,
    pub(crate) reason: Reason,
    pub(crate) outcome: Result<&'a Res, &'a BoxError>,
}

impl<'a, Res> Cause<'a, Res> {
    /// The verdict on the primary outcome.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Why the fallback fired.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The primary's failed response (a 503), if it answered.
    pub fn response(&self) -> Option<&'a Res> {
        self.outcome.ok()
    }

    /// The primary's error, if it did not answer.
    pub fn error(&self) -> Option<&'a BoxError> {
        self.outcome.err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{CircuitOpen, ClientThrottled, ConcurrencyLimited, Rejection};
    use std::time::Duration;

    #[test]
    fn a_reason_is_read_from_the_one_rejection() {
        let rejected = Verdict::Rejected { retry_after: None };
        let open: BoxError = Box::new(CircuitOpen::new(Duration::from_secs(1)));
        assert_eq!(Reason::of(rejected, Some(&open)), Some(Reason::CircuitOpen));
        let limited: BoxError = Box::new(ConcurrencyLimited::new());
        assert_eq!(
            Reason::of(rejected, Some(&limited)),
            Some(Reason::BulkheadFull)
        );
        let throttled: BoxError = Box::new(ClientThrottled::new());
        assert_eq!(
            Reason::of(rejected, Some(&throttled)),
            Some(Reason::RateLimited)
        );
        let other: BoxError = "refused by a classifier".into();
        assert_eq!(
            Reason::of(rejected, Some(&other)),
            Some(Reason::OtherRejection)
        );
        assert_eq!(Reason::of(rejected, None), Some(Reason::OtherRejection));
        assert_eq!(Reason::of(Verdict::Success, None), None);
        assert_eq!(
            Reason::from(Rejection::DeadlineExceeded),
            Reason::DeadlineExceeded
        );
    }
}
