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
    S: Service<Req, Response = Res>,
    S::Error: Into<BoxError> + 'static,
    C: Classify<Req, Res, S::Error>,
    Ca: LatencyBudget<S::Future>,
{
}
