//! Circuit breaker: stop calling a dependency that keeps failing, and let
//! a few probes find out when it has recovered.
//!
//! A [`CircuitBreaker`] judges each call's outcome with a
//! [`Classify`]er and keeps the outcomes in a sliding window: the last N
//! calls ([`count_window`](CircuitBreakerBuilder::count_window), where the
//! oldest outcome leaves as each new one enters) or the calls of the last
//! D ([`time_window`](CircuitBreakerBuilder::time_window), in buckets). Once
//! the window holds at least
//! [`minimum_calls`](CircuitBreakerBuilder::minimum_calls), the breaker
//! opens when the failure rate, or the rate of calls slower than
//! [`slow_call_duration`](CircuitBreakerBuilder::slow_call_duration)
//! whatever their verdict, reaches its threshold. Beside the rates, a fast
//! trip opens it after a run of failed calls
//! ([`consecutive_failures`](CircuitBreakerBuilder::consecutive_failures)):
//! a rate over a long window full of past successes cannot see a short
//! total outage, a run of failures sees it in a few calls. Functional errors (a 404)
//! count as successes; a call refused by an inner policy
//! ([`Verdict::Rejected`](crate::classify::Verdict::Rejected)) is not
//! counted.
//!
//! While open, calls fail at once with a [`CircuitOpen`] error that carries
//! the time left. The open period can grow on repeated openings
//! ([`open_backoff`](CircuitBreakerBuilder::open_backoff)). With
//! [`honor_retry_after`](CircuitBreakerBuilder::honor_retry_after), a
//! failure's retry-after hint (a 503 or 429 with `Retry-After`) counts for
//! every caller once it ends a run of failed calls
//! ([`retry_after_run`](CircuitBreakerBuilder::retry_after_run), 5 by
//! default): it opens the breaker at once for the period the callee asked
//! for, or extends an opening to it. Then
//! the breaker is half-open: it lets
//! [`half_open_probes`](CircuitBreakerBuilder::half_open_probes) calls
//! through, and their outcomes, judged against the same thresholds, close
//! or reopen it. [`max_half_open_wait`](CircuitBreakerBuilder::max_half_open_wait)
//! reopens a breaker whose probes never end.
//!
//! A [`CircuitBreakerHandle`] reads the [`State`] and a [`Snapshot`] of the
//! window, and forces the breaker open, closed ([`State::Disabled`]) or
//! metrics-only. Transitions are `tracing` events with target
//! `steadfast::circuit_breaker` and fields `policy`, `name`, `key`, `from`,
//! `to`, `reason` and `delay_ms`.
//!
//! While closed, a call costs a few atomic operations and no lock; the
//! breaker is shared by every clone of the layer and every service it made.
//! Threads calling at once write no common cache line on most calls: a
//! call holds a reference of its thread's own, and plain successes enter
//! the window in per-thread batches, within the bound that
//! [`count_window`](CircuitBreakerBuilder::count_window) and
//! [`time_window`](CircuitBreakerBuilder::time_window) state.
//! [`KeyedCircuitBreakerLayer`] gives each key (a host, a route) its own
//! breaker, with a bounded number of keys.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use steadfast::circuit_breaker::{CircuitBreakerLayer, State};
//! use steadfast::error::CircuitOpen;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let breaker = CircuitBreakerLayer::builder()
//!     .count_window(10)
//!     .minimum_calls(4)
//!     .failure_rate_threshold(50.0)
//!     .open_duration(Duration::from_secs(5))
//!     .build()?;
//! let handle = breaker.handle();
//! let mut service = ServiceBuilder::new()
//!     .layer(breaker)
//!     .service(service_fn(|fail: bool| async move {
//!         if fail { Err("connection reset") } else { Ok("pong") }
//!     }));
//!
//! for fail in [false, true, false, true] {
//!     let _ = service.ready().await?.call(fail).await;
//! }
//! assert_eq!(handle.state(), State::Open);
//! let err = service.ready().await?.call(false).await.unwrap_err();
//! let open = err.downcast_ref::<CircuitOpen>().expect("refused");
//! assert!(open.remaining() <= Duration::from_secs(5));
//! # Ok(())
//! # }
//! ```
//!
//! # Slow calls, growing open periods, keys
//!
//! ```
//! use std::time::Duration;
//! use steadfast::circuit_breaker::{KeyedCircuitBreakerLayer, State};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! // One breaker per host: judge the calls of the last 30 s, open when half
//! // of them fail or 80 % take longer than 2 s, for 5 s, then 10 s, 20 s,
//! // up to 60 s while the host keeps failing its probes.
//! let breakers = KeyedCircuitBreakerLayer::builder()
//!     .key(|(host, _path): &(&'static str, &'static str)| *host)
//!     .max_keys(1_000)
//!     .idle(Some(Duration::from_secs(600)))
//!     .time_window(Duration::from_secs(30), 10)
//!     .minimum_calls(20)
//!     .slow_call_duration(Duration::from_secs(2))
//!     .slow_call_rate_threshold(80.0)
//!     .open_duration(Duration::from_secs(5))
//!     .open_backoff(2.0, Duration::from_secs(60))
//!     .half_open_probes(3)
//!     .max_half_open_wait(Duration::from_secs(30))
//!     .build()?;
//! let service = ServiceBuilder::new()
//!     .layer(breakers.clone())
//!     .service(service_fn(|(host, path): (&'static str, &'static str)| async move {
//!         Ok::<_, steadfast::BoxError>(format!("{host}{path}"))
//!     }));
//!
//! assert_eq!(service.oneshot(("a.example", "/x")).await?, "a.example/x");
//! breakers.get_or_insert(&"b.example").force_open();
//! assert_eq!(breakers.get_or_insert(&"a.example").state(), State::Closed);
//! # Ok(())
//! # }
//! ```
//!
//! [`Classify`]: crate::classify::Classify
//! [`CircuitOpen`]: crate::error::CircuitOpen

