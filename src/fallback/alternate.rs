//! The first fallback source: another service, or none.

use std::future::{Future, Pending, pending};

use crate::error::BoxError;
use crate::replay::Replay;

use super::future::AlternateCall;

/// The first fallback source: another service called with the original
/// request, or none.
#[diagnostic::on_unimplemented(
    message = "the alternate `{Self}` does not answer `{Req}` with `{Res}`",
    label = "this alternate does not fit",
    note = "the alternate service must take the primary's requests and give its responses, and its requests must be copied: `Clone` requests, or `.replay(..)` (`.replay(HttpReplay::new())` for `reqwest::Request`)"
)]
pub trait AlternateSource<Req, Res> {
    /// The alternate call.
    type Future: Future<Output = Result<Res, BoxError>>;

    /// Whether an alternate service is configured.
    fn is_configured(&self) -> bool;

    /// A copy of `request` for the alternate, taken before the primary call;
    /// `None` skips the alternate.
    fn copy(&self, request: &Req) -> Option<Req>;

    /// Calls the alternate service with the copy.
    fn call(&self, request: Req) -> Self::Future;
}

/// No alternate service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoAlternate;

impl<Req, Res> AlternateSource<Req, Res> for NoAlternate {
    type Future = Pending<Result<Res, BoxError>>;

    #[inline]
    fn is_configured(&self) -> bool {
        false
    }

    #[inline]
    fn copy(&self, _request: &Req) -> Option<Req> {
        None
    }

    fn call(&self, _request: Req) -> Self::Future {
        pending()
    }
}

/// Another service (API, region, version) that answers the same requests,
/// with the [`Replay`] that copies each request for it.
#[derive(Debug, Clone)]
pub struct Alternate<T, P> {
    pub(crate) service: T,
    pub(crate) replay: P,
}

#[diagnostic::do_not_recommend]
impl<T, P, Req> AlternateSource<Req, T::Response> for Alternate<T, P>
where
    T: tower_service::Service<Req> + Clone,
    T::Error: Into<BoxError>,
    P: Replay<Req>,
{
    type Future = AlternateCall<T, Req>;

    #[inline]
    fn is_configured(&self) -> bool {
        true
    }

    #[inline]
    fn copy(&self, request: &Req) -> Option<Req> {
        self.replay.replay(request)
    }

    fn call(&self, request: Req) -> Self::Future {
        AlternateCall::new(self.service.clone(), request)
    }
}
