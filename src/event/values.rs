//! The values events carry: the state of a circuit breaker, the source of
//! a fallback answer.

use std::fmt;
use std::time::Duration;

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
