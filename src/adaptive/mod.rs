//! Adaptive concurrency limits: a cap on the calls in flight that finds
//! itself, and client-side adaptive throttling.
//!
//! A static [bulkhead](crate::bulkhead) is a guess: set too high, a slowing
//! dependency queues calls until every caller times out; set too low, it
//! wastes capacity on a good day. An [`Adaptive`] limiter measures
//! instead. Each window (100 ms and 10 calls by default) it compares the
//! calls' round-trip time with the dependency's no-load round-trip time and
//! moves the limit, within `[min_limit, max_limit]`:
//!
//! - [`Gradient`] (the default), in the manner of Envoy's adaptive
//!   concurrency filter: the limit follows `limit × min_rtt / rtt + √limit`,
//!   smoothed, with the no-load round-trip time measured again every 10 s
//!   and whenever it looks stale, at a concurrency the dependency served
//!   without queueing (by Little's law, from the last window);
//! - [`Aimd`]: add one per window, multiply by 0.9 after a drop (a failure,
//!   a timeout or a call slower than 5 s).
//!
//! A call that finds the limit reached is refused at once with
//! [`ConcurrencyLimited`](crate::error::ConcurrencyLimited): a caller that
//! must queue should do so in front of the limiter, where it is bounded.
//!
//! With a [`Throttle`], calls are also refused locally with probability
//! `max(0, (requests − 2·accepts) / (requests + 1))` over the last two
//! minutes (the Google SRE book's client-side throttling), with
//! [`ClientThrottled`](crate::error::ClientThrottled): an overloaded
//! dependency gets less load gradually, before a breaker would open. Calls
//! the limit refuses are not counted: the dependency never saw them.
//!
//! To keep what an overloaded dependency receives within 1.2 times what it
//! serves, use the throttle with the adaptive limit (the limit keeps calls
//! it would shed from reaching it: 1.01 times on the simulated backend of
//! `tests/adaptive`); a throttle with the limit pinned high needs
//! [`Throttle::k`] 1.1 (1.07 times, at 90 % of the capacity served), as
//! `k` = 2 lets through twice what is accepted.
//!
//! Both refusals are rejections: retry does not retry them, fallbacks and
//! error responses treat them as they treat a full bulkhead and a rate
//! limit. The call path takes no lock and allocates nothing: a permit is a
//! compare-and-swap, the window's sums are atomic additions, and the first
//! call to end after a window closes it.
//!
//! ```
//! use steadfast::adaptive::AdaptiveLayer;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let layer = AdaptiveLayer::builder().name("inventory").build()?;
//! let handle = layer.handle();
//! let service = layer.layer(service_fn(|n: u32| async move {
//!     Ok::<_, steadfast::BoxError>(n * 2)
//! }));
//!
//! assert_eq!(service.oneshot(21).await?, 42);
//! assert!(handle.limit() >= handle.min_limit());
//! assert_eq!(handle.in_flight(), 0);
//! # Ok(())
//! # }
//! ```
//!
//! AIMD between 10 and 200, with throttling, and one limiter per host:
//!
//! ```
//! use std::time::Duration;
//! use steadfast::adaptive::{AdaptiveLayer, Aimd, KeyedAdaptiveLayer, Throttle};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let shared = AdaptiveLayer::builder()
//!     .aimd(Aimd::new().drop_rtt(Duration::from_secs(1)))
//!     .limits(10, 200)
//!     .initial_limit(20)
//!     .throttle(Throttle::new())
//!     .build()?;
//!
//! let per_host = KeyedAdaptiveLayer::builder(|req: &(String, String)| req.0.clone())
//!     .max_keys(1_000)
//!     .build()?;
//! let hosts = per_host.handle();
//!
//! let service = ServiceBuilder::new()
//!     .layer(shared)
//!     .layer(per_host)
//!     .service(service_fn(|(host, path): (String, String)| async move {
//!         Ok::<_, steadfast::BoxError>(format!("{host}{path}"))
//!     }));
//!
//! let body = service.oneshot(("example.com".into(), "/a".into())).await?;
//! assert_eq!(body, "example.com/a");
//! assert!(hosts.get(&"example.com".to_owned()).is_some());
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use crate::BoxError;
use crate::classify::Classify;

