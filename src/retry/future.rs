//! The response future of [`Retry`](super::Retry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep};
use tower_service::Service;

use super::backoff::BackoffState;
use super::budget::Withdrawal;
use super::policy::{Policy, Step};
use super::replay::Replay;
use crate::classify::{Classify, judge};
use crate::error::BoxError;
use crate::oneshot::Oneshot;

pin_project! {
    #[project = StateProj]
    enum State<S, Req, F> {
        // The first attempt is under way.
        Called { #[pin] future: F },
        // A later attempt is under way, or waiting for the service to be
        // ready to send it.
        Again { #[pin] call: Oneshot<S, Req, F> },
        // Waiting out the backoff before the next attempt. The timer is
        // boxed: it is only needed on the retry path, and inline it would
        // double the size of every call's future.
        Backoff { sleep: Pin<Box<Sleep>> },
    }
}

pin_project! {
    /// Response future of [`Retry`](super::Retry).
    #[project = ResponseFutureProj]
    pub struct ResponseFuture<S, Req, C, P>
    where
        S: Service<Req>,
        C: Classify<Req, S::Response, S::Error>,
    {
        #[pin]
        state: State<S, Req, S::Future>,
        policy: Arc<Policy<C, P>>,
        // The service for later attempts, and the copy of the request they
        // send: both present whenever another attempt is possible (while
        // an attempt waits for readiness, its `Oneshot` holds them).
        service: Option<S>,
        next: Option<Req>,
        facts: C::Facts,
        attempt: u32,
        backoff: BackoffState,
        // The retry taken from the budget for the attempt not yet sent:
        // given back if this future is dropped before sending it.
        withdrawal: Option<Withdrawal>,
    }
}

impl<S, Req, C, P> ResponseFuture<S, Req, C, P>
where
    S: Service<Req>,
    C: Classify<Req, S::Response, S::Error>,
{
    pub(super) fn new(
        future: S::Future,
        policy: Arc<Policy<C, P>>,
        service: Option<S>,
        next: Option<Req>,
        facts: C::Facts,
    ) -> Self {
        Self {
            state: State::Called { future },
            policy,
            service,
            next,
            facts,
            attempt: 1,
            backoff: BackoffState::new(),
            withdrawal: None,
        }
    }
}

impl<S, Req, C, P> Future for ResponseFuture<S, Req, C, P>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    C: Classify<Req, S::Response, S::Error>,
    P: Replay<Req>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The path of almost every call: an attempt answers and is not
        // retried. Everything else lives out of line, in `drive`.
        if let StateProj::Called { future } = this.state.as_mut().project() {
            let outcome = ready!(future.poll(cx));
            let verdict = judge(&this.policy.classifier, this.facts, outcome.as_ref());
            crate::observe::attempt_ended(verdict);
            if !verdict.is_retryable() {
                return Poll::Ready(outcome.map_err(Into::into));
            }
            let can_replay = this.next.is_some() && this.service.is_some();
            match schedule(this.policy, verdict, this.attempt, this.backoff, can_replay) {
                Step::Return => return Poll::Ready(outcome.map_err(Into::into)),
                Step::GiveUp(err) => return Poll::Ready(Err(err)),
                Step::Retry(delay, withdrawal) => {
                    *this.withdrawal = withdrawal;
                    let Some(next) = after(delay, this.service, this.next) else {
                        return Poll::Ready(Err(LOST.into()));
                    };
                    this.state.set(next);
                }
            }
        }
        drive(this, cx)
    }
}

