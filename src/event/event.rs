//! The decisions the layers report, as values a listener can read.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::values::{FallbackSource, State};
use super::values::{Reason, Stop};
use crate::classify::Verdict;
pub use crate::error::Rejection;

/// One decision of a layer, as listeners see it.
///
/// Events are made only where a layer decides something (a retry, a
/// transition, a refusal, a fallback, a hedge, a timeout, an injected
/// fault, a slow call) and once at the end of each call an
/// [`ObserveLayer`](crate::observe::ObserveLayer) watches; the success path of the
/// other layers makes none, but for a scatter, whose every stage, branch
/// and gathering is a decision, made only when someone can hear it: the
/// listeners of the call it happens in, or a subscriber that wants
/// `steadfast::scatter` at TRACE (DEBUG for an early stop). Inside a call
/// watched by an
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
        /// Why.
        reason: RetryStopReason,
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
        /// Why.
        reason: TransitionReason,
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
        /// The key, for a keyed limiter.
        key: Option<&'a str>,
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
        reason: Reason,
    },
    /// No fallback source answered; the original outcome goes back.
    FallbackMissed {
        /// The fallback layer's name.
        name: &'a str,
        /// The verdict of the call.
        verdict: Verdict,
        /// Why the fallback fired.
        reason: Reason,
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
    /// A copy gave the answer after at least one hedged copy was sent;
    /// the others are cancelled. Copy 0, the first request, winning says
    /// the copies were spent for nothing. The first request answering
    /// before any copy left makes no event.
    HedgeWon {
        /// The layer's name.
        name: &'a str,
        /// The copy that won: 0 for the first request, then from 1.
        copy: u32,
    },
    /// An adaptive concurrency limit moved.
    LimitChanged {
        /// The limiter's name.
        name: &'a str,
        /// The key, for a keyed limiter.
        key: Option<&'a str>,
        /// The limit it had.
        from: usize,
        /// The limit it has now (the minimum while it probes).
        to: usize,
        /// Why.
        reason: LimitReason,
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
    /// An attempt timeout ended an attempt, or the total deadline ended
    /// or refused it.
    AttemptTimedOut {
        /// The timeout layer's name.
        name: &'a str,
        /// What ended it.
        reason: TimeoutReason,
    },
    /// A bulkhead admitted a call that waited for its permit.
    AdmittedAfterWait {
        /// The bulkhead's name.
        name: &'a str,
        /// Its key, for a keyed bulkhead.
        key: Option<&'a str>,
        /// How long the call waited.
        waited: Duration,
    },
    /// A hedge (or race) did not send a copy it would have sent.
    HedgeRefused {
        /// `hedge` or `race`.
        layer: &'static str,
        /// The layer's name.
        name: &'a str,
        /// The copy not sent, from 1.
        copy: u32,
        /// Why.
        reason: HedgeRefusal,
    },
    /// Every copy of a hedged (or raced) request failed; the most telling
    /// failure goes back.
    HedgeFailed {
        /// `hedge` or `race`.
        layer: &'static str,
        /// The layer's name.
        name: &'a str,
        /// The copies sent, the first request included.
        copies: u32,
        /// The verdict of the failure returned.
        verdict: Verdict,
    },
    /// A fallback source was passed over for a call it could have answered.
    FallbackSkipped {
        /// The fallback layer's name.
        name: &'a str,
        /// The source passed over.
        source: &'a FallbackSource,
        /// Why.
        reason: SkipReason,
    },
    /// A chaos layer injected a fault or a delay.
    FaultInjected {
        /// The chaos layer's name.
        name: &'a str,
        /// The fault; [`ChaosFault::None`] for a delay alone.
        fault: ChaosFault,
        /// The delay added, if any.
        delay: Option<Duration>,
    },
    /// A rate limiter's tier function named a tier that does not exist;
    /// the default tier applies.
    UnknownTier {
        /// The default tier, which applies instead.
        tier: &'a str,
    },
    /// A stage of a scatter (or staged fan-out) sent its branches.
    StageStarted {
        /// `scatter` or `stages`.
        layer: &'static str,
        /// The layer's name.
        name: &'a str,
        /// The stage, from 0.
        stage: usize,
        /// How many branches it sent.
        branches: usize,
    },
    /// A branch of a scatter (or staged fan-out) ended.
    BranchEnded {
        /// `scatter` or `stages`.
        layer: &'static str,
        /// The layer's name.
        name: &'a str,
        /// The branch, from 0, across stages.
        branch: usize,
        /// Its verdict; `None` when it was cancelled or not sent.
        verdict: Option<Verdict>,
    },
    /// A scatter (or staged fan-out) gathered its answers.
    Gathered {
        /// `scatter` or `stages`.
        layer: &'static str,
        /// The layer's name.
        name: &'a str,
        /// Branches that answered.
        answered: usize,
        /// Branches that failed or timed out.
        failed: usize,
        /// Where and why it stopped early, if it did.
        stop: Option<Stop>,
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
            Event::AttemptTimedOut { .. } => "attempt_timed_out",
            Event::AdmittedAfterWait { .. } => "admitted_after_wait",
            Event::HedgeRefused { .. } => "hedge_refused",
            Event::HedgeFailed { .. } => "hedge_failed",
            Event::FallbackSkipped { .. } => "fallback_skipped",
            Event::FaultInjected { .. } => "fault_injected",
            Event::UnknownTier { .. } => "unknown_tier",
            Event::StageStarted { .. } => "stage_started",
            Event::BranchEnded { .. } => "branch_ended",
            Event::Gathered { .. } => "gathered",
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

/// Typed reasons: each an enum with a stable lowercase name (`as_str`, and
/// `Display`), the text tracing fields and metric labels carry, and equal
/// to that text (`reason == "budget_spent"`).
macro_rules! reasons {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// A stable lowercase name, as used in tracing fields and
            /// metric labels.
            pub const fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.as_str()
            }
        }
    };
}