mod config;
pub mod future;
mod handle;
mod keyed;
mod layer;
mod state;
mod window;

use std::fmt;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_service::Service;

pub use self::config::{CircuitBreakerBuilder, Single};
pub use self::handle::{CircuitBreakerHandle, Snapshot};
pub use self::keyed::{Keyed, KeyedCircuitBreaker, KeyedCircuitBreakerLayer};
pub use self::layer::CircuitBreakerLayer;
pub use self::state::State;

use self::future::{Call, ResponseFuture, live_deadline};
use self::handle::{Holder, Shared};
use self::state::Ticket;
use crate::BoxError;
use crate::classify::{Classify, DefaultClassifier};
use crate::stripe::Spread;

/// A service guarded by a circuit breaker; made by [`CircuitBreakerLayer`].
pub struct CircuitBreaker<S, C = DefaultClassifier> {
    inner: S,
    // A clone refers to the breaker through its thread's lane: see
    // `Spread`. The retry level clones the service below it on every call.
    shared: Spread<Shared<C>>,
}

impl<S, C> CircuitBreaker<S, C> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &CircuitBreakerLayer<C>) -> Self
    where
        CircuitBreakerLayer<C>: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }
}

impl<S, C> CircuitBreaker<S, C> {
    pub(crate) fn from_shared(inner: S, shared: Spread<Shared<C>>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the breaker, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C: Send + Sync + 'static> CircuitBreaker<S, C> {
    /// A handle on this service's breaker.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(self.shared.to_arc())
    }
}

impl<S: Clone, C> Clone for CircuitBreaker<S, C> {
    #[inline]
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("state", &self.shared.breaker.state())
            .finish()
    }
}

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    C: Classify<Req, S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, C::Facts, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, request: Req) -> Self::Future {
        // A service cloned on another thread moves to this thread's lane
        // once, so that its own clones and its calls count there.
        self.shared.rehome();
        let shared = &self.shared;
        call_through(
            &mut self.inner,
            shared,
            || (Holder::Lane(shared.clone()), window::lane_slot()),
            request,
        )
    }
}

/// The future of a call no breaker guards (the breaker level of a
/// policy without a breaker): the breaker's own future, untracked.
#[inline]
pub(crate) fn unguarded<F, C, Fa, Req>(future: F) -> ResponseFuture<F, C, Fa, Req>
where
    F: std::future::Future,
{
    ResponseFuture::called(future, None)
}

/// Admits `request` through `shared`'s breaker and calls `inner`, or
/// refuses it; `holder` gives the reference an admitted call keeps and
/// the batching lane its outcome counts on.
#[inline(always)]
pub(crate) fn call_through<S, C, Req>(
    inner: &mut S,
    shared: &Shared<C>,
    holder: impl FnOnce() -> (Holder<C>, usize),
    request: Req,
) -> ResponseFuture<S::Future, C, C::Facts, Req>
where
    S: Service<Req>,
    S::Error: 'static,
    C: Classify<Req, S::Response, S::Error>,
{
    match shared.breaker.admit() {
        Err(open) => {
            shared.breaker.emit_rejection(&open);
            ResponseFuture::refused(open)
        }
        Ok(Ticket::Untracked) => ResponseFuture::called(inner.call(request), None),
        Ok(ticket) => {
            let facts = shared.classifier.facts(&request);
            let breaker = &shared.breaker;
            let started = breaker.settings.slow.map(|_| breaker.stamp(Instant::now()));
            let deadline = live_deadline().map(|at| breaker.stamp(at));
            if deadline.is_none() && matches!(ticket, Ticket::Counted(_)) {
                // A panic in the inner call leaves nothing to release: the
                // call is made first, and its guard after.
                let future = inner.call(request);
                let (held, slot) = holder();
                let call = Call {
                    shared: held,
                    ticket,
                    slot: slot as u32,
                    facts,
                    started,
                    deadline,
                };
                return ResponseFuture::called(future, Some(call));
            }
            // Made before the inner call, so that a panic in it frees a
            // probe slot, or counts a call the deadline ended.
            let (held, slot) = holder();
            let call = Call {
                shared: held,
                ticket,
                slot: slot as u32,
                facts,
                started,
                deadline,
            };
            ResponseFuture::called(inner.call(request), Some(call))
        }
    }
}
