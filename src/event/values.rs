//! The values events carry: the state of a circuit breaker, the source of
//! a fallback answer and why it fired, where a fan-out stopped.

use std::fmt;
use std::time::Duration;

use crate::classify::Verdict;
use crate::error::{BoxError, Rejection};

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls go through; their outcomes are judged.
    Closed,
    /// Calls are refused until the open period ends.
    Open,
    /// A limited number of probe calls go through; their outcomes close or
    /// reopen the breaker.
    HalfOpen,
    /// Every call is refused until the breaker is reset.
    ForcedOpen,
    /// Forced closed: every call goes through and nothing is recorded.
    Disabled,
    /// Every call goes through; outcomes are recorded but never open the
    /// breaker.
    MetricsOnly,
}

impl State {
    /// A stable lowercase name, as used in events.
    pub const fn as_str(&self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
            State::MetricsOnly => "metrics_only",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Which source gave a fallback answer.
///
/// HTTP responses carry it in their extensions (see
/// [`FallbackLayerBuilder::http`](crate::fallback::FallbackLayerBuilder::http)); other
/// responses can be marked with
/// [`FallbackLayerBuilder::mark`](crate::fallback::FallbackLayerBuilder::mark). A
/// response without it is the primary service's own answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FallbackSource {
    /// The alternate service answered.
    Alternate,
    /// A cached answer to an earlier, identical request.
    Cache {
        /// How long ago the answer was recorded (tokio clock).
        age: Duration,
    },
    /// The static or computed answer.
    Static,
}

impl FallbackSource {
    /// A stable lowercase name, as used in events and in the source header:
    /// `alternate`, `cache` or `static`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            FallbackSource::Alternate => "alternate",
            FallbackSource::Cache { .. } => "cache",
            FallbackSource::Static => "static",
        }
    }
}

impl fmt::Display for FallbackSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

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
    /// ([`serve_stale_after`](crate::fallback::FallbackLayerBuilder::serve_stale_after)),
    /// and a cached answer was served. Fires whenever a budget is set,
    /// whatever the [`Trigger`](crate::fallback::Trigger); the verdict reported with it is
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

    pub(crate) const fn bit(self) -> u8 {
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

/// Why a fan-out ended before every branch had run to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A hard branch failed: later stages were not run.
    HardFailure {
        /// The index of the first hard branch that failed.
        branch: usize,
    },
    /// The deadline passed.
    Deadline,
    /// The quorum or the first `k` answers were in: the rest was cancelled.
    Gathered,
    /// So many branches failed that the quorum could no longer be reached.
    Unreachable,
}

/// Where a fan-out stopped early and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    pub(crate) stage: usize,
    pub(crate) reason: StopReason,
}

impl Stop {
    /// The stage during or after which it stopped: no later stage ran.
    pub fn stage(&self) -> usize {
        self.stage
    }

    /// Why it stopped.
    pub fn reason(&self) -> StopReason {
        self.reason
    }
}
