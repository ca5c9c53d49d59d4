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
use super::budget::Withdrawal;
use super::policy::{Policy, Step};
use super::replay::Replay;
use crate::classify::{Classify, judge};
use crate::error::BoxError;

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An attempt is under way.
        Called { #[pin] future: F },
        // Waiting out the backoff before the next attempt.
        Backoff { #[pin] sleep: Sleep },
        // Waiting for the service to be ready for the next attempt.
        Ready,
    }
}

pin_project! {
    /// Response future of [`Retry`](super::Retry).
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
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let outcome = ready!(future.poll(cx));
                    let verdict = judge(&this.policy.classifier, this.facts, outcome.as_ref());
                    let can_replay = this.next.is_some() && this.service.is_some();
                    match this
                        .policy
                        .next_step(verdict, *this.attempt, this.backoff, can_replay)
                    {
                        Step::Return => return Poll::Ready(outcome.map_err(Into::into)),
                        Step::GiveUp(err) => return Poll::Ready(Err(err)),
                        Step::Retry(delay, withdrawal) => {
                            *this.attempt += 1;
                            *this.withdrawal = withdrawal;
                            if delay.is_zero() {
                                this.state.set(State::Ready);
                            } else {
                                this.state.set(State::Backoff {
                                    sleep: sleep(delay),
                                });
                            }
                        }
                    }
                }
                StateProj::Backoff { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    let (Some(service), true) = (this.service.as_mut(), this.next.is_some()) else {
                        // A retry is only scheduled with both in hand.
                        return Poll::Ready(
                            Err("retry scheduled without a request to send".into()),
                        );
                    };
                    if let Err(err) = ready!(service.poll_ready(cx)) {
                        return Poll::Ready(Err(err.into()));
                    }
                    let Some(request) = this.next.take() else {
                        return Poll::Ready(
                            Err("retry scheduled without a request to send".into()),
                        );
                    };
                    if *this.attempt < this.policy.max_attempts {
                        *this.next = this.policy.replay.replay(&request);
                    }
                    if let Some(withdrawal) = this.withdrawal.take() {
                        withdrawal.spend();
                    }
                    let future = service.call(request);
                    this.state.set(State::Called { future });
                }
            }
        }
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
