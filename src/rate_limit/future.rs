//! The future returned by [`RateLimit`](super::RateLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use governor::clock::Clock;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::clock::TokioClock;
use super::gcra::Limiter;
use crate::BoxError;
use crate::error::RateLimited;
use crate::oneshot::Waiter;

pin_project! {
    /// The response future of [`RateLimit`](super::RateLimit).
    ///
    /// A throttled call keeps its request and the inner service here while
    /// it waits for its allowance, then calls it.
    pub struct ResponseFuture<F, S, Req> {
        #[pin]
        state: State<F, S, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, Req> {
        Called {
            #[pin]
            future: F,
        },
        // In nanoseconds (saturated at 584 years): beside the inner future's
        // own state, a `Duration` would make every call's future a word
        // larger.
        Rejected {
            retry_after: u64,
        },
        // A call that waits (throttled, or for a shared store) keeps what it
        // waits with out of line: inline, the timer would more than double
        // the size of every call's future.
        Waiting {
            wait: Parked<F, S, Req>,
        },
    }
}

pin_project! {
    #[project = WaitProj]
    enum Wait<F, S, Req> {
        // Throttled until the allowance permits.
        Throttled {
            #[pin]
            sleep: Sleep,
            waiter: Option<Throttled<F, S, Req>>,
        },
        // A shared store is deciding; the call waits here for its answer.
        Remote {
            check: StoreCheck,
            pending: Option<Waiter<S, Req, F>>,
        },
        // The store reserved a slot `delay` ahead.
        Delayed {
            #[pin]
            sleep: Sleep,
            pending: Option<Waiter<S, Req, F>>,
        },
    }
}

impl<F, S, Req> State<F, S, Req> {
    fn rejected(retry_after: Duration) -> Self {
        NotCalled::rejected(retry_after).into_state()
    }
}

/// A waiting call's state, on the heap.
///
/// Its drop is out of line, so that the drop of every other call's future
/// is a branch the compiler can see through (inline, the drop of the timer
/// and of the parked call made every future's drop a call).
pub(crate) struct Parked<F, S, Req>(Option<Pin<Box<Wait<F, S, Req>>>>);

impl<F, S, Req> Parked<F, S, Req> {
    fn new(wait: Wait<F, S, Req>) -> Self {
        Self(Some(Box::pin(wait)))
    }
}

impl<F, S, Req> Drop for Parked<F, S, Req> {
    #[inline]
    fn drop(&mut self) {
        if let Some(wait) = self.0.take() {
            drop_wait(wait);
        }
    }
}

/// Drops a waiting call's state.
#[inline(never)]
fn drop_wait<F, S, Req>(wait: Pin<Box<Wait<F, S, Req>>>) {
    drop(wait);
}

/// What a shared store decided for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum Verdict {
    /// Call, after `delay` (zero unless throttled).
    Allow { delay: Duration },
    /// Refuse; the caller may try again after `retry_after`.
    Deny { retry_after: Duration },
}

/// A decision that needs a round trip to the store.
pub(crate) type StoreCheck = Pin<Box<dyn Future<Output = Verdict> + Send>>;

/// A throttled call: the limiter to check again, by when it must start,
/// and the parked call.
struct Throttled<F, S, Req> {
    limiter: Arc<Limiter>,
    /// The latest time the call may start; `None` when too far to represent.
    deadline: Option<Instant>,
    call: Waiter<S, Req, F>,
}

/// A call that was not made at once: refused, or parked until it may be.
///
/// Two words, returned in registers: the service builds a refusal out of
/// line, and a passed call's future is then written once, where the caller
/// keeps it. Had the refusal been a whole `ResponseFuture`, the two would
/// meet in a stack slot, and every passed call's future would be written
/// there and copied out.
pub(crate) enum NotCalled<F, S, Req> {
    Rejected { retry_after: u64 },
    Waiting { wait: Parked<F, S, Req> },
}

impl<F, S, Req> NotCalled<F, S, Req> {
    #[inline(always)]
    fn into_state(self) -> State<F, S, Req> {
        match self {
            Self::Rejected { retry_after } => State::Rejected { retry_after },
            Self::Waiting { wait } => State::Waiting { wait },
        }
    }

