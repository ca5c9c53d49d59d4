//! The one place decisions leave from: a tracing event, metrics (feature
//! `metrics`) and listeners, all from one [`Event`].

use std::borrow::Cow;
use std::hash::Hash;
use std::sync::Arc;

use super::context::{RequestId, with_current};
use super::event::{Event, Listeners, Rejection, RetryStopReason, TimeoutReason};
use super::scope::Shared;
use crate::keyed::KeyedRegistry;

/// The call an event belongs to, taken from the current context.
struct Call {
    shared: Arc<Shared>,
    id: RequestId,
}

fn current_call() -> Option<Call> {
    with_current(|context| Call {
        shared: Arc::clone(&context.shared),
        id: context.request_id().clone(),
    })
}

/// Reports `event`: to tracing, to metrics, to the listeners of the call it
/// happens in.
#[inline(never)]
pub(crate) fn emit(event: &Event<'_>) {
    emit_with(&Listeners::none(), event);
}

/// Reports `event` as [`emit`] does, and to `own` (the listeners of the
/// layer that decided).
#[inline(never)]
pub(crate) fn emit_with(own: &Listeners, event: &Event<'_>) {
    report(None, own, event);
}

/// Reports `event` as [`emit_with`] does, counting it in `decisions`, the
/// metric series of the layer that decided, which it keeps from one
/// decision to the next.
#[inline(never)]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn emit_counted(decisions: &Decisions, own: &Listeners, event: &Event<'_>) {
    report(Some(decisions), own, event);
}

#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
fn report(decisions: Option<&Decisions>, own: &Listeners, event: &Event<'_>) {
    let call = current_call();
    trace(event, call.as_ref());
    #[cfg(feature = "metrics")]
    super::metrics::record(
        event,
        call.as_ref()
            .map(|c| (c.shared.policy.as_ref(), c.shared.route.as_ref())),
        // The layer's series, or else those of the watched call.
        decisions.or(call.as_ref().map(|c| &c.shared.decisions)),
    );
    own.notify(event);
    if let Some(call) = &call {
        call.shared.listeners.notify(event);
    }
}

/// Whether an event no metric counts can be heard, by the rule an
/// [`ObserveLayer`](crate::observe::ObserveLayer) decides to watch a call
/// with: the deciding layer's `own` listeners, the listeners of the call
/// it happens in (the observe layer's, and those of the layers it wraps),
/// or a subscriber that wants the layer's own callsite (`wanted`: the
/// caller's `tracing::enabled!` on its target and level, which tracing
/// caches per callsite). A layer reporting on its success path asks first,
/// so that an event nobody can hear costs nothing.
#[inline]
pub(crate) fn heard(own: &Listeners, wanted: bool) -> bool {
    wanted
        || !own.is_empty()
        || with_current(|context| !context.shared.listeners.is_empty()).unwrap_or(false)
}

impl<K, V> KeyedRegistry<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// Names the layer (`"circuit_breaker"`) and the policy (its name, a
    /// rate limiter's tier) of this registry: a key that finds every place
    /// held is reported as their [`KeyOverflow`](Event::KeyOverflow).
    pub(crate) fn owned_by(self, layer: &'static str, name: Cow<'static, str>) -> Self {
        let max_keys = self.max_keys();
        self.on_overflow(move || {
            emit(&Event::KeyOverflow {
                layer,
                name: &name,
                max_keys,
            });
        })
    }
}

/// The metric series a layer keeps (feature `metrics`); without the
/// feature, nothing.
#[cfg(not(feature = "metrics"))]
#[derive(Debug, Default)]
pub(crate) struct Decisions;

#[cfg(not(feature = "metrics"))]
impl Decisions {
    pub(crate) const fn new() -> Self {
        Self
    }
}

#[cfg(feature = "metrics")]
pub(crate) use super::metrics::Decisions;

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One tracing event per decision, with the documented fields. The call's
/// `policy`, `route` and `request_id` are on every one of them.
macro_rules! event {
    ($call:expr, $level:ident, $target:literal, $($fields:tt)*) => {{
        let call: Option<&Call> = $call;
        tracing::$level!(
            target: $target,
            policy = call.map(|c| c.shared.policy.as_ref()),
            route = call.map(|c| c.shared.route.as_ref()).filter(|r| !r.is_empty()),
            request_id = call.map(|c| tracing::field::display(&c.id)),
            $($fields)*
        )
    }};
}

