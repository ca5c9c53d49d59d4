//! The response future of [`Chaos`](super::Chaos).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep};

use crate::error::BoxError;

pin_project! {
    #[project = StateProj]
    enum State<F, Res> {
        // The inner service was called; its outcome may be held back.
        Inner { #[pin] future: F, delay: Option<Duration> },
        // The outcome is known and waits out the added latency.
        Delay { sleep: Pin<Box<Sleep>>, outcome: Option<Result<Res, BoxError>> },
        // The outcome is known and given at once.
        Done { outcome: Option<Result<Res, BoxError>> },
        // The call never answers.
        Hang,
    }
}

pin_project! {
    /// Response future of [`Chaos`](super::Chaos).
    pub struct ResponseFuture<F, Res> {
        #[pin]
        state: State<F, Res>,
    }
}

impl<F, Res> ResponseFuture<F, Res> {
    pub(super) fn inner(future: F, delay: Option<Duration>) -> Self {
        Self {
            state: State::Inner { future, delay },
        }
    }

    pub(super) fn outcome(outcome: Result<Res, BoxError>, delay: Option<Duration>) -> Self {
        let state = match delay {
            Some(delay) => State::Delay {
                sleep: Box::pin(sleep(delay)),
                outcome: Some(outcome),
            },
            None => State::Done {
                outcome: Some(outcome),
            },
        };
        Self { state }
    }

    pub(super) fn hang() -> Self {
        Self { state: State::Hang }
    }
}

impl<F, Res, E> Future for ResponseFuture<F, Res>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Res, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { future, delay } => {
                    let outcome = ready!(future.poll(cx)).map_err(Into::into);
                    match delay.take() {
                        None => return Poll::Ready(outcome),
                        Some(delay) => this.state.set(State::Delay {
                            sleep: Box::pin(sleep(delay)),
                            outcome: Some(outcome),
                        }),
                    }
                }
                StateProj::Delay { sleep, outcome } => {
                    ready!(sleep.as_mut().poll(cx));
                    return Poll::Ready(take(outcome));
                }
                StateProj::Done { outcome } => return Poll::Ready(take(outcome)),
                StateProj::Hang => return Poll::Pending,
            }
        }
    }
}

fn take<Res>(outcome: &mut Option<Result<Res, BoxError>>) -> Result<Res, BoxError> {
    outcome
        .take()
        .unwrap_or_else(|| Err("chaos future polled after completion".into()))
}

impl<F, Res> fmt::Debug for ResponseFuture<F, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
