//! Fallbacks: when a call fails or is refused, answer anyway, from the best
//! source still standing.
//!
//! [`FallbackLayer`] is the outermost layer of a stack. It fires when the
//! primary call is judged a failure ([`Verdict::Transient`] or
//! [`Verdict::Failure`]) or was refused by a policy inside it (an open
//! circuit, a full bulkhead, a rate limit, a passed deadline); which of
//! these fire it is set with a [`Trigger`]. It then tries its sources, in
//! this order, each optional:
//!
//! 1. an [`alternate`](FallbackLayerBuilder::alternate) service (another
//!    API, region or version), called with a copy of the original request;
//! 2. a [`FallbackCache`] (feature `cache`) of recent successful answers (stale-if-error):
//!    every success is recorded under a key derived from its request, and
//!    the freshest entry younger than
//!    [`max_staleness`](FallbackCacheBuilder::max_staleness) is served;
//! 3. a [`static`](FallbackLayerBuilder::static_response) answer, or one
//!    [`computed`](FallbackLayerBuilder::compute) from the request and the
//!    failure.
//!
//! If every source fails, the **original** outcome comes back (the
//! primary's error, or its failed response), not a fallback's.
//!
//! A call need not fail to be answered from the cache: with
//! [`serve_stale_after`](FallbackLayerBuilder::serve_stale_after), a call
//! still under way after its latency budget is answered with the cached
//! answer, if there is one young enough (stale-while-revalidate, or
//! stale-if-error with a timeout). The slow call is dropped, or with
//! [`finish_in_background`](FallbackLayerBuilder::finish_in_background)
//! runs on in a task to its own deadline, so that the breaker inside still
//! sees a hanging dependency fail, opens, and later calls are answered
//! from the cache at once.
//!
//! A caller can tell a fallback answer from a real one: HTTP answers carry
//! a [`FallbackSource`] in their extensions and, optionally, a header
//! ([`Http`]); other responses are marked by a [`Mark`]. Each fallback is
//! reported by a `tracing` event with target `steadfast::fallback` and
//! fields `policy`, `name`, `source`, `verdict`, `reason` and `age_ms`
//! (reason `latency_budget` for an answer served at the latency budget).
//!
//! On the success path the layer judges the outcome and, with a cache,
//! records the answer; an alternate needs a copy of every request, made
//! before the call. Successes and functional errors (a 404) never fire it.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "cache")]
//! # mod example {
//! use std::time::Duration;
//! use steadfast::fallback::{FallbackCache, FallbackLayer, FallbackSource};
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! #[derive(Debug, Clone, PartialEq)]
//! struct Price { cents: u64, source: Option<FallbackSource> }
//!
//! # pub async fn run() -> Result<(), steadfast::BoxError> {
//! let cache = FallbackCache::builder()
//!     .capacity(10_000)
//!     .max_staleness(Duration::from_secs(60))
//!     .build()?;
//! let layer = FallbackLayer::builder()
//!     .cache(cache)
//!     .static_response(Price { cents: 0, source: None })
//!     .mark(|price: &mut Price, source: &FallbackSource| price.source = Some(*source))
//!     .build()?;
//!
//! // Item 1 is priced once, then the pricing service goes down.
//! let mut up = true;
//! let mut service = layer.layer(service_fn(move |item: u32| {
//!     let answer = if up { Ok(Price { cents: 100 * u64::from(item), source: None }) }
//!                  else { Err(steadfast::BoxError::from("connection refused")) };
//!     up = false;
//!     async move { answer }
//! }));
//!
//! assert_eq!(service.ready().await?.call(1).await?.cents, 100);
//! let cached = service.ready().await?.call(1).await?;
//! assert_eq!((cached.cents, cached.source), (100, Some(FallbackSource::Cache { age: Duration::ZERO })));
//! let fixed = service.ready().await?.call(2).await?;
//! assert_eq!((fixed.cents, fixed.source), (0, Some(FallbackSource::Static)));
//! # Ok(())
//! # }
//! # }
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! # #[cfg(feature = "cache")]
//! # example::run().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # A latency budget
//!
//! ```
//! # #[cfg(feature = "cache")]
//! # mod example {
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use steadfast::fallback::{FallbackCache, FallbackLayer, FallbackSource};
//! use steadfast::timeout::TotalDeadlineLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # pub async fn run() -> Result<(), steadfast::BoxError> {
//! #[derive(Debug, Clone)]
//! struct Stock { units: u32, source: Option<FallbackSource> }
//!
//! let fallback = FallbackLayer::builder()
//!     .cache(FallbackCache::builder().max_staleness(Duration::from_secs(60)).build()?)
//!     // A call still waiting after 100 ms is answered from the cache...
//!     .serve_stale_after(Duration::from_millis(100))
//!     // ...and runs on to its deadline, at most 1,000 such calls at once.
//!     .finish_in_background(1_000)
//!     .mark(|stock: &mut Stock, source: &FallbackSource| stock.source = Some(*source))
//!     .build()?;
//!
//! // The first answer is quick; then the stock service stalls for 5 s.
//! let calls = Arc::new(AtomicU32::new(0));
//! let service = ServiceBuilder::new()
//!     .layer(fallback)
//!     .layer(TotalDeadlineLayer::new(Duration::from_secs(2))?)
//!     .service(service_fn(move |_item: u32| {
//!         let first = calls.fetch_add(1, Ordering::Relaxed) == 0;
//!         let stall = Duration::from_secs(if first { 0 } else { 5 });
//!         async move {
//!             tokio::time::sleep(stall).await;
//!             Ok::<_, steadfast::BoxError>(Stock { units: 7, source: None })
//!         }
//!     }));
//!
//! assert_eq!(service.clone().oneshot(1).await?.units, 7);
//! let started = tokio::time::Instant::now();
//! let stale = service.clone().oneshot(1).await?;
//! assert_eq!(started.elapsed(), Duration::from_millis(100));
//! assert_eq!((stale.units, stale.source), (7, Some(FallbackSource::Cache {
//!     age: Duration::from_millis(100),
//! })));
//! # Ok(())
//! # }
//! # }
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! # #[cfg(feature = "cache")]
//! # example::run().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # HTTP: alternate region, cached answers, a static answer
//!
//! ```
//! # #[cfg(all(feature = "http", feature = "cache"))]
//! # mod example {
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{HeaderName, Request, Response, StatusCode};
//! use steadfast::classify::Verdict;
//! use steadfast::fallback::{FallbackCache, FallbackLayer, FallbackSource, Trigger};
//! use tower::{ServiceExt, service_fn};
//!
//! # pub async fn run() -> Result<(), steadfast::BoxError> {
//! type Body = http_body_util::Full<Bytes>;
//! let reply = |status: StatusCode, text: &'static str| async move {
//!     let mut response = Response::new(Body::from(text));
//!     *response.status_mut() = status;
//!     Ok::<_, steadfast::BoxError>(response)
//! };
//! let primary = service_fn(move |_: Request<()>| reply(StatusCode::SERVICE_UNAVAILABLE, "busy"));
//! let other_region = service_fn(move |_: Request<()>| reply(StatusCode::OK, "from eu-west"));
//!
//! let layer = FallbackLayer::builder()
//!     .alternate(other_region)
//!     .cache(
//!         FallbackCache::http()
//!             .capacity(1_000)
//!             .max_staleness(Duration::from_secs(300))
//!             .max_body_bytes(64 * 1024)
//!             .vary_on(HeaderName::from_static("accept-language"))
//!             .build()?,
//!     )
//!     .static_response(Response::new(Bytes::from_static(b"[]")))
//!     .on(Trigger::FAILURES | Trigger::REJECTIONS)
//!     .classifier(|outcome: Result<&Response<Body>, &steadfast::BoxError>| match outcome {
//!         Ok(r) if r.status().is_server_error() => Verdict::transient(),
//!         Ok(r) if r.status().is_client_error() => Verdict::FunctionalError,
//!         Ok(_) => Verdict::Success,
//!         Err(_) => Verdict::transient(),
//!     })
//!     .http()
//!     .source_header(HeaderName::from_static("x-fallback"))
//!     .build()?;
//!
//! let service = tower::Layer::layer(&layer, primary);
//! let response = service.oneshot(Request::new(())).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.headers()["x-fallback"], "alternate");
//! assert_eq!(response.extensions().get(), Some(&FallbackSource::Alternate));
//! # Ok(())
//! # }
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! # #[cfg(all(feature = "http", feature = "cache"))]
//! # example::run().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # reqwest, under the standard client policy
//!
//! [`reqwest`](FallbackLayerBuilder::reqwest) serves `reqwest::Response`s
//! for `reqwest::Request`s, so the fallback goes directly over
//! [`Policy::standard_http_client`](crate::policy::Policy::standard_http_client)
//! layered on a `reqwest::Client`; `build()` and `layer()` check that each
//! source and the service fit (see [`CheckSources`], [`CheckService`]).
//! [`http_for`](FallbackLayerBuilder::http_for) does the same for other
//! types, such as hyper-util's client. The cache key is an [`HttpKey`],
//! composed here to ignore a tracking parameter; `Authorization`,
//! `Cookie` and `Host` stay in it.
//!
//! ```
//! # #[cfg(all(feature = "reqwest", feature = "cache"))]
//! # fn main() -> Result<(), steadfast::BoxError> {
//! use bytes::Bytes;
//! use steadfast::fallback::{FallbackCache, FallbackLayer, HttpKey};
//! use steadfast::http::HttpClassifier;
//! use steadfast::policy::Policy;
//! use tower::Layer;
//!
//! let key = HttpKey::new().ignore_query_param("utm_source");
//! let fallback = FallbackLayer::builder()
//!     .cache(FallbackCache::http_with(key).build()?)
//!     .static_response(http::Response::new(Bytes::from_static(b"[]")))
//!     .classifier(HttpClassifier::new())
//!     .reqwest()
//!     .build()?;
//! let policy = Policy::standard_http_client().build()?;
//! let client = fallback.layer(policy.layer(reqwest::Client::new()));
//! // `client` is a `Service<reqwest::Request, Response = reqwest::Response>`.
//! # let _ = client;
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "reqwest", feature = "cache")))]
//! # fn main() {}
//! ```
//!
//! [`Verdict::Transient`]: crate::classify::Verdict::Transient
//! [`Verdict::Failure`]: crate::classify::Verdict::Failure

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use crate::classify::{Classify, DefaultClassifier};
use crate::error::BoxError;

