//! The decisions the layers report, as values a listener can read.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::values::{FallbackSource, State};
use crate::classify::Verdict;

/// A refusal to call at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// A circuit breaker is open.
    CircuitOpen,
    /// A bulkhead is full.
    BulkheadFull,
    /// A rate limiter refused the call.
    RateLimited,
    /// The total deadline passed.
    DeadlineExceeded,
    /// An adaptive concurrency limit had no room.
    ConcurrencyLimited,
    /// Client-side adaptive throttling refused the call.
    ClientThrottled,
}

impl Rejection {
    /// A stable lowercase name, as used in events and metric labels.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Rejection::CircuitOpen => "circuit_open",
            Rejection::BulkheadFull => "bulkhead_full",
            Rejection::RateLimited => "rate_limited",
            Rejection::DeadlineExceeded => "deadline_exceeded",
            Rejection::ConcurrencyLimited => "concurrency_limited",
            Rejection::ClientThrottled => "client_throttled",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One decision of a layer, as listeners see it.
///
/// Events are made only where a layer decides something (a retry, a
/// transition, a refusal, a fallback, a hedge, a slow call) and once at the
/// end of each call an [`ObserveLayer`](crate::observe::ObserveLayer) watches; the
/// success path of the other layers makes none. Inside a call watched by an
/// [`ObserveLayer`](crate::observe::ObserveLayer), [`CallContext::current`](super::CallContext::current)
/// gives the policy, route and request id of the call from a listener.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Retry will send another attempt after `delay`.
    RetryScheduled {
        /// The retry layer's name.
        name: &'a str,
        /// The attempt that failed, from 1.
        attempt: u32,
        /// Its verdict.
        verdict: Verdict,
        /// The wait before the next attempt.
        delay: Duration,
    },
    /// Retry returns a failure without trying again.
    RetryStopped {
        /// The retry layer's name.
        name: &'a str,
        /// The last attempt, from 1.
        attempt: u32,
        /// Its verdict.
        verdict: Verdict,
        /// Why: `budget_spent`, `attempts_exhausted`, `deadline`, `not_replayable`,
        /// `retry_after_too_long`.
        reason: &'static str,
    },
    /// A circuit breaker changed state.
    StateChanged {
        /// The breaker's name.
        name: &'a str,
        /// Its key, for a keyed breaker.
        key: Option<&'a str>,
        /// The state it left.
        from: State,
        /// The state it entered.
        to: State,
        /// Why: `failure_rate`, `slow_call_rate`, `consecutive_failures`,
        /// `retry_after`, `probe_failure_rate`, `probe_slow_call_rate`,
        /// `probe_retry_after`, `probes_passed`, `open_elapsed`,
        /// `half_open_timeout`, `forced`, `reset`, ...
        reason: &'static str,
        /// How long it stays open, when it opened.
        open_for: Option<Duration>,
    },
    /// A layer refused a call.
    Rejected {
        /// What refused it.
        rejection: Rejection,
        /// The refusing layer's name (a rate limiter's tier).
        name: &'a str,
        /// The key, for keyed layers that know it.
        key: Option<&'a str>,
        /// When the caller may try again, if known.
        retry_after: Option<Duration>,
    },
    /// A keyed layer found every place of its registry held by calls or
    /// handles: the call's key shares the one overflow state of the
    /// registry (one breaker, bulkhead or limiter for all such keys).
    KeyOverflow {
        /// The layer: `circuit_breaker`, `bulkhead` or `rate_limit`.
        layer: &'static str,
        /// The layer's name (a rate limiter's tier).
        name: &'a str,
        /// The registry's bound.
        max_keys: u64,
    },
    /// A rate limiter delayed a call to fit its quota.
    Throttled {
        /// The tier whose quota applied.
        tier: &'a str,
        /// How long the call waits.
        delay: Duration,
    },
    /// A fallback source answered a failed or refused call.
    FallbackServed {
        /// The fallback layer's name.
        name: &'a str,
        /// Which source answered.
        source: &'a FallbackSource,
        /// The verdict of the call it answered for.
        verdict: Verdict,
        /// Why the fallback fired (the rejection or failure kind).
        reason: &'static str,
    },
    /// No fallback source answered; the original outcome goes back.
    FallbackMissed {
        /// The fallback layer's name.
        name: &'a str,
        /// The verdict of the call.
        verdict: Verdict,
        /// Why the fallback fired.
        reason: &'static str,
    },
    /// A hedge (or race) sent another copy of the request.
    HedgeSent {
        /// The layer's name.
        name: &'a str,
        /// The copy, from 1 (0 is the first request).
        copy: u32,
        /// How long after the first request it left.
        delay: Duration,
    },
    /// A hedged copy (not the first request) gave the answer.
    HedgeWon {
        /// The layer's name.
        name: &'a str,
        /// The copy that won, from 1.
        copy: u32,
    },
    /// An adaptive concurrency limit moved.
    LimitChanged {
        /// The limiter's name.
        name: &'a str,
        /// The limit it had.
        from: usize,
        /// The limit it has now (the minimum while it probes).
        to: usize,
        /// Why: `window` (a window's measurements), `probe` (the no-load
        /// round-trip time is measured again, at the minimum limit),
        /// `probe_done`.
        reason: &'static str,
        /// The no-load round-trip time it estimates, if known.
        min_rtt: Option<Duration>,
        /// The mean round-trip time of the last window, if any call answered.
        rtt: Option<Duration>,
    },
    /// A watched call took longer than its route's threshold.
    SlowCall {
        /// The policy's name.
        policy: &'a str,
        /// The route.
        route: &'a str,
        /// How long the call took.
        elapsed: Duration,
        /// The threshold it passed.
        threshold: Duration,
        /// Its verdict.
        verdict: Verdict,
    },
    /// A rate limiter's shared store failed; its limiter decides by its
    /// fail mode until the store answers again.
    StoreDegraded {
        /// The store's namespace.
        store: &'a str,
        /// The fail mode now in force: `fail_open`, `fail_closed`, `local`.
        mode: &'static str,
        /// The failure.
        error: &'a str,
    },
    /// A rate limiter's shared store answered again after failing.
    StoreRecovered {
        /// The store's namespace.
        store: &'a str,
        /// How long it was degraded.
        degraded_for: Duration,
    },
    /// A watched call ended.
    CallEnded {
        /// The policy's name.
        policy: &'a str,
        /// The route.
        route: &'a str,
        /// Its verdict.
        verdict: Verdict,
        /// Attempts made (1 without retry).
        attempts: u32,
        /// How long it took; zero when nothing asked for the time.
        elapsed: Duration,
    },
}