reasons! {
    /// Why retry returned a failure without trying again
    /// ([`Event::RetryStopped`]).
    RetryStopReason {
        /// Every attempt the policy allows was made.
        AttemptsExhausted => "attempts_exhausted",
        /// The request could not be copied for another attempt.
        NotReplayable => "not_replayable",
        /// The total deadline leaves no time for another attempt.
        Deadline => "deadline",
        /// The retry budget had nothing left to spend.
        BudgetSpent => "budget_spent",
        /// The callee asked to be retried later than the policy allows.
        RetryAfterTooLong => "retry_after_too_long",
    }
}

reasons! {
    /// Why a circuit breaker changed state ([`Event::StateChanged`]).
    TransitionReason {
        /// The failure rate of the window reached its threshold.
        FailureRate => "failure_rate",
        /// The slow-call rate of the window reached its threshold.
        SlowCallRate => "slow_call_rate",
        /// A run of failed calls reached its length.
        ConsecutiveFailures => "consecutive_failures",
        /// A failure with a retry-after hint ended a run long enough to
        /// open on it.
        RetryAfter => "retry_after",
        /// The failure rate of the half-open probes reached its threshold.
        ProbeFailureRate => "probe_failure_rate",
        /// The slow-call rate of the half-open probes reached its threshold.
        ProbeSlowCallRate => "probe_slow_call_rate",
        /// A half-open probe failed with a retry-after hint.
        ProbeRetryAfter => "probe_retry_after",
        /// Enough half-open probes passed.
        ProbesPassed => "probes_passed",
        /// The open duration elapsed: probes may go through.
        OpenElapsed => "open_elapsed",
        /// The half-open probes did not end in time.
        HalfOpenTimeout => "half_open_timeout",
        /// A handle forced the state.
        Forced => "forced",
        /// A handle reset the breaker.
        Reset => "reset",
    }
}

reasons! {
    /// Why an adaptive concurrency limit moved ([`Event::LimitChanged`]).
    LimitReason {
        /// A window's measurements.
        Window => "window",
        /// The no-load round-trip time is measured again, at the minimum
        /// limit.
        Probe => "probe",
        /// The measurement at the minimum limit ended.
        ProbeDone => "probe_done",
    }
}

reasons! {
    /// What ended an attempt ([`Event::AttemptTimedOut`]).
    TimeoutReason {
        /// The attempt timeout passed: the attempt may be retried.
        Elapsed => "attempt_timeout",
        /// The total deadline, earlier than the attempt timeout, passed
        /// while the attempt ran.
        CutByDeadline => "cut_by_deadline",
        /// The total deadline had passed before the attempt started: it
        /// was not sent.
        DeadlinePassed => "deadline_passed",
    }
}

reasons! {
    /// Why a hedge (or race) did not send a copy ([`Event::HedgeRefused`]).
    HedgeRefusal {
        /// The request could not be copied.
        NotReplayable => "not_replayable",
        /// The classifier says copies of the request must not overlap (it
        /// is not idempotent): no copy on a timer.
        NotIdempotent => "not_idempotent",
        /// The only target is failing, refusing or asking for a wait;
        /// another copy would add to its load.
        TargetFailing => "target_failing",
        /// The total deadline passed.
        Deadline => "deadline",
        /// The retry budget had nothing left to spend.
        BudgetSpent => "budget_spent",
    }
}

reasons! {
    /// Why a fallback source was passed over ([`Event::FallbackSkipped`]).
    SkipReason {
        /// The request could not be copied for the alternate service.
        NotReplayable => "not_replayable",
    }
}

reasons! {
    /// The fault a chaos layer injected ([`Event::FaultInjected`]).
    ChaosFault {
        /// No fault: only a delay.
        None => "none",
        /// An [`InjectedFault`](crate::chaos::InjectedFault) error.
        Error => "error",
        /// A call that never ends.
        Hang => "hang",
        /// The configured response instead of the inner service's.
        Respond => "respond",
    }
}
