//! Futures of the [`Fallback`](super::Fallback) service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::Shared;
use super::budget::LatencyBudget;
use super::cache::Slot;
use super::source::{AlternateSource, Cause, FallbackSource, LastResort, Reason, ResponseKind};
use crate::classify::{Classify, Verdict, judge};
use crate::error::BoxError;
use crate::oneshot::Oneshot;

/// The error of a fallback future polled after it completed.
const DONE: &str = "fallback future polled after it completed";

pin_project! {
    #[project = StateProj]
    enum State<F, AF, T, Res> {
        // The primary call is under way.
        Primary { #[pin] future: F },
        // The primary call is under way, with a latency budget; the call is
        // dropped in place if its caller is served from the cache.
        Timed { #[pin] future: F, #[pin] budget: T },
        // The same, the call boxed so that it can be handed on to run in
        // the background once its caller is served from the cache.
        Held { future: Option<Pin<Box<F>>>, #[pin] budget: T },
        // The alternate call is under way, with the primary's failed
        // outcome; boxed, as it is only needed when the primary failed.
        Alternate { call: OutOfLine<Fired<AF, Res>> },
        // The answer has been given.
        Done,
    }
}

/// The primary's failed outcome, kept while the fallback sources are tried.
struct Failed<Res> {
    outcome: Result<Res, BoxError>,
    verdict: Verdict,
    reason: Reason,
}

/// A boxed value dropped out of line, so that dropping a value that may
/// hold one (a future whose fallback did not fire) stays small enough to
/// be inlined.
struct OutOfLine<T>(Option<Pin<Box<T>>>);

impl<T> OutOfLine<T> {
    fn new(value: T) -> Self {
        Self(Some(Box::pin(value)))
    }

    fn as_mut(&mut self) -> Option<Pin<&mut T>> {
        self.0.as_mut().map(Pin::as_mut)
    }
}

impl<T> Drop for OutOfLine<T> {
    #[inline]
    fn drop(&mut self) {
        #[inline(never)]
        fn drop_boxed<T>(_: Pin<Box<T>>) {}
        if let Some(boxed) = self.0.take() {
            drop_boxed(boxed);
        }
    }
}

pin_project! {
    /// The alternate call and the primary's failed outcome it was sent
    /// for: one allocation, made only when the fallback fires.
    struct Fired<AF, Res> {
        #[pin]
        future: AF,
        failed: Option<Failed<Res>>,
    }
}

pin_project! {
    /// Response future of [`Fallback`](super::Fallback).
    #[project = ResponseFutureProj]
    pub struct ResponseFuture<S, Req, A, Ca, F, C, K>
    where
        S: Service<Req>,
        A: AlternateSource<Req, S::Response>,
        Ca: LatencyBudget<S::Future>,
        F: LastResort<Req, S::Response, K>,
        Ca: LatencyBudget<S::Future>,
        C: Classify<Req, S::Response, S::Error>,
        K: ResponseKind<S::Response>,
    {
        #[pin]
        state: State<S::Future, A::Future, Ca::Timer, S::Response>,
        shared: Arc<Shared<A, Ca, F, C, K>>,
        facts: C::Facts,
        // The copy of the request for the alternate, if any.
        copy: Option<Req>,
        // What the static or computed answer needs, if there is one.
        last: Option<F::Facts>,
        // Where the answer is recorded or looked up, if it may be cached.
        slot: Option<Slot>,
        // Whether the latency budget may still serve the cached answer.
        armed: bool,
    }
}

impl<S, Req, A, Ca, F, C, K> ResponseFuture<S, Req, A, Ca, F, C, K>
where
    S: Service<Req>,
    A: AlternateSource<Req, S::Response>,
    Ca: LatencyBudget<S::Future>,
    F: LastResort<Req, S::Response, K>,
    C: Classify<Req, S::Response, S::Error>,
    K: ResponseKind<S::Response>,
{
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        future: S::Future,
        shared: Arc<Shared<A, Ca, F, C, K>>,
        facts: C::Facts,
        copy: Option<Req>,
        last: Option<F::Facts>,
        slot: Option<Slot>,
    ) -> Self {
        // A budget matters only to a request whose answer may be cached.
        let budget = slot.as_ref().and(shared.cache.budget());
        let state = match budget {
            None => State::Primary { future },
            Some(after) if shared.cache.keeps_late_calls() => State::Held {
                future: Some(Box::pin(future)),
                budget: shared.cache.arm(after),
            },
            Some(after) => State::Timed {
                future,
                budget: shared.cache.arm(after),
            },
        };
        Self {
            state,
            shared,
            facts,
            copy,
            last,
            slot,
            armed: budget.is_some(),
        }
    }
}

impl<S, Req, A, Ca, F, C, K> Future for ResponseFuture<S, Req, A, Ca, F, C, K>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    A: AlternateSource<Req, S::Response>,
    Ca: LatencyBudget<S::Future>,
    F: LastResort<Req, S::Response, K>,
    C: Classify<Req, S::Response, S::Error>,
    K: ResponseKind<S::Response>,
{
    type Output = Result<K::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let polled = match this.state.as_mut().project() {
            StateProj::Primary { future } => Some(future.poll(cx)),
            StateProj::Timed { future, budget } => Some(match future.poll(cx) {
                Poll::Pending if *this.armed && budget.poll(cx).is_ready() => {
                    return late(&mut this);
                }
                polled => polled,
            }),
            StateProj::Held {
                future: Some(future),
                budget,
            } => Some(match future.as_mut().poll(cx) {
                Poll::Pending if *this.armed && budget.poll(cx).is_ready() => {
                    return late(&mut this);
                }
                polled => polled,
            }),
            StateProj::Held { future: None, .. } => return Poll::Ready(Err(DONE.into())),
            _ => None,
        };
        if let Some(polled) = polled {
            let outcome = ready!(polled);
            let verdict = judge(&this.shared.classifier, this.facts, outcome.as_ref());
            let kind = &this.shared.kind;
            if verdict == Verdict::Success {
                this.state.set(State::Done);
                return Poll::Ready(match (outcome, this.slot.take()) {
                    (Ok(response), Some(slot)) => Ok(record(kind, response, slot)),
                    (Ok(response), None) => Ok(kind.pass(response)),
                    (Err(err), _) => Err(err.into()),
                });
            }
            let outcome = outcome.map_err(Into::into);
            let fires = Reason::of(verdict, outcome.as_ref().err())
                .filter(|reason| this.shared.on.contains(*reason));
            let Some(reason) = fires else {
                this.state.set(State::Done);
                return Poll::Ready(outcome.map(|response| kind.pass(response)));
            };
            let failed = Failed {
                outcome,
                verdict,
                reason,
            };
            if let Some(answer) = start(&mut this, failed) {
                this.state.set(State::Done);
                return Poll::Ready(answer);
            }
        }
        drive(this, cx)
    }
}

/// Passes on a success and records it in its slot: out of line, so that
/// the path of a call without a cache stays short.
#[inline(never)]
fn record<K: ResponseKind<Res>, Res>(kind: &K, response: Res, slot: Slot) -> K::Response {
    kind.record(response, slot)
}

/// The latency budget has passed with the primary call still under way:
/// serves the cached answer if there is one, and hands the call on (or
/// drops it); else waits on for the call.
#[inline(never)]
fn late<S, Req, A, Ca, F, C, K>(
    this: &mut ResponseFutureProj<'_, S, Req, A, Ca, F, C, K>,
) -> Poll<Result<K::Response, BoxError>>
where
    S: Service<Req>,
    A: AlternateSource<Req, S::Response>,
    Ca: LatencyBudget<S::Future>,
    F: LastResort<Req, S::Response, K>,
    C: Classify<Req, S::Response, S::Error>,
    K: ResponseKind<S::Response>,
{
    *this.armed = false;
    let shared = &**this.shared;
    // The slot stays, so that the call's own answer is still recorded if
    // no cached answer is found and the call goes on.
    let cached = this.slot.as_ref().and_then(|slot| {
        let (value, age) = slot.lookup()?;
        let stored = value.downcast_ref::<K::Stored>()?;
        Some((shared.kind.rebuild(stored), age))
    });
    let Some((mut response, age)) = cached else {
        // The primary's waker is registered; the budget has fired for good.
        return Poll::Pending;
    };
    let source = FallbackSource::Cache { age };
    emit(
        &shared.name,
        &shared.decisions,
        Some(&source),
        Verdict::transient(),
        Reason::LatencyBudget,
    );
    shared.kind.mark(&mut response, &source);
    if let StateProj::Held { future, .. } = this.state.as_mut().project() {
        if let Some(call) = future.take() {
            shared.cache.late_call(call);
        }
    }
    this.state.set(State::Done);
    Poll::Ready(Ok(response))
}

/// Starts the fallback: the alternate call if there is one (then `None`),
/// else the answer of the other sources.
#[inline(never)]
fn start<S, Req, A, Ca, F, C, K>(
    this: &mut ResponseFutureProj<'_, S, Req, A, Ca, F, C, K>,
    failed: Failed<S::Response>,
) -> Option<Result<K::Response, BoxError>>
where
    S: Service<Req>,
    A: AlternateSource<Req, S::Response>,
    Ca: LatencyBudget<S::Future>,
    F: LastResort<Req, S::Response, K>,
    C: Classify<Req, S::Response, S::Error>,
    K: ResponseKind<S::Response>,
{
    let shared = &**this.shared;
    if shared.cache_first {
        if let Some(answer) = from_cache(shared, this.slot, &failed) {
            return Some(Ok(answer));
        }
    }
    match this.copy.take() {
        Some(request) => {
            let call = OutOfLine::new(Fired {
                future: shared.alternate.call(request),
                failed: Some(failed),
            });
            this.state.set(State::Alternate { call });
            None
        }
        None => {
            if shared.alternate.is_configured() {
                alternate_skipped(&shared.name, &shared.decisions);
            }
            Some(rest(shared, this.slot, this.last, failed))
        }
    }
}

/// Reports an alternate that could not be called.
#[cold]
fn alternate_skipped(name: &str, decisions: &crate::event::Decisions) {
    crate::event::emit_counted(
        decisions,
        &crate::event::Listeners::none(),
        &crate::event::Event::FallbackSkipped {
            name,
            source: &FallbackSource::Alternate,
            reason: crate::event::SkipReason::NotReplayable,
        },
    );
}

/// Waits for the alternate call, then tries the other sources.
#[inline(never)]
fn drive<S, Req, A, Ca, F, C, K>(
    mut this: ResponseFutureProj<'_, S, Req, A, Ca, F, C, K>,
    cx: &mut Context<'_>,
) -> Poll<Result<K::Response, BoxError>>
where
    S: Service<Req>,
    A: AlternateSource<Req, S::Response>,
    Ca: LatencyBudget<S::Future>,
    F: LastResort<Req, S::Response, K>,
    C: Classify<Req, S::Response, S::Error>,
    K: ResponseKind<S::Response>,
{
    let StateProj::Alternate { call } = this.state.as_mut().project() else {
        return Poll::Ready(Err(DONE.into()));
    };
    let Some(fired) = call.as_mut() else {
        return Poll::Ready(Err(DONE.into()));
    };
    let fired = fired.project();
    let outcome = ready!(fired.future.poll(cx));
    let failed = fired.failed.take();
    this.state.set(State::Done);
    let shared = &**this.shared;
    let Some(failed) = failed else {
        return Poll::Ready(Err(DONE.into()));
    };
    if let Ok(response) = outcome {
        let verdict = <C as Classify<Req, S::Response, S::Error>>::classify(
            &shared.classifier,
            this.facts,
            Ok(&response),
        );
        if verdict.is_answer() {
            let source = FallbackSource::Alternate;
            emit(
                &shared.name,
                &shared.decisions,
                Some(&source),
                failed.verdict,
                failed.reason,
            );
            let mut response = shared.kind.pass(response);
            shared.kind.mark(&mut response, &source);
            return Poll::Ready(Ok(response));
        }
    }
    // With `cache_first`, the cache was tried before and its slot taken.
    Poll::Ready(rest(shared, this.slot, this.last, failed))
}

/// The cached answer, if there is one young enough.
fn from_cache<A, Ca, F, C, K, Res>(
    shared: &Shared<A, Ca, F, C, K>,
    slot: &mut Option<Slot>,
    failed: &Failed<Res>,
) -> Option<K::Response>
where
    K: ResponseKind<Res>,
{
    let (value, age) = slot.take()?.lookup()?;
    let stored = value.downcast_ref::<K::Stored>()?;
    let source = FallbackSource::Cache { age };
    emit(
        &shared.name,
        &shared.decisions,
        Some(&source),
        failed.verdict,
        failed.reason,
    );
    let mut response = shared.kind.rebuild(stored);
    shared.kind.mark(&mut response, &source);
    Some(response)
}

/// The cache, then the static or computed answer, then the original
/// outcome.
fn rest<A, Ca, F, C, K, Req, Res>(
    shared: &Shared<A, Ca, F, C, K>,
    slot: &mut Option<Slot>,
    last: &mut Option<F::Facts>,
    failed: Failed<Res>,
) -> Result<K::Response, BoxError>
where
    F: LastResort<Req, Res, K>,
    K: ResponseKind<Res>,
{
    if let Some(answer) = from_cache(shared, slot, &failed) {
        return Ok(answer);
    }
    if let Some(facts) = last.take() {
        let cause = Cause {
            verdict: failed.verdict,
            reason: failed.reason,
            outcome: failed.outcome.as_ref(),
        };
        if let Some(mut response) = shared.last.answer(&shared.kind, facts, &cause) {
            let source = FallbackSource::Static;
            emit(
                &shared.name,
                &shared.decisions,
                Some(&source),
                failed.verdict,
                failed.reason,
            );
            shared.kind.mark(&mut response, &source);
            return Ok(response);
        }
    }
    emit(
        &shared.name,
        &shared.decisions,
        None,
        failed.verdict,
        failed.reason,
    );
    failed.outcome.map(|response| shared.kind.pass(response))
}

/// The one place fallback answers are reported, counted in the layer's
/// series.
#[cold]
fn emit(
    name: &str,
    decisions: &crate::event::Decisions,
    source: Option<&FallbackSource>,
    verdict: Verdict,
    reason: Reason,
) {
    let event = match source {
        Some(source) => crate::event::Event::FallbackServed {
            name,
            source,
            verdict,
            reason,
        },
        None => crate::event::Event::FallbackMissed {
            name,
            verdict,
            reason,
        },
    };
    crate::event::emit_counted(decisions, &crate::event::Listeners::none(), &event);
}

impl<S, Req, A, Ca, F, C, K> fmt::Debug for ResponseFuture<S, Req, A, Ca, F, C, K>
where
    S: Service<Req>,
    A: AlternateSource<Req, S::Response>,
    Ca: LatencyBudget<S::Future>,
    F: LastResort<Req, S::Response, K>,
    C: Classify<Req, S::Response, S::Error>,
    K: ResponseKind<S::Response>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stage = match self.state {
            State::Primary { .. } | State::Timed { .. } | State::Held { .. } => "primary",
            State::Alternate { .. } => "alternate",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("stage", &stage)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The call of an alternate service: readiness, then the call.
    pub struct AlternateCall<T, Req>
    where
        T: Service<Req>,
    {
        #[pin]
        call: Oneshot<T, Req, T::Future>,
    }
}

impl<T: Service<Req>, Req> AlternateCall<T, Req> {
    pub(crate) fn new(service: T, request: Req) -> Self {
        Self {
            call: Oneshot::new(service, request),
        }
    }
}

impl<T, Req> Future for AlternateCall<T, Req>
where
    T: Service<Req>,
    T::Error: Into<BoxError>,
{
    type Output = Result<T::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().call.poll(cx)
    }
}

impl<T: Service<Req>, Req> fmt::Debug for AlternateCall<T, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let called = self.call.is_called();
        f.debug_struct("AlternateCall")
            .field("called", &called)
            .finish_non_exhaustive()
    }
}