mod alternate;
#[cfg_attr(not(feature = "cache"), allow(dead_code, unused_imports))]
mod budget;
// Without the `cache` feature, the slot and key types stay (the layer is
// generic over its cache source) but no cache can be built.
#[cfg_attr(not(feature = "cache"), allow(dead_code, unused_imports))]
mod cache;
mod check;
pub mod future;
#[cfg(feature = "http")]
mod http;
mod kind;
mod last;
mod layer;
#[cfg(not(feature = "cache"))]
mod no_store;
mod reason;
mod source;

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use self::budget::StaleAfter;
pub use self::budget::{Background, Cancel, LatencyBudget};
pub use self::cache::{CacheKey, CacheSource, KeyFn, KeyHasher, NoCache, RequestKey, Slot};
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use self::cache::{FallbackCache, FallbackCacheBuilder};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::check::FallbackInner;
pub use self::check::{CheckService, CheckSources, Checked, Unchecked};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::http::{FallbackBody, Http, HttpKey};
pub use self::layer::{FallbackLayer, FallbackLayerBuilder};
pub use self::source::{
    Alternate, AlternateSource, Cause, Computed, FallbackSource, LastResort, Mark, NoAlternate,
    NoLast, NoMark, Plain, Reason, ResponseKind, Static, Trigger,
};