fn trace(event: &Event<'_>, call: Option<&Call>) {
    match *event {
        Event::RetryScheduled {
            name,
            attempt,
            verdict,
            delay,
        } => event!(
            call,
            debug,
            "steadfast::retry",
            layer = "retry",
            name,
            attempt,
            verdict = verdict.as_str(),
            delay_ms = ms(delay),
            "retry scheduled"
        ),
        Event::RetryStopped {
            name,
            attempt,
            verdict,
            reason,
        } if reason == RetryStopReason::BudgetSpent => event!(
            call,
            warn,
            "steadfast::retry",
            layer = "retry",
            name,
            attempt,
            verdict = verdict.as_str(),
            reason = reason.as_str(),
            "retry budget spent; returning the failure"
        ),
        Event::RetryStopped {
            name,
            attempt,
            verdict,
            reason,
        } => event!(
            call,
            debug,
            "steadfast::retry",
            layer = "retry",
            name,
            attempt,
            verdict = verdict.as_str(),
            reason = reason.as_str(),
            "not retrying"
        ),
        Event::StateChanged {
            name,
            key,
            from,
            to,
            reason,
            open_for,
        } => {
            let (from, to) = (from.as_str(), to.as_str());
            match open_for {
                Some(open_for) => event!(
                    call,
                    warn,
                    "steadfast::circuit_breaker",
                    layer = "circuit_breaker",
                    name,
                    key,
                    from,
                    to,
                    state = to,
                    reason = reason.as_str(),
                    delay_ms = ms(open_for),
                    "circuit breaker opened"
                ),
                None => event!(
                    call,
                    info,
                    "steadfast::circuit_breaker",
                    layer = "circuit_breaker",
                    name,
                    key,
                    from,
                    to,
                    state = to,
                    reason = reason.as_str(),
                    "circuit breaker state changed"
                ),
            }
        }
        Event::Rejected {
            rejection,
            name,
            key,
            retry_after,
        } => {
            let kind = rejection.as_str();
            let delay_ms = retry_after.map(ms);
            match rejection {
                Rejection::CircuitOpen => event!(
                    call,
                    debug,
                    "steadfast::circuit_breaker",
                    layer = "circuit_breaker",
                    name,
                    key,
                    kind,
                    delay_ms,
                    "call refused"
                ),
                Rejection::BulkheadFull => event!(
                    call,
                    debug,
                    "steadfast::bulkhead",
                    layer = "bulkhead",
                    name,
                    key,
                    kind,
                    delay_ms,
                    "call refused"
                ),
                Rejection::RateLimited => event!(
                    call,
                    debug,
                    "steadfast::rate_limit",
                    layer = "rate_limit",
                    name,
                    tier = name,
                    key,
                    kind,
                    delay_ms,
                    "call refused"
                ),
                Rejection::ConcurrencyLimited | Rejection::ClientThrottled => event!(
                    call,
                    debug,
                    "steadfast::adaptive",
                    layer = "adaptive",
                    name,
                    key,
                    kind,
                    delay_ms,
                    "call refused"
                ),
                Rejection::DeadlineExceeded => event!(
                    call,
                    debug,
                    "steadfast::timeout",
                    layer = "total_deadline",
                    name,
                    key,
                    kind,
                    delay_ms,
                    "call refused"
                ),
            }
        }
        Event::KeyOverflow {
            layer,
            name,
            max_keys,
        } => event!(
            call,
            warn,
            "steadfast::keyed",
            layer,
            name,
            max_keys,
            "every key place is held; the call shares the overflow state"
        ),
        Event::LimitChanged {
            name,
            key,
            from,
            to,
            reason,
            min_rtt,
            rtt,
        } => event!(
            call,
            debug,
            "steadfast::adaptive",
            layer = "adaptive",
            name,
            key,
            from,
            to,
            reason = reason.as_str(),
            min_rtt_us = min_rtt.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            rtt_us = rtt.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            "concurrency limit changed"
        ),
        Event::Throttled { tier, key, delay } => event!(
            call,
            debug,
            "steadfast::rate_limit",
            layer = "rate_limit",
            name = tier,
            tier,
            key,
            delay_ms = ms(delay),
            "call delayed to fit its quota"
        ),
        Event::FallbackServed {
            name,
            source,
            verdict,
            reason,
        } => {
            let age_ms = match source {
                super::values::FallbackSource::Cache { age } => ms(*age),
                _ => 0,
            };
            event!(
                call,
                info,
                "steadfast::fallback",
                layer = "fallback",
                name,
                source = source.as_str(),
                verdict = verdict.as_str(),
                reason = reason.as_str(),
                age_ms,
                "fallback answered"
            );
        }
        Event::FallbackMissed {
            name,
            verdict,
            reason,
        } => event!(
            call,
            warn,
            "steadfast::fallback",
            layer = "fallback",
            name,
            source = "none",
            verdict = verdict.as_str(),
            reason = reason.as_str(),
            "no fallback source answered; returning the original outcome"
        ),
        Event::HedgeSent { name, copy, delay } => event!(
            call,
            debug,
            "steadfast::hedge",
            layer = "hedge",
            name,
            copy,
            delay_ms = ms(delay),
            "copy sent"
        ),
        Event::HedgeWon { name, copy: 0 } => event!(
            call,
            debug,
            "steadfast::hedge",
            layer = "hedge",
            name,
            copy = 0,
            "first request won; the copies sent are cancelled"
        ),
        Event::HedgeWon { name, copy } => event!(
            call,
            debug,
            "steadfast::hedge",
            layer = "hedge",
            name,
            copy,
            "hedged copy won"
        ),
        Event::StoreDegraded { store, mode, error } => event!(
            call,
            warn,
            "steadfast::rate_limit",
            layer = "rate_limit",
            store,
            mode,
            error,
            "rate limit store failed; deciding by the fail mode"
        ),
        Event::StoreRecovered {
            store,
            degraded_for,
        } => event!(
            call,
            info,
            "steadfast::rate_limit",
            layer = "rate_limit",
            store,
            degraded_ms = ms(degraded_for),
            "rate limit store recovered"
        ),
        Event::AttemptTimedOut { name, reason } => match reason {
            TimeoutReason::DeadlinePassed => event!(
                call,
                debug,
                "steadfast::timeout",
                layer = "timeout",
                name,
                reason = reason.as_str(),
                "attempt not started: the total deadline passed"
            ),
            TimeoutReason::CutByDeadline => event!(
                call,
                debug,
                "steadfast::timeout",
                layer = "timeout",
                name,
                reason = reason.as_str(),
                "attempt cut by the total deadline"
            ),
            TimeoutReason::Elapsed => event!(
                call,
                debug,
                "steadfast::timeout",
                layer = "timeout",
                name,
                reason = reason.as_str(),
                "attempt timed out"
            ),
        },
        Event::AdmittedAfterWait { name, key, waited } => event!(
            call,
            trace,
            "steadfast::bulkhead",
            layer = "bulkhead",
            name,
            key,
            delay_ms = ms(waited),
            "call admitted after waiting"
        ),
        Event::HedgeRefused {
            layer,
            name,
            copy,
            reason,
        } => event!(
            call,
            debug,
            "steadfast::hedge",
            layer,
            name,
            copy,
            reason = reason.as_str(),
            "copy not sent"
        ),
        Event::HedgeFailed {
            layer,
            name,
            copies,
            verdict,
        } => event!(
            call,
            debug,
            "steadfast::hedge",
            layer,
            name,
            copy = copies,
            verdict = verdict.as_str(),
            "every copy failed"
        ),
        Event::FallbackSkipped {
            name,
            source,
            reason,
        } => event!(
            call,
            debug,
            "steadfast::fallback",
            layer = "fallback",
            name,
            source = source.as_str(),
            reason = reason.as_str(),
            "alternate skipped: the request could not be copied"
        ),
        Event::FaultInjected { name, fault, delay } => event!(
            call,
            debug,
            "steadfast::chaos",
            layer = "chaos",
            name,
            fault = fault.as_str(),
            delay_ms = delay.map_or(0, ms),
            "fault injected"
        ),
        Event::UnknownTier { tier } => event!(
            call,
            debug,
            "steadfast::rate_limit",
            layer = "rate_limit",
            tier,
            "key mapped to an undefined tier; using the default tier"
        ),
        Event::StageStarted {
            layer,
            name,
            stage,
            branches,
        } => event!(
            call,
            trace,
            "steadfast::scatter",
            layer,
            name,
            stage,
            branches,
            "stage started"
        ),
        Event::BranchEnded {
            layer,
            name,
            branch,
            verdict,
        } => event!(
            call,
            trace,
            "steadfast::scatter",
            layer,
            name,
            branch,
            verdict = verdict.map_or("none", |v| v.as_str()),
            "branch ended"
        ),
        Event::Gathered {
            layer,
            name,
            answered,
            failed,
            stop: Some(stop),
        } => event!(
            call,
            debug,
            "steadfast::scatter",
            layer,
            name,
            answered,
            failed,
            stage = stop.stage(),
            reason = ?stop.reason(),
            "stopped early"
        ),
        Event::Gathered {
            layer,
            name,
            answered,
            failed,
            stop: None,
        } => event!(
            call,
            trace,
            "steadfast::scatter",
            layer,
            name,
            answered,
            failed,
            "gathered"
        ),
        // Reported by the observe layer itself, which has the fields.
        Event::SlowCall { .. } | Event::CallEnded { .. } => {}
    }
}
