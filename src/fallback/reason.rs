//! Why a fallback fires: the reasons, the set of them it fires on, and the
//! failed outcome a computed answer reads.

use std::fmt;
use std::ops::BitOr;

use crate::classify::Verdict;
use crate::error::{BoxError, Rejection};

/// Why a fallback fired: the kind of failure or rejection of the primary
/// call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// A transient failure ([`Verdict::Transient`]).
    Transient,
    /// A failure ([`Verdict::Failure`]).
    Failure,
    /// An open circuit refused the call ([`CircuitOpen`]).
    CircuitOpen,
    /// A full bulkhead or an adaptive concurrency limit refused the call
    /// ([`BulkheadFull`], [`ConcurrencyLimited`]).
    BulkheadFull,
    /// A rate limiter or client-side throttling refused the call
    /// ([`RateLimited`], [`ClientThrottled`]).
    RateLimited,
    /// The total deadline passed ([`DeadlineExceeded`]).
    DeadlineExceeded,
    /// A classifier judged the outcome [`Verdict::Rejected`] without one of
    /// the crate's rejection markers.
    OtherRejection,
    /// The call waited longer than its latency budget
    /// ([`serve_stale_after`](super::FallbackLayerBuilder::serve_stale_after)),
    /// and a cached answer was served. Fires whenever a budget is set,
    /// whatever the [`Trigger`]; the verdict reported with it is
    /// [`Verdict::Transient`], as for an attempt that timed out.
    LatencyBudget,
}

// The markers the reasons name.
#[cfg(doc)]
use crate::error::{
    BulkheadFull, CircuitOpen, ClientThrottled, ConcurrencyLimited, DeadlineExceeded, RateLimited,
};

impl Reason {
    /// Why an outcome judged `verdict` failed, or `None` for an answer.
    pub fn of(verdict: Verdict, error: Option<&BoxError>) -> Option<Reason> {
        match verdict {
            Verdict::Transient { .. } => Some(Reason::Transient),
            Verdict::Failure => Some(Reason::Failure),
            Verdict::Rejected { .. } => Some(
                error
                    .and_then(|err| Rejection::of(&**err))
                    .map_or(Reason::OtherRejection, |(rejection, _)| rejection.into()),
            ),
            _ => None,
        }
    }

    /// A stable lowercase name, as used in events.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Reason::Transient => "transient",
            Reason::Failure => "failure",
            Reason::CircuitOpen => "circuit_open",
            Reason::BulkheadFull => "bulkhead_full",
            Reason::RateLimited => "rate_limited",
            Reason::DeadlineExceeded => "deadline_exceeded",
            Reason::OtherRejection => "rejected",
            Reason::LatencyBudget => "latency_budget",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Reason::Transient => 1,
            Reason::Failure => 1 << 1,
            Reason::CircuitOpen => 1 << 2,
            Reason::BulkheadFull => 1 << 3,
            Reason::RateLimited => 1 << 4,
            Reason::DeadlineExceeded => 1 << 5,
            Reason::OtherRejection => 1 << 6,
            Reason::LatencyBudget => 1 << 7,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A full bulkhead and an adaptive concurrency limit are one reason; a rate
/// limiter and client-side throttling another.
impl From<Rejection> for Reason {
    fn from(rejection: Rejection) -> Reason {
        match rejection {
            Rejection::CircuitOpen => Reason::CircuitOpen,
            Rejection::BulkheadFull | Rejection::ConcurrencyLimited => Reason::BulkheadFull,
            Rejection::RateLimited | Rejection::ClientThrottled => Reason::RateLimited,
            Rejection::DeadlineExceeded => Reason::DeadlineExceeded,
        }
    }
}

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
    use crate::error::{CircuitOpen, ClientThrottled, ConcurrencyLimited};
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
