//! The response future of [`Retry`](super::Retry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep};
use tower_service::Service;

use super::backoff::BackoffState;
use super::policy::{Policy, Step};
use crate::budget::Withdrawal;
use crate::classify::{Classify, judge};
use crate::error::BoxError;
use crate::replay::Replay;

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An attempt is under way.
        Called { #[pin] future: F },
        // Waiting out the backoff before the next attempt. The timer is
        // boxed: it is only needed on the retry path, and inline it would
        // double the size of every call's future.
        Backoff { sleep: Pin<Box<Sleep>> },
        // Waiting for the service to be ready for the next attempt.
        Ready,
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
        state: State<S::Future>,
        policy: Arc<Policy<C, P>>,
        // The service for later attempts, and the copy of the request they
        // send: both present whenever another attempt is possible.
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
            crate::event::attempt_ended(verdict);
            if !verdict.is_retryable() {
                return Poll::Ready(outcome.map_err(Into::into));
            }
            let can_replay = this.next.is_some() && this.service.is_some();
            match schedule(this.policy, verdict, this.attempt, this.backoff, can_replay) {
                Step::Return => return Poll::Ready(outcome.map_err(Into::into)),
                Step::GiveUp(err) => return Poll::Ready(Err(err)),
                Step::Retry(delay, withdrawal) => {
                    *this.withdrawal = withdrawal;
                    this.state.set(backoff_state(delay));
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
        match this.state.as_mut().project() {
            StateProj::Called { future } => {
                let outcome = ready!(future.poll(cx));
                let verdict = judge(&this.policy.classifier, this.facts, outcome.as_ref());
                crate::event::attempt_ended(verdict);
                let can_replay = this.next.is_some() && this.service.is_some();
                match schedule(this.policy, verdict, this.attempt, this.backoff, can_replay) {
                    Step::Return => return Poll::Ready(outcome.map_err(Into::into)),
                    Step::GiveUp(err) => return Poll::Ready(Err(err)),
                    Step::Retry(delay, withdrawal) => {
                        *this.withdrawal = withdrawal;
                        this.state.set(backoff_state(delay));
                    }
                }
            }
            StateProj::Backoff { sleep } => {
                ready!(sleep.as_mut().poll(cx));
                this.state.set(State::Ready);
            }
            StateProj::Ready => {
                // A retry is only scheduled with both in hand.
                let (Some(service), Some(_)) = (this.service.as_mut(), this.next.as_ref()) else {
                    return Poll::Ready(Err(LOST.into()));
                };
                if let Err(err) = ready!(service.poll_ready(cx)) {
                    return Poll::Ready(Err(err.into()));
                }
                let Some(request) = this.next.take() else {
                    return Poll::Ready(Err(LOST.into()));
                };
                let future = resend(
                    this.policy,
                    service,
                    request,
                    this.next,
                    *this.attempt,
                    this.withdrawal,
                );
                this.state.set(State::Called { future });
            }
        }
    }
}

const LOST: &str = "retry scheduled without a request to send";

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

#[inline(never)]
fn backoff_state<F>(delay: std::time::Duration) -> State<F> {
    if delay.is_zero() {
        State::Ready
    } else {
        State::Backoff {
            sleep: Box::pin(sleep(delay)),
        }
    }
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
    crate::event::attempt_started();
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
