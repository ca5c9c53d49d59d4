//! The peer breakers as tower services, for the benches that set them
//! beside steadfast's: recloser (a count window, its `AsyncRecloser`) and
//! failsafe (a success rate over a time window, its futures API).

use std::task::{Context, Poll};
use std::time::Duration;

use failsafe::futures::CircuitBreaker as _;
use tower::Service;

/// recloser's breaker in front of `S`: a ring of the last `len` calls.
#[derive(Clone)]
pub struct Reclosed<S> {
    inner: S,
    breaker: recloser::AsyncRecloser,
}

impl<S> Reclosed<S> {
    pub fn new(inner: S, len: usize) -> Self {
        let breaker = recloser::Recloser::custom()
            .error_rate(0.5)
            .closed_len(len)
            .half_open_len(10)
            .open_wait(Duration::from_secs(30))
            .build();
        Self {
            inner,
            breaker: breaker.into(),
        }
    }
}

impl<S: Service<R>, R> Service<R> for Reclosed<S> {
    type Response = S::Response;
    type Error = recloser::Error<S::Error>;
    type Future = recloser::RecloserFuture<S::Future, recloser::AnyError>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(recloser::Error::Inner)
    }

    #[inline]
    fn call(&mut self, request: R) -> Self::Future {
        self.breaker.call(self.inner.call(request))
    }
}

type FailsafePolicy =
    failsafe::failure_policy::SuccessRateOverTimeWindow<failsafe::backoff::Constant>;
type FailsafeMachine = failsafe::StateMachine<FailsafePolicy, ()>;

/// failsafe's breaker in front of `S`: a success rate of at least half
/// over the last `window`, once `minimum` calls were made in it.
#[derive(Clone)]
pub struct Failsafe<S> {
    inner: S,
    breaker: FailsafeMachine,
}

impl<S> Failsafe<S> {
    pub fn new(inner: S, window: Duration, minimum: u32) -> Self {
        let policy = failsafe::failure_policy::success_rate_over_time_window(
            0.5,
            minimum,
            window,
            failsafe::backoff::constant(Duration::from_secs(30)),
        );
        Self {
            inner,
            breaker: failsafe::Config::new().failure_policy(policy).build(),
        }
    }
}

impl<S: Service<R>, R> Service<R> for Failsafe<S> {
    type Response = S::Response;
    type Error = failsafe::Error<S::Error>;
    type Future = failsafe::futures::ResponseFuture<S::Future, FailsafePolicy, (), failsafe::Any>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(failsafe::Error::Inner)
    }

    #[inline]
    fn call(&mut self, request: R) -> Self::Future {
        self.breaker.call(self.inner.call(request))
    }
}
