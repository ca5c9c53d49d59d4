//! The response future of [`CircuitBreaker`](super::CircuitBreaker) and
//! [`KeyedCircuitBreaker`](super::KeyedCircuitBreaker).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::handle::Holder;
use super::state::{Outcome, Stamp, Ticket};
use super::window::{FAILED, RECORDED, SLOW};
use crate::BoxError;
use crate::classify::{Classify, Verdict};
use crate::deadline::Deadline;
use crate::error::{CircuitOpen, Rejection};

pin_project! {
    /// The response future of a circuit breaker: the inner call, judged when
    /// it ends, or the refusal of an open breaker.
    ///
    /// `Fa` is what the classifier `C` keeps from the request, `Req` the
    /// request's type, which the classifier judges by.
    ///
    /// Dropping it before it ends records nothing and frees the half-open
    /// probe slot it may hold.
    pub struct ResponseFuture<F, C, Fa, Req>
    where
        F: Future,
    {
        #[pin]
        kind: Kind<F>,
        call: Option<Call<C, Fa>>,
        _request: PhantomData<fn(Req)>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] future: F },
        Refused { error: Option<CircuitOpen> },
    }
}

impl<F: Future, C, Fa, Req> ResponseFuture<F, C, Fa, Req> {
    pub(crate) fn refused(error: CircuitOpen) -> Self {
        Self {
            kind: Kind::Refused { error: Some(error) },
            call: None,
            _request: PhantomData,
        }
    }

    #[inline]
    pub(crate) fn called(future: F, call: Option<Call<C, Fa>>) -> Self {
        Self {
            kind: Kind::Called { future },
            call,
            _request: PhantomData,
        }
    }
}

impl<F, C, Fa, Req, T, E> Future for ResponseFuture<F, C, Fa, Req>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError> + 'static,
    C: Classify<Req, T, E, Facts = Fa>,
{
    type Output = Result<T, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Refused { error } => {
                let error = error.take().unwrap_or(CircuitOpen::new(Duration::ZERO));
                Poll::Ready(Err(error.into()))
            }
            KindProj::Called { future } => {
                let output = ready!(future.poll(cx));
                if let Some(call) = this.call {
                    call.finish(&output);
                    // The reference to the breaker goes with the call.
                    *this.call = None;
                }
                Poll::Ready(output.map_err(Into::into))
            }
        }
    }
}

impl<F: Future, C, Fa, Req> fmt::Debug for ResponseFuture<F, C, Fa, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("refused", &matches!(self.kind, Kind::Refused { .. }))
            .finish_non_exhaustive()
    }
}

/// The verdict on one call's output, the error read once. The flag says
/// whether the call was made before the total deadline passed.
#[inline]
fn judge_output<C, Req, T, E>(
    classifier: &C,
    facts: &C::Facts,
    output: &Result<T, E>,
    made_in_time: bool,
) -> Verdict
where
    C: Classify<Req, T, E>,
    E: 'static,
{
    match output {
        Ok(response) => classifier.classify(facts, Ok(response)),
        Err(err) => match Rejection::of_any(err) {
            // An attempt sent in time and then cut by the total deadline
            // (an attempt timeout clamped to it) failed to answer in time:
            // a failure, not a refusal. One started after the deadline was
            // never sent.
            Some((Rejection::DeadlineExceeded, _)) if made_in_time => Verdict::Failure,
            Some((_, retry_after)) => Verdict::Rejected { retry_after },
            None => classifier.classify(facts, Err(err)),
        },
    }
}

/// The total deadline in force when a call is admitted, if it has not
/// passed yet.
#[inline]
pub(crate) fn live_deadline() -> Option<Instant> {
    Deadline::current()
        .map(Deadline::instant)
        .filter(|&at| at > crate::deadline::now())
}

/// A call the breaker admitted and must hear the end of.
pub(crate) struct Call<C, Fa> {
    pub(crate) shared: Holder<C>,
    pub(crate) ticket: Ticket,
    /// The batching lane the call's outcome counts on: its thread's when
    /// it was made, [`LANES`](super::window::LANES) for none.
    pub(crate) slot: u32,
    pub(crate) facts: Fa,
    /// When the call started, if slow calls are counted.
    pub(crate) started: Option<Stamp>,
    /// The total deadline, when the call was made before it passed.
    pub(crate) deadline: Option<Stamp>,
}

impl<C, Fa> Call<C, Fa> {
    /// Judges and records the call's output.
    #[inline(always)]
    fn finish<Req, T, E>(&mut self, output: &Result<T, E>)
    where
        C: Classify<Req, T, E, Facts = Fa>,
        E: 'static,
    {
        let shared = self.shared.get();
        let verdict = judge_output(
            &shared.classifier,
            &self.facts,
            output,
            self.deadline.is_some(),
        );
        // The common case, kept short: an answer of a counted call, with
        // no slow-call threshold to time it against.
        if let Ticket::Counted(generation) = self.ticket {
            if verdict.is_answer() && self.started.is_none() {
                self.ticket = Ticket::Untracked;
                shared
                    .breaker
                    .complete_success(generation, self.slot as usize);
                return;
            }
        }
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
                if started.until(shared.breaker.stamp(now)) > limit {
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
            .complete(ticket, outcome, now, self.slot as usize);
    }
}

impl<C, Fa> Drop for Call<C, Fa> {
    #[inline]
    fn drop(&mut self) {
        if matches!(self.ticket, Ticket::Untracked) {
            return;
        }
        self.abandoned();
    }
}

impl<C, Fa> Call<C, Fa> {
    /// Dropped before it ended.
    #[cold]
    fn abandoned(&mut self) {
        // Dropped unfinished once the total deadline passed: the deadline
        // ended a call that was sent in time, which failed to answer.
        let breaker = &self.shared.get().breaker;
        if self
            .deadline
            .is_some_and(|at| at <= breaker.stamp(Instant::now()))
        {
            self.record(Verdict::Failure);
        } else if let Ticket::Probe(generation) = self.ticket {
            self.shared.get().breaker.release_probe(generation);
        }
    }
}