    pub(crate) fn rejected(retry_after: Duration) -> Self {
        Self::Rejected {
            retry_after: u64::try_from(retry_after.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn remote(check: StoreCheck, call: Waiter<S, Req, F>) -> Self {
        Self::Waiting {
            wait: Parked::new(Wait::Remote {
                check,
                pending: Some(call),
            }),
        }
    }

    pub(crate) fn throttled(
        limiter: Arc<Limiter>,
        wait: Duration,
        max_delay: Duration,
        call: Waiter<S, Req, F>,
    ) -> Self {
        let now = Instant::now();
        // `wait <= max_delay`, so a representable deadline bounds the wake-up.
        let deadline = now.checked_add(max_delay);
        let wake = now.checked_add(wait).unwrap_or(now);
        Self::Waiting {
            wait: Parked::new(Wait::Throttled {
                sleep: tokio::time::sleep_until(wake),
                waiter: Some(Throttled {
                    limiter,
                    deadline,
                    call,
                }),
            }),
        }
    }
}

impl<F, S, Req> ResponseFuture<F, S, Req> {
    #[inline(always)]
    pub(crate) fn called(future: F) -> Self {
        Self {
            state: State::Called { future },
        }
    }
}

impl<F, S, Req> From<NotCalled<F, S, Req>> for ResponseFuture<F, S, Req> {
    #[inline(always)]
    fn from(not_called: NotCalled<F, S, Req>) -> Self {
        Self {
            state: not_called.into_state(),
        }
    }
}

impl<F, S, Req, T, E> Future for ResponseFuture<F, S, Req>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        // The path of almost every call: the allowance let it through.
        if let StateProj::Called { future } = state.as_mut().project() {
            return future.poll(cx).map_err(Into::into);
        }
        poll_slow(state, cx)
    }
}

/// Throttles, waits for the shared store, or answers a refusal.
#[inline(never)]
fn poll_slow<F, S, Req, T, E>(
    mut state: Pin<&mut State<F, S, Req>>,
    cx: &mut Context<'_>,
) -> Poll<Result<T, BoxError>>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    loop {
        match state.as_mut().project() {
            StateProj::Called { future } => return future.poll(cx).map_err(Into::into),
            StateProj::Rejected { retry_after } => {
                let retry_after = Duration::from_nanos(*retry_after);
                return Poll::Ready(Err(RateLimited::new(retry_after).into()));
            }
            StateProj::Waiting { wait } => {
                let Some(wait) = wait.0.as_mut() else {
                    // Only reachable if polled after completion.
                    return Poll::Ready(Err(RateLimited::new(Duration::ZERO).into()));
                };
                let next = ready!(poll_wait(wait.as_mut(), cx));
                state.set(next);
            }
        }
    }
}

/// Polls a waiting call until it may call (the state that made the call)
/// or is refused.
fn poll_wait<F, S, Req>(
    mut wait: Pin<&mut Wait<F, S, Req>>,
    cx: &mut Context<'_>,
) -> Poll<State<F, S, Req>> {
    // Only reachable if polled after completion.
    let spent = || State::rejected(Duration::ZERO);
    loop {
        match wait.as_mut().project() {
            WaitProj::Remote { check, pending } => {
                let verdict = ready!(check.as_mut().poll(cx));
                let Some(pending) = pending.take() else {
                    return Poll::Ready(spent());
                };
                match verdict {
                    Verdict::Allow { delay } if delay.is_zero() => {
                        return Poll::Ready(State::Called {
                            future: pending.call(),
                        });
                    }
                    Verdict::Allow { delay } => {
                        let wake = Instant::now()
                            .checked_add(delay)
                            .unwrap_or_else(Instant::now);
                        wait.set(Wait::Delayed {
                            sleep: tokio::time::sleep_until(wake),
                            pending: Some(pending),
                        });
                    }
                    Verdict::Deny { retry_after } => {
                        return Poll::Ready(State::rejected(retry_after));
                    }
                }
            }
            WaitProj::Delayed { sleep, pending } => {
                ready!(sleep.poll(cx));
                let Some(pending) = pending.take() else {
                    return Poll::Ready(spent());
                };
                return Poll::Ready(State::Called {
                    future: pending.call(),
                });
            }
            WaitProj::Throttled { mut sleep, waiter } => {
                ready!(sleep.as_mut().poll(cx));
                let Some(w) = waiter.as_ref() else {
                    return Poll::Ready(spent());
                };
                match w.limiter.check() {
                    Ok(_) => {
                        let Some(Throttled { call, .. }) = waiter.take() else {
                            return Poll::Ready(spent());
                        };
                        return Poll::Ready(State::Called {
                            future: call.call(),
                        });
                    }
                    Err(not_until) => {
                        // Another call took the allowance first: wait
                        // again if that still starts before the deadline.
                        let now = TokioClock.now().0;
                        let wait = not_until.wait_time_from(TokioClock.now());
                        match now.checked_add(wait) {
                            Some(wake) if w.deadline.is_none_or(|d| wake <= d) => {
                                sleep.as_mut().reset(wake);
                            }
                            _ => return Poll::Ready(State::rejected(wait)),
                        }
                    }
                }
            }
        }
    }
}

impl<F, S, Req> fmt::Debug for ResponseFuture<F, S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Rejected { .. } => "rejected",
            State::Waiting { wait } => match wait.0.as_deref() {
                None => "spent",
                Some(Wait::Throttled { .. }) => "throttled",
                Some(Wait::Remote { .. }) => "remote",
                Some(Wait::Delayed { .. }) => "delayed",
            },
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
