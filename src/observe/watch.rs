//! Watching one call: whether to, its span and context, and its end
//! (span fields, slow-call alert, call metrics, `SlowCall` and `CallEnded`).

use std::sync::Arc;
use std::task::Poll;

use tracing::Span;

use crate::classify::{Classify, judge};
use crate::event::Event;
use crate::event::context::{Context, RequestId, enter};
use crate::event::scope::Shared;

/// Whether a call can go through untouched: no listener of its own or of
/// a layer it wraps, no threshold, no call metrics, and a subscriber (if
/// any) that wants none of the observe layer's own callsites (the `call`
/// span at DEBUG on `steadfast::observe`, and the attempt events at TRACE
/// below it). tracing caches that interest per callsite: with a
/// subscriber at INFO, this is one comparison with its maximum level.
#[inline]
pub(super) fn nobody_looks(shared: &Shared, listening: bool) -> bool {
    !shared.watches()
        && !listening
        && !tracing::enabled!(target: "steadfast::observe", tracing::Level::DEBUG)
}

/// The span and context of a watched call, and the classifier's facts.
#[inline(never)]
pub(super) fn start_watch<C, Req, Res, E>(
    shared: &Arc<Shared>,
    classifier: &C,
    id: Option<RequestId>,
    request: &Req,
) -> (Box<Context>, C::Facts)
where
    C: Classify<Req, Res, E>,
{
    let span = tracing::debug_span!(
        target: "steadfast::observe",
        "call",
        policy = %shared.policy,
        route = %shared.route,
        request_id = tracing::field::Empty,
        verdict = tracing::field::Empty,
        attempts = tracing::field::Empty,
        elapsed_ms = tracing::field::Empty,
    );
    let context = Box::new(Context::new(Arc::clone(shared), id, span));
    if !context.span.is_disabled() {
        context
            .span
            .record("request_id", tracing::field::display(context.request_id()));
    }
    (context, classifier.facts(request))
}

/// Runs `f` in the call's span and context, if it has them.
#[inline]
pub(super) fn in_span<T>(context: &mut Option<Box<Context>>, f: impl FnOnce() -> T) -> T {
    if context.is_none() {
        return f();
    }
    let span = match context {
        Some(c) if !c.span.is_disabled() => Some(c.span.clone()),
        _ => None,
    };
    let _entered = span.as_ref().map(Span::enter);
    enter(context, f)
}

/// Polls in the call's span and context.
#[inline(never)]
pub(super) fn poll_in_context<T>(
    context: &mut Option<Box<Context>>,
    poll: impl FnOnce() -> Poll<T>,
) -> Poll<T> {
    in_span(context, poll)
}

/// Reports a watched call that ended: span fields, slow-call alert,
/// metrics, `SlowCall` and `CallEnded` for listeners, which run in the
/// call's context. Takes the context out of `slot`.
#[inline(never)]
pub(super) fn finish<C, Req, T, E>(
    classifier: &C,
    facts: &C::Facts,
    slot: &mut Option<Box<Context>>,
    outcome: Result<&T, &E>,
) where
    C: Classify<Req, T, E>,
    E: 'static,
{
    let Some(context) = slot.as_deref() else {
        return;
    };
    let verdict = judge(classifier, facts, outcome);
    let elapsed = context.start.elapsed();
    let span = &context.span;
    let attempts = context.attempts.get().max(1);
    let shared = &*context.shared;
    let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    span.record("verdict", verdict.as_str());
    span.record("attempts", attempts);
    span.record("elapsed_ms", elapsed_ms);
    #[cfg(feature = "metrics")]
    if let Some(metrics) = &shared.metrics {
        if context.attempts.get() == 0 {
            // No retry layer counted attempts: the call was one attempt.
            metrics.attempt(verdict, elapsed);
        }
        metrics.call(verdict, elapsed);
    }
    let slow = shared.slow_call.filter(|threshold| elapsed >= *threshold);
    if let Some(threshold) = slow {
        tracing::warn!(
            target: "steadfast::observe",
            policy = %shared.policy,
            route = %shared.route,
            request_id = %context.request_id(),
            verdict = verdict.as_str(),
            elapsed_ms,
            threshold_ms = u64::try_from(threshold.as_millis()).unwrap_or(u64::MAX),
            "slow call"
        );
        #[cfg(feature = "metrics")]
        crate::event::metrics::record(
            &Event::SlowCall {
                policy: &shared.policy,
                route: &shared.route,
                elapsed,
                threshold,
                verdict,
            },
            Some((&shared.policy, &shared.route)),
            Some(&shared.decisions),
        );
    }
    if shared.listeners.is_empty() {
        *slot = None;
        return;
    }
    // Listeners read the call's context while they run, with every
    // attempt counted (one, if no retry layer counted them).
    context.attempts.set(attempts);
    let shared = Arc::clone(&context.shared);
    enter(slot, || {
        if let Some(threshold) = slow {
            shared.listeners.notify(&Event::SlowCall {
                policy: &shared.policy,
                route: &shared.route,
                elapsed,
                threshold,
                verdict,
            });
        }
        shared.listeners.notify(&Event::CallEnded {
            policy: &shared.policy,
            route: &shared.route,
            verdict,
            attempts,
            elapsed,
        });
    });
    *slot = None;
}
