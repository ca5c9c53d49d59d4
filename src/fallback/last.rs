//! The last fallback source: a static or computed answer, or none.

use std::fmt;
use std::marker::PhantomData;

use super::kind::ResponseKind;
use super::reason::Cause;

/// The last fallback source: a static or computed answer, or none.
#[diagnostic::on_unimplemented(
    message = "the static or computed answer `{Self}` does not fit `{Res}` responses",
    label = "this answer does not fit",
    note = "for HTTP (`.http()`, `.reqwest()`), a static answer is an `http::Response<Bytes>`, and a computed answer returns one"
)]
pub trait LastResort<Req, Res, K: ResponseKind<Res>> {
    /// What the answer needs from the request, taken before the call.
    type Facts;

    /// Takes what the answer needs from `request`; `None` when there is no
    /// last resort.
    fn facts(&self, request: &Req) -> Option<Self::Facts>;

    /// The answer to a failed call, if this source has one.
    fn answer(&self, kind: &K, facts: Self::Facts, cause: &Cause<'_, Res>) -> Option<K::Response>;
}

/// No static or computed answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoLast;

impl<Req, Res, K: ResponseKind<Res>> LastResort<Req, Res, K> for NoLast {
    type Facts = ();

    #[inline]
    fn facts(&self, _request: &Req) -> Option<()> {
        None
    }

    fn answer(&self, _: &K, _: (), _: &Cause<'_, Res>) -> Option<K::Response> {
        None
    }
}

/// The same answer to every failed call.
#[derive(Debug, Clone)]
pub struct Static<V>(pub(crate) V);

#[diagnostic::do_not_recommend]
impl<Req, Res, K, V> LastResort<Req, Res, K> for Static<V>
where
    K: ResponseKind<Res, Stored = V>,
{
    type Facts = ();

    #[inline]
    fn facts(&self, _request: &Req) -> Option<()> {
        Some(())
    }

    fn answer(&self, kind: &K, _: (), _: &Cause<'_, Res>) -> Option<K::Response> {
        Some(kind.rebuild(&self.0))
    }
}

/// An answer computed from what was kept of the request and the failure.
pub struct Computed<G, H, T> {
    pub(crate) facts: G,
    pub(crate) make: H,
    pub(crate) _kept: PhantomData<fn() -> T>,
}

impl<G: Clone, H: Clone, T> Clone for Computed<G, H, T> {
    fn clone(&self) -> Self {
        Self {
            facts: self.facts.clone(),
            make: self.make.clone(),
            _kept: PhantomData,
        }
    }
}

impl<G, H, T> fmt::Debug for Computed<G, H, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Computed").finish_non_exhaustive()
    }
}

#[diagnostic::do_not_recommend]
impl<Req, Res, K, G, H, T> LastResort<Req, Res, K> for Computed<G, H, T>
where
    K: ResponseKind<Res>,
    G: Fn(&Req) -> T,
    H: Fn(T, &Cause<'_, Res>) -> Option<K::Stored>,
{
    type Facts = T;

    #[inline]
    fn facts(&self, request: &Req) -> Option<T> {
        Some((self.facts)(request))
    }

    fn answer(&self, kind: &K, facts: T, cause: &Cause<'_, Res>) -> Option<K::Response> {
        (self.make)(facts, cause).map(|stored| kind.revive(stored))
    }
}
