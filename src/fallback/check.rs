//! The checks a fallback layer makes of its sources at `build()`, and of
//! the service it wraps at `layer()`, once the request and response types
//! are named (with
//! [`FallbackLayerBuilder::reqwest`](super::FallbackLayerBuilder::reqwest)
//! or [`http_for`](super::FallbackLayerBuilder::http_for)).

use std::fmt;
use std::marker::PhantomData;

use super::source::Plain;
#[cfg(feature = "http")]
use {
    super::budget::LatencyBudget,
    super::cache::CacheSource,
    super::source::{AlternateSource, LastResort, ResponseKind},
    crate::classify::Classify,
    crate::error::BoxError,
    tower_service::Service,
};

/// The request and response types of an HTTP fallback were not named:
/// the sources are checked where the service is first called.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unchecked;

/// The request and response types of an HTTP fallback, `Req` and `Res`:
/// `build()` checks every source against them, and `layer()` the service.
pub struct Checked<Req, Res>(PhantomData<fn() -> (Req, Res)>);

impl<Req, Res> fmt::Debug for Checked<Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Checked")
            .field(&std::any::type_name::<Req>())
            .field(&std::any::type_name::<Res>())
            .finish()
    }
}

/// The checks [`build`](super::FallbackLayerBuilder::build) makes of a
/// fallback's sources: with the types named, that the alternate, the
/// cache, and the static or computed answer each take the request and
/// give the response. Implemented by every response kind; nothing to
/// check for [`Plain`] or an `Http` without named types.
///
/// A fallback for reqwest with a static answer that is not an
/// `http::Response<Bytes>` is refused at `build()`, with the message "the
/// static or computed answer `Static<String>` does not fit
/// `reqwest::Response` responses":
///
#[cfg_attr(
    all(feature = "reqwest", feature = "cache"),
    doc = "```compile_fail,E0277"
)]
#[cfg_attr(not(all(feature = "reqwest", feature = "cache")), doc = "```ignore")]
/// use steadfast::fallback::FallbackLayer;
///
/// let fallback = FallbackLayer::builder()
///     .static_response(String::from("offline"))
///     .reqwest()
///     .build(); // the static or computed answer `Static<String>` does not fit ...
/// ```
///
/// and so is a cache keyed on something else than the request type: "
/// `RequestKey` can't key a cache of `reqwest::Request` requests":
///
#[cfg_attr(
    all(feature = "reqwest", feature = "cache"),
    doc = "```compile_fail,E0277"
)]
#[cfg_attr(not(all(feature = "reqwest", feature = "cache")), doc = "```ignore")]
/// use steadfast::fallback::{FallbackCache, FallbackLayer};
///
/// let fallback = FallbackLayer::builder()
///     .cache(FallbackCache::builder().build()?) // keyed by the request's `Hash`
///     .reqwest()
///     .build(); // `RequestKey` can't key a cache of `reqwest::Request` requests
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
///
/// while the same layer with an HTTP cache and answer builds:
///
/// ```
/// # #[cfg(all(feature = "reqwest", feature = "cache"))] {
/// use steadfast::fallback::{FallbackCache, FallbackLayer};
///
/// let fallback = FallbackLayer::builder()
///     .cache(FallbackCache::http().build()?)
///     .static_response(http::Response::new(bytes::Bytes::from_static(b"offline")))
///     .reqwest()
///     .build()?;
/// # }
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "a source of this fallback does not fit its request and response types",
    label = "a source does not fit",
    note = "the first unsatisfied bound below names the source: `AlternateSource` (alternate), `CacheSource` (cache and its key), `LastResort` (static or computed answer)"
)]
pub trait CheckSources<A, Ca, F> {}

impl<A, Ca, F, M> CheckSources<A, Ca, F> for Plain<M> {}

#[cfg(feature = "http")]
impl<A, Ca, F> CheckSources<A, Ca, F> for super::Http<Unchecked> {}

#[cfg(feature = "http")]
impl<A, Ca, F, Req, Res> CheckSources<A, Ca, F> for super::Http<Checked<Req, Res>>
where
    Self: ResponseKind<Res>,
    A: AlternateSource<Req, Res>,
    Ca: CacheSource<Req>,
    F: LastResort<Req, Res, Self>,
{
}

/// The checks [`FallbackLayer`](super::FallbackLayer)'s `layer()` makes of
/// the service it wraps: with the types named, that it takes the request
/// and gives the response, that its errors convert into a [`BoxError`],
/// that the classifier judges its outcomes, and that the latency budget
/// can hand its calls on. Nothing to check for [`Plain`] or an `Http`
/// without named types.
///
/// A fallback built for reqwest is refused at `layer()` over a hyper-util
/// client, with the message "this fallback can't wrap `Client<HttpConnector,
/// Full<Bytes>>`: the fallback takes `reqwest::Request` and answers
/// `reqwest::Response`":
///
#[cfg_attr(
    all(feature = "reqwest", feature = "hyper", feature = "cache"),
    doc = "```compile_fail,E0277"
)]
#[cfg_attr(
    not(all(feature = "reqwest", feature = "hyper", feature = "cache")),
    doc = "```ignore"
)]
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use steadfast::fallback::{FallbackCache, FallbackLayer};
/// use tower::Layer;
///
/// let fallback = FallbackLayer::builder()
///     .cache(FallbackCache::http().build()?)
///     .reqwest()
///     .build()?;
/// let client = Client::builder(TokioExecutor::new())
///     .build_http::<http_body_util::Full<bytes::Bytes>>();
/// let service = fallback.layer(client); // this fallback can't wrap `Client<...>`
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "this fallback can't wrap `{S}`: it does not fit the fallback's request and response types",
    label = "the service does not fit",
    note = "the first unsatisfied bound below names the missing piece: `Service<Req, Response = Res>` (the service), `Classify` (the classifier), `LatencyBudget` (`finish_in_background` needs `Send + 'static` futures)"
)]
pub trait CheckService<S, Ca, C> {}

impl<S, Ca, C, M> CheckService<S, Ca, C> for Plain<M> {}

#[cfg(feature = "http")]
impl<S, Ca, C> CheckService<S, Ca, C> for super::Http<Unchecked> {}

#[cfg(feature = "http")]
impl<S, Ca, C, Req, Res> CheckService<S, Ca, C> for super::Http<Checked<Req, Res>>
where
    S: FallbackInner<Req, Res>,
    C: Classify<Req, Res, S::Error>,
    Ca: LatencyBudget<S::Future>,
{
}

/// A service a fallback can wrap: it takes `Req`, answers `Res`, and its
/// errors convert into a [`BoxError`]. Implemented by every such
/// [`Service`]; named in the error when a fallback built for one request
/// type wraps a service of another.
#[cfg(feature = "http")]
#[diagnostic::on_unimplemented(
    message = "this fallback can't wrap `{Self}`: the fallback takes `{Req}` and answers `{Res}`",
    label = "not a `Service<{Req}, Response = {Res}>`",
    note = "a fallback built with `.reqwest()` wraps a `Service<reqwest::Request, Response = reqwest::Response>`: a `reqwest::Client`, or a `Policy` layered over one; its errors must convert into `BoxError`"
)]
pub trait FallbackInner<Req, Res> {
    /// The service's error.
    type Error;
    /// The service's future.
    type Future;
}

#[cfg(feature = "http")]
#[diagnostic::do_not_recommend]
impl<S, Req, Res> FallbackInner<Req, Res> for S
where
    S: Service<Req, Response = Res>,
    S::Error: Into<BoxError> + 'static,
{
    type Error = S::Error;
    type Future = S::Future;
}