use self::future::ResponseFuture;

/// The sources and settings every service of a layer shares.
pub(crate) struct Shared<A, Ca, F, C, K> {
    pub(crate) alternate: A,
    pub(crate) cache: Ca,
    pub(crate) last: F,
    pub(crate) classifier: C,
    pub(crate) kind: K,
    pub(crate) on: Trigger,
    pub(crate) name: Cow<'static, str>,
    pub(crate) cache_first: bool,
    /// The metric series of its answers, made with the layer.
    pub(crate) decisions: crate::event::Decisions,
}

/// Answers failed or refused calls of the inner service from fallback
/// sources. Made by [`FallbackLayer`].
pub struct Fallback<S, A = NoAlternate, Ca = NoCache, F = NoLast, C = DefaultClassifier, K = Plain>
{
    inner: S,
    shared: Arc<Shared<A, Ca, F, C, K>>,
}

impl<S, A, Ca, F, C, K> Fallback<S, A, Ca, F, C, K> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &FallbackLayer<A, Ca, F, C, K>) -> Self
    where
        FallbackLayer<A, Ca, F, C, K>: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }
}

impl<S, A, Ca, F, C, K> Fallback<S, A, Ca, F, C, K> {
    fn from_shared(inner: S, shared: Arc<Shared<A, Ca, F, C, K>>) -> Self {
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

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, A, Ca, F, C, K> Clone for Fallback<S, A, Ca, F, C, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, A, Ca, F, C, K> fmt::Debug for Fallback<S, A, Ca, F, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .field("on", &self.shared.on)
            .finish_non_exhaustive()
    }
}

impl<S, Req, A, Ca, F, C, K> Service<Req> for Fallback<S, A, Ca, F, C, K>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    A: AlternateSource<Req, S::Response>,
    Ca: CacheSource<Req> + LatencyBudget<S::Future>,
    F: LastResort<Req, S::Response, K>,
    C: Classify<Req, S::Response, S::Error>,
    K: ResponseKind<S::Response>,
{
    type Response = K::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, A, Ca, F, C, K>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let shared = &self.shared;
        let facts = shared.classifier.facts(&request);
        let copy = shared.alternate.copy(&request);
        let last = shared.last.facts(&request);
        let slot = shared.cache.slot(&request);
        let future = self.inner.call(request);
        ResponseFuture::new(future, Arc::clone(shared), facts, copy, last, slot)
    }
}
