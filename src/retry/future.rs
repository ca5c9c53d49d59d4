//! The response future of [`Retry`](super::Retry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep};
use tower_service::Service;

use super::backoff::BackoffState;
use super::policy::{Settings, Step};
use crate::budget::Withdrawal;
use crate::classify::{Classify, judge};
use crate::error::BoxError;
use crate::intern::Ref;
use crate::oneshot::Oneshot;
use crate::replay::Replay;

pin_project! {
    #[project = StateProj]
    enum State<S, Req, F> {
        // The first attempt is under way.
        Called { #[pin] future: F },
        // A retry is scheduled or under way. Everything the retry path
        // needs lives out of line, allocated once by the first retry: the
        // future of a call that is not retried stays the size of the
        // inner one plus what the layer keeps.
        Retrying { retry: Later<S, Req, F> },
    }
}

/// The retry path's state, out of line. Dropping it is a call, not
/// inlined, so that the drop of a future whose first attempt answered
/// stays a test of the state's tag, small enough to inline where the
/// future is dropped.
struct Later<S, Req, F>(Option<Pin<Box<Retrying<S, Req, F>>>>);

impl<S, Req, F> Drop for Later<S, Req, F> {
    #[inline]
    fn drop(&mut self) {
        if let Some(retry) = self.0.take() {
            drop_later(retry);
        }
    }
}

#[inline(never)]
fn drop_later<T>(retry: Pin<Box<T>>) {
    drop(retry);
}

pin_project! {
    /// The state of a call after its first retryable failure.
    struct Retrying<S, Req, F> {
        // The backoff before the next attempt, if it has not passed.
        #[pin]
        sleep: Option<Sleep>,
        // The next attempt: waiting for the service to be ready, or under way.
        #[pin]
        call: Oneshot<S, Req, F>,
        // The retry taken from the budget for the attempt not yet sent:
        // given back if the future is dropped before sending it.
        withdrawal: Option<Withdrawal>,
        // The number of the attempt sent last, the first being 1.
        attempt: u32,
        backoff: BackoffState,
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
        classifier: C,
        replay: P,
        // Interned unless the layer has a budget or a generator of its
        // own: then one reference counted per call.
        settings: Ref<Settings>,
        // The service for later attempts and the copy of the request they
        // send: present whenever another attempt is possible (while an
        // attempt waits for readiness, its `Oneshot` holds them). One
        // `Option` for both, as one is no use without the other.
        again: Option<(S, Req)>,
        facts: C::Facts,
    }
}

/// What a call's future starts from.
pub(super) struct Parts<S, Req, C, P>
where
    S: Service<Req>,
    C: Classify<Req, S::Response, S::Error>,
{
    /// The first attempt.
    pub(super) future: S::Future,
    pub(super) classifier: C,
    pub(super) replay: P,
    pub(super) settings: Ref<Settings>,
    /// The service for later attempts and the copy of the request they
    /// send, if another attempt is possible.
    pub(super) again: Option<(S, Req)>,
    pub(super) facts: C::Facts,
}

impl<S, Req, C, P> ResponseFuture<S, Req, C, P>
where
    S: Service<Req>,
    C: Classify<Req, S::Response, S::Error>,
{
    #[inline]
    pub(super) fn new(parts: Parts<S, Req, C, P>) -> Self {
        Self {
            state: State::Called {
                future: parts.future,
            },
            classifier: parts.classifier,
            replay: parts.replay,
            settings: parts.settings,
            again: parts.again,
            facts: parts.facts,
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

    // Inlined early, the answer of the first attempt stays in registers
    // through the caller's match (3 instructions a call fewer).
    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.as_mut().project();
        // The path of almost every call: an attempt answers and is not
        // retried. Everything else lives out of line.
        if let StateProj::Called { future } = this.state.project() {
            let outcome = ready!(future.poll(cx));
            let verdict = judge(this.classifier, this.facts, outcome.as_ref());
            crate::event::attempt_ended(verdict);
            if !verdict.is_retryable() {
                return Poll::Ready(outcome.map_err(Into::into));
            }
            return retry_path(self, cx, Some((verdict, outcome)));
        }
        retry_path(self, cx, None)
    }
}

/// What an attempt ended with.
type Outcome<S, Req> = Result<<S as Service<Req>>::Response, <S as Service<Req>>::Error>;

/// Everything but the first attempt's answer: the first attempt's
/// retryable failure, if `first` holds it, then the retry loop. One call
/// out of line that takes the future itself (not its projection, which
/// would be built on the stack of every call): the answer of the path of
/// almost every call then merges with one call's output and stays in
/// registers.
#[inline(never)]
fn retry_path<S, Req, C, P>(
    future: Pin<&mut ResponseFuture<S, Req, C, P>>,
    cx: &mut Context<'_>,
    first: Option<(crate::classify::Verdict, Outcome<S, Req>)>,
) -> Poll<Result<S::Response, BoxError>>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    C: Classify<Req, S::Response, S::Error>,
    P: Replay<Req>,
{
    let mut this = future.project();
    if let Some((verdict, outcome)) = first {
        if let Some(output) = first_failed(&mut this, verdict, outcome) {
            return Poll::Ready(output);
        }
    }
    drive(this, cx)
}

/// The first attempt failed, retryably: decides, and on a retry sets up
/// the retry path. The call's output if it ends here.
#[inline(never)]
fn first_failed<S, Req, C, P>(
    this: &mut ResponseFutureProj<'_, S, Req, C, P>,
    verdict: crate::classify::Verdict,
    outcome: Result<S::Response, S::Error>,
) -> Option<Result<S::Response, BoxError>>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    C: Classify<Req, S::Response, S::Error>,
{
    let can_replay = this.again.is_some();
    let mut backoff = BackoffState::new();
    let (delay, withdrawal) = match this
        .settings
        .next_step(verdict, 1, &mut backoff, can_replay)
    {
        Step::Return => return Some(outcome.map_err(Into::into)),
        Step::GiveUp(err) => return Some(Err(err)),
        Step::Retry(delay, withdrawal) => (delay, withdrawal),
    };
    let Some((service, request)) = this.again.take() else {
        return Some(Err(LOST.into()));
    };
    let retry = Retrying {
        sleep: (!delay.is_zero()).then(|| sleep(delay)),
        call: Oneshot::new(service, request),
        withdrawal,
        attempt: 2,
        backoff,
    };
    this.state.set(State::Retrying {
        retry: Later(Some(Box::pin(retry))),
    });
    None
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
    let StateProj::Retrying {
        retry: Later(Some(retry)),
    } = this.state.as_mut().project()
    else {
        // Only reached once the first attempt's outcome was returned.
        return Poll::Ready(Err(SPENT.into()));
    };
    let mut retry = retry.as_mut().project();
    loop {
        if let Some(sleep) = retry.sleep.as_mut().as_pin_mut() {
            ready!(sleep.poll(cx));
            retry.sleep.set(None);
        }
        let (settings, replay) = (&**this.settings, &*this.replay);
        let again = &mut *this.again;
        let (attempt, withdrawal) = (*retry.attempt, &mut *retry.withdrawal);
        // The call keeps the service for the attempts after it.
        let polled = ready!(retry.call.as_mut().poll_with(cx, |mut service, request| {
            let (future, next) = resend(
                (settings, replay),
                &mut service,
                request,
                attempt,
                withdrawal,
            );
            *again = next.map(|request| (service, request));
            future
        }));
        let outcome = match polled {
            Some(Ok(outcome)) => outcome,
            Some(Err(not_ready)) => return Poll::Ready(Err(not_ready.into())),
            None => return Poll::Ready(Err(SPENT.into())),
        };
        let verdict = judge(this.classifier, this.facts, outcome.as_ref());
        crate::event::attempt_ended(verdict);
        let can_replay = this.again.is_some();
        let step = this
            .settings
            .next_step(verdict, *retry.attempt, retry.backoff, can_replay);
        match step {
            Step::Return => return Poll::Ready(outcome.map_err(Into::into)),
            Step::GiveUp(err) => return Poll::Ready(Err(err)),
            Step::Retry(delay, withdrawal) => {
                let Some((service, request)) = this.again.take() else {
                    return Poll::Ready(Err(LOST.into()));
                };
                *retry.attempt += 1;
                *retry.withdrawal = withdrawal;
                if !delay.is_zero() {
                    retry.sleep.set(Some(sleep(delay)));
                }
                retry.call.set(Oneshot::new(service, request));
            }
        }
    }
}

const LOST: &str = "retry scheduled without a request to send";
const SPENT: &str = "retry future polled after it completed";

/// Sends `request` as attempt `attempt`, and spends the budget's
/// withdrawal. Returns the call's future and, if another attempt may
/// follow, a copy of the request for it.
#[inline(never)]
fn resend<S, Req, P>(
    (settings, replay): (&Settings, &P),
    service: &mut S,
    request: Req,
    attempt: u32,
    withdrawal: &mut Option<Withdrawal>,
) -> (S::Future, Option<Req>)
where
    S: Service<Req>,
    P: Replay<Req>,
{
    let next = if attempt < settings.max_attempts {
        replay.replay(&request)
    } else {
        None
    };
    if let Some(withdrawal) = withdrawal.take() {
        withdrawal.spend();
    }
    crate::event::attempt_started();
    let future = match &settings.budget {
        Some(budget) => budget.calling(|| service.call(request)),
        None => service.call(request),
    };
    (future, next)
}

impl<S, Req, C, P> fmt::Debug for ResponseFuture<S, Req, C, P>
where
    S: Service<Req>,
    C: Classify<Req, S::Response, S::Error>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attempt = match &self.state {
            State::Called { .. } => 1,
            State::Retrying { retry } => retry.0.as_ref().map_or(0, |retry| retry.attempt),
        };
        f.debug_struct("ResponseFuture")
            .field("attempt", &attempt)
            .field("can_retry", &self.again.is_some())
            .finish_non_exhaustive()
    }
}