impl Event<'_> {
    /// A stable lowercase name of the kind of event.
    pub const fn kind(&self) -> &'static str {
        match self {
            Event::RetryScheduled { .. } => "retry_scheduled",
            Event::RetryStopped { .. } => "retry_stopped",
            Event::StateChanged { .. } => "state_changed",
            Event::Rejected { .. } => "rejected",
            Event::KeyOverflow { .. } => "key_overflow",
            Event::Throttled { .. } => "throttled",
            Event::FallbackServed { .. } => "fallback_served",
            Event::FallbackMissed { .. } => "fallback_missed",
            Event::HedgeSent { .. } => "hedge_sent",
            Event::HedgeWon { .. } => "hedge_won",
            Event::LimitChanged { .. } => "limit_changed",
            Event::SlowCall { .. } => "slow_call",
            Event::StoreDegraded { .. } => "store_degraded",
            Event::StoreRecovered { .. } => "store_recovered",
            Event::CallEnded { .. } => "call_ended",
        }
    }
}

type ListenerFn = dyn Fn(&Event<'_>) + Send + Sync;

/// Callbacks that receive [`Event`]s.
///
/// Cloning is cheap (one `Arc`); an empty set costs one branch at each
/// decision and nothing on the success path.
#[derive(Clone, Default)]
pub struct Listeners {
    all: Option<Arc<[Arc<ListenerFn>]>>,
}

impl Listeners {
    /// No listener.
    pub const fn none() -> Self {
        Self { all: None }
    }

    /// These listeners and `listener`.
    #[must_use]
    pub fn with(self, listener: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        let mut all: Vec<Arc<ListenerFn>> = self.all.map(|a| a.to_vec()).unwrap_or_default();
        all.push(Arc::new(listener));
        Self {
            all: Some(all.into()),
        }
    }

    /// Whether there is no listener.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.all.is_none()
    }

    /// Calls every listener with `event`, in the order they were added.
    #[inline]
    pub fn notify(&self, event: &Event<'_>) {
        if let Some(all) = &self.all {
            for listener in all.iter() {
                listener(event);
            }
        }
    }
}

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listeners")
            .field("count", &self.all.as_ref().map_or(0, |a| a.len()))
            .finish()
    }
}