mod algorithm;
pub mod future;
mod handle;
mod keyed;
mod layer;
mod state;
mod throttle;

pub use algorithm::{Aimd, Algorithm, Gradient};
pub use handle::AdaptiveHandle;
pub use keyed::{
    KeyedAdaptive, KeyedAdaptiveHandle, KeyedAdaptiveLayer, KeyedAdaptiveLayerBuilder,
};
pub use layer::{AdaptiveLayer, AdaptiveLayerBuilder};
pub use throttle::Throttle;

use future::{ResponseFuture, judge_output};
use state::{Limiter, Node};

/// Caps the calls in flight to the inner service at a limit it adapts to
/// the measured round-trip times. Made by [`AdaptiveLayer`].
pub struct Adaptive<S, C> {
    inner: S,
    node: Arc<Node<C>>,
}

impl<S, C> Adaptive<S, C> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &AdaptiveLayer<C>) -> Self
    where
        AdaptiveLayer<C>: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }
}

impl<S, C> Adaptive<S, C> {
    /// A view of the limiter.
    pub fn handle(&self) -> AdaptiveHandle {
        AdaptiveHandle::new(Arc::clone(&self.node.limiter))
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the limiter.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C> Clone for Adaptive<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            node: Arc::clone(&self.node),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Adaptive<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adaptive")
            .field("inner", &self.inner)
            .field("limiter", &self.node.limiter)
            .finish()
    }
}

impl<S, C, Req> Service<Req> for Adaptive<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    C: Classify<Req, S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, C::Facts>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        admit(&self.node, &mut self.inner, request)
    }
}

/// Calls `inner` if the throttle and the limit let the call through, else
/// refuses it.
#[inline]
pub(crate) fn admit<S, C, Req>(
    node: &Arc<Node<C>>,
    inner: &mut S,
    request: Req,
) -> ResponseFuture<S::Future, C, C::Facts>
where
    S: Service<Req>,
    S::Error: 'static,
    C: Classify<Req, S::Response, S::Error>,
{
    if !node.limiter.throttle_admits() {
        emit_rejection(&node.limiter, true);
        return ResponseFuture::refused(true);
    }
    match node.try_acquire() {
        Some(permit) => {
            let facts = node.classifier.facts(&request);
            ResponseFuture::called(
                inner.call(request),
                permit,
                facts,
                judge_output::<C, Req, S::Response, S::Error>,
            )
        }
        None => {
            // Not counted by the throttle: the dependency never saw the
            // call, so it says nothing of what the dependency accepts.
            emit_rejection(&node.limiter, false);
            ResponseFuture::refused(false)
        }
    }
}

/// Reports a refused call, with the key of a keyed layer's limiter.
#[cold]
fn emit_rejection(limiter: &Limiter, throttled: bool) {
    use crate::event::Rejection;
    crate::event::emit_counted(
        &limiter.decisions,
        &crate::event::Listeners::none(),
        &crate::event::Event::Rejected {
            rejection: if throttled {
                Rejection::ClientThrottled
            } else {
                Rejection::ConcurrencyLimited
            },
            name: limiter.name(),
            key: limiter.key(),
            retry_after: None,
        },
    );
}

/// Reports a change of the limit.
#[cold]
fn emit_limit(limiter: &Limiter, from: usize, to: usize, reason: crate::event::LimitReason) {
    crate::event::emit_counted(
        &limiter.decisions,
        &crate::event::Listeners::none(),
        &crate::event::Event::LimitChanged {
            name: limiter.name(),
            key: limiter.key(),
            from,
            to,
            reason,
            min_rtt: limiter.min_rtt(),
            rtt: limiter.last_rtt(),
        },
    );
}
