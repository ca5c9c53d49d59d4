//! Attempt timeouts and the total deadline of a logical call.
//!
//! Two layers, used together:
//!
//! - [`TimeoutLayer`] bounds one attempt. When it fires the attempt fails
//!   with [`Elapsed`](crate::error::Elapsed), a transient failure that
//!   retry may try again and a breaker counts.
//! - [`TotalDeadlineLayer`] bounds the whole logical call, every retry and
//!   backoff included, and makes its [`Deadline`] visible to the layers
//!   inside: an attempt timeout is clamped to the time left, and retry never
//!   starts a backoff sleep or an attempt that cannot finish before it. When
//!   it fires the call fails with
//!   [`DeadlineExceeded`](crate::error::DeadlineExceeded), which no policy
//!   retries, and one `Rejected` event (kind `deadline_exceeded`, name
//!   `total_deadline`) reports it, whether the deadline's own timer or an
//!   attempt timeout clamped to it ended the call.
//!
//! A circuit breaker inside the deadline counts an attempt that was made
//! in time and then ended by the deadline (cut by a clamped attempt
//! timeout, or dropped unfinished) as a failure: the callee did not answer
//! in time. An attempt made after the deadline passed is never started and
//! not counted.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use steadfast::error::{DeadlineExceeded, Elapsed};
//! use steadfast::timeout::{TimeoutLayer, TotalDeadlineLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::ConfigError> {
//! let slow = service_fn(|delay: Duration| async move {
//!     tokio::time::sleep(delay).await;
//!     Ok::<_, steadfast::BoxError>("done")
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_millis(100))?)
//!     .service(slow);
//!
//! let ok = svc.clone().oneshot(Duration::from_millis(10)).await;
//! assert_eq!(ok.unwrap(), "done");
//! let err = svc.clone().oneshot(Duration::from_secs(1)).await.unwrap_err();
//! assert!(err.is::<Elapsed>());
//!
//! // A total deadline shorter than the attempt timeout wins.
//! let svc = ServiceBuilder::new()
//!     .layer(TotalDeadlineLayer::new(Duration::from_millis(30))?)
//!     .layer(TimeoutLayer::new(Duration::from_millis(100))?)
//!     .service(slow);
//! let err = svc.oneshot(Duration::from_secs(1)).await.unwrap_err();
//! assert!(err.is::<DeadlineExceeded>());
//! # Ok(())
//! # }
//! ```
//!
//! # Reading the deadline
//!
//! Code running inside a [`TotalDeadline`] (inner layers, the service, an
//! axum handler) can ask how long it has left:
//!
//! ```
//! use std::time::Duration;
//! use steadfast::timeout::{Deadline, TotalDeadlineLayer};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let svc = TotalDeadlineLayer::new(Duration::from_secs(2))?.layer(service_fn(|()| async {
//!     let left = Deadline::current().map(Deadline::remaining);
//!     Ok::<_, steadfast::BoxError>(left)
//! }));
//! assert_eq!(svc.oneshot(()).await?, Some(Duration::from_secs(2)));
//! # Ok(())
//! # }
//! ```

use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_service::Service;

use crate::error::BoxError;
use crate::intern::{CAP, Interner, Shared};

pub mod future;
mod layer;

/// The pieces of the total deadline other layers reuse.
pub(crate) mod deadline_parts {
    pub(crate) use super::future::poll_deadline;
    pub(crate) use crate::deadline::later;
}

pub use self::layer::{TimeoutLayer, TotalDeadlineLayer};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use crate::deadline::ExtensionStamp;
pub(crate) use crate::deadline::later;
pub use crate::deadline::{Deadline, NoStamp, Stamp};
pub(crate) use future::ResponseFuture as AttemptFuture;

/// A timeout layer's name and the metric series of its decisions, made
/// with the layer and shared by its services and futures: interned (one
/// per distinct name, for the life of the process; copying it is free),
/// or counted once the table of names is full. `None`: a deadline no
/// layer made (a server's deadline read from the wire, an attempt no
/// timeout bounds), with the default name.
type Name = Option<Shared<Named>>;

/// What [`Name`] points to.
#[derive(Debug)]
pub(crate) struct Named {
    /// `None`: the default name.
    name: Option<Box<str>>,
    /// The series of the layers with this name (a series is its metric
    /// and labels: equal names share them).
    decisions: crate::event::Decisions,
}

/// Every layer with the default name.
static DEFAULT_NAME: Named = Named {
    name: None,
    decisions: crate::event::Decisions::new(),
};

/// The names layers were given, one [`Named`] each.
static NAMES: Interner<Box<str>, Named> = Interner::new(CAP);

impl Named {
    /// The name of a layer, `None` for its default.
    fn new(name: Option<&str>) -> Name {
        Some(match name {
            None => Shared::Static(&DEFAULT_NAME),
            Some(name) => Self::named_in(&NAMES, name),
        })
    }

    /// `name`'s entry in `table`.
    fn named_in(table: &Interner<Box<str>, Named>, name: &str) -> Shared<Named> {
        table.get_or_make(Box::from(name), || Self {
            name: Some(Box::from(name)),
            decisions: crate::event::Decisions::new(),
        })
    }

