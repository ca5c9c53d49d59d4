//! Plumbing the layers' futures share: readiness then the call, a call
//! parked until its turn, and the rules every response future follows.
//!
//! This module is a primitive: it imports nothing from the layers.
//!
//! # Design
//!
//! - **Ready, then call.** A future that sends a request itself (a retry's
//!   later attempts, fallback's alternate, a hedge's copies, a scatter's
//!   branches) holds a [`Oneshot`]: the service until it is ready, then the
//!   call's future, as tower's `util::Oneshot` does. [`Oneshot::poll_with`]
//!   makes the call through a closure, so a layer can spend a budget's
//!   withdrawal, scope the call or keep the service for another attempt
//!   without writing the readiness loop again.
//! - **A call that waits for its turn** (a permit of the bulkhead, an
//!   allowance of the rate limiter, a shared store's answer) is a
//!   [`Waiter`]: the service, already ready, the request, and `S::call`.
//!   What it waits on (the bulkhead's queue with its FIFO or LIFO handoff,
//!   the limiter's clock) stays with the layer.
//! - **Keeping `Req` out of a future's bounds.** There were three ways: a
//!   `fn` pointer taken when the future is made, a `PhantomData<fn(Req)>`
//!   type parameter, and bounds on the future's type definition. The one
//!   kept is the first. Type definitions carry no bounds, and the inner
//!   future is a type parameter `F` of its own, not `S::Future`. What later
//!   needs `Req` is captured as a plain `fn` pointer when the future is made,
//!   where `S: Service<Req>` and `C: Classify<Req, ..>` are known: `S::call`
//!   in a parked [`Waiter`] (bulkhead, rate limit), the classifier's
//!   judgement in the breaker's and the adaptive limiter's `JudgeFn`. The
//!   future's type then names no `Req`, and its `Future` impl bounds `F`
//!   alone, as tower's futures do. The pointer is called once per call at
//!   most, where a judgement or the call is made anyway. A future that
//!   holds the request itself (a copy to send again, a parked call) has
//!   `Req` as a parameter for that field, not for a bound. Only a future
//!   that polls readiness names `S: Service<Req>`, on the impl that polls
//!   it ([`Oneshot::poll_with`]). The public futures of retry, hedge,
//!   scatter and fallback still bound their definitions, because their
//!   fields name `S::Future` and `C::Facts`. Observe's futures still carry a
//!   `PhantomData<fn(Req)>`, to be replaced by a `JudgeFn` when that module
//!   is split.
//! - **Timers.** A timer armed only off the fast path (a retry's backoff, a
//!   wait for a permit, an allowance or a shared store, a chaos delay) is
//!   boxed, with the rest of that path's state: the call that passes pays
//!   nothing for it, in size or in moves, and the call that takes that path
//!   makes one allocation. A timer that every call arms, or that every call
//!   still pending after its first poll arms (an attempt timeout, a total
//!   deadline, a hedge's delay, a scatter stage's timeout, a fallback's
//!   latency budget), is held inline, as an `Option<Sleep>` when it is
//!   armed late: boxing it would allocate on the path of every real call.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_service::Service;

use crate::error::BoxError;

pin_project! {
    /// Readiness, then one call: tower's `Oneshot`, with the call made
    /// through a closure (see [`poll_with`](Self::poll_with)).
    #[project = OneshotProj]
    #[project_replace = OneshotReplace]
    pub(crate) enum Oneshot<S, Req, F> {
        // Waiting for the service to be ready.
        NotReady { service: S, request: Req },
        // The call is under way.
        Called { #[pin] future: F },
        // The outcome has been taken, or readiness failed.
        Done,
    }
}

impl<S, Req, F> Oneshot<S, Req, F> {
    /// Readiness of `service`, then the call of `request`.
    pub(crate) const fn new(service: S, request: Req) -> Self {
        Oneshot::NotReady { service, request }
    }

    /// Whether the call has been made and its outcome not yet taken.
    pub(crate) fn is_called(&self) -> bool {
        matches!(self, Oneshot::Called { .. })
    }

    /// Polls the call's future, if the call has been made: `None` before
    /// the call (and after the service failed to be ready). Once the call
    /// has answered, the caller drops or replaces this value, as it would
    /// any future that completed.
    #[inline]
    fn poll_called(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>>
    where
        F: Future,
    {
        match self.project() {
            OneshotProj::Called { future } => future.poll(cx).map(Some),
            OneshotProj::NotReady { .. } | OneshotProj::Done => Poll::Ready(None),
        }
    }

    /// Polls the service's readiness, makes the call with `call` (which
    /// takes the ready service, and may keep it), then polls the call.
    ///
    /// Answers `Err` if the service failed to be ready, `Ok` with the
    /// call's output otherwise, and `None` if polled again after the
    /// service failed to be ready.
    #[inline]
    pub(crate) fn poll_with(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        call: impl FnOnce(S, Req) -> F,
    ) -> Poll<Option<Result<F::Output, S::Error>>>
    where
        S: Service<Req>,
        F: Future,
    {
        if let OneshotProj::NotReady { service, .. } = self.as_mut().project() {
            if let Err(err) = ready!(service.poll_ready(cx)) {
                self.set(Oneshot::Done);
                return Poll::Ready(Some(Err(err)));
            }
            if let OneshotReplace::NotReady { service, request } =
                self.as_mut().project_replace(Oneshot::Done)
            {
                self.set(Oneshot::Called {
                    future: call(service, request),
                });
            }
        }
        self.poll_called(cx).map(|output| output.map(Ok))
    }
}

const SPENT: &str = "call polled after its service failed to be ready";

impl<S, Req> Future for Oneshot<S, Req, S::Future>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let polled = ready!(self.poll_with(cx, |mut service, request| service.call(request)));
        Poll::Ready(match polled {
            Some(Ok(output)) => output.map_err(Into::into),
            Some(Err(err)) => Err(err.into()),
            None => Err(SPENT.into()),
        })
    }
}

