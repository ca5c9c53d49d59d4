//! Bulkheads: a cap on how many calls are in flight to one dependency.
//!
//! A slow dependency should not take every task, connection and socket of
//! its callers with it. A [`Bulkhead`] lets at most `max_concurrent` calls
//! through at once; a call that finds every permit taken waits up to
//! `max_wait` for one (zero, the default, refuses it at once), within a
//! bounded queue of waiters, and is otherwise refused with
//! [`BulkheadFull`](crate::error::BulkheadFull).
//!
//! Admission happens in `call` and its future, not in `poll_ready`, so the
//! bulkhead works in axum, which treats services as always ready. The
//! permit lives in the response future: success, error, timeout or a drop
//! at any await point returns it.
//!
//! ```
//! use steadfast::bulkhead::BulkheadLayer;
//! use steadfast::error::BulkheadFull;
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let layer = BulkheadLayer::builder().max_concurrent(1).build()?;
//! let handle = layer.handle();
//! let mut service = layer.layer(service_fn(|n: u32| async move {
//!     Ok::<_, steadfast::BoxError>(n * 2)
//! }));
//!
//! // The first call holds the only permit until its future is done.
//! let first = service.ready().await?.call(1);
//! assert_eq!(handle.in_flight(), 1);
//! let err = service.ready().await?.call(2).await.unwrap_err();
//! assert!(err.is::<BulkheadFull>());
//!
//! assert_eq!(first.await?, 2);
//! assert_eq!(handle.available(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! Waiting for a permit, with a bounded queue, and one bulkhead per host:
//!
//! ```
//! use std::time::Duration;
//! use steadfast::bulkhead::{BulkheadLayer, KeyedBulkheadLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let shared = BulkheadLayer::builder()
//!     .name("inventory")
//!     .max_concurrent(10)
//!     .max_wait(Duration::from_millis(50))
//!     .queue(100)
//!     .build()?;
//!
//! // Requests are (host, path); each host gets 4 permits, at most 1,000 hosts.
//! let per_host = KeyedBulkheadLayer::builder(|req: &(String, String)| req.0.clone())
//!     .max_concurrent(4)
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
//! assert_eq!(hosts.get(&"example.com".to_owned()).map(|h| h.available()), Some(4));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::task::{Context, Poll};

use tower_service::Service;

use crate::BoxError;

pub mod future;
mod handle;
mod keyed;
mod layer;
mod state;

pub use handle::BulkheadHandle;
pub use keyed::{
    KeyedBulkhead, KeyedBulkheadHandle, KeyedBulkheadLayer, KeyedBulkheadLayerBuilder,
};
pub use layer::{BulkheadLayer, BulkheadLayerBuilder};
pub use state::QueueOrder;

use crate::stripe::Spread;
use future::ResponseFuture;
use state::Shared;

/// Caps how many calls to the inner service are in flight at once.
///
/// Made by [`BulkheadLayer`]. The inner service must be `Clone`: a call
/// that waits for a permit takes the (ready) inner service with it and
/// leaves a clone in its place, as tower's `Buffer` users do.
pub struct Bulkhead<S> {
    inner: S,
    shared: Spread<Shared>,
}

impl<S> Bulkhead<S> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &BulkheadLayer) -> Self
    where
        BulkheadLayer: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }
}

impl<S> Bulkhead<S> {
    pub(crate) fn from_shared(inner: S, shared: Spread<Shared>) -> Self {
        Self { inner, shared }
    }

    /// A view of the bulkhead's permits and waiters.
    pub fn handle(&self) -> BulkheadHandle {
        BulkheadHandle::new(self.shared.to_arc())
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the bulkhead.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for Bulkhead<S> {
    #[inline]
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Bulkhead<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("inner", &self.inner)
            .field("state", &*self.shared)
            .finish()
    }
}

impl<S, Req> Service<Req> for Bulkhead<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, request: Req) -> Self::Future {
        // A service cloned on another thread moves to this thread's lane
        // once, so that its permits count there.
        self.shared.rehome();
        admit(&self.shared, &mut self.inner, request)
    }
}

/// The future of a call no bulkhead guards (the bulkhead level of a
/// policy without a bulkhead): the bulkhead's own future, with no permit.
#[inline]
pub(crate) fn unguarded<F, S, Req>(future: F) -> ResponseFuture<F, S, Req> {
    ResponseFuture::unguarded(future)
}

/// Calls `inner` at once if a permit is free, else queues the call or
/// refuses it.
#[inline(always)]
fn admit<S, Req>(
    shared: &Spread<Shared>,
    inner: &mut S,
    request: Req,
) -> ResponseFuture<S::Future, S, Req>
where
    S: Service<Req> + Clone,
{
    if let Some(permit) = shared.try_acquire() {
        return ResponseFuture::called(inner.call(request), permit);
    }
    queue(shared, inner, request)
}

/// Queues a call that found every permit taken, or refuses it: out of
/// line, so that the call of every admitted call stays small enough to
/// inline into the level above.
#[cold]
#[inline(never)]
fn queue<S, Req>(
    shared: &Spread<Shared>,
    inner: &mut S,
    request: Req,
) -> ResponseFuture<S::Future, S, Req>
where
    S: Service<Req> + Clone,
{
    match shared.enter_queue() {
        Some(guard) => {
            // Take the service that was polled ready; leave a clone that the
            // caller will poll before its next call.
            let clone = inner.clone();
            let ready = std::mem::replace(inner, clone);
            ResponseFuture::waiting(guard, ready, request)
        }
        None => ResponseFuture::rejected(shared),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{Layer, ServiceExt};

    use super::*;

    #[test]
    fn a_service_cloned_on_one_thread_counts_its_permits_where_it_is_called() {
        let layer = BulkheadLayer::builder().max_concurrent(4).build().unwrap();
        let service = layer.layer(tower::service_fn(
            |x: u32| async move { Ok::<_, Infallible>(x) },
        ));
        let handle = service.handle();
        let mut clone = service.clone();
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let ready = clone.ready().await.unwrap();
                    let future = ready.call(1);
                    // The clone moved to this thread's lane on its call, and
                    // so did the permit it took.
                    assert!(ready.shared.counts_here());
                    assert_eq!(handle.in_flight(), 1);
                    assert_eq!(future.await.unwrap(), 1);
                });
            });
        });
        assert_eq!(handle.in_flight(), 0);
    }
}
