//! The response future of [`CircuitBreaker`](super::CircuitBreaker) and
//! [`KeyedCircuitBreaker`](super::KeyedCircuitBreaker).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::handle::Holder;
use super::state::{Outcome, Ticket};
use super::window::{FAILED, RECORDED, SLOW};
use crate::BoxError;
use crate::classify::{Classify, Verdict, judge};
use crate::deadline::Deadline;
use crate::error::{CircuitOpen, Rejection};

pin_project! {
    /// The response future of a circuit breaker: the inner call, judged when
    /// it ends, or the refusal of an open breaker.
    ///
    /// Dropping it before it ends records nothing and frees the half-open
    /// probe slot it may hold.
    pub struct ResponseFuture<F, C, Fa>
    where
        F: Future,
    {
        #[pin]
        kind: Kind<F>,
        call: Option<Call<C, Fa, F::Output>>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] future: F },
        Refused { error: Option<CircuitOpen> },
    }
}

impl<F: Future, C, Fa> ResponseFuture<F, C, Fa> {
    pub(crate) fn refused(error: CircuitOpen) -> Self {
        Self {
            kind: Kind::Refused { error: Some(error) },
            call: None,
        }
    }

    pub(crate) fn called(future: F, call: Option<Call<C, Fa, F::Output>>) -> Self {
        Self {
            kind: Kind::Called { future },
            call,
        }
    }
}

impl<F, C, Fa, T, E> Future for ResponseFuture<F, C, Fa>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Refused { error } => {
                let error = error.take().unwrap_or(CircuitOpen::new(Duration::ZERO));
                Poll::Ready(Err(error.into()))
            }
            KindProj::Called { future } => {
                let output = ready!(future.poll(cx));
                if let Some(call) = this.call.take() {
                    call.finish(&output);
                }
                Poll::Ready(output.map_err(Into::into))
            }
        }
    }
}

impl<F: Future, C, Fa> fmt::Debug for ResponseFuture<F, C, Fa> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("refused", &matches!(self.kind, Kind::Refused { .. }))
            .finish_non_exhaustive()
    }
}

/// Judges the output of one call, for a `fn` pointer the future can hold
/// without naming the request type. The flag says whether the call was
/// made before the total deadline passed.
pub(crate) type JudgeFn<C, Fa, O> = fn(&C, &Fa, &O, bool) -> Verdict;

pub(crate) fn judge_output<C, Req, T, E>(
    classifier: &C,
    facts: &C::Facts,
    output: &Result<T, E>,
    made_in_time: bool,
) -> Verdict
where
    C: Classify<Req, T, E>,
    E: 'static,
{
    // An attempt sent in time and then cut by the total deadline (an
    // attempt timeout clamped to it) failed to answer in time: a failure,
    // not a refusal. One started after the deadline was never sent.
    if made_in_time {
        if let Err(err) = output {
            if is_deadline_exceeded(err) {
                return Verdict::Failure;
            }
        }
    }
    judge(classifier, facts, output.as_ref())
}

fn is_deadline_exceeded<E: 'static>(err: &E) -> bool {
    matches!(
        Rejection::of_any(err),
        Some((Rejection::DeadlineExceeded, _))
    )
}

/// The total deadline in force when a call is admitted, if it has not
/// passed yet.
#[inline]
pub(crate) fn live_deadline() -> Option<Instant> {
    Deadline::current()
        .filter(|deadline| !deadline.is_expired())
        .map(Deadline::instant)
}

/// A call the breaker admitted and must hear the end of.
pub(crate) struct Call<C, Fa, O> {
    pub(crate) shared: Holder<C>,
    pub(crate) ticket: Ticket,
    pub(crate) facts: Fa,
    pub(crate) started: Option<Instant>,
    pub(crate) judge: JudgeFn<C, Fa, O>,
    /// The total deadline, when the call was made before it passed.
    pub(crate) deadline: Option<Instant>,
}

impl<C, Fa, O> Call<C, Fa, O> {
    fn finish(mut self, output: &O) {
        let shared = self.shared.get();
        let verdict = (self.judge)(
            &shared.classifier,
            &self.facts,
            output,
            self.deadline.is_some(),
        );
        self.record(verdict);
    }

    fn record(&mut self, verdict: Verdict) {
        let shared = self.shared.get();
        let now = self.started.map(|_| Instant::now());
        let outcome = (!verdict.is_rejection()).then(|| {
            let mut code = RECORDED;
            if verdict.is_failure() {
                code |= FAILED;
            }
            if let (Some(started), Some(now), Some((limit, _))) =
                (self.started, now, shared.breaker.settings.slow)
            {
                if now.saturating_duration_since(started) > limit {
                    code |= SLOW;
                }
            }
            let hint = if verdict.is_failure() {
                verdict.retry_after()
            } else {
                None
            };
            Outcome { code, hint }
        });
        let ticket = std::mem::replace(&mut self.ticket, Ticket::Untracked);
        shared
            .breaker
            .complete(ticket, outcome, now, self.shared.lane());
    }
}

impl<C, Fa, O> Drop for Call<C, Fa, O> {
    fn drop(&mut self) {
        if matches!(self.ticket, Ticket::Untracked) {
            return;
        }
        // Dropped unfinished once the total deadline passed: the deadline
        // ended a call that was sent in time, which failed to answer.
        if self.deadline.is_some_and(|at| at <= Instant::now()) {
            self.record(Verdict::Failure);
        } else if let Ticket::Probe(generation) = self.ticket {
            self.shared.get().breaker.release_probe(generation);
        }
    }
}