/// Runs the retry loop: backoff, readiness, later attempts.
#[inline(never)]
fn drive<S, Req, C, P>(
    mut this: ResponseFutureProj<'_, S, Req, C, P>,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Response, BoxError>>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    C: Classify<Req, S::Response, S::Error>,
    P: Replay<Req>,
{
    loop {
        let outcome = match this.state.as_mut().project() {
            StateProj::Called { future } => ready!(future.poll(cx)),
            StateProj::Again { call } => {
                let (policy, slot, next) = (&**this.policy, &mut *this.service, &mut *this.next);
                let (attempt, withdrawal) = (*this.attempt, &mut *this.withdrawal);
                // The call keeps the service for the attempts after it.
                let polled = ready!(call.poll_with(cx, |mut service, request| {
                    let future = resend(policy, &mut service, request, next, attempt, withdrawal);
                    *slot = Some(service);
                    future
                }));
                match polled {
                    Some(Ok(outcome)) => outcome,
                    Some(Err(not_ready)) => return Poll::Ready(Err(not_ready.into())),
                    None => return Poll::Ready(Err(SPENT.into())),
                }
            }
            StateProj::Backoff { sleep } => {
                ready!(sleep.as_mut().poll(cx));
                let Some(next) = after(Duration::ZERO, this.service, this.next) else {
                    return Poll::Ready(Err(LOST.into()));
                };
                this.state.set(next);
                continue;
            }
        };
        let verdict = judge(&this.policy.classifier, this.facts, outcome.as_ref());
        crate::observe::attempt_ended(verdict);
        let can_replay = this.next.is_some() && this.service.is_some();
        match schedule(this.policy, verdict, this.attempt, this.backoff, can_replay) {
            Step::Return => return Poll::Ready(outcome.map_err(Into::into)),
            Step::GiveUp(err) => return Poll::Ready(Err(err)),
            Step::Retry(delay, withdrawal) => {
                *this.withdrawal = withdrawal;
                let Some(next) = after(delay, this.service, this.next) else {
                    return Poll::Ready(Err(LOST.into()));
                };
                this.state.set(next);
            }
        }
    }
}

const LOST: &str = "retry scheduled without a request to send";
const SPENT: &str = "retry future polled after it completed";

/// The decision after a retryable failure, out of line.
#[inline(never)]
fn schedule<C, P>(
    policy: &Policy<C, P>,
    verdict: crate::classify::Verdict,
    attempt: &mut u32,
    backoff: &mut BackoffState,
    can_replay: bool,
) -> Step {
    let step = policy.next_step(verdict, *attempt, backoff, can_replay);
    if let Step::Retry(..) = step {
        *attempt += 1;
    }
    step
}

/// The state after a retry was scheduled `delay` ahead: the backoff, or
/// at once the next attempt waiting for readiness. `None` if the service
/// or the copy of the request is missing (a retry is only scheduled with
/// both in hand).
#[inline(never)]
fn after<S, Req, F>(
    delay: Duration,
    service: &mut Option<S>,
    next: &mut Option<Req>,
) -> Option<State<S, Req, F>> {
    if !delay.is_zero() {
        return Some(State::Backoff {
            sleep: Box::pin(sleep(delay)),
        });
    }
    let (Some(service), Some(request)) = (service.take(), next.take()) else {
        return None;
    };
    Some(State::Again {
        call: Oneshot::new(service, request),
    })
}

/// Sends `request` as attempt `attempt`, keeping a copy in `next` if
/// another attempt may follow, and spends the budget's withdrawal.
#[inline(never)]
fn resend<S, Req, C, P>(
    policy: &Policy<C, P>,
    service: &mut S,
    request: Req,
    next: &mut Option<Req>,
    attempt: u32,
    withdrawal: &mut Option<Withdrawal>,
) -> S::Future
where
    S: Service<Req>,
    P: Replay<Req>,
{
    if attempt < policy.max_attempts {
        *next = policy.replay.replay(&request);
    }
    if let Some(withdrawal) = withdrawal.take() {
        withdrawal.spend();
    }
    crate::observe::attempt_started();
    match &policy.budget {
        Some(budget) => budget.calling(|| service.call(request)),
        None => service.call(request),
    }
}

impl<S, Req, C, P> fmt::Debug for ResponseFuture<S, Req, C, P>
where
    S: Service<Req>,
    C: Classify<Req, S::Response, S::Error>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempt", &self.attempt)
            .field(
                "can_retry",
                &(self.next.is_some() && self.service.is_some()),
            )
            .finish_non_exhaustive()
    }
}
