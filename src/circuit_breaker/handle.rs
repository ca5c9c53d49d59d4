//! A cloneable view of one breaker: read its state, force it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::state::{Breaker, State};
use crate::stripe::Spread;

/// What a breaker and the classifier it judges with share; one per breaker.
#[derive(Debug)]
pub(crate) struct Shared<C> {
    pub(crate) breaker: Breaker,
    pub(crate) classifier: C,
}

/// The breaker a call reports to.
pub(crate) enum Holder<C> {
    /// A plain breaker, through its thread's lane.
    Lane(Spread<Shared<C>>),
    /// A keyed breaker's entry.
    Entry(Arc<Shared<C>>),
}

impl<C> Holder<C> {
    #[inline]
    pub(crate) fn get(&self) -> &Shared<C> {
        match self {
            Holder::Lane(lane) => lane,
            Holder::Entry(shared) => shared,
        }
    }
}

/// Lets a handle reach the breaker without naming the classifier's type.
pub(crate) trait AsBreaker: Send + Sync {
    fn breaker(&self) -> &Breaker;
}

impl<C: Send + Sync> AsBreaker for Shared<C> {
    fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

/// Reads and forces the state of one circuit breaker.
///
/// Get one from [`CircuitBreakerLayer::handle`](super::CircuitBreakerLayer::handle),
/// [`CircuitBreaker::handle`](super::CircuitBreaker::handle) or, per key,
/// [`KeyedCircuitBreakerLayer::get_or_insert`](super::KeyedCircuitBreakerLayer::get_or_insert).
/// Clones see and change the same breaker.
///
/// ```
/// use steadfast::circuit_breaker::{CircuitBreakerLayer, State};
///
/// # fn main() -> Result<(), steadfast::ConfigError> {
/// let layer = CircuitBreakerLayer::builder().build()?;
/// let handle = layer.handle();
/// handle.force_open();
/// assert_eq!(handle.state(), State::ForcedOpen);
/// handle.reset();
/// assert_eq!(handle.state(), State::Closed);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitBreakerHandle {
    shared: Arc<dyn AsBreaker>,
}

impl CircuitBreakerHandle {
    pub(crate) fn new(shared: Arc<dyn AsBreaker>) -> Self {
        Self { shared }
    }

    fn breaker(&self) -> &Breaker {
        self.shared.breaker()
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.breaker().settings.name
    }

    /// The breaker's key, for a keyed breaker: its `Debug` form, without
    /// the quotes of a string key.
    pub fn key(&self) -> Option<&str> {
        self.breaker().key()
    }

    /// The breaker's state.
    ///
    /// An open breaker whose open period has passed reports
    /// [`State::Open`] until the next call moves it to half-open.
    pub fn state(&self) -> State {
        self.breaker().state()
    }

    /// The state and the counts of the window now.
    pub fn snapshot(&self) -> Snapshot {
        let (state, counts, open_remaining) = self.breaker().snapshot();
        Snapshot {
            state,
            calls: counts.calls,
            failures: counts.failures,
            slow_calls: counts.slow,
            open_remaining,
            probes_in_flight: self.breaker().probes_in_flight(),
        }
    }

    /// Refuses every call until [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.breaker()
            .force(State::ForcedOpen, crate::event::TransitionReason::Forced);
    }

    /// Lets every call through and records nothing until
    /// [`reset`](Self::reset) ([`State::Disabled`]).
    pub fn disable(&self) {
        self.breaker()
            .force(State::Disabled, crate::event::TransitionReason::Forced);
    }

    /// Lets every call through and records outcomes, without ever opening,
    /// until [`reset`](Self::reset).
    pub fn metrics_only(&self) {
        self.breaker()
            .force(State::MetricsOnly, crate::event::TransitionReason::Forced);
    }

    /// Closes the breaker with an empty window and the first open duration.
    pub fn reset(&self) {
        self.breaker()
            .force(State::Closed, crate::event::TransitionReason::Reset);
    }
}

impl fmt::Debug for CircuitBreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerHandle")
            .field("name", &self.breaker().settings.name)
            .field("state", &self.state())
            .finish()
    }
}

/// A breaker's state and the counts of its window at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The state.
    pub state: State,
    /// Calls in the window.
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window (0 unless slow-call detection is on).
    pub slow_calls: u64,
    /// How long the breaker stays open, when it is [`State::Open`].
    pub open_remaining: Option<Duration>,
    /// Probe calls under way, when it is [`State::HalfOpen`].
    pub probes_in_flight: u32,
}

impl Snapshot {
    /// Failures in percent of the calls in the window (0 with no calls).
    pub fn failure_rate(&self) -> f64 {
        percent(self.failures, self.calls)
    }

    /// Slow calls in percent of the calls in the window (0 with no calls).
    pub fn slow_call_rate(&self) -> f64 {
        percent(self.slow_calls, self.calls)
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
