//! The future returned by [`Bulkhead`](super::Bulkhead).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::sync::futures::OwnedNotified;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::state::{Permit, Shared, WaitGuard, emit_admitted_after_wait, emit_rejection};
use crate::BoxError;
use crate::error::BulkheadFull;
use crate::oneshot::Waiter;
use crate::stripe::Spread;

pin_project! {
    /// The response future of [`Bulkhead`](super::Bulkhead).
    ///
    /// It holds the call's permit until the inner future completes or is
    /// dropped. A call that waits for a permit keeps its request and the
    /// inner service here until a permit is free, then calls it.
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
            permit: Option<Permit>,
        },
        // Only a call that finds every permit taken waits: its registration
        // with the waiters and its timer live out of line, so that the
        // future of every other call stays the size of the inner one plus
        // its permit.
        Waiting {
            wait: Pin<Box<Wait<F, S, Req>>>,
        },
        Rejected,
    }
}

pin_project! {
    /// A waiting call's place among the waiters, its timer and what it
    /// needs to make the call.
    struct Wait<F, S, Req> {
        #[pin]
        notified: OwnedNotified,
        #[pin]
        sleep: Option<Sleep>,
        waiter: Option<Queued<F, S, Req>>,
    }
}

/// What a waiting call keeps until its permit arrives: its place in the
/// queue and the parked call.
struct Queued<F, S, Req> {
    guard: WaitGuard,
    call: Waiter<S, Req, F>,
    since: Instant,
}

impl<F, S, Req> Queued<F, S, Req> {
    /// Leaves the queue and makes the call with the permit it got.
    fn admit(self, permit: Permit) -> State<F, S, Req> {
        let Queued { guard, call, since } = self;
        emit_admitted_after_wait(&guard.shared, since.elapsed());
        drop(guard);
        State::Called {
            future: call.call(),
            permit: Some(permit),
        }
    }
}

impl<F, S, Req> ResponseFuture<F, S, Req> {
    pub(crate) fn called(future: F, permit: Permit) -> Self {
        Self {
            state: State::Called {
                future,
                permit: Some(permit),
            },
        }
    }

    /// A call that holds no permit.
    pub(crate) fn unguarded(future: F) -> Self {
        Self {
            state: State::Called {
                future,
                permit: None,
            },
        }
    }

    pub(crate) fn waiting(guard: WaitGuard, service: S, request: Req) -> Self
    where
        S: Service<Req, Future = F>,
    {
        let shared = &guard.shared;
        let since = Instant::now();
        // A deadline too far to represent means no deadline.
        let sleep = since
            .checked_add(shared.max_wait())
            .map(tokio::time::sleep_until);
        Self {
            state: State::Waiting {
                wait: Box::pin(Wait {
                    notified: Arc::clone(&shared.notify).notified_owned(),
                    sleep,
                    waiter: Some(Queued {
                        guard,
                        // The service was ready when `call` took it.
                        call: Waiter::new(service, request),
                        since,
                    }),
                }),
            },
        }
    }

    pub(crate) fn rejected(shared: &Shared) -> Self {
        emit_rejection(shared);
        Self {
            state: State::Rejected,
        }
    }
}

impl<F, S, Req, T, E> Future for ResponseFuture<F, S, Req>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        // The path of almost every call: a permit was free at once.
        if let StateProj::Called { future, permit } = state.as_mut().project() {
            let output = ready!(future.poll(cx));
            // Return the permit as soon as the call is over.
            drop(permit.take());
            return Poll::Ready(output.map_err(Into::into));
        }
        poll_slow(state, cx)
    }
}

/// Waits for a permit, calls with it, or answers a refusal.
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
            StateProj::Called { future, permit } => {
                let output = ready!(future.poll(cx));
                drop(permit.take());
                return Poll::Ready(output.map_err(Into::into));
            }
            StateProj::Waiting { wait } => {
                match ready!(poll_wait(wait.as_mut(), cx)) {
                    Ok(next) => state.set(next),
                    Err(timed_out) => {
                        // Leave the waiters (the place in the queue is
                        // already left) before the event is reported.
                        state.set(State::Rejected);
                        if let Some(shared) = timed_out {
                            emit_rejection(&shared);
                        }
                        return Poll::Ready(Err(BulkheadFull::new().into()));
                    }
                }
            }
            StateProj::Rejected => return Poll::Ready(Err(BulkheadFull::new().into())),
        }
    }
}

/// What a wait ends with: the call made with a permit, or the bulkhead to
/// report a refusal to.
type Waited<F, S, Req> = Result<State<F, S, Req>, Option<Spread<Shared>>>;

/// Polls a waiting call: the state that makes the call once it has a
/// permit, or an error once it has waited `max_wait` in vain, with the
/// bulkhead to report the refusal to (`None` if polled after completion).
fn poll_wait<F, S, Req>(
    wait: Pin<&mut Wait<F, S, Req>>,
    cx: &mut Context<'_>,
) -> Poll<Waited<F, S, Req>> {
    let mut this = wait.project();
    loop {
        let Some(w) = this.waiter.take() else {
            // Only reachable if polled after completion.
            return Poll::Ready(Err(None));
        };
        // Register first, then retry: a permit returned after the retry
        // wakes this registration.
        this.notified.as_mut().enable();
        if let Some(permit) = w.guard.shared.try_acquire() {
            return Poll::Ready(Ok(w.admit(permit)));
        }
        if this.notified.as_mut().poll(cx).is_ready() {
            if let Some(permit) = w.guard.shared.claim_handoff() {
                return Poll::Ready(Ok(w.admit(permit)));
            }
            // Woken, but the permit was freed instead: try again.
            this.notified
                .set(Arc::clone(&w.guard.shared.notify).notified_owned());
            *this.waiter = Some(w);
            continue;
        }
        if this
            .sleep
            .as_mut()
            .as_pin_mut()
            .is_some_and(|s| s.poll(cx).is_ready())
        {
            let shared = w.guard.shared.clone();
            // Leave the queue before the event counts waiters.
            drop(w);
            return Poll::Ready(Err(Some(shared)));
        }
        *this.waiter = Some(w);
        return Poll::Pending;
    }
}

impl<F, S, Req> fmt::Debug for ResponseFuture<F, S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Waiting { .. } => "waiting",
            State::Rejected => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
