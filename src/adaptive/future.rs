//! The response future of [`Adaptive`](super::Adaptive) and
//! [`KeyedAdaptive`](super::KeyedAdaptive).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::state::{Outcome, Permit};
use crate::BoxError;
use crate::classify::{Classify, Verdict, judge};
use crate::error::{ClientThrottled, ConcurrencyLimited};

pin_project! {
    /// The response future of an adaptive limiter: the inner call, holding
    /// its permit until it ends, or a refusal.
    ///
    /// When the call ends its round-trip time and verdict are recorded; a
    /// future dropped before that frees its permit and records nothing.
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
        Refused { throttled: bool },
    }
}

/// Judges the output of one call, for a `fn` pointer the future can hold
/// without naming the request type.
pub(crate) type JudgeFn<C, Fa, O> = fn(&C, &Fa, &O) -> Verdict;

pub(crate) fn judge_output<C, Req, T, E>(
    classifier: &C,
    facts: &C::Facts,
    output: &Result<T, E>,
) -> Verdict
where
    C: Classify<Req, T, E>,
    E: 'static,
{
    judge(classifier, facts, output.as_ref())
}

/// What a call keeps to be judged when it ends.
pub(crate) struct Call<C, Fa, O> {
    permit: Permit<C>,
    facts: Fa,
    judge: JudgeFn<C, Fa, O>,
}

impl<F: Future, C, Fa> ResponseFuture<F, C, Fa> {
    pub(crate) fn called(
        future: F,
        permit: Permit<C>,
        facts: Fa,
        judge: JudgeFn<C, Fa, F::Output>,
    ) -> Self {
        Self {
            kind: Kind::Called { future },
            call: Some(Call {
                permit,
                facts,
                judge,
            }),
        }
    }

    pub(crate) fn refused(throttled: bool) -> Self {
        Self {
            kind: Kind::Refused { throttled },
            call: None,
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
            KindProj::Refused { throttled } => Poll::Ready(Err(if *throttled {
                ClientThrottled::new().into()
            } else {
                ConcurrencyLimited::new().into()
            })),
            KindProj::Called { future } => {
                let output = ready!(future.poll(cx));
                if let Some(call) = this.call.take() {
                    let verdict = (call.judge)(call.permit.classifier(), &call.facts, &output);
                    call.permit.finish(outcome(verdict));
                }
                Poll::Ready(output.map_err(Into::into))
            }
        }
    }
}

fn outcome(verdict: Verdict) -> Outcome {
    match verdict {
        Verdict::Success | Verdict::FunctionalError => Outcome::Answered,
        Verdict::Transient { .. } | Verdict::Failure => Outcome::Dropped,
        Verdict::Rejected { .. } => Outcome::Ignored,
    }
}

impl<F: Future, C, Fa> fmt::Debug for ResponseFuture<F, C, Fa> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Called { .. } => "called",
            Kind::Refused { throttled: true } => "throttled",
            Kind::Refused { throttled: false } => "limited",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