impl<S, Req, F> fmt::Debug for Oneshot<S, Req, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self {
            Oneshot::NotReady { .. } => "not_ready",
            Oneshot::Called { .. } => "called",
            Oneshot::Done => "done",
        };
        f.debug_struct("Oneshot").field("state", &state).finish()
    }
}

/// A call waiting for its turn: the service (already ready), the request,
/// and `S::call`, kept as a function pointer so that the future holding it
/// needs bounds on its inner future `F` only.
pub(crate) struct Waiter<S, Req, F> {
    service: S,
    request: Req,
    call: fn(&mut S, Req) -> F,
}

impl<S, Req, F> Waiter<S, Req, F> {
    /// Parks the call of `request` on `service`, which has been found ready.
    pub(crate) fn new(service: S, request: Req) -> Self
    where
        S: Service<Req, Future = F>,
    {
        Self {
            service,
            request,
            call: S::call,
        }
    }

    /// Its turn has come: makes the call.
    pub(crate) fn call(self) -> F {
        let Self {
            mut service,
            request,
            call,
        } = self;
        call(&mut service, request)
    }
}

impl<S, Req, F> fmt::Debug for Waiter<S, Req, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::future::{Ready, ready};

    use tokio_test::{assert_pending, assert_ready, task};
    use tower_test::mock;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_for_readiness_then_calls_once() {
        let (service, mut handle) = mock::pair::<u32, u32>();
        handle.allow(0);
        let mut call = task::spawn(Oneshot::new(service, 7));
        assert_pending!(call.poll());
        assert!(!call.is_called());

        handle.allow(1);
        assert!(call.is_woken());
        assert_pending!(call.poll());
        assert!(call.is_called());
        let (request, respond) = handle.next_request().await.expect("the call was made");
        assert_eq!(request, 7);
        respond.send_response(8);
        assert_eq!(assert_ready!(call.poll()).expect("answered"), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn a_readiness_failure_is_told_apart_from_the_call_failing() {
        let (service, mut handle) = mock::pair::<u32, u32>();
        handle.send_error("not ready");
        let mut call = task::spawn(Oneshot::new(service, 1));
        let polled = call.enter(|cx, call| call.poll_with(cx, |mut s, r| s.call(r)));
        let Poll::Ready(Some(Err(err))) = polled else {
            panic!("readiness failed, and is answered as such");
        };
        assert_eq!(err.to_string(), "not ready");
        assert!(handle.next_request().await.is_none(), "no call was made");
        // Polled again: an error, not a panic or a stall.
        assert_eq!(assert_ready!(call.poll()).unwrap_err().to_string(), SPENT);
    }

    #[test]
    fn the_call_closure_may_keep_the_service() {
        #[derive(Clone, Copy)]
        struct Double;
        impl Service<u32> for Double {
            type Response = u32;
            type Error = std::convert::Infallible;
            type Future = Ready<Result<u32, Self::Error>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, request: u32) -> Self::Future {
                ready(Ok(request * 2))
            }
        }
        let mut kept = None;
        let mut call = task::spawn(Oneshot::new(Double, 21));
        let polled = call.enter(|cx, call| {
            call.poll_with(cx, |mut service, request| {
                let future = service.call(request);
                kept = Some(service);
                future
            })
        });
        assert!(matches!(polled, Poll::Ready(Some(Ok(Ok(42))))));
        assert!(kept.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_calls_when_its_turn_comes() {
        let (mut service, mut handle) = mock::pair::<u32, u32>();
        tower::ServiceExt::ready(&mut service).await.expect("ready");
        let waiter = Waiter::new(service, 5);
        let mut future = task::spawn(waiter.call());
        assert_pending!(future.poll());
        let (request, respond) = handle.next_request().await.expect("called");
        assert_eq!(request, 5);
        respond.send_response(6);
        assert_eq!(assert_ready!(future.poll()).expect("answered"), 6);
    }
}