    /// The name `named` carries, or `default`, and its layer's series.
    #[inline]
    fn parts<'a>(
        named: &'a Name,
        default: &'static str,
    ) -> (&'a str, Option<&'a crate::event::Decisions>) {
        match named {
            Some(named) => (
                named.name.as_deref().unwrap_or(default),
                Some(&named.decisions),
            ),
            None => (default, None),
        }
    }
}

/// The future of an attempt no timeout layer bounds (the attempt level of
/// a policy without an attempt timeout).
#[inline]
pub(crate) fn unbounded<F>(future: F) -> AttemptFuture<F> {
    AttemptFuture::unbounded(future)
}

/// Fails an attempt that takes longer than its timeout, or than the time
/// left before the total [`Deadline`], whichever comes first.
///
/// Made by [`TimeoutLayer`].
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
    name: Name,
}

impl<S> Timeout<S> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &TimeoutLayer) -> Self
    where
        TimeoutLayer: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }
}

impl<S> Timeout<S> {
    fn from_parts(inner: S, timeout: Duration, name: Name) -> Self {
        Self {
            inner,
            timeout,
            name,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for Timeout<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = future::ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, request: Req) -> Self::Future {
        let future = self.inner.call(request);
        // Under a total deadline, the reading its call took, if the call
        // runs down from it now: a reading is only ever made with one.
        let deadline = Deadline::current().map(Deadline::instant);
        let start = deadline
            .and_then(|_| crate::deadline::reading())
            .unwrap_or_else(Instant::now);
        future::ResponseFuture::new(future, start, self.timeout, deadline, self.name.clone())
    }
}

/// Bounds a whole logical call and shows its [`Deadline`] to the layers
/// inside. An earlier deadline already in force (an outer total deadline,
/// a server's deadline from the wire) stays in force.
///
/// Made by [`TotalDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct TotalDeadline<S, St = NoStamp> {
    inner: S,
    total: Duration,
    stamp: St,
    name: Name,
}

impl<S, St> TotalDeadline<S, St> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &TotalDeadlineLayer<St>) -> Self
    where
        TotalDeadlineLayer<St>: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }
}

impl<S, St> TotalDeadline<S, St> {
    fn from_parts(inner: S, total: Duration, stamp: St, name: Name) -> Self {
        Self {
            inner,
            total,
            stamp,
            name,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, St, Req> Service<Req> for TotalDeadline<S, St>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    St: Stamp<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = future::DeadlineFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    // Always inlined: where a stack is called from several places, it was
    // kept out of line, and the future of everything below it (440 bytes
    // in the standard policy) was returned through memory and copied.
    #[inline(always)]
    fn call(&mut self, mut request: Req) -> Self::Future {
        let now = Instant::now();
        let deadline = Deadline::at(later(now, self.total)).tighten();
        self.stamp.stamp(&mut request, deadline);
        let inner = &mut self.inner;
        let fut = deadline.sync_scope_read(now, || inner.call(request));
        future::DeadlineFuture::new(fut, deadline, self.name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_names_share_one_entry_and_the_default_needs_none() {
        let a = Named::new(Some("orders_timeout"));
        let b = Named::new(Some("orders_timeout"));
        let (Some(a), Some(b)) = (a, b) else {
            panic!("a layer's name is always set");
        };
        assert!(a.is_static() && std::ptr::eq(&*a, &*b));
        let a = Some(a);
        assert_eq!(Named::parts(&a, "timeout").0, "orders_timeout");
        let default = Named::new(None);
        assert!(
            matches!(&default, Some(Shared::Static(named)) if std::ptr::eq(*named, &DEFAULT_NAME))
        );
        assert_eq!(Named::parts(&default, "timeout").0, "timeout");
        assert_eq!(Named::parts(&default, "total_deadline").0, "total_deadline");
        assert!(Named::parts(&None, "timeout").1.is_none());
    }

    #[test]
    fn past_the_cap_a_name_is_counted_and_kept_whole() {
        let table = Interner::new(2);
        assert!(Named::named_in(&table, "a").is_static());
        assert!(Named::named_in(&table, "b").is_static());
        let late = Named::named_in(&table, "late");
        assert!(!late.is_static());
        let late = Some(late);
        assert_eq!(Named::parts(&late, "timeout").0, "late");
        assert!(Named::parts(&late, "timeout").1.is_some());
    }

    /// A total deadline whose name found the table full still reports
    /// its rejection under its own name, in its own series.
    #[cfg(feature = "metrics")]
    #[tokio::test(start_paused = true)]
    async fn a_deadline_named_past_the_cap_counts_its_rejections() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        use tower::ServiceExt;

        let table = Interner::new(1);
        let _ = Named::named_in(&table, "first");
        let late = Named::named_in(&table, "checkout_deadline");
        assert!(!late.is_static());

        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _guard = metrics::set_default_local_recorder(&recorder);
        let slow = tower::service_fn(|()| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, BoxError>(())
        });
        let service =
            TotalDeadline::from_parts(slow, Duration::from_millis(10), NoStamp, Some(late));
        for _ in 0..2 {
            let err = service.clone().oneshot(()).await.unwrap_err();
            assert!(err.is::<crate::error::DeadlineExceeded>());
        }
        let rejections = crate::event::metrics::recorded(&snapshotter);
        assert_eq!(
            rejections,
            [(
                crate::event::metrics::REJECTIONS.to_owned(),
                "policy=,route=,kind=deadline_exceeded,name=checkout_deadline".to_owned(),
                DebugValue::Counter(2)
            )]
        );
    }
}
